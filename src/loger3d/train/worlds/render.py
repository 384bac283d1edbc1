"""Batched ray casting of scenes: RGB, exact z-depth and a validity mask, on any torch device.

Rays come in groups that share an origin (a camera) and point within a narrow cone (an image tile of
``tile`` × ``tile`` pixels). Shapes are culled per group in two conservative stages: the group's bounding
cone against every shape's bounding sphere (per camera first, then per tile), then the four planes that bound
the tile's rays against the oriented box around each surviving shape. Only the surviving (group, shape) pairs
are intersected exactly, all the group's rays at once. The nearest hit of a ray is one ``scatter_reduce`` over
int64 keys that pack the hit distance's float bits above the primitive index, so ties resolve the same way
on every device and in every batch.

Cost therefore grows with rays × shapes per tile that survive culling (about 5 on average in a city of 5,000
shapes), plus a cheap ``[frames, tiles, shapes near the camera]`` cone test, rather than with rays × shapes.
Unbounded planes are tested by every ray.

One call renders frames of several scenes at once (``render_many``: one batch of kernels for all of them,
instead of one per scene, which is what keeps a GPU busy when a training step needs 64 clips of 64 worlds).
A frame's pixels depend on its scene and camera alone, never on what else is in the batch.

Depth is the camera-frame z of the hit (rays have camera z = 1, so it is the ray parameter), 0 where the ray
hits nothing within the scene's ``far`` metres (sky); ``valid`` marks the other pixels. Shading is Lambertian
under the scene's directional light plus a hemisphere ambient, with textures from ``textures.py`` and fog
towards the far distance; all of it depends on the surface point only (fog on its distance), never on the view.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from functools import partial
from itertools import groupby

import torch

from ...model.compiled import compiled as compiled_fn
from .camera import camera_rays
from .intersect import intersect_planes, intersect_shapes, shape_surface
from .scene import Kind, Materials, Planes, Scene, Shapes, moved_to
from .textures import albedo, fbm, noise_table

__all__ = ["NEAR", "PAIR_RAYS", "RAYS_PER_BATCH", "FrameLight", "RenderOutput", "SceneStack", "cast", "render",
           "render_many", "shade", "shade_compiled", "shade_split", "trace"]

NEAR = 1e-3
"""Hits closer than this (metres of depth) are ignored."""
RAYS_PER_BATCH = {"cpu": 1 << 22, "cuda": 1 << 24}
"""Rays ``render_many`` casts at once by default, per device type: about 150 frames at 224×126 on a CPU (a few
GB of temporaries), 600 on a GPU, where fewer, larger kernels are what makes it fast."""
PAIR_RAYS = {"cpu": 1 << 21, "cuda": 1 << 25}
"""Ray–shape tests per intersection batch, per device type (temporaries of ~100 MB on a CPU, ~1.5 GB on a GPU)."""
_MISS = torch.iinfo(torch.int64).max
_LIGHT = ("sun", "sun_colour", "sky_ambient", "ground_ambient", "zenith", "horizon", "clouds")


@dataclass
class RenderOutput:
    """``rgb`` ``[N, 3, H, W]`` in [0, 1]; ``depth`` ``[N, H, W]`` z-depth in metres, 0 where nothing was hit;
    ``valid`` ``[N, H, W]`` bool, ``depth > 0``."""

    rgb: torch.Tensor
    depth: torch.Tensor
    valid: torch.Tensor


@dataclass
class FrameLight:
    """Each frame's scene lighting (``scene.Lighting``) as tensors: colours and the sun direction ``[F, 3]``;
    ``fog_start`` (metres), ``clouds`` and the render distance ``far`` ``[F]``."""

    sun: torch.Tensor
    sun_colour: torch.Tensor
    sky_ambient: torch.Tensor
    ground_ambient: torch.Tensor
    zenith: torch.Tensor
    horizon: torch.Tensor
    clouds: torch.Tensor
    fog_start: torch.Tensor
    far: torch.Tensor


@dataclass
class SceneStack:
    """The scenes of one render batch as one set of tables, and which frames belong to which scene.

    ``shapes`` are every scene's shapes, scene after scene (scene ``j``'s from row ``shape_start[j]``);
    ``planes`` likewise; ``materials`` has a row per shape, then one per plane, in those orders. ``plane_rows``
    ``[F, Q]`` are each frame's planes (rows of ``planes``, −1 pads); ``scene_of`` ``[F]`` each frame's scene;
    ``light`` each frame's lighting. For culling, each scene's shapes again, padded to the most any scene has:
    ``padded_centre`` ``[S, P, 3]``, ``padded_radius`` ``[S, P]`` and ``padded_real`` ``[S, P]`` (False on
    padding).
    """

    shapes: Shapes
    shape_start: torch.Tensor
    planes: Planes
    plane_rows: torch.Tensor
    materials: Materials
    scene_of: torch.Tensor
    light: FrameLight
    padded_centre: torch.Tensor
    padded_radius: torch.Tensor
    padded_real: torch.Tensor

    @classmethod
    def of(cls, scenes: Sequence[Scene], counts: Sequence[int], device: torch.device) -> SceneStack:
        """Scenes (already on ``device``) seen by ``counts[j]`` consecutive frames each."""
        shape_counts = [len(s.shapes) for s in scenes]
        plane_counts = [len(s.planes) for s in scenes]

        def cat(tables: list, kind: type):
            return kind(**{f.name: torch.cat([getattr(t, f.name) for t in tables]) for f in fields(kind)})

        materials = cat([_rows(s.materials, slice(0, n)) for s, n in zip(scenes, shape_counts)]
                        + [_rows(s.materials, slice(n, None)) for s, n in zip(scenes, shape_counts)], Materials)
        rows = torch.full((len(scenes), max(plane_counts, default=0)), -1, dtype=torch.int64)
        for j, (first, q) in enumerate(zip(_starts(plane_counts), plane_counts)):
            rows[j, :q] = torch.arange(first, first + q)
        values = {name: [getattr(s.lighting, name) for s in scenes] for name in _LIGHT}
        values["fog_start"] = [s.lighting.fog_start * s.far for s in scenes]
        values["far"] = [s.far for s in scenes]
        # The tables made here on the host go to the device in one copy.
        scene_of, rows, shape_start, *light_values = moved_to(
            [torch.repeat_interleave(torch.arange(len(scenes)), torch.as_tensor(list(counts))), rows,
             torch.tensor(_starts(shape_counts), dtype=torch.int64),
             *(torch.tensor(v, dtype=torch.float32) for v in values.values())], device)
        light = FrameLight(**{k: v[scene_of] for k, v in zip(values, light_values)})
        pad = torch.nn.utils.rnn.pad_sequence
        return cls(cat([s.shapes for s in scenes], Shapes), shape_start,
                   cat([s.planes for s in scenes], Planes), rows[scene_of], materials, scene_of, light,
                   pad([s.shapes.centre for s in scenes], batch_first=True),
                   pad([s.shapes.radius for s in scenes], batch_first=True),
                   pad([torch.ones(n, dtype=torch.bool, device=device) for n in shape_counts], batch_first=True))


def _starts(counts: Sequence[int]) -> list[int]:
    """The first row of each of consecutive blocks of ``counts`` rows."""
    return [sum(counts[:j]) for j in range(len(counts))]


def _rows(materials: Materials, rows: slice) -> Materials:
    """The material table's rows ``rows``."""
    return Materials(**{f.name: getattr(materials, f.name)[rows] for f in fields(Materials)})


