"""Street family: a grid of city blocks for driving, walking the pavements, and circling blocks.

Streets run along the lines of a grid with random spacings and widths; between them stand blocks: a raised
pavement slab with buildings on lots (some with set-back upper floors and roof boxes), trees and lamps along
the kerb, cars parked along the kerbs away from junctions, and dashed centre lines on the asphalt. An outer
ring of blocks closes the view at the city's edge.

Paths: cars drive the street grid (``nav["drive"]``, junctions as nodes, a lane to the right of the centre
line); people walk around each block on the pavement and cross at the corners (``nav["walk"]``); orbits
follow the four streets around a block while looking at its middle. Parked cars keep the lane clear; street
furniture keeps the pavement walk line clear (``layout.Placer``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .layout import Placer, hsv
from .nav import NavGraph, Orbit
from .scene import Ground, Lighting, Material, Part, Pattern, Scene, SceneBuilder, box, cylinder, ellipsoid, yaw_matrix

__all__ = ["StreetOptions", "street_blocks"]

KERB = 0.15  # pavement height
CAR_GAP = 11.0  # no parked car closer than this to a junction's centre (keeps corners free for turning)
_DRIVE_BAND = (0.1, 6.5)  # camera heights over the road: car roofs, orbits up to 5 m
_WALK_BAND = (0.1, 2.4)  # over the pavement: eyes up to 1.8 m on a 0.15 m kerb, plus margin


@dataclass(frozen=True)
class StreetOptions:
    """Ranges of the city layout in metres (``blocks``: blocks per side of the drivable grid)."""

    blocks: tuple[int, int] = (4, 6)
    block_size: tuple[float, float] = (35.0, 70.0)
    street_width: tuple[float, float] = (11.0, 16.0)
    sidewalk: tuple[float, float] = (2.5, 4.0)
    building_height: tuple[float, float] = (6.0, 38.0)
    lot_width: tuple[float, float] = (9.0, 28.0)
    car_gap: tuple[float, float] = (1.5, 20.0)
    tree_gap: tuple[float, float] = (7.0, 18.0)


def street_blocks(seed: int, **options) -> Scene:
    """The street ``Scene`` of ``seed``; ``options`` override ``StreetOptions`` fields."""
    opt = StreetOptions(**options)
    rng = np.random.default_rng([seed, 200])
    n_x, n_y = (int(rng.integers(opt.blocks[0], opt.blocks[1] + 1)) for _ in range(2))
    xs, wx = _lines(rng, n_x, opt)
    ys, wy = _lines(rng, n_y, opt)
    sidewalk = float(rng.uniform(*opt.sidewalk))
    outer = float(rng.uniform(*opt.block_size))
    bx = [(xs[0] - wx[0] / 2 - outer, xs[0] - wx[0] / 2)] + [
        (xs[i] + wx[i] / 2, xs[i + 1] - wx[i + 1] / 2) for i in range(n_x)] + [
        (xs[-1] + wx[-1] / 2, xs[-1] + wx[-1] / 2 + outer)]
    by = [(ys[0] - wy[0] / 2 - outer, ys[0] - wy[0] / 2)] + [
        (ys[j] + wy[j] / 2, ys[j + 1] - wy[j + 1] / 2) for j in range(n_y)] + [
        (ys[-1] + wy[-1] / 2, ys[-1] + wy[-1] / 2 + outer)]

    builder = SceneBuilder(np.random.default_rng([seed, 201]))
    drive, lane = _drive_graph(xs, ys, wx, wy, sidewalk)
    walk = _walk_graph(bx[1:-1], by[1:-1], sidewalk)
    placer = Placer(builder)
    placer.keep_clear(drive.nodes[drive.edges[:, 0]], drive.nodes[drive.edges[:, 1]], drive.clearance, _DRIVE_BAND)
    placer.keep_clear(walk.nodes[walk.edges[:, 0]], walk.nodes[walk.edges[:, 1]], walk.clearance, _WALK_BAND)

    asphalt = Material(hsv(rng, (0, 1), (0, 0.08), (0.2, 0.32)), hsv(rng, (0, 1), (0, 0.08), (0.12, 0.2)),
                       Pattern.NOISE, float(rng.uniform(2.0, 5.0)), 0.25, world_space=True)
    builder.plane((0, 0, 1), 0.0, asphalt)
    paving = Material(hsv(rng, (0, 1), (0, 0.15), (0.45, 0.75)), hsv(rng, (0, 1), (0, 0.1), (0.3, 0.5)),
                      Pattern.TILES, float(rng.uniform(0.4, 1.0)), 0.12)
    platforms, heights = [], {}
    for i, (x0, x1) in enumerate(bx):
        for j, (y0, y1) in enumerate(by):
            builder.add(box(((x0 + x1) / 2, (y0 + y1) / 2, KERB / 2), ((x1 - x0) / 2, (y1 - y0) / 2, KERB / 2), paving))
            platforms.append((x0, y0, x1, y1, KERB))
            heights[i, j] = _buildings(builder, rng, (x0 + sidewalk, y0 + sidewalk, x1 - sidewalk, y1 - sidewalk), opt)
            _kerbside(placer, rng, (x0, y0, x1, y1), opt)
    _markings(builder, rng, xs, ys, wx, wy)
    for k, x in enumerate(xs):
        _parked(placer, rng, x, wx[k], ys, wy, vertical=True, opt=opt)
    for k, y in enumerate(ys):
        _parked(placer, rng, y, wy[k], xs, wx, vertical=False, opt=opt)

    orbits = []
    for i in range(n_x):
        for j in range(n_y):
            ring = np.array([[xs[i], ys[j]], [xs[i + 1], ys[j]], [xs[i + 1], ys[j + 1]], [xs[i], ys[j + 1]]])
            target = (float(ring[:, 0].mean()), float(ring[:, 1].mean()), float(np.clip(0.4 * heights[i + 1, j + 1],
                                                                                         3.0, 15.0)))
            orbits.append(Orbit(ring=ring, target=target, heights=(1.6, 5.0), clearance=drive.clearance))
    elevation, azimuth = rng.uniform(np.radians(25), np.radians(65)), rng.uniform(0, 2 * np.pi)
    lighting = Lighting(sun=(float(np.cos(elevation) * np.cos(azimuth)), float(np.cos(elevation) * np.sin(azimuth)),
                             float(np.sin(elevation))),
                        zenith=hsv(rng, (0.56, 0.62), (0.4, 0.65), (0.6, 0.85)),
                        horizon=hsv(rng, (0.55, 0.62), (0.05, 0.2), (0.8, 0.95)),
                        clouds=float(rng.uniform(0.2, 0.8)), fog_start=0.45)
    motion = {"drive": {"lateral": lane}, "orbit": {"speed": 3.0, "corner_radius": 6.0, "lateral_accel": 1.5}}
    return builder.build(family="street", seed=seed, lighting=lighting, far=160.0,
                         ground=Ground(platforms=np.array(platforms)), nav={"drive": drive, "walk": walk},
                         orbits=orbits, motion=motion)


def _lines(rng: np.random.Generator, blocks: int, opt: StreetOptions) -> tuple[np.ndarray, np.ndarray]:
    """Street centre lines ``[blocks + 1]`` and their widths, with blocks of random size between them."""
    widths = rng.uniform(*opt.street_width, blocks + 1)
    sizes = rng.uniform(*opt.block_size, blocks)
    steps = widths[:-1] / 2 + sizes + widths[1:] / 2
    return np.r_[0.0, np.cumsum(steps)], widths


def _drive_graph(xs, ys, wx, wy, sidewalk: float) -> tuple[NavGraph, float]:
    """Junction grid; cars parked ``1.1 m`` off the kerb (0.95 m half width) bound the edges' clearance."""
    n_x, n_y = len(xs), len(ys)
    nodes = np.array([[x, y] for x in xs for y in ys])
    edges = [(i * n_y + j, (i + 1) * n_y + j) for i in range(n_x - 1) for j in range(n_y)]
    edges += [(i * n_y + j, i * n_y + j + 1) for i in range(n_x) for j in range(n_y - 1)]
    narrowest = min(wx.min(), wy.min())
    clearance = narrowest / 2 - 2.1
    corner = np.hypot(wx[:, None] / 2 + sidewalk, wy[None, :] / 2 + sidewalk).reshape(-1)
    node_clearance = np.minimum(np.minimum(corner - 0.5, CAR_GAP - 2.5), 9.0)
    lane = narrowest / 4
    return NavGraph(nodes=nodes, edges=np.array(edges), clearance=clearance, node_clearance=node_clearance), lane


