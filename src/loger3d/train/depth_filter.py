"""Depth filtering of training clips: drop far points, whose depth is least reliable.

LoGeR follows Pi3/CUT3R practice: each dataset gets a maximum depth in metres (sky, far background and sensor
noise past the working range) and/or a percentile cut that discards the farthest few per cent of a clip's valid
depths. Dropped pixels become unknown (``valid`` False, ``depth`` 0), so the losses ignore them.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, replace

import torch

from .clip import Clip
from .config import ConfigError

__all__ = ["DepthFilter"]


@dataclass(frozen=True)
class DepthFilter:
    """Marks pixels deeper than ``max_depth`` metres or than the ``percentile``-th percentile of the clip invalid.

    The percentile is taken over all valid depths of the whole clip (nearest rank), so every frame has the same
    cut-off and a frame looking at the far background loses its far points rather than its near ones. Both
    None: the clip is returned unchanged.
    """

    max_depth: float | None = None
    percentile: float | None = None

    def __post_init__(self) -> None:
        if self.max_depth is not None and not (_is_number(self.max_depth) and 0 < self.max_depth < math.inf):
            raise ConfigError(f"max_depth must be a positive number of metres or None, got {self.max_depth!r}")
        if self.percentile is not None and not (_is_number(self.percentile) and 0 < self.percentile <= 100):
            raise ConfigError(f"percentile must be in (0, 100] (e.g. 98) or None, got {self.percentile!r}")

    def __call__(self, clip: Clip) -> Clip:
        keep = clip.valid
        if self.max_depth is not None:
            keep = keep & (clip.depth <= self.max_depth)
        if self.percentile is not None and clip.valid.any():
            depths = clip.depth[clip.valid]
            rank = max(1, math.ceil(self.percentile * depths.numel() / 100))
            keep = keep & (clip.depth <= depths.kthvalue(rank).values)
        if keep is clip.valid:
            return clip
        return replace(clip, depth=torch.where(keep, clip.depth, torch.zeros_like(clip.depth)), valid=keep)


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)
