"""Whole-sequence inference, the official release's ``forward`` (ARCHITECTURE.md §9).

A sequence that fits one window is one chunk, unaligned. A longer one is streamed through the
``Reconstructor`` (the same chunks as ``plan_windows``) and its finished frames concatenated, so
the whole-sequence and the streaming results are the same by construction.
"""

from __future__ import annotations

import torch

from ..model.outputs import Prediction
from .reconstructor import Reconstructor
from .windows import frame_roles, plan_windows

__all__ = ["run_sequence"]

_FRAME_KEYS = ("points", "local_points", "conf", "camera_poses")


def run_sequence(model, images: torch.Tensor, window_size: int, overlap_size: int, align: str = "none",
                 reset_every: int = 0) -> Prediction:
    if images.dim() == 4:
        images = images.unsqueeze(0)
    if images.dim() != 5:
        raise ValueError(f"images must be [B, N, 3, H, W] or [N, 3, H, W], got {tuple(images.shape)}")
    n = images.shape[1]
    offload = not model.training
    if len(plan_windows(n, window_size, overlap_size)) == 1:
        pred, _ = model.forward_chunk(images, None, frame_roles(n, window_size, overlap_size))
        if offload:
            pred = pred.detach().to("cpu")
        return Prediction(**{k: getattr(pred, k) for k in _FRAME_KEYS}, avg_gate_scale=pred.ttt_gate,
                          attn_gate_scale=pred.swa_gate)

    stream = Reconstructor(model, window_size, overlap_size, align, reset_every, offload=offload)
    parts = stream.push(images) + stream.finish()
    out = Prediction(**{k: torch.cat([getattr(p.prediction, k) for p in parts], dim=1) for k in _FRAME_KEYS})
    transforms = {p.chunk_index: p.transform for p in parts if p.transform is not None}
    if transforms:
        ordered = [transforms[i] for i in sorted(transforms)]
        out.chunk_transforms = torch.stack([t.matrix() for t in ordered], dim=1)
        out.alignment_mode = "sim3" if align == "sim3" else "se3"
        if align == "sim3":
            out.chunk_scales = torch.stack([t.scale for t in ordered], dim=1)
    ttt, swa = stream.mean_gates
    out.avg_gate_scale = torch.tensor(ttt) if ttt is not None else None
    out.attn_gate_scale = torch.tensor(swa) if swa is not None else None
    return out