def _walk_graph(bx, by, sidewalk: float) -> NavGraph:
    """A loop around each block on the pavement, ``0.55 × sidewalk`` in from the kerb, with crossings between
    the corners of neighbouring blocks."""
    inset = 0.55 * sidewalk
    nodes, edges, ids = [], [], {}
    for i, (x0, x1) in enumerate(bx):
        for j, (y0, y1) in enumerate(by):
            corners = [(x0 + inset, y0 + inset), (x1 - inset, y0 + inset), (x1 - inset, y1 - inset),
                       (x0 + inset, y1 - inset)]
            base = len(nodes)
            nodes += corners
            edges += [(base + k, base + (k + 1) % 4) for k in range(4)]
            ids[i, j] = base
    for (i, j), base in ids.items():
        if (i + 1, j) in ids:  # east neighbour: my SE↔its SW, my NE↔its NW
            other = ids[i + 1, j]
            edges += [(base + 1, other + 0), (base + 2, other + 3)]
        if (i, j + 1) in ids:  # north neighbour: my NW↔its SW, my NE↔its SE
            other = ids[i, j + 1]
            edges += [(base + 3, other + 0), (base + 2, other + 1)]
    clearance = 0.5
    return NavGraph(nodes=np.array(nodes), edges=np.array(edges), clearance=clearance,
                    node_clearance=np.full(len(nodes), clearance))


