"""Chunk-recurrent training: a sequence cut into chunks as inference cuts it, the memory carried across.

``SequenceObjective`` wraps the model so that one ``forward`` is one training sequence: chunks run in order
through ``LoGeR.forward_chunk`` with the memory of the previous chunk, gradients flow back through the fast
weights and the SWA caches (cut every ``truncate_every`` chunks when set, the SWA caches always when
``detach_swa_history``), and LoGeR*'s SE(3) chaining is applied in the graph when ``align="se3"``.

The loss (``train.losses.ChunkLoss``) sees every frame of every chunk, overlaps twice, against the ground
truth of those frames: with ``scope="sequence"`` all of them at once, so one optimal scale per sequence,
camera poses relative to the sequence's first frame and pose pairs across chunks — drift of scale or frame
between chunks is penalised; with ``scope="chunk"`` each chunk on its own (a Pi3-Chunk-style objective) and the
mean over chunks. Wrapping the objective (not the bare model) in DDP makes every chunk's forward count.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..model.outputs import ChunkPrediction
from ..model.recurrence import MemoryPolicy
from ..model.sequence import run_chunks as sequence_chunks
from .losses import ChunkLoss, LossConfig

__all__ = ["RecurrentSettings", "SequenceObjective", "run_chunks"]

_FRAME_KEYS = ("local_points", "conf", "camera_poses", "points")


@dataclass(frozen=True)
class RecurrentSettings:
    """How a training sequence flows through the model.

    ``truncate_every``: detach the memory after every that many chunks (0: back-propagate through the whole
    sequence); ``detach_swa_history``: never back-propagate into the previous chunk through the SWA caches;
    ``align``: ``none`` or ``se3`` (LoGeR*); ``scope``: ``sequence`` or ``chunk`` (see the module docstring).
    """

    truncate_every: int = 0
    detach_swa_history: bool = False
    align: str = "none"
    scope: str = "sequence"

    def __post_init__(self) -> None:
        if self.align not in ("none", "se3"):
            raise ValueError(f"training align must be 'none' or 'se3', got {self.align!r}")
        if self.scope not in ("sequence", "chunk"):
            raise ValueError(f"loss scope must be 'sequence' or 'chunk', got {self.scope!r}")
        if self.truncate_every < 0:
            raise ValueError(f"truncate_every must be >= 0, got {self.truncate_every}")


def run_chunks(model: nn.Module, images: torch.Tensor, window: int, overlap: int,
               settings: RecurrentSettings = RecurrentSettings()) -> list[tuple[range, ChunkPrediction]]:
    """Every chunk's prediction (with its graph) and the frames it covers: ``[(range(start, end), pred), ...]``.

    ``images`` ``[B, N, 3, H, W]`` in [0, 1] on the model's device; the loop is the model's own
    (``model.sequence.run_chunks``), shaped by the training settings.
    """
    policy = MemoryPolicy(truncate_every=settings.truncate_every, detach_swa_history=settings.detach_swa_history)
    return [(range(c.window.start, c.window.end), c.prediction)
            for c in sequence_chunks(model, images, window, overlap, settings.align, policy)]


class SequenceObjective(nn.Module):
    """``forward(images, depth_points, poses, valid, window, overlap) -> (loss, stats)`` for one batch.

    ``images`` ``[B, N, 3, H, W]``; ``depth_points`` ground-truth camera-frame points ``[B, N, H, W, 3]``;
    ``poses`` ``[B, N, 4, 4]`` camera-to-world; ``valid`` ``[B, N, H, W]``. ``stats`` holds the loss terms and
    the mean memory gates as detached 0-dim tensors (``losses.read_stats`` reads them) and the number of
    chunks as a float.
    """

    def __init__(self, model: nn.Module, loss: LossConfig | None = None,
                 settings: RecurrentSettings = RecurrentSettings()) -> None:
        super().__init__()
        self.model = model
        self.loss = ChunkLoss(loss)
        self.settings = settings

    def forward(self, images: torch.Tensor, gt_points: torch.Tensor, gt_poses: torch.Tensor, valid: torch.Tensor,
                window: int, overlap: int) -> tuple[torch.Tensor, dict[str, torch.Tensor | float]]:
        chunks = run_chunks(self.model, images, window, overlap, self.settings)
        if self.settings.scope == "sequence":
            # Made on the device: a host-made index would be copied with a wait for the GPU.
            frames = torch.cat([torch.arange(r.start, r.stop, device=images.device) for r, _ in chunks])
            pred = ChunkPrediction(*(torch.cat([getattr(p, k) for _, p in chunks], dim=1) for k in _FRAME_KEYS))
            loss, stats = self.loss(pred, gt_points[:, frames], gt_poses[:, frames], valid[:, frames])
        else:
            parts = [self.loss(p, gt_points[:, r.start:r.stop], gt_poses[:, r.start:r.stop],
                               valid[:, r.start:r.stop]) for r, p in chunks]
            loss = torch.stack([part[0] for part in parts]).mean()
            stats = {k: torch.stack([part[1][k] for part in parts]).mean() for k in parts[0][1]}
            stats["total"] = loss.detach()
        stats["chunks"] = float(len(chunks))
        for name in ("ttt_gate", "swa_gate"):
            gates = [getattr(p, name) for _, p in chunks if getattr(p, name) is not None]
            if gates:
                stats[name] = torch.stack(gates).detach().float().mean()
        return loss, stats
