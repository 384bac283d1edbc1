"""Exact ray–primitive intersections and surface frames, in each primitive's local frame.

Rays are ``origin + t · direction`` with directions that need not be unit: the renderer passes camera rays
whose camera-frame z is 1, so ``t`` is the z-depth. Hits closer than ``near`` or from inside a primitive are
misses (cameras stay outside primitives), and a miss is ``t = inf``. Shapes: local origins ``[K, 3]``, local
directions ``[K, M, 3]`` (M rays per origin), half sizes ``[K, 3]``; out ``t`` ``[K, M]``. Quadratics use the
numerically stable root and discriminant forms, so far, small shapes keep their depth in float32.
"""

from __future__ import annotations

import torch

from .scene import Kind

__all__ = ["intersect_shapes", "intersect_planes", "shape_surface"]

_INF = float("inf")


def intersect_shapes(kind: Kind, origin: torch.Tensor, direction: torch.Tensor, size: torch.Tensor,
                     near: float) -> torch.Tensor:
    """Nearest hit ``t`` ``[K, M]`` of rays on shapes of one ``kind``."""
    o, s = origin[:, None, :], size[:, None, :]
    if kind == Kind.BOX:
        return _box(o, direction, s, near)
    if kind == Kind.CYLINDER:
        return _cylinder(o, direction, s, near)
    return _ellipsoid(o, direction, s, near)


def intersect_planes(origin: torch.Tensor, direction: torch.Tensor, normal: torch.Tensor, offset: torch.Tensor,
                     near: float) -> torch.Tensor:
    """Hits ``t`` ``[..., Q]`` of rays ``origin`` (broadcastable to ``direction`` ``[..., 3]``) on Q planes,
    ``normal`` ``[..., Q, 3]`` and ``offset`` ``[..., Q]`` (broadcastable: the same planes for all rays, or each
    ray's own)."""
    along = (direction[..., None, :] * normal).sum(-1)
    t = (offset - (origin[..., None, :] * normal).sum(-1)) / torch.where(along.abs() < 1e-12,
                                                                        torch.full_like(along, 1e-12), along)
    return torch.where(t > near, t, _INF)


def _box(o: torch.Tensor, d: torch.Tensor, half: torch.Tensor, near: float) -> torch.Tensor:
    # slabs; a zero direction component gives ±inf (NaN only for an origin exactly on a face plane: a miss)
    inv = 1.0 / d
    t1, t2 = (-half - o) * inv, (half - o) * inv
    t_in = torch.minimum(t1, t2).amax(-1)
    t_out = torch.maximum(t1, t2).amin(-1)
    return torch.where((t_in <= t_out) & (t_in > near), t_in, _INF)


def _entry(o: torch.Tensor, d: torch.Tensor, near: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Entry ``t`` of rays from outside into the unit ball (over the last dim), and whether it exists.

    With a = |d|², b = o·d, c = |o|² − 1: the discriminant is a·(1 − |l|²) for l the point of the line closest
    to the centre (no cancellation), and the entry root is c / (−b + √disc)."""
    a = (d * d).sum(-1)
    b = (o * d).sum(-1)
    c = (o * o).sum(-1) - 1.0
    safe_a = a.clamp_min(1e-30)
    closest = o - (b / safe_a)[..., None] * d
    disc = a * (1.0 - (closest * closest).sum(-1))
    t = c / (torch.sqrt(disc.clamp_min(0.0)) - b).clamp_min(1e-30)
    return t, (disc >= 0) & (b < 0) & (c > 0) & (a > 0) & (t > near)


def _ellipsoid(o: torch.Tensor, d: torch.Tensor, radii: torch.Tensor, near: float) -> torch.Tensor:
    t, ok = _entry(o / radii, d / radii, near)
    return torch.where(ok, t, _INF)


def _cylinder(o: torch.Tensor, d: torch.Tensor, size: torch.Tensor, near: float) -> torch.Tensor:
    radius, half = size[..., :1], size[..., 2]
    t_side, ok = _entry(o[..., :2] / radius, d[..., :2] / radius, near)
    ok &= (o[..., 2] + t_side * d[..., 2]).abs() <= half
    side = torch.where(ok, t_side, _INF)
    oz, dz = o[..., 2], d[..., 2]
    safe_dz = torch.where(dz.abs() < 1e-12, torch.full_like(dz, 1e-12).copysign(dz), dz)
    t_cap = (half * torch.sign(oz) - oz) / safe_dz
    rim = o[..., :2] + t_cap[..., None] * d[..., :2]
    cap_ok = (oz.abs() > half) & (t_cap > near) & ((rim * rim).sum(-1) <= radius[..., 0] ** 2)
    return torch.minimum(side, torch.where(cap_ok, t_cap, _INF))


def shape_surface(kind: torch.Tensor, p: torch.Tensor, size: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Surface frame at local hit points ``p`` ``[R, 3]`` of shapes with ``kind`` [R] and ``size`` [R, 3].

    Returns the local unit normal ``[R, 3]``, texture coordinates ``u``, ``v`` ``[R]`` in metres (``v`` runs up
    side faces), and ``vertical`` ``[R]`` (a side face, where facade patterns apply).
    """
    x, y, z = p.unbind(-1)
    # box: the face is the axis where the point is relatively farthest out
    face = (p.abs() / size).argmax(-1)
    box_n = torch.nn.functional.one_hot(face, 3).to(p.dtype) * torch.sign(p)
    box_u = torch.where(face == 0, y, x)
    box_v = torch.where(face == 2, y, z)
    # cylinder: a cap where |z| / half height beats radial / radius
    radial = torch.sqrt(x * x + y * y).clamp_min(1e-12)
    cap = z.abs() / size[:, 2] > radial / size[:, 0]
    around = torch.atan2(y, x)
    side_n = torch.stack([x / radial, y / radial, torch.zeros_like(z)], -1)
    cap_n = torch.stack([torch.zeros_like(z), torch.zeros_like(z), torch.sign(z)], -1)
    cyl_n = torch.where(cap[:, None], cap_n, side_n)
    cyl_u = torch.where(cap, x, around * size[:, 0])
    cyl_v = torch.where(cap, y, z)
    # ellipsoid: gradient of the implicit function
    ell_n = torch.nn.functional.normalize(p / (size * size), dim=-1)
    ell_u = around * 0.5 * (size[:, 0] + size[:, 1])

    is_box, is_cyl = (kind == int(Kind.BOX)), (kind == int(Kind.CYLINDER))  # plain ints: torch.compile traces them
    normal = torch.where(is_box[:, None], box_n, torch.where(is_cyl[:, None], cyl_n, ell_n))
    u = torch.where(is_box, box_u, torch.where(is_cyl, cyl_u, ell_u))
    v = torch.where(is_box, box_v, torch.where(is_cyl, cyl_v, z))
    vertical = torch.where(is_box, face != 2, torch.where(is_cyl, ~cap, torch.ones_like(cap)))
    return normal, u, v, vertical