def _facade(rng: np.random.Generator, height: float) -> Material:
    style = rng.choice(["concrete", "brick", "glass", "plaster"])
    if style == "brick" and height < 20:
        return Material(hsv(rng, (0.0, 0.07), (0.4, 0.7), (0.35, 0.65)), hsv(rng, (0, 1), (0, 0.1), (0.6, 0.85)),
                        Pattern.BRICK, float(rng.uniform(0.4, 0.6)), 0.15)
    if style == "glass":
        return Material(hsv(rng, (0.5, 0.65), (0.1, 0.4), (0.3, 0.6)), hsv(rng, (0.55, 0.65), (0.2, 0.5), (0.15, 0.35)),
                        Pattern.WINDOWS, float(rng.uniform(3.0, 3.8)), 0.1)
    return Material(hsv(rng, (0.05, 0.15), (0.0, 0.35), (0.45, 0.9)), hsv(rng, (0.5, 0.65), (0.1, 0.4), (0.1, 0.3)),
                    Pattern.WINDOWS, float(rng.uniform(2.9, 3.6)), 0.15)


def _buildings(builder: SceneBuilder, rng: np.random.Generator, rect, opt: StreetOptions) -> float:
    """Buildings on lots of ``rect`` (x0, y0, x1, y1); returns the tallest height (0 for an empty block)."""
    x0, y0, x1, y1 = rect
    if x1 - x0 < 4 or y1 - y0 < 4:
        return 0.0
    split_x = (x1 - x0) >= (y1 - y0)
    length, depth = (x1 - x0, y1 - y0) if split_x else (y1 - y0, x1 - x0)
    rows = 2 if depth > 32 and rng.random() < 0.7 else 1
    tallest = 0.0
    for r in range(rows):
        d0, d1 = r * depth / rows, (r + 1) * depth / rows
        cursor = 0.0
        while cursor < length - 3:
            width = min(float(rng.uniform(*opt.lot_width)), length - cursor)
            if length - cursor - width < 5:
                width = length - cursor
            gap = float(rng.uniform(0.0, 2.0)) if rng.random() < 0.4 else 0.0
            a0, a1 = cursor + gap / 2, cursor + width - gap / 2
            cursor += width
            if rng.random() < 0.08:  # an empty lot
                continue
            lot = (x0 + a0, y0 + d0, x0 + a1, y0 + d1) if split_x else (x0 + d0, y0 + a0, x0 + d1, y0 + a1)
            tallest = max(tallest, _building(builder, rng, lot, opt))
    return tallest


