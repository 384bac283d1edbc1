"""A training clip: consecutive frames of one sequence with everything the losses need.

Every data source (synthetic worlds, real multi-view folders) yields ``Clip``s; the mixture, the depth
filter and the chunk-recurrent step consume them. Shapes (one clip, ``n`` frames, ``H × W`` pixels):

* ``images`` ``[n, 3, H, W]`` float RGB in [0, 1];
* ``depth`` ``[n, H, W]`` float z-depth in metres, 0 where unknown;
* ``valid`` ``[n, H, W]`` bool, the pixels whose depth supervises the point maps;
* ``intrinsics`` ``[n, 3, 3]`` pixel-centre convention (pixel (r, c) at u = c, v = r);
* ``poses`` ``[n, 4, 4]`` camera-to-world, OpenCV axes; any world frame (the losses are invariant to it).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np
import torch

__all__ = ["Clip", "ClipSource", "stack_clips", "unproject_depth"]


@dataclass
class Clip:
    images: torch.Tensor
    depth: torch.Tensor
    valid: torch.Tensor
    intrinsics: torch.Tensor
    poses: torch.Tensor
    source: str = ""

    def __len__(self) -> int:
        return self.images.shape[0]

    def to(self, device: torch.device | str) -> Clip:
        return replace(self, images=self.images.to(device), depth=self.depth.to(device), valid=self.valid.to(device),
                       intrinsics=self.intrinsics.to(device), poses=self.poses.to(device))

    @property
    def local_points(self) -> torch.Tensor:
        """Ground-truth camera-frame points ``[n, H, W, 3]`` (zero where the depth is unknown)."""
        return unproject_depth(self.depth, self.intrinsics)


class ClipSource(Protocol):
    """Anything that draws clips: ``sample(rng, frames, device) -> Clip`` with exactly ``frames`` frames.

    All randomness must come from ``rng``, so that a clip is a pure function of the generator's seed (this is
    what makes training resumable bit for bit and the same on any number of processes).
    """

    name: str

    def sample(self, rng: np.random.Generator, frames: int, device: torch.device | str = "cpu") -> Clip: ...


def unproject_depth(depth: torch.Tensor, intrinsics: torch.Tensor) -> torch.Tensor:
    """Camera-frame points ``[..., H, W, 3]`` from z-depth ``[..., H, W]`` and ``K`` ``[..., 3, 3]``."""
    H, W = depth.shape[-2:]
    v, u = torch.meshgrid(torch.arange(H, device=depth.device, dtype=depth.dtype),
                          torch.arange(W, device=depth.device, dtype=depth.dtype), indexing="ij")
    fx, fy = intrinsics[..., 0, 0, None, None], intrinsics[..., 1, 1, None, None]
    cx, cy = intrinsics[..., 0, 2, None, None], intrinsics[..., 1, 2, None, None]
    return torch.stack([(u - cx) / fx * depth, (v - cy) / fy * depth, depth], dim=-1)


def stack_clips(clips: list[Clip]) -> Clip:
    """Clips of equal length and size as one batched clip (a leading batch dimension on every tensor)."""
    shapes = {(len(c), *c.images.shape[-2:]) for c in clips}
    if len(shapes) != 1:
        raise ValueError(f"clips of different lengths or sizes cannot be batched: {sorted(shapes)}")
    return Clip(*(torch.stack([getattr(c, k) for c in clips]) for k in ("images", "depth", "valid", "intrinsics",
                                                                         "poses")),
                source="+".join(c.source for c in clips))
