"""The chunk curriculum: how long the training sequences are and how they are cut, step by step.

LoGeR trains in stages (48 frames in 4 chunks, then the same 48 frames in 12 chunks so the model must lean on
the TTT memory rather than SWA, then 128 frames in up to 20 chunks). A stage here fixes the sequence length
and the overlap, and either a window or a number of chunks (a fixed count, or a [min, max] range drawn per
step); the window then follows from the inference rule in ``model.windows``, so training cuts sequences
exactly as inference does. A stage may also change loss weights for its steps (``loss``), e.g. leave out the
global point term on single-chunk clips.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import numpy as np

from ..model.windows import plan_windows
from .losses import LossConfig

__all__ = ["Stage", "Curriculum", "window_for_chunks"]


def window_for_chunks(frames: int, chunks: int, overlap: int) -> int:
    """The smallest window that cuts ``frames`` frames into at most ``chunks`` chunks with ``overlap``."""
    if chunks <= 1:
        return frames
    return math.ceil((frames - overlap) / chunks) + overlap


@dataclass(frozen=True)
class Stage:
    """``steps`` optimiser steps on ``frames``-frame sequences cut with ``overlap``.

    Give ``window`` (frames per chunk) or ``chunks`` (an int, or ``(min, max)`` drawn per step); not both.
    ``micro_batch``: sequences a process computes at once in this stage (default: ``train.micro_batch``), so
    that long sequences can take smaller micro-batches than short ones; the clips and the batch are the same.
    ``activation_checkpointing``: recompute the blocks in this stage's backward pass (default:
    ``train.activation_checkpointing``), so that a stage of many chunks fits a larger micro-batch in fewer
    micro-steps while the others skip the recomputation; it recomputes exactly, so the run is the same.
    ``cuda_graphs``: replay this stage's micro-steps as CUDA graphs (default: ``train.cuda_graphs``).
    ``loss``: fields of the ``loss`` section that take other values during this stage (``{local_weight: 0}``);
    the rest keep the section's values.
    """

    steps: int
    frames: int
    overlap: int = 1
    window: int | None = None
    chunks: int | tuple[int, int] | None = None
    micro_batch: int | None = None
    activation_checkpointing: bool | None = None
    cuda_graphs: bool | None = None
    loss: dict[str, float] | None = None

    def __post_init__(self) -> None:
        if self.steps < 1 or self.frames < 1:
            raise ValueError(f"a stage needs steps >= 1 and frames >= 1, got {self.steps}, {self.frames}")
        if self.micro_batch is not None and self.micro_batch < 1:
            raise ValueError(f"a stage's micro_batch must be >= 1, got {self.micro_batch}")
        if self.loss is not None:
            self._check_loss()
        if (self.window is None) == (self.chunks is None):
            raise ValueError("a stage takes either window or chunks (not both, not neither)")
        if isinstance(self.chunks, list):
            object.__setattr__(self, "chunks", tuple(self.chunks))
        low, high = self.chunk_range
        if not 1 <= low <= high:
            raise ValueError(f"chunks must be >= 1 (a range as [min, max]), got {self.chunks}")
        for window in {self._window(low), self._window(high)}:
            plan_windows(self.frames, window, self.overlap)  # raises on an overlap that does not fit

    def _check_loss(self) -> None:
        if not isinstance(self.loss, dict):
            raise ValueError(f"a stage's loss must map loss fields to values, got {self.loss!r}")
        known = [f.name for f in fields(LossConfig)]
        unknown = [key for key in self.loss if key not in known]
        if unknown:
            raise ValueError(f"unknown loss field {unknown[0]!r} in a stage; valid fields: {', '.join(known)}")
        try:
            LossConfig(**self.loss)  # LossConfig checks the values
        except ValueError as e:
            raise ValueError(f"a stage's loss.{e}") from None

    def loss_config(self, base: LossConfig) -> LossConfig:
        """The loss settings of this stage's steps: ``base`` with this stage's ``loss`` values."""
        return replace(base, **self.loss) if self.loss else base

    @property
    def chunk_range(self) -> tuple[int, int]:
        if self.chunks is None:
            n = len(plan_windows(self.frames, self.window, self.overlap))
            return n, n
        if isinstance(self.chunks, tuple):
            return int(self.chunks[0]), int(self.chunks[1])
        return int(self.chunks), int(self.chunks)

    def _window(self, chunks: int) -> int:
        return self.window if self.window is not None else window_for_chunks(self.frames, chunks, self.overlap)

    def window_at(self, rng: np.random.Generator) -> int:
        """This step's window (draws the chunk count when the stage gives a range)."""
        low, high = self.chunk_range
        return self._window(int(rng.integers(low, high + 1)) if high > low else low)


class Curriculum:
    """Stages run one after another; ``at(step)`` gives the stage, its window and the chunk plan for a step."""

    def __init__(self, stages: list[Stage], seed: int = 0) -> None:
        if not stages:
            raise ValueError("the curriculum needs at least one stage")
        self.stages = list(stages)
        self.seed = int(seed)
        self.ends = np.cumsum([s.steps for s in self.stages]).tolist()

    @property
    def total_steps(self) -> int:
        return self.ends[-1]

    def stage_index(self, step: int) -> int:
        for i, end in enumerate(self.ends):
            if step < end:
                return i
        return len(self.stages) - 1

    def at(self, step: int) -> tuple[Stage, int]:
        """``(stage, window)`` for ``step``; the same on every process (drawn from the seed and the step)."""
        stage = self.stages[self.stage_index(step)]
        return stage, stage.window_at(np.random.default_rng([self.seed, step, 7]))