def _building(builder: SceneBuilder, rng: np.random.Generator, lot, opt: StreetOptions) -> float:
    x0, y0, x1, y1 = lot
    height = float(np.exp(rng.uniform(np.log(opt.building_height[0]), np.log(opt.building_height[1]))))
    facade = _facade(rng, height)
    cx, cy, hx, hy = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
    builder.add(box((cx, cy, KERB + height / 2), (hx, hy, height / 2), facade))
    top = KERB + height
    if rng.random() < 0.35 and min(hx, hy) > 5:
        inset = rng.uniform(1.5, min(hx, hy) / 2)
        extra = float(rng.uniform(3.0, 12.0))
        builder.add(box((cx, cy, top + extra / 2), (hx - inset, hy - inset, extra / 2), facade))
        top += extra
    roof = Material(hsv(rng, (0, 1), (0, 0.1), (0.3, 0.6)), grain=0.2)
    for _ in range(int(rng.integers(0, 4))):
        s = rng.uniform(0.5, 1.8, 3)
        px, py = cx + rng.uniform(-0.5, 0.5) * hx, cy + rng.uniform(-0.5, 0.5) * hy
        builder.add(box((px, py, KERB + height + s[2] / 2), (s[0], s[1], s[2] / 2), roof))
    return top


def _kerbside(placer: Placer, rng: np.random.Generator, rect, opt: StreetOptions) -> None:
    """Trees and lamps along the four kerbs of a block, off the corners; bins and bollards now and then."""
    x0, y0, x1, y1 = rect
    trunk = Material(hsv(rng, (0.05, 0.1), (0.3, 0.6), (0.2, 0.4)), grain=0.3)
    metal = Material(hsv(rng, (0, 1), (0, 0.2), (0.15, 0.45)), grain=0.05)
    glow = Material((1.0, 0.95, 0.8), grain=0.02)
    kerbs = [((x0, y0), (1, 0), (0, 1), x1 - x0), ((x1, y1), (-1, 0), (0, -1), x1 - x0),
             ((x0, y1), (0, -1), (1, 0), y1 - y0), ((x1, y0), (0, 1), (-1, 0), y1 - y0)]
    for start, along, inward, length in kerbs:
        start, along, inward = np.array(start), np.array(along, float), np.array(inward, float)
        cursor = float(rng.uniform(6.0, 10.0))
        while cursor < length - 6.0:
            xy = start + cursor * along + rng.uniform(0.5, 0.7) * inward
            kind = rng.choice(["tree", "lamp", "bin"], p=[0.55, 0.35, 0.1])
            if kind == "tree":  # crown bottom above the walkers' band, trunk reaching into the crown
                r, bottom = rng.uniform(1.2, 2.6), KERB + rng.uniform(2.45, 3.5)
                zr = rng.uniform(0.8, 1.3) * r
                leaves = Material(hsv(rng, (0.2, 0.35), (0.35, 0.75), (0.2, 0.5)),
                                  hsv(rng, (0.18, 0.35), (0.4, 0.8), (0.1, 0.3)), Pattern.NOISE, 0.8, 0.25)
                h = bottom + 0.5 * zr - KERB
                parts = [cylinder((*xy, KERB + h / 2), rng.uniform(0.12, 0.22), h / 2, trunk),
                         ellipsoid((*xy, bottom + zr), (r, r, zr), leaves)]
            elif kind == "lamp":
                h = rng.uniform(4.5, 7.0)
                head = xy - 0.8 * inward
                arm = (0.45 * abs(inward[0]) + 0.05, 0.45 * abs(inward[1]) + 0.05, 0.04)
                parts = [cylinder((*xy, KERB + h / 2), 0.08, h / 2, metal),
                         box((*(xy - 0.4 * inward), KERB + h), arm, metal),
                         ellipsoid((*head, KERB + h - 0.1), (0.25, 0.25, 0.1), glow)]
            else:
                parts = [cylinder((*xy, KERB + 0.45), 0.28, 0.45, metal)]
            placer.add(parts)
            cursor += float(rng.uniform(*opt.tree_gap))