def trace(stack: SceneStack, origins: torch.Tensor, dirs: torch.Tensor, near: float = NEAR,
          compile_pairs: bool = False) -> tuple[torch.Tensor, ...]:
    """Nearest hits of ray groups: ``origins`` ``[F, 3]``, ``dirs`` ``[F, G, M, 3]`` (G groups of M rays per origin).

    Returns ``t`` ``[F, G, M]`` (ray parameter; ``inf`` for a miss) and ``index`` ``[F, G, M]`` int64, the hit's
    material row in ``stack.materials`` (−1 for a miss). Hits farther than the scene's ``far`` are misses.
    ``compile_pairs``: intersect the culled (group, shape) pairs through ``torch.compile`` (for GPUs: one fused
    kernel a shape kind instead of a gather, a transform and the intersection's dozens; the same hits up to
    float rounding).
    """
    f, g, m, _ = dirs.shape
    shapes = stack.shapes
    pair_keys = {kind: compiled_fn(fn, dynamic=True) for kind, fn in _PAIR_KEYS.items()} if compile_pairs \
        else _PAIR_KEYS
    key = torch.full((f * g, m), _MISS, dtype=torch.int64, device=dirs.device)
    if len(shapes):
        fc, gc, pc = _cull(stack, origins, dirs)
        inside = _in_pyramid(shapes, origins, _pyramid(dirs), fc, gc, pc)
        # Each kind's surviving pairs, in order: one host synchronisation for the counts of all kinds, then
        # selections of known size (selecting by mask waited on the device once per tensor and kind).
        group = torch.where(inside, shapes.kind[pc], len(Kind))
        sizes = torch.bincount(group, minlength=len(Kind) + 1).tolist()
        step = max(1, PAIR_RAYS.get(dirs.device.type, PAIR_RAYS["cpu"]) // m)
        for kind in Kind:
            picked = torch.nonzero_static(group == kind, size=sizes[kind]).squeeze(1)
            for lo in range(0, sizes[kind], step):
                chosen = picked[lo:lo + step]
                ff, gg, pp = fc[chosen], gc[chosen], pc[chosen]
                keys = pair_keys[kind](origins, dirs, shapes.centre, shapes.rotation, shapes.size, ff, gg, pp, near)
                key.scatter_reduce_(0, (ff * g + gg)[:, None].expand(-1, m), keys, "amin")
    if stack.plane_rows.shape[1]:
        rows = stack.plane_rows  # [F, Q]
        normal = stack.planes.normal[rows.clamp(min=0)][:, None, None]  # [F, 1, 1, Q, 3]
        offset = stack.planes.offset[rows.clamp(min=0)][:, None, None]
        t = intersect_planes(origins[:, None, None, :], dirs, normal, offset, near)
        t = torch.where(rows[:, None, None] >= 0, t, float("inf"))
        packed = _pack(t, (rows + len(shapes))[:, None, None])
        key = torch.minimum(key, packed.min(-1).values.view(f * g, m))  # (int64 amin is slow on CPU)
    t = (key >> 32).to(torch.int32).view(torch.float32).view(f, g, m)
    index = (key & 0xFFFFFFFF).view(f, g, m)
    miss = (key == _MISS).view(f, g, m) | (t * dirs.norm(dim=-1) > stack.light.far[:, None, None])
    return torch.where(miss, float("inf"), t), torch.where(miss, -1, index)


def _pair_keys(kind: Kind, origins: torch.Tensor, dirs: torch.Tensor, centre: torch.Tensor, rotation: torch.Tensor,
               size: torch.Tensor, ff: torch.Tensor, gg: torch.Tensor, pp: torch.Tensor, near: float) -> torch.Tensor:
    """Packed hit keys ``[K, M]`` (``_pack``) of the M rays of groups (``ff``, ``gg``) on shapes ``pp`` of one
    ``kind``, all ``[K]``: rays taken into each shape's frame, then intersected exactly."""
    rot = rotation[pp]
    o_local = _rotate_rows(origins[ff] - centre[pp], rot)
    d_local = _rotate_rows(dirs[ff, gg], rot[:, None])
    return _pack(intersect_shapes(kind, o_local, d_local, size[pp], near), pp[:, None])


_PAIR_KEYS = {kind: partial(_pair_keys, kind) for kind in Kind}
"""One function a shape kind, so a compiled one specialises on its kind once."""


def _rotate_rows(v: torch.Tensor, rot: torch.Tensor) -> torch.Tensor:
    """Row vectors ``v`` ``[..., 3]`` times 3×3 matrices ``rot`` ``[..., 3, 3]`` (world to a shape's local frame).
    Written out rather than as ``bmm``: a GPU runs millions of 3×3 products as slow batched matrix–vector
    kernels, while these products fuse (and give the same values as ``bmm`` on the CPU)."""
    return v[..., 0, None] * rot[..., 0, :] + v[..., 1, None] * rot[..., 1, :] + v[..., 2, None] * rot[..., 2, :]


def _pack(t: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """int64 keys ordered like ``t`` (positive float32 bits order as integers), then by ``index``; misses → _MISS."""
    bits = t.contiguous().view(torch.int32).to(torch.int64)
    key = (bits << 32) | index.expand_as(t)
    return torch.where(torch.isinf(t), _MISS, key)


def _cull(stack: SceneStack, origins: torch.Tensor, dirs: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Candidate (frame, group, shape) triples ``fi``, ``gi``, ``pi`` ``[K]`` (``pi`` a row of ``stack.shapes``): the
    shape is in the frame's scene and its bounding sphere meets the group's bounding cone within the far distance.

    Shapes are first culled against each origin's cone over all its groups (``[F, P]``, every scene's shapes
    padded to the most any has), then the shapes that survive for some frame of a scene against each group's cone
    of that scene's frames (``[F, G, P']``); cone–sphere overlap is angle(axis, centre) ≤ spread + asin(r / d),
    compared through cosines. All scenes at once: a fixed number of kernels, whatever the batch holds."""
    unit = torch.nn.functional.normalize(dirs, dim=-1)
    axis = torch.nn.functional.normalize(unit.sum(2), dim=-1)  # [F, G, 3]
    cos_spread = (unit * axis[:, :, None]).sum(-1).amin(-1).clamp(-1.0, 1.0)  # [F, G]
    view = torch.nn.functional.normalize(axis.sum(1), dim=-1)  # [F, 3]
    view_spread = torch.acos((unit * view[:, None, None]).sum(-1).flatten(1).amin(-1).clamp(-1.0, 1.0))
    scene = stack.scene_of
    to_shape = stack.padded_centre[scene] - origins[:, None]  # [F, P, 3]
    dist = to_shape.norm(dim=-1).clamp_min(1e-9)
    radius = stack.padded_radius[scene] + 1e-3
    sin_widen = (radius / dist).clamp(max=1.0)
    toward = to_shape / dist[..., None]
    near = (dist - radius < stack.light.far[:, None]) & stack.padded_real[scene]
    inside = dist <= radius
    frame_ok = ((toward * view[:, None]).sum(-1) >= torch.cos((view_spread[:, None] + torch.asin(sin_widen))
                                                            .clamp(max=torch.pi)) - 1e-6) | inside
    reach = frame_ok & near  # [F, P]
    seen = torch.zeros(stack.padded_real.shape, dtype=torch.int32, device=dirs.device)
    seen = seen.index_add_(0, scene, reach.to(torch.int32)) > 0  # [S, P]: in reach of some frame of the scene
    width = int(seen.sum(1).max())
    order = torch.argsort((~seen).to(torch.uint8), dim=1, stable=True)[:, :width]  # [S, P']: those shapes first
    keep, kept = order[scene], seen.gather(1, order)[scene]  # [F, P']: shape index, and whether it is one
    sin_w = sin_widen.gather(1, keep)
    cos_w = torch.sqrt(1.0 - sin_w**2)
    sin_s = torch.sqrt(1.0 - cos_spread**2)
    limit = cos_spread[..., None] * cos_w[:, None] - sin_s[..., None] * sin_w[:, None]  # cos(spread + widen)
    limit = torch.where((cos_spread < 0)[..., None], -2.0, limit)  # spread > 90°: everything is in reach
    cos_angle = torch.bmm(axis, toward.gather(1, keep[..., None].expand(-1, -1, 3)).transpose(1, 2))  # [F, G, P']
    mask = ((cos_angle >= limit - 1e-6) | inside.gather(1, keep)[:, None]) & (reach.gather(1, keep) & kept)[:, None]
    fi, gi, pk = mask.nonzero(as_tuple=True)
    return fi, gi, stack.shape_start[scene[fi]] + keep[fi, pk]


def _pyramid(dirs: torch.Tensor) -> torch.Tensor:
    """Inward normals ``[F, G, 4, 3]`` of four planes through the origin that bound each group's rays.

    Rays are measured against the group's mean direction ``a`` and a horizontal ``e1`` ⟂ ``a`` (the camera's
    right for a level camera, so image tiles get tight bounds) and ``e2 = a × e1``; a group wider than about
    ±80° gets zero normals, which bound nothing (the cone test still applies)."""
    axis = torch.nn.functional.normalize(dirs.sum(2), dim=-1)
    up = torch.zeros_like(axis)
    up[..., 2] = 1.0
    side = torch.linalg.cross(axis, up)
    side = torch.where(side.norm(dim=-1, keepdim=True) < 1e-3, torch.linalg.cross(axis, torch.roll(up, 1, -1)), side)
    e1 = torch.nn.functional.normalize(side, dim=-1)
    e2 = torch.linalg.cross(axis, e1)
    along = (dirs * axis[:, :, None]).sum(-1)
    x = (dirs * e1[:, :, None]).sum(-1) / along.clamp_min(1e-9)
    y = (dirs * e2[:, :, None]).sum(-1) / along.clamp_min(1e-9)
    slack = 1e-4
    lo_x, hi_x = x.amin(-1, keepdim=True) - slack, x.amax(-1, keepdim=True) + slack
    lo_y, hi_y = y.amin(-1, keepdim=True) - slack, y.amax(-1, keepdim=True) + slack
    normals = torch.stack([e1 - lo_x * axis, hi_x * axis - e1, e2 - lo_y * axis, hi_y * axis - e2], dim=2)
    narrow = (along > 0.17 * dirs.norm(dim=-1)).all(-1)
    return normals * narrow[..., None, None]


def _in_pyramid(shapes: Shapes, origins: torch.Tensor, normals: torch.Tensor, fi: torch.Tensor, gi: torch.Tensor,
                pi: torch.Tensor) -> torch.Tensor:
    """``[K]`` bool: the oriented box around shape ``pi`` is not wholly outside a bounding plane of group
    (``fi``, ``gi``)."""
    n = normals[fi, gi]  # [K, 4, 3]
    offset = (n * (shapes.centre[pi] - origins[fi])[:, None, :]).sum(-1)
    reach = (_rotate_rows(n, shapes.rotation[pi][:, None]).abs() * shapes.size[pi][:, None, :]).sum(-1)
    return (offset + reach >= 0).all(-1)


def shade(stack: SceneStack, origins: torch.Tensor, dirs: torch.Tensor, t: torch.Tensor, index: torch.Tensor,
          pixel_angle: torch.Tensor) -> torch.Tensor:
    """Colours ``[F, G, M, 3]`` in [0, 1] of traced rays (``trace``'s inputs and outputs); ``pixel_angle`` ``[F]``
    is the angle one pixel spans (1 / fx), which sets texture filtering. Each surface term is computed only where
    it applies (the hits, each texture's pixels, the cloudy frames' rays): least arithmetic, many small kernels."""
    f, g, m, _ = dirs.shape
    flat_dirs = dirs.reshape(-1, 3)
    length = flat_dirs.norm(dim=-1)
    unit = flat_dirs / length[:, None]
    ray_frame = torch.arange(f, device=dirs.device).repeat_interleave(g * m)
    rgb = _sky(stack.light, unit, ray_frame)
    flat_index = index.reshape(-1)
    hit = (flat_index >= 0).nonzero().squeeze(-1)
    if hit.numel() == 0:
        return rgb.view(f, g, m, 3)
    rgb[hit] = _surface(stack, origins, unit[hit], t.reshape(-1)[hit] * length[hit], hit // (g * m), flat_index[hit],
                        pixel_angle, dense=False)
    return rgb.view(f, g, m, 3)


def shade_split(stack: SceneStack, origins: torch.Tensor, dirs: torch.Tensor, t: torch.Tensor, index: torch.Tensor,
                pixel_angle: torch.Tensor, compile: bool = False) -> torch.Tensor:
    """``shade``'s colours, with the sky computed for the rays that miss and the surfaces for those that hit (one
    host synchronisation to split them), and within each every term for every ray, picked per ray: no
    data-dependent shapes inside either part, so ``torch.compile`` fuses each into a few kernels (``compile``;
    dynamic shapes: one compilation serves every batch). Eager, the colours are ``shade``'s bit for bit (tested);
    compiled, up to float rounding."""
    f, g, m, _ = dirs.shape
    flat_index = index.reshape(-1)
    hits = flat_index >= 0
    hit = hits.nonzero().squeeze(-1)  # the one host synchronisation
    miss = torch.nonzero_static(~hits, size=flat_index.numel() - hit.numel()).squeeze(-1)
    sky, surface = _sky_of_rays, _surface_of_rays
    if compile:
        noise_table(dirs.device)  # made eagerly: drawn from a seeded generator, which a compiled graph cannot hold
        sky, surface = compiled_fn(sky, dynamic=True), compiled_fn(surface, dynamic=True)
    rgb = torch.empty((f * g * m, 3), dtype=dirs.dtype, device=dirs.device)
    if miss.numel():
        rgb[miss] = sky(stack.light, dirs, miss, g * m)
    if hit.numel():
        rgb[hit] = surface(stack, origins, dirs, t, index, hit, g * m, pixel_angle)
    return rgb.view(f, g, m, 3)


def shade_compiled(stack: SceneStack, origins: torch.Tensor, dirs: torch.Tensor, t: torch.Tensor, index: torch.Tensor,
                   pixel_angle: torch.Tensor) -> torch.Tensor:
    """``shade_split`` through ``torch.compile``: the same colours up to float rounding, in a few fused kernels
    instead of thousands of small ones. It goes through ``model.compiled`` like the model's layers, so that the
    loader's thread and the training step never trace and run compiled code at once."""
    return shade_split(stack, origins, dirs, t, index, pixel_angle, compile=True)


