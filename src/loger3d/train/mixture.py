"""A weighted mixture of clip sources, addressed by (step, slot) instead of iterated.

``ClipMixture.sample(step, slot, frames)`` is a pure function of the mixture's seed, the step and the slot (the
sample's index in the global batch): the generator ``numpy.random.default_rng([seed, step, slot])`` picks the
source by weight and everything the source draws. So a resumed run sees exactly the clips it would have seen,
and a batch is the same whether one process or many draw its slots.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .clip import Clip, ClipSource
from .config import ConfigError
from .depth_filter import DepthFilter

__all__ = ["ClipMixture"]


class ClipMixture:
    def __init__(self, sources: Sequence[ClipSource], weights: Sequence[float] | None = None, seed: int = 0,
                 depth_filter: DepthFilter | None = None) -> None:
        if not sources:
            raise ConfigError("a data mixture needs at least one source")
        weights = [1.0] * len(sources) if weights is None else [_number(w, "weight") for w in weights]
        if len(weights) != len(sources) or any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ConfigError(f"need one non-negative weight per source with a positive sum, got {weights}")
        self.sources = list(sources)
        self.probabilities = np.asarray(weights) / sum(weights)
        self.seed = int(seed)
        self.depth_filter = depth_filter or DepthFilter()

    def _pick(self, step: int, slot: int) -> tuple[ClipSource, np.random.Generator]:
        rng = np.random.default_rng([self.seed, step, slot])
        return self.sources[int(rng.choice(len(self.sources), p=self.probabilities))], rng

    def sample(self, step: int, slot: int, frames: int, device: torch.device | str = "cpu") -> Clip:
        """The clip of global-batch position ``slot`` at ``step``: ``frames`` frames on ``device``."""
        return self.sample_batch(step, [slot], frames, device)[0]

    def sample_batch(self, step: int, slots: Sequence[int], frames: int,
                     device: torch.device | str = "cpu") -> list[Clip]:
        """The clips of ``slots`` at ``step``, in that order; each equals ``sample(step, slot, ...)``. Sources that
        can (``sample_many``) draw their share of the slots together: synthetic worlds render in one batch."""
        picks = [self._pick(step, slot) for slot in slots]
        clips: list[Clip | None] = [None] * len(picks)
        for source in self.sources:
            mine = [i for i, (chosen, _) in enumerate(picks) if chosen is source]
            if not mine:
                continue
            rngs = [picks[i][1] for i in mine]
            drawn = source.sample_many(rngs, frames, device) if hasattr(source, "sample_many") else \
                [source.sample(rng, frames, device) for rng in rngs]
            for i, clip in zip(mine, drawn):
                clips[i] = self.depth_filter(clip)
        return clips

    def prefetch(self, step: int, slots: Sequence[int], frames: int) -> None:
        """Tell sources that can prepare ahead (``plan`` + ``prefetch``) which clips ``step`` will ask for."""
        for slot in slots:
            source, rng = self._pick(step, slot)
            if hasattr(source, "prefetch"):
                source.prefetch(source.plan(rng, frames))

    def close(self) -> None:
        for source in self.sources:
            if hasattr(source, "close"):
                source.close()


def mixture_from_config(data) -> ClipMixture:
    """The mixture of a config's ``data`` section (``train.config.DataSection``); see docs/training-data.md."""
    from .folder import SequenceFolder
    from .synthetic import SyntheticSource

    sources, weights = [], []
    for i, spec in enumerate(data.sources):
        if not isinstance(spec, dict) or "kind" not in spec:
            raise ConfigError(f"data.sources[{i}] must be a mapping with a kind (synthetic or folder), got {spec!r}")
        options = {k: v for k, v in spec.items() if k not in ("kind", "weight")}
        weights.append(_number(spec.get("weight", 1.0), f"data.sources[{i}].weight"))
        kinds = {"synthetic": SyntheticSource, "folder": SequenceFolder}
        if spec["kind"] not in kinds:
            raise ConfigError(f"data.sources[{i}].kind {spec['kind']!r} is unknown; use synthetic or folder")
        try:
            sources.append(kinds[spec["kind"]](height=data.height, width=data.width, **options))
        except (TypeError, ConfigError) as e:  # an unknown option, or a value the source refuses
            raise ConfigError(f"data.sources[{i}] ({spec['kind']}): {e}") from None
    return ClipMixture(sources, weights, data.seed, DepthFilter(data.max_depth, data.depth_percentile))


def _number(value: object, where: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where} must be a number, got {value!r}") from None
