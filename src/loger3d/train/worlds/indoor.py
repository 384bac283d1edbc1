"""Indoor family: a floor of rooms and a corridor joined by doors, furnished along the walls.

The floor plan is a grid of cells with random column widths and row depths; one row may be a corridor (its
cells open into each other). Doors join neighbouring cells along a random spanning tree of the rooms plus
extra doors that make loops. Every cell lines its own sides with thin wall boxes (door openings cut out, a
lintel above, a skirting board below), so each room has its own wall, floor and ceiling materials. Furniture
(cabinets, shelves, tables with legs, sofas, plants, lamps, pictures) stands against the walls, outer walls
have windows; large rooms get a centrepiece that orbits circle around.

Cameras walk (or a robot drives) on a graph: cell centre → a point in front of the door → the door → the
point in front on the other side → the next cell's centre; corridor cells chain along the corridor's axis;
rooms with a centrepiece have a ring of nodes around it instead of a centre. Furniture is kept
``FURNITURE_CLEARANCE`` from that graph; walls are at least half a door width away.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .layout import Placer, hsv, random_tilt
from .nav import NavGraph, Orbit
from .scene import Ground, Lighting, Material, Part, Pattern, Scene, SceneBuilder, box, cylinder, ellipsoid

__all__ = ["IndoorOptions", "indoor_rooms"]

WALL = 0.07  # thickness of a room's wall skin; two rooms' skins meet back to back
FRONT = 0.9  # distance of a door's approach point from the wall
FURNITURE_CLEARANCE = 0.75
_BAND = (0.1, 2.25)  # camera heights above the floor: a robot at 0.35-0.5 m up to orbits at 1.9 m, plus margin


@dataclass(frozen=True)
class IndoorOptions:
    """Ranges of the floor plan (metres unless noted); ``furniture`` is the fraction of wall length offered to
    furniture (before the clearance rule), ``centrepiece_prob`` the chance that a large room gets one."""

    columns: tuple[int, int] = (2, 4)
    rows: tuple[int, int] = (2, 3)
    room_size: tuple[float, float] = (3.4, 6.5)
    corridor_prob: float = 0.6
    corridor_width: tuple[float, float] = (1.9, 2.5)
    ceiling: tuple[float, float] = (2.6, 3.2)
    door_width: tuple[float, float] = (1.0, 1.4)
    door_height: tuple[float, float] = (2.15, 2.35)
    extra_door_prob: float = 0.35
    furniture: float = 0.6
    centrepiece_prob: float = 0.5


def indoor_rooms(seed: int, **options) -> Scene:
    """The indoor ``Scene`` of ``seed``; ``options`` override ``IndoorOptions`` fields."""
    opt = IndoorOptions(**options)
    rng = np.random.default_rng([seed, 100])
    plan = _plan(rng, opt)
    builder = SceneBuilder(np.random.default_rng([seed, 101]))
    nav, orbits, rings = _navigation(plan)
    placer = Placer(builder)
    placer.keep_clear(nav.nodes[nav.edges[:, 0]], nav.nodes[nav.edges[:, 1]], FURNITURE_CLEARANCE, _BAND)
    _structure(builder, plan, rng)
    for cell, ring in rings.items():
        _centrepiece(placer, plan.centre(cell), ring, rng)
    for cell in plan.cells():
        _furnish(placer, plan, cell, rng, opt)
    lighting = Lighting(sun=_unit((rng.uniform(-0.4, 0.4), rng.uniform(-0.4, 0.4), 1.0)),
                        sun_colour=(0.45, 0.43, 0.40), sky_ambient=(0.62, 0.61, 0.60),
                        ground_ambient=(0.42, 0.40, 0.38), fog_start=1.0)
    motion = {"drive": {"speed": 0.6, "height": (0.35, 0.5), "corner_radius": 0.8, "yaw_rate": 0.8, "accel": 0.5,
                        "lateral_accel": 0.5, "straight_bias": 0.5, "loop_prob": 0.0, "pivot_deg": 100.0,
                        "vibration_deg": 0.15, "bounce": 0.003, "ground_window": 0.5},
              "orbit": {"speed": 0.45, "corner_radius": 0.6}}
    return builder.build(family="indoor", seed=seed, lighting=lighting, far=40.0, ground=Ground(),
                         nav={"walk": nav}, orbits=orbits, motion=motion)


@dataclass
class _Plan:
    xs: np.ndarray  # column edges [nx + 1]
    ys: np.ndarray  # row edges [ny + 1]
    region: np.ndarray  # [nx, ny] room id; corridor cells share one
    height: float
    doors: list[tuple[tuple[int, int], tuple[int, int], float, float, float]]  # cell a, cell b, centre, width, height
    corridor_row: int
    walls: dict  # per cell: its room's wall material
    floors: dict
    centrepiece: set

    def cells(self):
        return [(i, j) for i in range(len(self.xs) - 1) for j in range(len(self.ys) - 1)]

    def centre(self, cell) -> np.ndarray:
        i, j = cell
        return np.array([(self.xs[i] + self.xs[i + 1]) / 2, (self.ys[j] + self.ys[j + 1]) / 2])

    def half(self, cell) -> np.ndarray:
        i, j = cell
        return np.array([(self.xs[i + 1] - self.xs[i]) / 2, (self.ys[j + 1] - self.ys[j]) / 2])


def _plan(rng: np.random.Generator, opt: IndoorOptions) -> _Plan:
    nx = int(rng.integers(opt.columns[0], opt.columns[1] + 1))
    ny = int(rng.integers(opt.rows[0], opt.rows[1] + 1))
    widths, depths = rng.uniform(*opt.room_size, nx), rng.uniform(*opt.room_size, ny)
    corridor = -1
    if rng.random() < opt.corridor_prob:
        ny += 1
        corridor = int(rng.integers(ny))
        depths = np.insert(depths, corridor, rng.uniform(*opt.corridor_width))
    big = (int(rng.integers(nx)), int(rng.choice([j for j in range(ny) if j != corridor])))
    widths[big[0]], depths[big[1]] = max(widths[big[0]], 5.0), max(depths[big[1]], 5.0)
    region = np.arange(nx * ny).reshape(nx, ny)
    if corridor >= 0:
        region[:, corridor] = -1
    plan = _Plan(xs=np.r_[0.0, np.cumsum(widths)], ys=np.r_[0.0, np.cumsum(depths)], region=region,
                 height=float(rng.uniform(*opt.ceiling)), doors=[], corridor_row=corridor, walls={}, floors={},
                 centrepiece=set())
    # doors: a random spanning tree over rooms, plus extra doors that close loops
    pairs = [((i, j), (i + 1, j)) for i in range(nx - 1) for j in range(ny)]
    pairs += [((i, j), (i, j + 1)) for i in range(nx) for j in range(ny - 1)]
    pairs = [p for p in pairs if region[p[0]] != region[p[1]]]
    parent = {int(r): int(r) for r in np.unique(region)}

    def root(r: int) -> int:
        while parent[r] != r:
            r = parent[r]
        return r

    for k in rng.permutation(len(pairs)):
        a, b = pairs[k]
        ra, rb = root(int(region[a])), root(int(region[b]))
        if ra == rb and rng.random() > opt.extra_door_prob:
            continue
        parent[ra] = rb
        horizontal = a[0] != b[0]
        lo, hi = (plan.ys[a[1]], plan.ys[a[1] + 1]) if horizontal else (plan.xs[a[0]], plan.xs[a[0] + 1])
        width = float(rng.uniform(*opt.door_width))
        slack = max(0.0, (hi - lo) / 2 - width / 2 - 1.0)
        plan.doors.append((a, b, (lo + hi) / 2 + rng.uniform(-slack, slack), width, rng.uniform(*opt.door_height)))
    # materials per room
    for r in np.unique(region):
        wall = Material(hsv(rng, (0, 1), (0.03, 0.3), (0.65, 0.95)), hsv(rng, (0, 1), (0.1, 0.4), (0.5, 0.9)),
                        Pattern(rng.choice([Pattern.PLAIN, Pattern.NOISE, Pattern.NOISE, Pattern.STRIPES,
                                            Pattern.STRIPES, Pattern.TILES, Pattern.BRICK, Pattern.CHECKER])),
                        float(rng.uniform(0.2, 0.7)), float(rng.uniform(0.1, 0.3)))
        floor = rng.choice(["wood", "tiles", "carpet"])
        if floor == "wood":
            colour = hsv(rng, (0.05, 0.11), (0.35, 0.65), (0.3, 0.65))
            floor_mat = Material(colour, tuple(0.75 * c for c in colour), Pattern.STRIPES,
                                 float(rng.uniform(0.3, 0.6)), 0.25)
        elif floor == "tiles":
            floor_mat = Material(hsv(rng, (0, 1), (0.0, 0.25), (0.5, 0.9)), hsv(rng, (0, 1), (0, 0.2), (0.2, 0.5)),
                                 Pattern.TILES, float(rng.uniform(0.3, 0.8)), 0.1)
        else:
            floor_mat = Material(hsv(rng, (0, 1), (0.1, 0.5), (0.25, 0.7)), hsv(rng, (0, 1), (0.1, 0.5), (0.2, 0.6)),
                                 Pattern.NOISE, float(rng.uniform(0.3, 1.5)), 0.2)
        for cell in zip(*np.nonzero(region == r)):
            plan.walls[tuple(int(c) for c in cell)] = wall
            plan.floors[tuple(int(c) for c in cell)] = floor_mat
    for cell in plan.cells():
        half = plan.half(cell)
        if region[cell] >= 0 and half.min() >= 2.4 and (cell == big or rng.random() < opt.centrepiece_prob):
            plan.centrepiece.add(cell)
    return plan


def _navigation(plan: _Plan) -> tuple[NavGraph, list[Orbit], dict]:
    nodes: list[np.ndarray] = []
    clearance: list[float] = []
    edges: list[tuple[int, int]] = []

    def node(xy, free: float) -> int:
        nodes.append(np.asarray(xy, dtype=np.float64))
        clearance.append(free)
        return len(nodes) - 1

    hubs: dict = {}  # cell → node ids a door approach may connect to
    rings: dict = {}
    orbits: list[Orbit] = []
    for cell in plan.cells():
        centre, half = plan.centre(cell), plan.half(cell)
        if cell in plan.centrepiece:
            radii = half - WALL - 0.95
            angles = np.arange(16) * 2 * np.pi / 16
            ring = centre + np.stack([radii[0] * np.cos(angles), radii[1] * np.sin(angles)], -1)
            ids = [node(p, FURNITURE_CLEARANCE) for p in ring]
            edges += [(ids[k], ids[(k + 1) % 16]) for k in range(16)]
            hubs[cell], rings[cell] = ids, ring
            heights = (1.3, min(1.9, plan.height - 0.8))
            orbits.append(Orbit(ring=ring, target=(centre[0], centre[1], 1.0), heights=heights,
                                clearance=FURNITURE_CLEARANCE))
        else:
            free = FURNITURE_CLEARANCE if cell[1] != plan.corridor_row else min(FURNITURE_CLEARANCE, half[1] - WALL)
            hubs[cell] = [node(centre, free)]
    if plan.corridor_row >= 0:
        row = [(i, plan.corridor_row) for i in range(len(plan.xs) - 1)]
        edges += [(hubs[a][0], hubs[b][0]) for a, b in zip(row[:-1], row[1:])]
    for a, b, at, width, _ in plan.doors:
        horizontal = a[0] != b[0]
        line = plan.xs[b[0]] if horizontal else plan.ys[b[1]]
        door_xy = np.array([line, at]) if horizontal else np.array([at, line])
        axis = np.array([1.0, 0.0]) if horizontal else np.array([0.0, 1.0])
        door = node(door_xy, width / 2)
        for cell, side in ((a, -1.0), (b, 1.0)):
            depth = min(FRONT, plan.half(cell)[0 if horizontal else 1])
            front = node(door_xy + side * depth * axis, min(FURNITURE_CLEARANCE, depth - WALL))
            hub = min(hubs[cell], key=lambda k: float(np.linalg.norm(nodes[k] - nodes[front])))
            edges += [(door, front), (front, hub)]
    if not orbits:
        raise RuntimeError("indoor plan has no room with a centrepiece; the plan forces one, so this is a bug")
    nav = NavGraph(nodes=np.array(nodes), edges=np.array(edges), clearance=min(min(clearance), 0.5),
                   node_clearance=np.array(clearance))
    return nav, orbits, rings


def _structure(builder: SceneBuilder, plan: _Plan, rng: np.random.Generator) -> None:
    h = plan.height
    ceiling = Material(hsv(rng, (0, 1), (0, 0.08), (0.8, 0.95)), grain=0.05)
    skirting = Material(hsv(rng, (0, 1), (0, 0.3), (0.2, 0.95)), grain=0.05)
    doors_by_side: dict = {}
    for a, b, at, width, height in plan.doors:
        horizontal = a[0] != b[0]
        doors_by_side.setdefault((a, "east" if horizontal else "north"), []).append((at, width, height))
        doors_by_side.setdefault((b, "west" if horizontal else "south"), []).append((at, width, height))
    nx, ny = plan.region.shape
    for cell in plan.cells():
        i, j = cell
        (x0, x1), (y0, y1) = plan.xs[i:i + 2], plan.ys[j:j + 2]
        cx, cy = plan.centre(cell)
        hx, hy = plan.half(cell)
        builder.add(box((cx, cy, -0.05), (hx, hy, 0.05), plan.floors[cell]),
                    box((cx, cy, h + 0.05), (hx, hy, 0.05), ceiling))
        lamp = Material((1.0, 0.97, 0.85), grain=0.02)
        builder.add(ellipsoid((cx, cy, h - 0.12), (0.25, 0.25, 0.1), lamp))
        sides = {"west": (i - 1, j), "east": (i + 1, j), "south": (i, j - 1), "north": (i, j + 1)}
        for side, other in sides.items():
            inside = 0 <= other[0] < nx and 0 <= other[1] < ny
            if inside and plan.region[other] == plan.region[cell]:
                continue
            along_x = side in ("south", "north")
            lo, hi = (x0, x1) if along_x else (y0, y1)
            fixed = {"west": x0 + WALL / 2, "east": x1 - WALL / 2, "south": y0 + WALL / 2, "north": y1 - WALL / 2}[side]
            pieces = []  # (lo, hi, z0, z1)
            cursor = lo
            for at, width, height in sorted(doors_by_side.get((cell, side), [])):
                pieces += [(cursor, at - width / 2, 0.0, h), (at - width / 2, at + width / 2, height, h)]
                cursor = at + width / 2
            pieces.append((cursor, hi, 0.0, h))
            inward = {"west": 1.0, "east": -1.0, "south": 1.0, "north": -1.0}[side]
            for p0, p1, z0, z1 in pieces:
                if p1 - p0 < 1e-3:
                    continue
                mid, half = (p0 + p1) / 2, (p1 - p0) / 2
                centre = (mid, fixed, (z0 + z1) / 2) if along_x else (fixed, mid, (z0 + z1) / 2)
                size = (half, WALL / 2, (z1 - z0) / 2) if along_x else (WALL / 2, half, (z1 - z0) / 2)
                builder.add(box(centre, size, plan.walls[cell]))
                if z0 == 0.0:  # a skirting board along the foot of the wall
                    skirt = fixed + inward * (WALL / 2 + 0.008)
                    centre = (mid, skirt, 0.045) if along_x else (skirt, mid, 0.045)
                    size = (half, 0.008, 0.045) if along_x else (0.008, half, 0.045)
                    builder.add(box(centre, size, skirting))


def _furnish(placer: Placer, plan: _Plan, cell, rng: np.random.Generator, opt: IndoorOptions) -> None:
    """Objects along each side of ``cell``; in a corridor only now and then."""
    i, j = cell
    (x0, x1), (y0, y1) = plan.xs[i:i + 2], plan.ys[j:j + 2]
    corridor = j == plan.corridor_row
    # each walled side: a point at its start, the direction along it, the inward normal, its length
    sides = [((i, j - 1), (x0 + WALL, y0 + WALL), (1, 0), (0, 1), x1 - x0 - 2 * WALL),
             ((i, j + 1), (x1 - WALL, y1 - WALL), (-1, 0), (0, -1), x1 - x0 - 2 * WALL),
             ((i - 1, j), (x0 + WALL, y1 - WALL), (0, -1), (1, 0), y1 - y0 - 2 * WALL),
             ((i + 1, j), (x1 - WALL, y0 + WALL), (0, 1), (-1, 0), y1 - y0 - 2 * WALL)]
    nx, ny = plan.region.shape
    for other, start, along, inward, length in sides:
        outside = not (0 <= other[0] < nx and 0 <= other[1] < ny)
        if not outside and plan.region[other] == plan.region[cell]:
            continue
        if outside:
            _windows(placer, rng, np.array(start), np.array(along, float), np.array(inward, float), length)
        start, along, inward = np.array(start), np.array(along, float), np.array(inward, float)
        cursor = float(rng.uniform(0.05, 0.6))
        while cursor < length:
            width = float(rng.uniform(0.5, 1.9))
            gap = float(rng.uniform(0.1, 1.2)) / max(opt.furniture, 1e-3) * (3.0 if corridor else 1.0)
            if cursor + width > length - 0.05:
                break
            if rng.random() < opt.furniture:
                origin = start + (cursor + width / 2) * along
                placer.add(_furniture(rng, origin, along, inward, width, plan.height))
            if rng.random() < 0.5:
                _picture(placer, rng, start + (cursor + width / 2) * along, along, inward, width)
            cursor += width + gap
    if cell not in plan.centrepiece and not corridor:
        centre, half = plan.centre(cell), plan.half(cell)
        rug = Material(hsv(rng, (0, 1), (0.3, 0.7), (0.3, 0.7)), hsv(rng, (0, 1), (0.3, 0.7), (0.2, 0.6)),
                       Pattern(rng.choice([Pattern.CHECKER, Pattern.STRIPES, Pattern.NOISE])),
                       float(rng.uniform(0.2, 0.6)), 0.2)
        placer.add([box((*centre, 0.006), (*(half * rng.uniform(0.3, 0.5)), 0.006), rug)])


def _furniture(rng: np.random.Generator, origin: np.ndarray, along: np.ndarray, inward: np.ndarray,
               width: float, ceiling: float) -> list[Part]:
    """One piece against a wall: ``origin`` is the wall point at its middle, ``inward`` points into the room."""
    rot = np.array([[along[0], inward[0], 0.0], [along[1], inward[1], 0.0], [0.0, 0.0, 1.0]])

    def at(u: float, d: float, z: float) -> tuple[float, float, float]:
        xy = origin + u * along + d * inward
        return (float(xy[0]), float(xy[1]), float(z))

    wood = Material(hsv(rng, (0.04, 0.12), (0.3, 0.7), (0.25, 0.75)), hsv(rng, (0.04, 0.12), (0.3, 0.7), (0.2, 0.5)),
                    Pattern.STRIPES, float(rng.uniform(0.05, 0.2)), 0.2)
    paint = Material(hsv(rng, (0, 1), (0.1, 0.8), (0.3, 0.95)), grain=0.08)
    kind = rng.choice(["cabinet", "shelf", "table", "sofa", "plant", "lamp"])
    hw = width / 2
    if kind == "cabinet":
        d, h = rng.uniform(0.35, 0.6), rng.uniform(0.8, 2.1)
        return [box(at(0, d / 2, h / 2), (hw, d / 2, h / 2), paint if rng.random() < 0.5 else wood, rot)]
    if kind == "shelf":
        d, h, n = rng.uniform(0.25, 0.4), rng.uniform(1.2, 2.2), int(rng.integers(3, 6))
        parts = [box(at(-hw + 0.02, d / 2, h / 2), (0.02, d / 2, h / 2), wood, rot),
                 box(at(hw - 0.02, d / 2, h / 2), (0.02, d / 2, h / 2), wood, rot),
                 box(at(0, 0.01, h / 2), (hw, 0.01, h / 2), wood, rot)]
        parts += [box(at(0, d / 2, z), (hw - 0.02, d / 2, 0.015), wood, rot) for z in np.linspace(0.05, h - 0.02, n)]
        return parts
    if kind == "table":
        d, h = rng.uniform(0.6, 0.9), rng.uniform(0.72, 0.78)
        parts = [box(at(0, d / 2, h - 0.02), (hw, d / 2, 0.02), wood, rot)]
        parts += [cylinder(at(su * (hw - 0.06), d / 2 + sd * (d / 2 - 0.06), (h - 0.04) / 2), 0.03, (h - 0.04) / 2,
                           wood) for su in (-1, 1) for sd in (-1, 1)]
        if rng.random() < 0.6:
            r = rng.uniform(0.06, 0.15)
            parts.append(ellipsoid(at(rng.uniform(-hw + 0.2, hw - 0.2), d / 2, h + r * 1.3), (r, r, 1.3 * r), paint))
        return parts
    if kind == "sofa":
        fabric = Material(hsv(rng, (0, 1), (0.2, 0.7), (0.25, 0.7)), hsv(rng, (0, 1), (0.2, 0.7), (0.2, 0.6)),
                          Pattern.NOISE, 0.3, 0.2)
        d = rng.uniform(0.75, 0.95)
        return [box(at(0, d / 2, 0.21), (hw, d / 2, 0.21), fabric, rot),
                box(at(0, 0.1, 0.6), (hw, 0.1, 0.4), fabric, rot),
                box(at(-hw + 0.08, d / 2, 0.32), (0.08, d / 2, 0.32), fabric, rot),
                box(at(hw - 0.08, d / 2, 0.32), (0.08, d / 2, 0.32), fabric, rot)]
    if kind == "plant":
        pot = Material(hsv(rng, (0, 1), (0.2, 0.6), (0.3, 0.8)), grain=0.1)
        leaves = Material(hsv(rng, (0.22, 0.38), (0.4, 0.8), (0.2, 0.55)), hsv(rng, (0.2, 0.4), (0.4, 0.8), (0.1, 0.3)),
                          Pattern.NOISE, 0.15, 0.25)
        r = rng.uniform(0.3, 0.5)
        return [cylinder(at(0, 0.25, 0.2), 0.18, 0.2, pot), ellipsoid(at(0, 0.25, 0.45 + r), (r, r, 1.4 * r), leaves)]
    shade = Material(hsv(rng, (0.08, 0.15), (0.1, 0.4), (0.7, 1.0)), grain=0.05)
    return [cylinder(at(0, 0.25, 0.02), 0.15, 0.02, paint), cylinder(at(0, 0.25, 0.78), 0.015, 0.76, paint),
            ellipsoid(at(0, 0.25, 1.6), (0.2, 0.2, 0.15), shade)]


def _windows(placer: Placer, rng: np.random.Generator, start: np.ndarray, along: np.ndarray, inward: np.ndarray,
             length: float) -> None:
    """Bright panes with frames on an outer wall, evenly spaced (sky-lit glass: flat, pale blue)."""
    rot = np.array([[along[0], inward[0], 0.0], [along[1], inward[1], 0.0], [0.0, 0.0, 1.0]])
    glass = Material(hsv(rng, (0.53, 0.6), (0.1, 0.3), (0.85, 1.0)), grain=0.05)
    frame = Material(hsv(rng, (0, 1), (0.0, 0.15), (0.7, 0.95)), grain=0.05)
    count = int(length // 2.6)
    width, low, high = rng.uniform(0.7, 1.3) / 2, rng.uniform(0.8, 1.0), rng.uniform(1.9, 2.2)
    for k in range(count):
        xy = start + (k + 0.5) * length / count * along
        z, h = (low + high) / 2, (high - low) / 2
        placer.add([box((*(xy + 0.01 * inward), z), (width, 0.01, h), glass, rot),
                    box((*(xy + 0.025 * inward), z), (width, 0.015, 0.03), frame, rot),
                    box((*(xy + 0.025 * inward), z), (0.03, 0.015, h), frame, rot)])


def _picture(placer: Placer, rng: np.random.Generator, origin: np.ndarray, along: np.ndarray,
             inward: np.ndarray, width: float) -> None:
    rot = np.array([[along[0], inward[0], 0.0], [along[1], inward[1], 0.0], [0.0, 0.0, 1.0]])
    w, h = rng.uniform(0.3, min(width, 1.2)) / 2, rng.uniform(0.25, 0.6)
    art = Material(hsv(rng, (0, 1), (0.3, 0.9), (0.3, 0.9)), hsv(rng, (0, 1), (0.3, 0.9), (0.2, 0.9)),
                   Pattern(rng.choice([Pattern.NOISE, Pattern.CHECKER, Pattern.STRIPES])), float(rng.uniform(0.1, 0.4)))
    xy = origin + 0.015 * inward
    placer.add([box((xy[0], xy[1], rng.uniform(1.45, 1.75)), (w, 0.015, h), art, rot)])


def _centrepiece(placer: Placer, centre: np.ndarray, ring: np.ndarray, rng: np.random.Generator) -> None:
    """A round table with a sculpture, or a pedestal, in the middle of a ring room (radius ≤ 0.6 m, and its
    bounding square clear of the ring's chords)."""
    inner = float(np.linalg.norm(ring - centre, axis=1).min()) * np.cos(np.pi / len(ring))
    radius = min(0.6, (inner - FURNITURE_CLEARANCE - 0.05) / np.sqrt(2))
    cx, cy = centre
    stone = Material(hsv(rng, (0, 1), (0.0, 0.2), (0.4, 0.9)), hsv(rng, (0, 1), (0.0, 0.3), (0.2, 0.6)),
                     Pattern.NOISE, 0.2, 0.15)
    shiny = Material(hsv(rng, (0, 1), (0.4, 0.9), (0.4, 0.95)), hsv(rng, (0, 1), (0.4, 0.9), (0.2, 0.6)),
                     Pattern(rng.choice([Pattern.CHECKER, Pattern.STRIPES, Pattern.PLAIN])), 0.15, 0.1)
    spin = rng.uniform(0, np.pi)
    turned = np.array([[np.cos(spin), -np.sin(spin), 0], [np.sin(spin), np.cos(spin), 0], [0, 0, 1]])
    if rng.random() < 0.5:
        r = radius
        parts = [cylinder((cx, cy, 0.74), r, 0.025, stone), cylinder((cx, cy, 0.37), 0.06, 0.35, stone),
                 cylinder((cx, cy, 0.02), 0.3, 0.02, stone),
                 ellipsoid((cx, cy, 0.95), (0.12, 0.12, 0.2), shiny)]
    else:
        s = radius / np.sqrt(2)
        parts = [box((cx, cy, 0.5), (s * 0.7, s * 0.7, 0.5), stone, turned),
                 box((cx, cy, 1.15), (0.15, 0.15, 0.15), shiny, turned @ random_tilt(rng, 0.8)),
                 ellipsoid((cx, cy, 1.45), (0.12, 0.12, 0.12), shiny)]
    placer.add(parts)


def _unit(v) -> tuple[float, float, float]:
    v = np.asarray(v, dtype=np.float64)
    return tuple(float(x) for x in v / np.linalg.norm(v))
