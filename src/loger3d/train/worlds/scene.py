"""Scenes as batched primitive tables: what the ray caster intersects and the trajectories avoid.

World frame: metres, z up (x east, y north, z up); the ground is z = 0 unless hills raise it. Bounded
shapes have their own rigid frame (``centre`` [P, 3], ``rotation`` [P, 3, 3] world-from-local) and half
sizes ``size`` [P, 3] in that frame:

- box: half extents along local x, y, z;
- cylinder: (radius, radius, half height), axis along local z, capped at both ends;
- ellipsoid: radii along local x, y, z.

Unbounded planes ``normal · x = offset`` are kept apart (a scene has one or two; every ray tests them).
Every shape and plane has one row of the material table, shapes first and then planes: a hit's ``index``
picks it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from enum import IntEnum

import numpy as np
import torch

from .nav import NavGraph, Orbit

__all__ = ["Ground", "Kind", "Lighting", "Material", "Materials", "Part", "Pattern", "Planes", "Scene", "SceneBuilder",
           "Shapes", "box", "cylinder", "ellipsoid", "moved_to", "packed_to", "yaw_matrix"]


class Kind(IntEnum):
    BOX = 0
    CYLINDER = 1
    ELLIPSOID = 2


class Pattern(IntEnum):
    """Procedural textures (``textures.py``); the accent colour fills the pattern's marks."""

    PLAIN = 0
    CHECKER = 1
    STRIPES = 2
    NOISE = 3
    BRICK = 4
    TILES = 5
    WINDOWS = 6


@dataclass(frozen=True)
class Material:
    """Surface look: base ``colour`` and ``accent`` (RGB in [0, 1]), a ``pattern`` of period ``scale`` metres,
    and ``grain``, the amplitude of the value-noise variation laid over everything (no surface is flat colour).
    Solid textures follow the primitive's local frame, shifted at random per primitive; ``world_space`` ones
    follow world coordinates unshifted instead, so that touching primitives (hills and the ground) match."""

    colour: tuple[float, float, float]
    accent: tuple[float, float, float] = (0.0, 0.0, 0.0)
    pattern: Pattern = Pattern.PLAIN
    scale: float = 1.0
    grain: float = 0.15
    world_space: bool = False


@dataclass
class Shapes:
    """Bounded primitives of ``kind`` [P]; ``radius`` [P] bounds each one (sphere about ``centre``)."""

    kind: torch.Tensor
    centre: torch.Tensor
    rotation: torch.Tensor
    size: torch.Tensor
    radius: torch.Tensor

    def __len__(self) -> int:
        return self.kind.shape[0]


@dataclass
class Planes:
    """Unbounded planes ``normal · x = offset``: ``normal`` [Q, 3] unit, ``offset`` [Q], and an in-plane basis
    ``tangent`` [Q, 2, 3] for texture coordinates."""

    normal: torch.Tensor
    offset: torch.Tensor
    tangent: torch.Tensor

    def __len__(self) -> int:
        return self.normal.shape[0]


@dataclass
class Materials:
    """One row per shape then per plane: ``colour``, ``accent`` [R, 3], ``pattern`` [R] int64, ``scale``,
    ``grain`` [R], ``world_space`` [R] bool, and ``shift`` [R, 3], a random offset of the texture so that equal
    materials do not line up (zero for world-space ones)."""

    colour: torch.Tensor
    accent: torch.Tensor
    pattern: torch.Tensor
    scale: torch.Tensor
    grain: torch.Tensor
    world_space: torch.Tensor
    shift: torch.Tensor


@dataclass(frozen=True)
class Lighting:
    """A directional light plus a sky/ground hemisphere ambient; view-independent, so a surface point has the
    same colour in every frame. Fog blends towards ``horizon`` from ``fog_start`` of the far distance."""

    sun: tuple[float, float, float]
    sun_colour: tuple[float, float, float] = (1.0, 0.96, 0.88)
    sky_ambient: tuple[float, float, float] = (0.42, 0.46, 0.55)
    ground_ambient: tuple[float, float, float] = (0.28, 0.25, 0.22)
    zenith: tuple[float, float, float] = (0.30, 0.48, 0.80)
    horizon: tuple[float, float, float] = (0.78, 0.85, 0.92)
    fog_start: float = 0.5
    clouds: float = 0.0


