"""Typed outputs: one chunk's prediction, and the merged prediction of a whole sequence.

Both can be read as attributes or as keys (``pred.points`` or ``pred["points"]``), the latter
for code written against the official release's output dictionary.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch

__all__ = ["ChunkPrediction", "Prediction"]


class _KeyAccess:
    def __getitem__(self, key: str):
        if key not in self.keys():
            raise KeyError(key)
        return getattr(self, key)

    def __contains__(self, key: str) -> bool:
        return key in self.keys()

    def keys(self) -> list[str]:
        return [f.name for f in fields(self) if getattr(self, f.name) is not None]

    def items(self):
        return [(k, getattr(self, k)) for k in self.keys()]


@dataclass
class ChunkPrediction(_KeyAccess):
    """Predictions for the ``N`` frames of one chunk.

    local_points ``[B,N,H,W,3]`` camera-frame points (x·z, y·z, z); conf ``[B,N,H,W,1]`` logits
    (apply a sigmoid for [0, 1]); camera_poses ``[B,N,4,4]`` camera-to-world; points
    ``[B,N,H,W,3]`` world points. ``ttt_gate`` / ``swa_gate``: mean |gate| over the chunk.
    descriptors ``[B,N,C]`` float32: each frame's unit-norm mean encoder patch token, a global image
    descriptor for place recognition (loop closure), computed from features the model has anyway.
    """

    local_points: torch.Tensor
    conf: torch.Tensor
    camera_poses: torch.Tensor
    points: torch.Tensor
    ttt_gate: torch.Tensor | None = None
    swa_gate: torch.Tensor | None = None
    descriptors: torch.Tensor | None = None

    @property
    def num_frames(self) -> int:
        return self.camera_poses.shape[1]

    def frames(self, start: int, stop: int) -> ChunkPrediction:
        """The frames ``[start, stop)`` of the chunk."""
        descriptors = self.descriptors[:, start:stop] if self.descriptors is not None else None
        return replace(self, local_points=self.local_points[:, start:stop], conf=self.conf[:, start:stop],
                       camera_poses=self.camera_poses[:, start:stop], points=self.points[:, start:stop],
                       descriptors=descriptors)

    def to(self, device: torch.device | str) -> ChunkPrediction:
        return replace(self, **{k: v.to(device) for k, v in self.items()})

    def detach(self) -> ChunkPrediction:
        return replace(self, **{k: v.detach() for k, v in self.items()})


@dataclass
class Prediction(_KeyAccess):
    """A whole sequence: the per-frame tensors of ``ChunkPrediction`` with ``N`` all frames, plus

    chunk_transforms ``[B,K,4,4]`` (rigid part of each chunk's alignment, when aligned),
    chunk_scales ``[B,K]`` (Sim(3) only), and the mean memory gate magnitudes
    (``avg_gate_scale`` for TTT, ``attn_gate_scale`` for SWA) as in the official release.
    """

    points: torch.Tensor
    local_points: torch.Tensor
    conf: torch.Tensor
    camera_poses: torch.Tensor
    chunk_transforms: torch.Tensor | None = None
    chunk_scales: torch.Tensor | None = None
    alignment_mode: str | None = None
    avg_gate_scale: torch.Tensor | None = None
    attn_gate_scale: torch.Tensor | None = None
