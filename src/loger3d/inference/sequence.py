"""Whole-sequence inference: chunks planned, run with the memory carried, aligned and merged.

This is the official release's ``forward`` (ARCHITECTURE.md §9) expressed with the explicit
pieces (``plan_windows``, ``forward_chunk``, ``ChunkAligner``), so that the streaming driver can
use the same pieces and give the same results.
"""

from __future__ import annotations

import torch

from ..model.outputs import ChunkPrediction, Prediction
from .align import ChunkAligner
from .windows import frame_roles, plan_windows

__all__ = ["run_sequence", "merge_chunks"]


def merge_chunks(parts: list[ChunkPrediction]) -> dict[str, torch.Tensor]:
    """Concatenate the kept frames of consecutive chunks along time."""
    return {key: torch.cat([getattr(p, key) for p in parts], dim=1)
            for key in ("points", "local_points", "conf", "camera_poses")}


def run_sequence(model, images: torch.Tensor, window_size: int, overlap_size: int, align: str = "none",
                 reset_every: int = 0) -> Prediction:
    if images.dim() == 4:
        images = images.unsqueeze(0)
    if images.dim() != 5:
        raise ValueError(f"images must be [B, N, 3, H, W] or [N, 3, H, W], got {tuple(images.shape)}")
    n = images.shape[1]
    windows = plan_windows(n, window_size, overlap_size)
    overlap = overlap_size if len(windows) > 1 else 0
    aligner = ChunkAligner(align, reset_every, overlap)
    keep_on_device = model.training
    memory = None
    parts: list[ChunkPrediction] = []
    ttt_gates, swa_gates = [], []
    for win in windows:
        if memory is not None and reset_every > 0 and win.index > 0 and win.index % reset_every == 0:
            memory = memory.reset_fast_weights()
        roles = frame_roles(win.size, window_size, overlap_size)
        pred, memory = model.forward_chunk(images[:, win.start:win.end], memory, roles)
        if not keep_on_device:
            pred = pred.detach().to("cpu")
        if pred.ttt_gate is not None:
            ttt_gates.append(pred.ttt_gate)
        if pred.swa_gate is not None:
            swa_gates.append(pred.swa_gate)
        pred = aligner(win.index, pred) if len(windows) > 1 else pred
        parts.append(pred.frames(0, win.keep_end - win.start))

    merged = merge_chunks(parts)
    out = Prediction(**merged)
    if aligner.active and len(windows) > 1:
        out.chunk_transforms = torch.stack([t.matrix() for t in aligner.transforms], dim=1)
        out.alignment_mode = "sim3" if aligner.with_scale else "se3"
        if aligner.with_scale:
            out.chunk_scales = torch.stack([t.scale for t in aligner.transforms], dim=1)
    if ttt_gates:
        out.avg_gate_scale = torch.stack(ttt_gates).mean()
    if swa_gates:
        out.attn_gate_scale = torch.stack(swa_gates).mean()
    return out
