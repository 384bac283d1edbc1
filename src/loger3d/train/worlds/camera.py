"""Pinhole cameras in the project's conventions.

Intrinsics ``[3, 3]``: pixel (row r, col c) is centred at u = c, v = r, so the image centre is
((W − 1) / 2, (H − 1) / 2). Poses are camera-to-world ``[N, 4, 4]`` with OpenCV axes (x right, y down,
z forward) in the z-up world of ``scene.py``. Camera rays have camera-frame z = 1, so a hit's ray
parameter is its depth.
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["camera_rays", "intrinsics", "pose_matrices", "rotation_ypr"]


def intrinsics(width: int, height: int, fov_x_deg: float, principal_shift: tuple[float, float] = (0.0, 0.0)
               ) -> torch.Tensor:
    """K ``[3, 3]`` float32 with horizontal field of view ``fov_x_deg``, square pixels, and the principal point
    moved from the image centre by ``principal_shift`` pixels (x, y)."""
    fx = 0.5 * width / math.tan(math.radians(fov_x_deg) / 2)
    k = torch.eye(3)
    k[0, 0], k[1, 1] = fx, fx
    k[0, 2], k[1, 2] = (width - 1) / 2 + principal_shift[0], (height - 1) / 2 + principal_shift[1]
    return k


def camera_rays(k: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Camera-frame ray directions ``[N, H, W, 3]`` (z = 1) through the pixel centres, for K ``[N, 3, 3]``."""
    rows = torch.arange(height, dtype=k.dtype, device=k.device)
    cols = torch.arange(width, dtype=k.dtype, device=k.device)
    fx, fy = k[:, 0, 0, None, None], k[:, 1, 1, None, None]
    cx, cy = k[:, 0, 2, None, None], k[:, 1, 2, None, None]
    x = (cols[None, None, :] - cx) / fx
    y = (rows[None, :, None] - cy) / fy
    x, y = torch.broadcast_tensors(x, y)
    return torch.stack([x, y, torch.ones_like(x)], dim=-1)


def rotation_ypr(yaw: np.ndarray, pitch: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """Camera-to-world rotations ``[N, 3, 3]`` (float64): looking along heading ``yaw`` (radians from +x towards
    +y), tilted up by ``pitch`` and rolled by ``roll`` clockwise about the viewing direction."""
    yaw, pitch, roll = (np.asarray(a, dtype=np.float64) for a in (yaw, pitch, roll))
    forward = np.stack([np.cos(pitch) * np.cos(yaw), np.cos(pitch) * np.sin(yaw), np.sin(pitch)], -1)
    right = np.stack([np.sin(yaw), -np.cos(yaw), np.zeros_like(yaw)], -1)
    down = np.cross(forward, right)
    c, s = np.cos(roll)[..., None], np.sin(roll)[..., None]
    right, down = c * right + s * down, c * down - s * right
    return np.stack([right, down, forward], axis=-1)


def pose_matrices(positions: np.ndarray, rotations: np.ndarray) -> torch.Tensor:
    """Camera-to-world ``[N, 4, 4]`` float32 from centres ``[N, 3]`` and rotations ``[N, 3, 3]``."""
    poses = np.zeros((len(positions), 4, 4))
    poses[:, :3, :3], poses[:, :3, 3], poses[:, 3, 3] = rotations, positions, 1.0
    return torch.as_tensor(poses, dtype=torch.float32)