def _sky_of_rays(light: FrameLight, dirs: torch.Tensor, rays: torch.Tensor, per_frame: int) -> torch.Tensor:
    """Sky colours ``[R, 3]`` of rays ``rays`` ``[R]`` (flat indices into ``dirs`` ``[F, G, M, 3]``, ``per_frame``
    = G·M rays a frame), every term for every ray."""
    d = dirs.reshape(-1, 3)[rays]
    return _sky(light, d / d.norm(dim=-1)[:, None], rays // per_frame, dense=True)


def _surface_of_rays(stack: SceneStack, origins: torch.Tensor, dirs: torch.Tensor, t: torch.Tensor, index: torch.Tensor,
                     rays: torch.Tensor, per_frame: int, pixel_angle: torch.Tensor) -> torch.Tensor:
    """Surface colours ``[R, 3]`` of the hits of rays ``rays`` ``[R]`` (as ``_sky_of_rays``), every texture for
    every ray."""
    d = dirs.reshape(-1, 3)[rays]
    length = d.norm(dim=-1)
    return _surface(stack, origins, d / length[:, None], t.reshape(-1)[rays] * length, rays // per_frame,
                    index.reshape(-1)[rays], pixel_angle, dense=True)


def _surface(stack: SceneStack, origins: torch.Tensor, d: torch.Tensor, dist: torch.Tensor, frame: torch.Tensor,
             rows: torch.Tensor, pixel_angle: torch.Tensor, dense: bool) -> torch.Tensor:
    """Colours ``[R, 3]`` of surface points seen along unit directions ``d`` ``[R, 3]`` at ``dist`` ``[R]`` metres
    from frame ``frame``'s camera, on material rows ``rows`` ``[R]`` (shapes, then planes)."""
    light, shapes, planes, materials = stack.light, stack.shapes, stack.planes, stack.materials
    point = origins[frame] + dist[:, None] * d
    n_shapes = len(shapes)
    on_shape = rows < n_shapes
    srow = rows.clamp(max=max(n_shapes - 1, 0))
    prow = (rows - n_shapes).clamp(min=0)
    if n_shapes:
        rot = shapes.rotation[srow]
        local = _rotate_rows(point - shapes.centre[srow], rot)
        s_normal, s_u, s_v, s_vertical = shape_surface(shapes.kind[srow], local, shapes.size[srow])
        s_normal = _rotate_rows(s_normal, rot.mT)  # back to the world: rot times the column vector
    else:
        local = s_normal = point
        s_u = s_v = dist
        s_vertical = torch.zeros_like(on_shape)
    if len(planes):
        p_normal = planes.normal[prow]
        tangent = planes.tangent[prow]
        p_u, p_v = (point * tangent[:, 0]).sum(-1), (point * tangent[:, 1]).sum(-1)
        p_vertical = p_normal[:, 2].abs() < 0.5
    else:
        p_normal, p_u, p_v, p_vertical = s_normal, s_u, s_v, s_vertical
    pick = on_shape[:, None]
    normal = torch.where(pick, s_normal, p_normal)
    normal = torch.where(((normal * d).sum(-1) > 0)[:, None], -normal, normal)
    solid = torch.where((on_shape & ~materials.world_space[rows])[:, None], local, point)
    u, v = torch.where(on_shape, s_u, p_u), torch.where(on_shape, s_v, p_v)
    vertical = torch.where(on_shape, s_vertical, p_vertical)

    footprint = dist * pixel_angle[frame] / (normal * d).sum(-1).abs().clamp_min(0.25)
    colour = albedo(materials, rows, u, v, solid, footprint, vertical, dense)
    up = 0.5 + 0.5 * normal[:, 2:3]
    ambient = torch.lerp(light.ground_ambient[frame], light.sky_ambient[frame], up)
    direct = (normal * light.sun[frame]).sum(-1).clamp_min(0.0)[:, None] * light.sun_colour[frame]
    colour = colour * (ambient + direct)
    fog_start, far = light.fog_start[frame], light.far[frame]
    fog = ((dist - fog_start) / (far - fog_start).clamp_min(1e-6)).clamp(0.0, 1.0) ** 2
    colour = torch.lerp(colour, light.horizon[frame], fog[:, None])
    return colour.clamp(0.0, 1.0)


def _sky(light: FrameLight, unit: torch.Tensor, frame: torch.Tensor, dense: bool = False) -> torch.Tensor:
    """Sky colour ``[R, 3]`` of rays ``unit`` ``[R, 3]`` from frames ``frame`` ``[R]``: horizon-to-zenith gradient,
    a sun glow, and clouds where the scene has them (for every ray when ``dense``; a cloudless frame's weight
    is 0, which leaves its colour exactly)."""
    up = unit[:, 2]
    rgb = torch.lerp(light.horizon[frame], light.zenith[frame], up.clamp(0.0, 1.0).sqrt()[:, None])
    rgb = rgb * (1.0 - 0.25 * (-3.0 * up).clamp(0.0, 1.0))[:, None]
    toward = (unit * light.sun[frame]).sum(-1).clamp_min(0.0)
    rgb = rgb + (0.5 * toward ** 256 + 0.12 * toward ** 8)[:, None] * light.sun_colour[frame]
    if dense:
        return _clouds(rgb, unit, light.clouds[frame]).clamp(0.0, 1.0)
    cloudy = (light.clouds[frame] > 0).nonzero().squeeze(-1)
    if cloudy.numel():
        rgb[cloudy] = _clouds(rgb[cloudy], unit[cloudy], light.clouds[frame[cloudy]])
    return rgb.clamp(0.0, 1.0)


def _clouds(rgb: torch.Tensor, unit: torch.Tensor, clouds: torch.Tensor) -> torch.Tensor:
    """Sky colours ``rgb`` ``[R, 3]`` under clouds of cover ``clouds`` ``[R]`` (0: none), rays ``unit`` ``[R, 3]``."""
    up = unit[:, 2]
    above = up.clamp_min(0.02)
    plane = torch.cat([unit[:, :2] / above[:, None], torch.zeros_like(above[:, None])], -1) * 1.5
    cover = ((fbm(plane, torch.zeros_like(above), octaves=4) - 0.45) * 4.0).clamp(0.0, 1.0)
    cover = cover * clouds * (up * 8.0).clamp(0.0, 1.0)
    return torch.lerp(rgb, torch.full_like(rgb, 0.95), cover[:, None])


def render_many(scenes: Sequence[Scene], poses: Sequence[torch.Tensor], k: Sequence[torch.Tensor], height: int,
                width: int, device: torch.device | str, frames_per_batch: int | None = None,
                tile: int = 14, compiled: bool = False) -> list[RenderOutput]:
    """Render ``poses[j]`` ``[N_j, 4, 4]`` (camera-to-world) of ``scenes[j]`` with intrinsics ``k[j]`` ``[N_j, 3, 3]``,
    for every ``j`` at once, ``frames_per_batch`` frames (across scenes; default: as many as make
    ``RAYS_PER_BATCH`` rays for the device) at a time on ``device``.

    Returns one ``RenderOutput`` per scene, on ``device``; frame ``i`` of scene ``j`` is the same whatever else is
    rendered with it. ``compiled``: intersect the culled pairs and shade through ``torch.compile``
    (``trace(compile_pairs=True)``, ``shade_compiled``; for GPUs: the first call compiles, and the hits and colours
    are the eager ones up to float rounding)."""
    device = torch.device(device)
    scenes = [s if s.device == device else s.to(device) for s in scenes]
    counts = [int(p.shape[0]) for p in poses]
    rows, cols = -(-height // tile), -(-width // tile)
    rays = RAYS_PER_BATCH.get(device.type, RAYS_PER_BATCH["cpu"])
    per_batch = frames_per_batch or max(1, rays // (rows * cols * tile * tile))
    all_poses = torch.cat([p.to(device=device, dtype=torch.float32) for p in poses])
    all_k = torch.cat([kk.to(device=device, dtype=torch.float32) for kk in k])
    owner = [j for j, c in enumerate(counts) for _ in range(c)]  # each frame's scene, in order
    rgbs, depths = [], []
    for lo in range(0, len(owner), per_batch):
        hi = min(lo + per_batch, len(owner))
        present = [(j, len(list(run))) for j, run in groupby(owner[lo:hi])]
        stack = SceneStack.of([scenes[j] for j, _ in present], [n for _, n in present], device)
        pose, kk = all_poses[lo:hi], all_k[lo:hi]
        f = hi - lo
        cam = camera_rays(kk, rows * tile, cols * tile)
        dirs = torch.einsum("fij,fhwj->fhwi", pose[:, :3, :3], cam)
        dirs = dirs.view(f, rows, tile, cols, tile, 3).transpose(2, 3).reshape(f, rows * cols, tile * tile, 3)
        origins = pose[:, :3, 3]
        t, index = trace(stack, origins, dirs, compile_pairs=compiled)
        shading = shade_compiled if compiled else shade
        rgb = shading(stack, origins, dirs, t, index, 1.0 / kk[:, 0, 0])
        rgbs.append(_untile(rgb, rows, cols, height, width).permute(0, 3, 1, 2))
        depths.append(_untile(torch.where(index >= 0, t, 0.0), rows, cols, height, width))
    depth = torch.cat(depths)
    rgb = torch.cat(rgbs).contiguous()
    return [RenderOutput(rgb=c, depth=d, valid=d > 0) for c, d in zip(rgb.split(counts), depth.split(counts))]


def render(scene: Scene, poses: torch.Tensor, k: torch.Tensor, height: int, width: int,
           device: torch.device | str | None = None, frames_per_batch: int = 8, tile: int = 14) -> RenderOutput:
    """Render camera-to-world ``poses`` ``[N, 4, 4]`` of one scene with intrinsics ``k`` ``[3, 3]`` or
    ``[N, 3, 3]``, ``frames_per_batch`` frames at a time on ``device`` (default: the scene's)."""
    device = torch.device(device) if device is not None else scene.device
    n = poses.shape[0]
    k = k.expand(n, 3, 3) if k.dim() == 2 else k
    return render_many([scene], [poses], [k], height, width, device, frames_per_batch, tile)[0]


def _untile(x: torch.Tensor, rows: int, cols: int, height: int, width: int) -> torch.Tensor:
    """``[F, rows · cols, tile², ...]`` → ``[F, height, width, ...]`` (tiles in row-major order, padding cropped)."""
    tile = int(round(x.shape[2] ** 0.5))
    x = x.view(x.shape[0], rows, cols, tile, tile, *x.shape[3:]).transpose(2, 3)
    return x.reshape(x.shape[0], rows * tile, cols * tile, *x.shape[5:])[:, :height, :width]


def cast(scene: Scene, pose: torch.Tensor, k: torch.Tensor, uv: torch.Tensor, group: int = 64) -> torch.Tensor:
    """Exact depth ``[R]`` (0 for a miss) seen by one camera (``pose`` ``[4, 4]``, ``k`` ``[3, 3]``) through
    sub-pixel image points ``uv`` ``[R, 2]`` (u = column, v = row). Rays are grouped by nearby points in image
    order so the cone culling stays tight."""
    device = scene.device
    pose, k, uv = pose.to(device, torch.float32), k.to(device, torch.float32), uv.to(device, torch.float32)
    order = torch.argsort(torch.floor(uv[:, 1] / 16) * 1e6 + uv[:, 0])
    r = uv.shape[0]
    pad = -r % group
    ordered = torch.cat([uv[order], uv[order][-1:].expand(pad, 2)]) if r else uv
    cam = torch.cat([(ordered[:, :1] - k[0, 2]) / k[0, 0], (ordered[:, 1:] - k[1, 2]) / k[1, 1],
                     torch.ones_like(ordered[:, :1])], -1)
    dirs = (cam @ pose[:3, :3].T).view(1, -1, group, 3)
    t, index = trace(SceneStack.of([scene], [1], device), pose[None, :3, 3], dirs)
    depth = torch.where(index >= 0, t, 0.0).reshape(-1)[:r]
    return torch.empty_like(depth).scatter_(0, order, depth)
