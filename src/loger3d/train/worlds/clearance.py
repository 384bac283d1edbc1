"""How far points are from the scene's surfaces: the check that cameras never enter or graze a primitive.

Distances are exact for boxes, cylinders and planes and a lower bound for ellipsoids ((|p/r| − 1) · min r),
so "clearance ≥ margin" is never claimed falsely. Negative inside a shape. Computed in float64 on the CPU,
over the shapes whose bounding sphere comes within ``cap`` of a batch of points; larger distances read as ``cap``.
"""

from __future__ import annotations

import numpy as np
import torch

from .scene import Kind, Scene

__all__ = ["clearance"]


def clearance(scene: Scene, points: np.ndarray | torch.Tensor, cap: float = 2.0, batch: int = 32) -> np.ndarray:
    """Distance ``[M]`` (float64, at most ``cap``) from each point ``[M, 3]`` to the nearest surface.

    Batches of consecutive points are bounded by one sphere, so points along a trajectory go fast; short batches
    keep the sphere tight, so fewer shapes are tested. The batch can change only how loose an ellipsoid's lower
    bound is (a far ellipsoid may be tested or not), never claim clearance falsely.
    """
    pts = torch.as_tensor(np.asarray(points, dtype=np.float64)).reshape(-1, 3)
    shapes, planes = scene.shapes, scene.planes
    centre = shapes.centre.detach().cpu().double()
    rotation = shapes.rotation.detach().cpu().double()
    size = shapes.size.detach().cpu().double()
    radius = shapes.radius.detach().cpu().double()
    kind = shapes.kind.detach().cpu()
    out = torch.full((pts.shape[0],), float(cap), dtype=torch.float64)
    if len(planes):
        normal, offset = planes.normal.detach().cpu().double(), planes.offset.detach().cpu().double()
        out = torch.minimum(out, (pts @ normal.T - offset).abs().amin(-1))
    for lo in range(0, pts.shape[0], batch):
        p = pts[lo:lo + batch]
        mid = 0.5 * (p.amax(0) + p.amin(0))
        spread = (p - mid).norm(dim=-1).amax()
        near = ((centre - mid).norm(dim=-1) - radius - spread < cap).nonzero().squeeze(-1)
        if near.numel() == 0:
            continue
        offsets = (p[None, :, :] - centre[near][:, None, :]).contiguous()  # [P', m, 3]
        local = torch.bmm(offsets, rotation[near])  # rows: offset @ R = local coordinates
        distance = _distance(kind[near][:, None], local, size[near][:, None, :]).amin(0)
        out[lo:lo + batch] = torch.minimum(out[lo:lo + batch], distance)
    return out.numpy()


def _distance(kind: torch.Tensor, p: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
    """Signed distance (ellipsoids: a lower bound) ``[P, M]`` of local points ``[P, M, 3]`` to shapes."""
    q = p.abs() - size
    box = q.clamp_min(0).norm(dim=-1) + q.amax(-1).clamp_max(0)
    q2 = torch.stack([p[..., :2].norm(dim=-1) - size[..., 0], p[..., 2].abs() - size[..., 2]], -1)
    cylinder = q2.clamp_min(0).norm(dim=-1) + q2.amax(-1).clamp_max(0)
    ellipsoid = ((p / size).norm(dim=-1) - 1.0) * size.amin(-1)
    return torch.where(kind == Kind.BOX, box, torch.where(kind == Kind.CYLINDER, cylinder, ellipsoid))
