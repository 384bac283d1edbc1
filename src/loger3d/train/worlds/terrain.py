"""Open-terrain family: rolling hills, forests, rocks and landmarks crossed by a network of trails.

Terrain is a flat ground plane with hills made of large ellipsoids sunk into it (vertical axis, random yaw,
rim slopes capped at 1 : 2). We chose this over a ray-marched heightfield: intersections stay exact (the
depth of every pixel is a closed-form root, identical from every view), the hills reuse the renderer's one
code path and its culling, and the ground height under a camera has a closed form too (``Ground.height``).
Hills and ground share one world-space grass texture, so their seams do not show.

Trails form a jittered square lattice (a random spanning tree plus most remaining edges, so there are
loops); walks and drives follow it, and orbits circle landmarks (standing stones, ruins, boulders, towers)
set in the middle of lattice cells. Trees (broadleaf and conifer, denser in forest patches), bushes and
rocks are scattered everywhere except within ``TRAIL_CLEARANCE`` of trails and orbit rings and
``JUNCTION_CLEARANCE`` of trail junctions (room to round corners at speed).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .layout import Placer, hsv, random_tilt
from .nav import NavGraph, Orbit
from .scene import Ground, Lighting, Material, Part, Pattern, Scene, SceneBuilder, box, cylinder, ellipsoid, yaw_matrix
from .textures import value_noise

__all__ = ["TerrainOptions", "open_terrain"]

TRAIL_CLEARANCE = 2.5
JUNCTION_CLEARANCE = 6.0
_BAND = (0.1, 2.6)  # walkers and vehicles, metres above the ground
_ORBIT_BAND = (0.1, 4.0)


@dataclass(frozen=True)
class TerrainOptions:
    """Ranges for the landscape: trail lattice ``nodes`` per side and ``spacing`` (m), hills (count, radius,
    height as a fraction of radius), object densities per m² (trees at the heart of a forest patch), how far
    beyond the trails objects are scattered, and the number of landmarks."""

    nodes: tuple[int, int] = (5, 8)
    spacing: tuple[float, float] = (30.0, 45.0)
    hills: tuple[int, int] = (15, 35)
    hill_radius: tuple[float, float] = (15.0, 60.0)
    hill_height: tuple[float, float] = (0.08, 0.3)
    tree_density: float = 0.005
    rock_density: float = 0.0006
    bush_density: float = 0.001
    margin: float = 110.0
    landmarks: tuple[int, int] = (2, 4)


def open_terrain(seed: int, **options) -> Scene:
    """The open-terrain ``Scene`` of ``seed``; ``options`` override ``TerrainOptions`` fields."""
    opt = TerrainOptions(**options)
    rng = np.random.default_rng([seed, 300])
    builder = SceneBuilder(np.random.default_rng([seed, 301]))
    trails, cells = _trails(rng, opt)
    lo, hi = trails.nodes.min(0) - opt.margin, trails.nodes.max(0) + opt.margin
    grass = Material(hsv(rng, (0.18, 0.3), (0.35, 0.65), (0.3, 0.55)), hsv(rng, (0.08, 0.14), (0.3, 0.55), (0.3, 0.5)),
                     Pattern.NOISE, float(rng.uniform(6.0, 14.0)), 0.25, world_space=True)
    builder.plane((0, 0, 1), 0.0, grass)
    ground = Ground(hills=_hills(builder, rng, lo, hi, grass, opt))

    placer = Placer(builder, ground.height)
    starts, ends = trails.nodes[trails.edges[:, 0]], trails.nodes[trails.edges[:, 1]]
    placer.keep_clear(starts, ends, TRAIL_CLEARANCE, _BAND)
    placer.keep_clear(trails.nodes, trails.nodes, JUNCTION_CLEARANCE, _BAND)
    # orbit rings first (every landmark must clear all of them), then the landmarks in their middles
    rings = []
    for c in rng.permutation(len(cells))[: int(rng.integers(opt.landmarks[0], opt.landmarks[1] + 1))]:
        radius = float(rng.uniform(9.0, 12.0))
        angles = np.arange(20) * 2 * np.pi / 20
        ring = cells[c] + radius * np.stack([np.cos(angles), np.sin(angles)], -1)
        placer.keep_clear(ring, np.roll(ring, -1, axis=0), TRAIL_CLEARANCE, _ORBIT_BAND)
        rings.append((cells[c], radius, ring))
    orbits = []
    for centre, radius, ring in rings:
        base = float(ground.height(centre[None])[0])
        found = placer.add(_landmark(rng, centre, base, radius - TRAIL_CLEARANCE - 0.5))
        # a refused landmark leaves a clearing; its orbit still looks at the middle
        orbits.append(Orbit(ring=ring, target=(float(centre[0]), float(centre[1]), base + (2.0 if found else 1.0)),
                            heights=(1.5, 3.5), clearance=TRAIL_CLEARANCE))
    _scatter(placer, rng, ground, lo, hi, opt)

    elevation, azimuth = rng.uniform(np.radians(20), np.radians(60)), rng.uniform(0, 2 * np.pi)
    lighting = Lighting(sun=(float(np.cos(elevation) * np.cos(azimuth)), float(np.cos(elevation) * np.sin(azimuth)),
                             float(np.sin(elevation))),
                        zenith=hsv(rng, (0.56, 0.63), (0.35, 0.7), (0.55, 0.85)),
                        horizon=hsv(rng, (0.5, 0.62), (0.05, 0.25), (0.8, 0.95)),
                        ground_ambient=(0.26, 0.27, 0.2), clouds=float(rng.uniform(0.2, 0.9)), fog_start=0.35)
    motion = {"drive": {"speed": 6.0, "height": (1.6, 2.0), "corner_radius": 6.0, "loop_prob": 0.1},
              "orbit": {"speed": 1.5}}
    return builder.build(family="terrain", seed=seed, lighting=lighting, far=250.0, ground=ground,
                         nav={"walk": trails, "drive": trails}, orbits=orbits, motion=motion)


def _trails(rng: np.random.Generator, opt: TerrainOptions) -> tuple[NavGraph, np.ndarray]:
    """A jittered lattice: a random spanning tree plus 80 % of the other edges; also the cell centres."""
    n = int(rng.integers(opt.nodes[0], opt.nodes[1] + 1))
    spacing = float(rng.uniform(*opt.spacing))
    grid = np.stack(np.meshgrid(np.arange(n), np.arange(n), indexing="ij"), -1).reshape(-1, 2) * spacing
    nodes = grid + rng.uniform(-0.2, 0.2, grid.shape) * spacing
    candidates = [(i * n + j, (i + 1) * n + j) for i in range(n - 1) for j in range(n)]
    candidates += [(i * n + j, i * n + j + 1) for i in range(n) for j in range(n - 1)]
    parent = list(range(n * n))

    def root(a: int) -> int:
        while parent[a] != a:
            a = parent[a]
        return a

    edges = []
    for k in rng.permutation(len(candidates)):
        a, b = candidates[k]
        if root(a) != root(b):
            parent[root(a)] = root(b)
            edges.append((a, b))
        elif rng.random() < 0.8:
            edges.append((a, b))
    cells = np.array([nodes[[i * n + j, (i + 1) * n + j, i * n + j + 1, (i + 1) * n + j + 1]].mean(0)
                      for i in range(n - 1) for j in range(n - 1)])
    graph = NavGraph(nodes=nodes, edges=np.array(edges), clearance=TRAIL_CLEARANCE,
                     node_clearance=np.full(len(nodes), JUNCTION_CLEARANCE))
    return graph, cells


def _hills(builder: SceneBuilder, rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray, grass: Material,
           opt: TerrainOptions) -> np.ndarray:
    """Sunk ellipsoids; rows (cx, cy, cz, rx, ry, rz, yaw) for ``Ground``."""
    rows = []
    for _ in range(int(rng.integers(opt.hills[0], opt.hills[1] + 1))):
        rx, ry = rng.uniform(*opt.hill_radius, 2)
        ratio = rng.uniform(*opt.hill_height)
        rz = ratio * min(rx, ry)
        sunk = max(rng.uniform(0.3, 0.7), ratio / np.sqrt(0.25 + ratio**2))  # rim slope ≤ 0.5
        cx, cy = rng.uniform(lo, hi)
        yaw = float(rng.uniform(0, np.pi))
        builder.add(ellipsoid((cx, cy, -sunk * rz), (rx, ry, rz), grass, yaw_matrix(yaw)))
        rows.append((cx, cy, -sunk * rz, rx, ry, rz, yaw))
    return np.array(rows).reshape(-1, 7)


def _landmark(rng: np.random.Generator, centre: np.ndarray, base: float, reach: float) -> list[Part]:
    """Something to orbit, within ``reach`` metres of ``centre`` (on the ground at height ``base``)."""
    reach = min(reach, 4.5)
    stone = Material(hsv(rng, (0, 1), (0.0, 0.15), (0.35, 0.7)), hsv(rng, (0, 1), (0.0, 0.2), (0.2, 0.45)),
                     Pattern.NOISE, float(rng.uniform(0.3, 1.0)), 0.2)
    cx, cy = centre
    kind = rng.choice(["stones", "ruin", "boulder", "tower"])
    if kind == "stones":
        count, r = int(rng.integers(5, 9)), reach - 0.6
        parts = []
        for a in np.arange(count) * 2 * np.pi / count + rng.uniform(0, 1):
            h = rng.uniform(1.8, 3.5)
            tilt = yaw_matrix(a) @ random_tilt(rng, 0.12)
            parts.append(box((cx + r * np.cos(a), cy + r * np.sin(a), base + h / 2 - 0.3), (0.35, 0.5, h / 2 + 0.3),
                             stone, tilt))
        return parts
    if kind == "ruin":
        brick = Material(hsv(rng, (0.03, 0.1), (0.2, 0.5), (0.4, 0.7)), hsv(rng, (0, 1), (0, 0.1), (0.6, 0.8)),
                         Pattern.BRICK, 0.5, 0.2)
        s = reach / np.sqrt(2) - 0.3
        parts = [box((cx, cy + s, base + 1.2), (s, 0.3, 1.5), brick),
                 box((cx - s, cy, base + 0.8), (0.3, s * 0.7, 1.1), brick)]
        columns = ((1, -1, rng.uniform(2, 4)), (0.2, -1, rng.uniform(1, 3)), (1, 0.2, rng.uniform(2, 5)))
        parts += [cylinder((cx + s * dx, cy + s * dy, base + h / 2 - 0.2), 0.3, h / 2 + 0.2, stone)
                  for dx, dy, h in columns]
        return parts
    if kind == "boulder":
        rot = yaw_matrix(rng.uniform(0, np.pi)) @ random_tilt(rng, 0.3)
        big = (reach * 0.9, reach * 0.7, reach * 0.55)
        parts = [ellipsoid((cx, cy, base + big[2] * 0.5), big, stone, rot)]
        for a in rng.uniform(0, 2 * np.pi, 3):
            r = rng.uniform(0.4, 0.9)
            parts.append(ellipsoid((cx + (reach - r) * np.cos(a), cy + (reach - r) * np.sin(a), base + 0.3 * r),
                                   (r, r * 0.8, r * 0.7), stone, yaw_matrix(a)))
        return parts
    roof = Material(hsv(rng, (0.0, 0.08), (0.4, 0.7), (0.3, 0.55)), grain=0.2)
    r = min(reach, 2.5)
    h = rng.uniform(5.0, 9.0)
    return [cylinder((cx, cy, base + h / 2 - 0.3), r, h / 2 + 0.3, stone),
            ellipsoid((cx, cy, base + h), (r * 1.1, r * 1.1, r * 1.2), roof)]


def _scatter(placer: Placer, rng: np.random.Generator, ground: Ground, lo: np.ndarray, hi: np.ndarray,
             opt: TerrainOptions) -> None:
    """Trees (denser in forest patches of a low-frequency noise), bushes and rocks, all on the ground."""
    area = float(np.prod(hi - lo))
    bark = Material(hsv(rng, (0.05, 0.1), (0.3, 0.6), (0.15, 0.35)), grain=0.3)
    palette = [Material(hsv(rng, (0.2, 0.38), (0.35, 0.8), (0.15, 0.45)),
                        hsv(rng, (0.15, 0.4), (0.3, 0.8), (0.08, 0.3)),
                        Pattern.NOISE, float(rng.uniform(0.5, 1.2)), 0.25) for _ in range(4)]
    stone = [Material(hsv(rng, (0, 1), (0.0, 0.2), (0.3, 0.7)), hsv(rng, (0, 1), (0, 0.2), (0.15, 0.4)),
                      Pattern.NOISE, float(rng.uniform(0.3, 1.0)), 0.2) for _ in range(3)]
    def forest(xy: np.ndarray) -> np.ndarray:
        p = torch.as_tensor(np.c_[xy / 70.0, np.full(len(xy), 0.5)], dtype=torch.float32)
        return np.clip((value_noise(p).numpy() - 0.35) * 3.0, 0.05, 1.0)

    xy = rng.uniform(lo, hi, (rng.poisson(opt.tree_density * area), 2))
    xy = xy[rng.random(len(xy)) < forest(xy)]
    for p, z in zip(xy, ground.height(xy)):
        placer.add(_tree(rng, p, z, bark, palette[int(rng.integers(len(palette)))]))
    xy = rng.uniform(lo, hi, (rng.poisson(opt.bush_density * area), 2))
    for p, z in zip(xy, ground.height(xy)):
        r = rng.uniform(0.4, 1.2)
        placer.add([ellipsoid((*p, z + 0.3 * r), (r, r * rng.uniform(0.7, 1.0), 0.8 * r),
                              palette[int(rng.integers(len(palette)))], yaw_matrix(rng.uniform(0, np.pi)))])
    xy = rng.uniform(lo, hi, (rng.poisson(opt.rock_density * area), 2))
    for p, z in zip(xy, ground.height(xy)):
        r = float(np.exp(rng.uniform(np.log(0.3), np.log(2.5))))
        rot = yaw_matrix(rng.uniform(0, 2 * np.pi)) @ random_tilt(rng, 0.5)
        mat = stone[int(rng.integers(len(stone)))]
        if rng.random() < 0.5:
            size = (r, r * rng.uniform(0.5, 0.9), r * rng.uniform(0.4, 0.7))
            placer.add([ellipsoid((*p, z + 0.1 * r), size, mat, rot)])
        else:
            size = (r * 0.7, r * rng.uniform(0.4, 0.7), r * rng.uniform(0.3, 0.6))
            placer.add([box((*p, z + 0.1 * r), size, mat, rot)])


def _tree(rng: np.random.Generator, xy: np.ndarray, z: float, bark: Material, leaves: Material) -> list[Part]:
    if rng.random() < 0.5:  # broadleaf: one or two crowns on a trunk
        h, r = rng.uniform(2.0, 5.0), rng.uniform(1.5, 3.5)
        parts = [cylinder((*xy, z + h / 2 - 0.3), rng.uniform(0.15, 0.35), h / 2 + 0.3, bark),
                 ellipsoid((*xy, z + h + 0.7 * r), (r, r * rng.uniform(0.8, 1.0), r * rng.uniform(0.8, 1.2)), leaves,
                           yaw_matrix(rng.uniform(0, np.pi)))]
        if rng.random() < 0.5:
            off = rng.uniform(-0.5, 0.5, 2) * r
            parts.append(ellipsoid((xy[0] + off[0], xy[1] + off[1], z + h + 1.3 * r), (0.7 * r, 0.7 * r, 0.7 * r),
                                   leaves))
        return parts
    h, r = rng.uniform(6.0, 14.0), rng.uniform(1.2, 2.4)  # conifer: stacked, shrinking ellipsoids
    parts = [cylinder((*xy, z + h / 2 - 0.3), rng.uniform(0.12, 0.3), h / 2 + 0.3, bark)]
    levels = int(rng.integers(3, 5))
    for k in range(levels):
        frac = k / levels
        rk = r * (1.0 - 0.7 * frac)
        parts.append(ellipsoid((*xy, z + 1.5 + frac * (h - 1.5)), (rk, rk, 0.9 * h / levels), leaves))
    return parts
