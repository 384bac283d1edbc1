"""Small geometry helpers shared by the model, the alignment and the exports.

Poses are camera-to-world ``[..., 4, 4]`` with OpenCV axes (x right, y down, z forward).
"""

from __future__ import annotations

import torch

__all__ = ["homogenize", "local_to_world", "rigid_inverse"]


def homogenize(points: torch.Tensor) -> torch.Tensor:
    """``[..., 3]`` → ``[..., 4]`` with a trailing one."""
    return torch.cat([points, torch.ones_like(points[..., :1])], dim=-1)


def local_to_world(poses: torch.Tensor, local_points: torch.Tensor) -> torch.Tensor:
    """World points ``[B, N, H, W, 3]`` from camera-to-world ``[B, N, 4, 4]`` and camera-frame points."""
    return torch.einsum("bnij, bnhwj -> bnhwi", poses, homogenize(local_points))[..., :3]


def rigid_inverse(poses: torch.Tensor) -> torch.Tensor:
    """Inverse of rigid transforms ``[..., 4, 4]`` (rotation transposed, translation rotated back)."""
    rot_t = poses[..., :3, :3].transpose(-1, -2)
    out = torch.zeros_like(poses)
    out[..., :3, :3] = rot_t
    out[..., :3, 3] = -(rot_t @ poses[..., :3, 3:4]).squeeze(-1)
    out[..., 3, 3] = 1.0
    return out