def _markings(builder: SceneBuilder, rng: np.random.Generator, xs, ys, wx, wy) -> None:
    """Dashed white centre lines on every street between junctions (flat boxes 1 cm high)."""
    paint = Material((0.88, 0.88, 0.82), grain=0.1)
    dash, period = float(rng.uniform(2.0, 3.5)), float(rng.uniform(6.0, 10.0))
    for lines, cross, cross_w, vertical in ((xs, ys, wy, True), (ys, xs, wx, False)):
        for line in lines:
            for k in range(len(cross) - 1):
                a, b = cross[k] + cross_w[k] / 2 + 2.0, cross[k + 1] - cross_w[k + 1] / 2 - 2.0
                for s in np.arange(a, b - dash, period):
                    mid = s + dash / 2
                    centre = (line, mid, 0.005) if vertical else (mid, line, 0.005)
                    half = (0.07, dash / 2, 0.005) if vertical else (dash / 2, 0.07, 0.005)
                    builder.add(box(centre, half, paint))


def _parked(placer: Placer, rng: np.random.Generator, line: float, width: float, cross, cross_w, vertical: bool,
            opt: StreetOptions) -> None:
    """Cars parked along both kerbs of the street on ``line``, none within ``CAR_GAP`` of a junction."""
    for side in (-1.0, 1.0):
        offset = line + side * (width / 2 - 1.1)
        for k in range(len(cross) - 1):
            s, end = cross[k] + CAR_GAP, cross[k + 1] - CAR_GAP
            s += float(rng.uniform(*opt.car_gap))
            while s + 4.4 < end:
                length = float(rng.uniform(3.8, 4.8))
                mid = s + length / 2
                xy = (offset, mid) if vertical else (mid, offset)
                placer.add(_car(rng, xy, length, np.pi / 2 if vertical else 0.0))
                s += length + float(rng.uniform(*opt.car_gap))


def _car(rng: np.random.Generator, xy, length: float, heading: float) -> list[Part]:
    body = Material(hsv(rng, (0, 1), (0.0, 0.85), (0.15, 0.9)), grain=0.06)
    glass = Material(hsv(rng, (0.55, 0.65), (0.1, 0.3), (0.1, 0.25)), grain=0.05)
    tyre = Material((0.06, 0.06, 0.06), grain=0.1)
    rot = yaw_matrix(heading)
    fwd, left = rot[:2, 0], rot[:2, 1]

    def at(f: float, s: float, z: float) -> tuple[float, float, float]:
        p = np.asarray(xy) + f * fwd + s * left
        return (float(p[0]), float(p[1]), z)

    half = length / 2
    wheel_axis = rot @ np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], dtype=np.float64)  # local z along the car's left
    parts = [box(at(0, 0, 0.7), (half, 0.9, 0.35), body, rot),
             box(at(-0.1 * half, 0, 1.3), (0.55 * half, 0.8, 0.28), glass, rot)]
    parts += [cylinder(at(f * 0.68 * half, s * 0.82, 0.34), 0.34, 0.11, tyre, wheel_axis)
              for f in (-1, 1) for s in (-1, 1)]
    return parts