@dataclass(frozen=True)
class Ground:
    """The walkable surface's height, for placing cameras and objects: ``level`` or, where higher, the top of a
    hill or a platform. ``hills`` [H, 7] rows (cx, cy, cz, rx, ry, rz, yaw) are ellipsoids with a vertical axis,
    ``platforms`` [K, 5] rows (x0, y0, x1, y1, top) flat-topped rectangles (pavements); both are also shapes."""

    level: float = 0.0
    hills: np.ndarray = field(default_factory=lambda: np.zeros((0, 7)))
    platforms: np.ndarray = field(default_factory=lambda: np.zeros((0, 5)))

    def height(self, xy: np.ndarray) -> np.ndarray:
        """Ground height ``[M]`` (float64) under points ``xy`` ``[M, 2]``."""
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        out = np.full(xy.shape[0], self.level)
        x, y = xy[:, 0, None], xy[:, 1, None]  # [M, 1] against every platform and hill at once
        if len(self.platforms):
            x0, y0, x1, y1, top = self.platforms.T
            on = (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)
            out = np.maximum(out, np.where(on, top, -np.inf).max(axis=1))
        if len(self.hills):
            cx, cy, cz, rx, ry, rz, yaw = self.hills.T
            dx, dy = x - cx, y - cy
            lx = (np.cos(yaw) * dx + np.sin(yaw) * dy) / rx
            ly = (-np.sin(yaw) * dx + np.cos(yaw) * dy) / ry
            inside = 1.0 - lx * lx - ly * ly
            top = np.where(inside > 0, cz + rz * np.sqrt(np.clip(inside, 0, None)), -np.inf)
            out = np.maximum(out, top.max(axis=1))
        return out


@dataclass
class Scene:
    """A generated world: geometry, materials, light, and where cameras may go.

    ``nav`` maps a trajectory kind (``"walk"``, ``"drive"``) to the graph of free paths it follows; ``orbits``
    are closed free loops around a target; ``motion`` holds per-trajectory option overrides that fit the
    family (a robot's height indoors, a lane offset in streets). ``far`` is the render distance in metres.
    """

    family: str
    seed: int
    shapes: Shapes
    planes: Planes
    materials: Materials
    lighting: Lighting
    far: float
    ground: Ground
    nav: dict[str, NavGraph]
    orbits: list[Orbit]
    motion: dict[str, dict[str, float]] = field(default_factory=dict)

    def to(self, device: torch.device | str) -> Scene:
        """The same scene with every tensor on ``device``; from the host to a GPU in one copy (``packed_to``)."""
        tables = (self.shapes, self.planes, self.materials)
        moved = iter(moved_to([getattr(t, f.name) for t in tables for f in fields(t)], torch.device(device)))
        shapes, planes, materials = (replace(t, **{f.name: next(moved) for f in fields(t)}) for t in tables)
        return replace(self, shapes=shapes, planes=planes, materials=materials)

    @property
    def device(self) -> torch.device:
        return self.shapes.centre.device


