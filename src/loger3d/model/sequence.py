"""A whole sequence through the model: cut into chunks, carried across by the memory, chained by the aligner.

``run_chunks`` is the loop for a sequence whose frames are all at hand (training, ``LoGeR.forward``);
the streaming ``inference.Reconstructor`` takes the same steps (``ChunkRecurrence`` then ``ChunkAligner``)
for frames that arrive one push at a time. ``run_sequence`` merges the chunks as the official release's
``forward`` does (ARCHITECTURE.md §9): every chunk but the last gives up its overlap frames to the next.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from ..errors import InputError
from .align import ChunkAligner, ChunkTransform
from .outputs import ChunkPrediction, Prediction
from .recurrence import ChunkRecurrence, MemoryPolicy
from .windows import Window, frame_roles, plan_windows

__all__ = ["SequenceChunk", "run_chunks", "run_sequence"]

_FRAME_KEYS = ("points", "local_points", "conf", "camera_poses")


@dataclass
class SequenceChunk:
    """One chunk of a sequence: where it sits, its aligned prediction, the transform applied (``None``: off)."""

    window: Window
    prediction: ChunkPrediction
    transform: ChunkTransform | None


def run_chunks(model, images: torch.Tensor, window: int, overlap: int, align: str = "none",
               policy: MemoryPolicy | None = None, offload: bool = False) -> Iterator[SequenceChunk]:
    """The chunks of ``images`` ``[B, N, 3, H, W]`` in order, each moved to the model's first device in turn.

    ``policy`` shapes the memory between chunks (default: carried unchanged); ``align`` chains them
    (with ``policy.reset_every``, the official block-wise SE(3) of ``align="none"``). ``offload`` hands
    out detached CPU predictions and keeps no autograd graph in the memory (inference); otherwise the
    predictions stay on the device with their graph (training).
    """
    policy = policy or MemoryPolicy()
    recurrence = ChunkRecurrence(model, policy, inference=offload)
    aligner = ChunkAligner(align, policy.reset_every, overlap)
    device = model.unit_device(0)
    for w in plan_windows(images.shape[1], window, overlap):
        chunk = images[:, w.start:w.end].to(device, non_blocking=True)
        pred, transform = aligner(w.index, recurrence(chunk, frame_roles(w.size, window, overlap)))
        if offload:
            pred = pred.detach().to("cpu")
            transform = transform.to("cpu") if transform is not None else None
        yield SequenceChunk(w, pred, transform)


def run_sequence(model, images: torch.Tensor, window: int, overlap: int, align: str = "none",
                 reset_every: int = 0) -> Prediction:
    """The merged prediction of a whole sequence ``[B, N, 3, H, W]`` or ``[N, 3, H, W]``.

    On the CPU in eval mode; on the device with gradients in training mode. A sequence that fits one
    window is one chunk, unaligned (no chunk transforms), as in the official release.
    """
    if images.dim() == 4:
        images = images.unsqueeze(0)
    if images.dim() != 5:
        raise InputError(f"images must be [B, N, 3, H, W] or [N, 3, H, W], got {tuple(images.shape)}")
    n = images.shape[1]
    offload = not model.training
    if len(plan_windows(n, window, overlap)) == 1:
        pred, _ = model.forward_chunk(images.to(model.unit_device(0)), None, frame_roles(n, window, overlap))
        if offload:
            pred = pred.detach().to("cpu")
        return Prediction(**{k: getattr(pred, k) for k in _FRAME_KEYS}, avg_gate_scale=pred.ttt_gate,
                          attn_gate_scale=pred.swa_gate)

    kept, transforms, gates = [], [], ([], [])
    for chunk in run_chunks(model, images, window, overlap, align, MemoryPolicy(reset_every), offload):
        kept.append(chunk.prediction.frames(0, chunk.window.keep_end - chunk.window.start))
        if chunk.transform is not None:
            transforms.append(chunk.transform)
        for found, gate in zip(gates, (chunk.prediction.ttt_gate, chunk.prediction.swa_gate)):
            if gate is not None:
                found.append(float(gate))
    out = Prediction(**{k: torch.cat([getattr(p, k) for p in kept], dim=1) for k in _FRAME_KEYS})
    if transforms:
        out.chunk_transforms = torch.stack([t.matrix() for t in transforms], dim=1)
        out.alignment_mode = "sim3" if align == "sim3" else "se3"
        if align == "sim3":
            out.chunk_scales = torch.stack([t.scale for t in transforms], dim=1)
    ttt, swa = (torch.tensor(sum(g) / len(g)) if g else None for g in gates)
    out.avg_gate_scale, out.attn_gate_scale = ttt, swa
    return out
