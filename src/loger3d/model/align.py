"""Chunk-to-run alignment through the overlap frames (LoGeR*'s SE(3), Pi3-Chunk's Sim(3)).

Chunk ``k`` is mapped onto the already-aligned chunk ``k-1`` by the transform that puts its
first frame exactly on that frame's aligned pose in chunk ``k-1``:
``R = R_P·R_Qᵀ``, ``t = t_P − s·R·t_Q``, with ``s = 1`` for SE(3) and, for Sim(3), the lower
median of the depth ratios of that frame between the two chunks (ARCHITECTURE.md §9.4).
Only the anchor (pose and depth of the previous chunk's first overlap frame) is kept between
chunks, so the aligner works the same in a whole-sequence pass and in a stream.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from ..errors import InputError
from ..geometry import local_to_world
from .outputs import ChunkPrediction

__all__ = ["ALIGN_MODES", "ChunkTransform", "ChunkAligner", "estimate_chunk_transform", "median_depth_ratio",
           "transform_chunk"]

ALIGN_MODES = ("none", "se3", "sim3")


@dataclass
class ChunkTransform:
    """``x ↦ scale·R·x + t`` per batch element: rotation ``[B,3,3]``, translation ``[B,3]``, scale ``[B]``."""

    rotation: torch.Tensor
    translation: torch.Tensor
    scale: torch.Tensor

    @classmethod
    def identity(cls, batch: int, device=None, dtype=torch.float32) -> ChunkTransform:
        return cls(torch.eye(3, device=device, dtype=dtype).expand(batch, 3, 3).clone(),
                   torch.zeros(batch, 3, device=device, dtype=dtype), torch.ones(batch, device=device, dtype=dtype))

    def to(self, device: torch.device | str) -> ChunkTransform:
        return ChunkTransform(self.rotation.to(device), self.translation.to(device), self.scale.to(device))

    def matrix(self) -> torch.Tensor:
        """The rigid part as ``[B,4,4]`` (the scale is kept apart, as in the official outputs)."""
        B = self.rotation.shape[0]
        m = torch.eye(4, device=self.rotation.device, dtype=self.rotation.dtype).repeat(B, 1, 1)
        m[:, :3, :3] = self.rotation
        m[:, :3, 3] = self.translation
        return m


def median_depth_ratio(prev_depth: torch.Tensor, curr_depth: torch.Tensor) -> torch.Tensor:
    """Lower median of ``prev / curr`` over pixels valid in both, per batch element ``[B]``.

    Depths ``[B, H, W]``; a pixel is valid when both are finite and ``|curr|`` exceeds fp32
    epsilon. With no valid pixel the ratio is 1. Clamped to ``[1e-3, 1e3]``.
    Computed without reading anything back to the host (no GPU synchronisation): the invalid
    ratios sort last as +inf and the lower median of the ``n`` valid ones is the ``(n-1)//2``-th.
    """
    prev = prev_depth.float().reshape(prev_depth.shape[0], -1)
    curr = curr_depth.float().reshape(curr_depth.shape[0], -1)
    valid = torch.isfinite(prev) & torch.isfinite(curr) & (curr.abs() > torch.finfo(torch.float32).eps)
    ratios = torch.where(valid, prev / curr, torch.inf).sort(dim=1).values
    count = valid.sum(dim=1, keepdim=True)
    median = ratios.gather(1, ((count - 1).clamp(min=0) // 2)).squeeze(1)
    return torch.where(count.squeeze(1) > 0, median, 1.0).to(prev_depth.dtype).clamp(1e-3, 1e3)


def estimate_chunk_transform(prev_pose: torch.Tensor, curr_pose: torch.Tensor, scale: torch.Tensor) -> ChunkTransform:
    """The transform taking pose ``curr_pose`` ``[B,4,4]`` onto ``prev_pose``, with the given scale ``[B]``."""
    R_prev, t_prev = prev_pose[:, :3, :3], prev_pose[:, :3, 3]
    R_curr, t_curr = curr_pose[:, :3, :3], curr_pose[:, :3, 3]
    rotation = torch.matmul(R_prev, R_curr.transpose(-1, -2))
    rotated = torch.matmul(rotation, t_curr.unsqueeze(-1)).squeeze(-1)
    translation = t_prev - scale.unsqueeze(-1) * rotated
    return ChunkTransform(rotation, translation, scale)


def transform_chunk(pred: ChunkPrediction, transform: ChunkTransform, with_scale: bool) -> ChunkPrediction:
    """Apply a chunk transform to poses (and, for Sim(3), local points); world points recomputed."""
    poses = pred.camera_poses
    B, N = poses.shape[:2]
    rot = transform.rotation.unsqueeze(1).expand(-1, N, -1, -1)
    rot_global = torch.matmul(rot, poses[..., :3, :3])
    trans = torch.matmul(rot, poses[..., :3, 3].unsqueeze(-1)).squeeze(-1)
    if with_scale:
        trans = trans * transform.scale.view(B, 1, 1)
    trans = trans + transform.translation.unsqueeze(1)
    new_poses = poses.clone()
    new_poses[..., :3, :3] = rot_global
    new_poses[..., :3, 3] = trans
    local = pred.local_points * transform.scale.view(B, 1, 1, 1, 1) if with_scale else pred.local_points
    return replace(pred, camera_poses=new_poses, local_points=local, points=local_to_world(new_poses, local))


class ChunkAligner:
    """Chains chunks one after another into the frame of the first.

    ``mode``: ``none`` (use predictions as they are), ``se3`` or ``sim3``. With ``none`` and
    ``reset_every = R > 0`` (the official long-sequence setting) an SE(3) transform is estimated
    only at chunks ``k`` with ``k % R == 0`` (right after a fast-weight reset) and reused for
    the rest of that block; chunks before the first reset keep the identity.
    """

    def __init__(self, mode: str = "none", reset_every: int = 0, overlap: int = 0) -> None:
        if mode not in ALIGN_MODES:
            raise InputError(f"align must be one of {', '.join(ALIGN_MODES)}, not {mode!r}")
        self.mode = mode
        self.reset_every = max(int(reset_every), 0)
        self.overlap = overlap
        self.anchor_pose: torch.Tensor | None = None  # [B,4,4] aligned pose of the next chunk's frame 0
        self.anchor_depth: torch.Tensor | None = None  # [B,H,W] its aligned depth (sim3 only)
        self.block_transform: ChunkTransform | None = None

    @property
    def active(self) -> bool:
        """Whether chunks are transformed at all (otherwise predictions pass through untouched)."""
        return self.mode != "none" or self.reset_every > 0

    @property
    def with_scale(self) -> bool:
        return self.mode == "sim3"

    def _estimate(self, pred: ChunkPrediction) -> ChunkTransform:
        B = pred.camera_poses.shape[0]
        if self.overlap <= 0 or self.anchor_pose is None:
            return ChunkTransform.identity(B, pred.camera_poses.device, pred.camera_poses.dtype)
        if self.with_scale:
            scale = median_depth_ratio(self.anchor_depth, pred.local_points[:, 0, ..., 2])
        else:
            scale = torch.ones(B, device=pred.camera_poses.device, dtype=pred.camera_poses.dtype)
        return estimate_chunk_transform(self.anchor_pose, pred.camera_poses[:, 0], scale)

    def __call__(self, index: int, pred: ChunkPrediction) -> tuple[ChunkPrediction, ChunkTransform | None]:
        """Align chunk ``index`` (0, 1, 2, ... in order) and remember its anchor for the next one.

        Returns the aligned chunk and the transform applied (``None`` when alignment is off).
        """
        if not self.active:
            return pred, None
        B = pred.camera_poses.shape[0]
        if index == 0:
            transform = ChunkTransform.identity(B, pred.camera_poses.device, pred.camera_poses.dtype)
            self.block_transform = transform
        elif self.mode == "none" and index % self.reset_every != 0:
            transform = self.block_transform
        else:
            transform = self._estimate(pred)
            self.block_transform = transform
        aligned = transform_chunk(pred, transform, self.with_scale)
        if self.overlap > 0:  # the next chunk starts at this chunk's first overlap frame
            anchor = max(aligned.num_frames - self.overlap, 0)
            self.anchor_pose = aligned.camera_poses[:, anchor]
            self.anchor_depth = aligned.local_points[:, anchor, ..., 2] if self.with_scale else None
        return aligned, transform

    def state_dict(self) -> dict[str, torch.Tensor]:
        """What the next chunk needs: the anchor and the current block transform."""
        out = {}
        if self.anchor_pose is not None:
            out["anchor_pose"] = self.anchor_pose
        if self.anchor_depth is not None:
            out["anchor_depth"] = self.anchor_depth
        if self.block_transform is not None:
            t = self.block_transform
            out.update({"block.rotation": t.rotation, "block.translation": t.translation, "block.scale": t.scale})
        return out

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.anchor_pose = state.get("anchor_pose")
        self.anchor_depth = state.get("anchor_depth")
        self.block_transform = None
        if "block.rotation" in state:
            self.block_transform = ChunkTransform(state["block.rotation"], state["block.translation"],
                                                  state["block.scale"])