def moved_to(tensors: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    """``tensors`` on ``device``: host tensors bound for a GPU in one packed copy (``packed_to``), others one by
    one."""
    if device.type == "cuda" and all(t.device.type == "cpu" for t in tensors):
        return packed_to(tensors, device)
    return [t.to(device) for t in tensors]


def packed_to(tensors: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    """``tensors`` on ``device``, copied byte for byte in one transfer: packed into one host buffer, copied, then
    viewed back as each tensor. Each copy from the host waits for the stream it is queued on; moved one by one,
    a scene's fifteen tables made the data loader wait fifteen times a world (``benchmarks/sync_audit.py``), now
    once. The copy is complete when this returns, so any stream may read the results: views of one buffer."""
    align = 16  # every piece starts where any dtype may view it
    offsets, total = [], 0
    for t in tensors:
        offsets.append(total)
        total += -(-t.numel() * t.element_size() // align) * align
    buffer = torch.empty(total, dtype=torch.uint8)
    for t, start in zip(tensors, offsets):
        if t.numel():  # an empty table may have stride 0, which no byte view accepts: nothing to copy anyway
            buffer[start:start + t.numel() * t.element_size()].view(t.dtype).copy_(t.reshape(-1))
    moved = buffer.to(device)
    return [moved[start:start + t.numel() * t.element_size()].view(t.dtype).view(t.shape)
            for t, start in zip(tensors, offsets)]


@dataclass(frozen=True)
class Part:
    """One shape as a family lays it out: ``kind``, ``centre`` [3], half sizes ``size`` [3] (module docstring),
    ``material``, and ``rotation`` [3, 3] world-from-local (None: axis-aligned)."""

    kind: Kind
    centre: tuple[float, float, float] | np.ndarray
    size: tuple[float, float, float] | np.ndarray
    material: Material
    rotation: np.ndarray | None = None

    def extent(self) -> np.ndarray:
        """Half extents ``[3]`` of a world-axis-aligned box that holds the part."""
        rot = np.eye(3) if self.rotation is None else self.rotation
        return np.abs(rot) @ np.asarray(self.size, dtype=np.float64)


def box(centre, half, material: Material, rotation: np.ndarray | None = None) -> Part:
    return Part(Kind.BOX, centre, half, material, rotation)


def cylinder(centre, radius: float, half_height: float, material: Material, rotation: np.ndarray | None = None) -> Part:
    return Part(Kind.CYLINDER, centre, (radius, radius, half_height), material, rotation)


def ellipsoid(centre, radii, material: Material, rotation: np.ndarray | None = None) -> Part:
    return Part(Kind.ELLIPSOID, centre, radii, material, rotation)


def yaw_matrix(yaw: float) -> np.ndarray:
    """Rotation ``[3, 3]`` by ``yaw`` radians about the world z axis."""
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


class SceneBuilder:
    """Collects parts and planes (float64 numpy), then packs them into sorted float32 tables.

    ``rng`` draws each row's texture shift, so a builder fed the same calls in the same order gives the same scene.
    """

    def __init__(self, rng: np.random.Generator):
        self._rng = rng
        self._shapes: list[tuple[int, np.ndarray, np.ndarray, np.ndarray, Material]] = []
        self._planes: list[tuple[np.ndarray, float, Material]] = []

    def add(self, *parts: Part) -> None:
        for part in parts:
            size = np.asarray(part.size, dtype=np.float64)
            if size.shape != (3,) or (size <= 0).any():
                raise ValueError(f"half sizes must be 3 positive numbers, got {size}")
            rot = np.eye(3) if part.rotation is None else np.asarray(part.rotation, dtype=np.float64)
            self._shapes.append((int(part.kind), np.asarray(part.centre, dtype=np.float64), rot, size, part.material))

    def plane(self, normal, offset: float, material: Material) -> None:
        n = np.asarray(normal, dtype=np.float64)
        self._planes.append((n / np.linalg.norm(n), float(offset), material))

    def build(self, **scene_fields) -> Scene:
        """The packed ``Scene``; ``scene_fields`` are its remaining fields (family, seed, lighting, ...)."""
        shapes = self._shapes
        kind = np.array([s[0] for s in shapes], dtype=np.int64)
        size = np.array([s[3] for s in shapes]).reshape(-1, 3)
        radius = np.where(kind == Kind.CYLINDER, np.hypot(size[:, 0], size[:, 2]), np.linalg.norm(size, axis=1))
        radius = np.where(kind == Kind.ELLIPSOID, size.max(axis=1, initial=0.0), radius)
        normals = np.array([p[0] for p in self._planes]).reshape(-1, 3)
        mats = [s[4] for s in shapes] + [p[2] for p in self._planes]
        world = torch.tensor([m.world_space for m in mats], dtype=torch.bool)

        def f32(a) -> torch.Tensor:
            return torch.as_tensor(np.asarray(a, dtype=np.float32))

        return Scene(
            shapes=Shapes(kind=torch.as_tensor(kind), centre=f32([s[1] for s in shapes]).reshape(-1, 3),
                          rotation=f32([s[2] for s in shapes]).reshape(-1, 3, 3), size=f32(size), radius=f32(radius)),
            planes=Planes(normal=f32(normals), offset=f32([p[1] for p in self._planes]),
                          tangent=f32([_plane_basis(n) for n in normals]).reshape(-1, 2, 3)),
            materials=Materials(
                colour=f32([m.colour for m in mats]).reshape(-1, 3),
                accent=f32([m.accent for m in mats]).reshape(-1, 3),
                pattern=torch.tensor([int(m.pattern) for m in mats], dtype=torch.int64),
                scale=f32([m.scale for m in mats]), grain=f32([m.grain for m in mats]), world_space=world,
                shift=f32(self._rng.uniform(0.0, 100.0, (len(mats), 3)) * ~world.numpy()[:, None])),
            **scene_fields)


def _plane_basis(normal: np.ndarray) -> np.ndarray:
    """Two unit vectors ``[2, 3]`` spanning the plane; the second is as vertical as the plane allows."""
    helper = np.array([0.0, 0.0, 1.0]) if abs(normal[2]) < 0.9 else np.array([0.0, 1.0, 0.0])
    first = np.cross(helper, normal)
    first /= np.linalg.norm(first)
    return np.stack([first, np.cross(normal, first)])
