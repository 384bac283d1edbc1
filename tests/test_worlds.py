"""Synthetic worlds: exact depth, depth/pose agreement across frames, determinism, smooth collision-free paths."""

import math
from dataclasses import fields

import numpy as np
import pytest
import torch

from loger3d.train.worlds import (
    FAMILIES,
    MIN_CLEARANCE,
    SyntheticWorld,
    WorldConfig,
    cast,
    clearance,
    intrinsics,
    make_scene,
    make_sequence,
    render,
    trajectory,
)
from loger3d.train.worlds.camera import camera_rays, pose_matrices, rotation_ypr
from loger3d.train.worlds.scene import Ground, Lighting, Material, SceneBuilder, box, cylinder, ellipsoid, packed_to

TRAJECTORIES = ("walk", "drive", "orbit")
H, W = 84, 112  # multiples of 14, small for speed
GAP = {"walk": 6, "drive": 3, "orbit": 8}  # frames between compared views: overlap with real motion
MAX_STEP = {"walk": 0.3, "drive": 1.6, "orbit": 0.6}  # metres per frame at 10 fps, with slack over top speeds
MAX_TURN = {"walk": 20.0, "drive": 10.0, "orbit": 10.0}  # degrees per frame


@pytest.fixture(scope="module")
def scenes():
    cache = {}

    def get(family: str, seed: int):
        if (family, seed) not in cache:
            cache[family, seed] = make_scene(family, seed)
        return cache[family, seed]

    return get


def _empty_scene(*parts, plane=None):
    builder = SceneBuilder(np.random.default_rng(0))
    builder.add(*parts)
    if plane is not None:
        builder.plane(*plane, Material((0.5, 0.5, 0.5)))
    return builder.build(family="test", seed=0, lighting=Lighting(sun=(0.0, 0.0, 1.0)), far=100.0, ground=Ground(),
                         nav={}, orbits=[])


def _look(x: float, y: float, z: float, yaw: float = 0.0, pitch: float = 0.0) -> torch.Tensor:
    return pose_matrices(np.array([[x, y, z]]), rotation_ypr(np.array([yaw]), np.array([pitch]), np.array([0.0])))


# --- conventions and exact depth on constructed scenes ---------------------------------------------------------

def test_camera_conventions():
    k = intrinsics(W, H, 60.0)
    assert k[0, 2] == (W - 1) / 2 and k[1, 2] == (H - 1) / 2 and k[0, 0] == k[1, 1]
    rays = camera_rays(k[None], H, W)[0]
    assert torch.allclose(rays[..., 2], torch.ones(H, W))
    assert rays[0, 0, 0] < 0 and rays[0, 0, 1] < 0  # top-left pixel: left (−x) and up (−y)
    rot = rotation_ypr(np.array([0.3]), np.array([0.0]), np.array([0.0]))[0]
    assert np.allclose(rot[:, 1], [0, 0, -1])  # camera y points down in the z-up world
    assert np.allclose(rot[:, 2], [math.cos(0.3), math.sin(0.3), 0])  # z forward along the heading
    assert np.allclose(rot.T @ rot, np.eye(3)) and np.isclose(np.linalg.det(rot), 1.0)


def test_fronto_parallel_plane_has_constant_depth():
    d = 7.25
    scene = _empty_scene(plane=((1.0, 0.0, 0.0), d))
    out = render(scene, _look(0, 0, 0), intrinsics(W, H, 70.0), H, W)
    assert out.valid.all()
    assert torch.allclose(out.depth, torch.full_like(out.depth, d), rtol=1e-6, atol=0)


def test_shapes_depth_is_exact():
    k = intrinsics(W + 1, H + 1, 50.0)  # odd sizes: a pixel sits on the optical axis
    centre = (H // 2, (W + 1) // 2)
    cases = [(box((10.0, 0.0, 0.0), (1.0, 2.0, 2.0), Material((1, 0, 0))), 9.0),
             (ellipsoid((8.0, 0.0, 0.0), (1.5, 1.5, 1.5), Material((1, 0, 0))), 6.5),
             (ellipsoid((8.0, 0.0, 0.0), (0.5, 2.0, 2.0), Material((1, 0, 0))), 7.5),
             (cylinder((12.0, 0.0, 0.0), 0.75, 3.0, Material((1, 0, 0))), 11.25)]
    for part, expected in cases:
        out = render(_empty_scene(part), _look(0, 0, 0), k, H + 1, W + 1)
        assert out.depth[0, centre[0], centre[1]].item() == pytest.approx(expected, rel=1e-6)
    # the box face is fronto-parallel: constant depth wherever it is seen
    out = render(_empty_scene(cases[0][0]), _look(0, 0, 0), k, H + 1, W + 1)
    seen = out.depth[out.valid]
    assert seen.numel() > 100 and torch.allclose(seen, torch.full_like(seen, 9.0), rtol=1e-6)
    # a tilted camera sees the plane's centre ray at distance d / cos(pitch), i.e. depth d / cos(pitch)
    out = render(_empty_scene(plane=((1.0, 0.0, 0.0), 5.0)), _look(0, 0, 0, pitch=0.3), k, H + 1, W + 1)
    assert out.depth[0, centre[0], centre[1]].item() == pytest.approx(5.0 / math.cos(0.3), rel=1e-6)


def test_cast_equals_render_at_pixel_centres(scenes):
    scene = scenes("street", 5)
    poses = trajectory("drive", scene, 20, seed=5)
    k = intrinsics(W, H, 65.0)
    out = render(scene, poses[10:11], k, H, W)
    rows, cols = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    uv = torch.stack([cols, rows], -1).reshape(-1, 2).float()
    depth = cast(scene, poses[10], k, uv).view(H, W)
    assert torch.equal(depth, out.depth[0])


# --- depth and poses agree across frames -------------------------------------------------------------------------

def _reproject(scene, out, poses, k, i: int, j: int) -> dict:
    """Unproject frame i's valid pixels, project into frame j, and compare with what j sees there.

    ``exact``: the share, among points not occluded in j, whose projected depth is within 1e-3 (relative) of
    the depth of j's ray through the projected sub-pixel point (``cast``, bit-identical to ``render`` at pixel
    centres). ``image``: the same from j's rendered depth map, interpolating inverse depth bilinearly (exact on
    planes, not on curved surfaces), so within 1e-2, away from silhouettes (where the four neighbouring depths
are within 10 % of each other). ``through``: the share of points in
    front of everything j sees around them (j would see through a surface). ``colour``: median colour
    difference of matched points."""
    k64, pose_i, pose_j = k.double(), poses[i].double(), poses[j].double()
    rows, cols = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    valid = out.valid[i]
    z = out.depth[i][valid].double()
    u, v = cols[valid].double(), rows[valid].double()
    cam = torch.stack([(u - k64[0, 2]) / k64[0, 0] * z, (v - k64[1, 2]) / k64[1, 1] * z, z], -1)
    world = cam @ pose_i[:3, :3].T + pose_i[:3, 3]
    in_j = (world - pose_j[:3, 3]) @ pose_j[:3, :3]
    zj = in_j[:, 2]
    uj = k64[0, 0] * in_j[:, 0] / zj + k64[0, 2]
    vj = k64[1, 1] * in_j[:, 1] / zj + k64[1, 2]
    inside = (zj > 0.05) & (uj >= 0) & (uj <= W - 1.001) & (vj >= 0) & (vj <= H - 1.001)
    zj, uj, vj = zj[inside], uj[inside], vj[inside]
    colour_i = out.rgb[i].permute(1, 2, 0)[valid][inside].double()

    # exact: cast the ray of camera j through the projected sub-pixel point
    exact = cast(scene, poses[j], k, torch.stack([uj, vj], -1).float()).double()
    occluded = (exact > 0) & (exact < zj * (1 - 1e-3))
    match = (exact - zj).abs() / zj < 1e-3

    # from the rendered image: inverse depth is affine across a plane in the image, so interpolate 1 / depth
    u0, v0 = uj.floor().long(), vj.floor().long()
    fu, fv = uj - u0, vj - v0
    corners = [(v0, u0, (1 - fu) * (1 - fv)), (v0, u0 + 1, fu * (1 - fv)), (v0 + 1, u0, (1 - fu) * fv),
               (v0 + 1, u0 + 1, fu * fv)]
    depth_j, rgb_j = out.depth[j].double(), out.rgb[j].permute(1, 2, 0).double()
    around = torch.stack([depth_j[r, c] for r, c, _ in corners])  # [4, n]
    # a surface, not a silhouette: the four neighbours are all hits within 10 % of each other
    surface = (around.amin(0) > 0) & (around.amax(0) < 1.1 * around.amin(0))
    image_depth = 1 / sum(w / depth_j[r, c].clamp_min(1e-9) for r, c, w in corners)
    image_occluded = image_depth < zj * (1 - 1e-2)
    image_match = surface & ((image_depth - zj).abs() / zj < 1e-2)
    # seeing through: the point lies in front of everything frame j sees around it
    through = (around.amin(0) > 0) & (zj < around.amin(0) * (1 - 1e-2))
    colour_j = sum(w[:, None] * rgb_j[r, c] for r, c, w in corners)
    colour_error = (colour_i - colour_j).abs().mean(-1)[image_match]
    return {"points": int(inside.sum()),
            "exact": float(match.sum() / (~occluded).sum().clamp_min(1)),
            "image": float(image_match.sum() / (surface & ~image_occluded).sum().clamp_min(1)),
            "through": float(through.sum() / inside.sum().clamp_min(1)),
            "colour": float(colour_error.median()) if colour_error.numel() else 1.0,
            "compared": int((surface & ~image_occluded).sum())}


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("kind", TRAJECTORIES)
def test_depth_and_poses_agree_across_frames(scenes, family, kind):
    seed = 21
    scene = scenes(family, seed)
    poses = trajectory(kind, scene, 40, seed=seed)
    k = intrinsics(W, H, 65.0)
    pairs = [(4, 4 + GAP[kind]), (30, 30 - GAP[kind])]
    frames = sorted({f for p in pairs for f in p})
    out = render(scene, poses[frames], k, H, W)
    index = {f: n for n, f in enumerate(frames)}
    for i, j in pairs:
        r = _reproject(scene, out, poses[frames], k, index[i], index[j])
        assert r["compared"] > 1000, r  # enough overlap that the shares mean something
        assert r["exact"] > 0.995, r
        assert r["image"] > 0.95, r
        assert r["through"] < 0.01, r
        assert r["colour"] < 0.05, r


# --- determinism ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_same_seed_same_world_and_other_seeds_differ(family):
    a, b, c = make_scene(family, 3), make_scene(family, 3), make_scene(family, 4)
    for table in ("shapes", "planes", "materials"):
        for name, tensor in vars(getattr(a, table)).items():
            assert torch.equal(tensor, getattr(getattr(b, table), name)), (table, name)
    assert len(a.shapes) != len(c.shapes) or not torch.equal(a.shapes.centre, c.shapes.centre)
    pa, pb, pc = (trajectory("walk", s, 50, seed=seed) for s, seed in ((a, 3), (b, 3), (c, 4)))
    assert torch.equal(pa, pb) and not torch.equal(pa, pc)


def test_world_is_deterministic_and_windows_equal_a_bigger_render():
    config = WorldConfig(family="indoor", trajectory="walk", seed=8, length=30, height=H, width=W,
                         fov_jitter_deg=10.0, principal_jitter=2.0, frames_per_batch=8)
    first, second = SyntheticWorld(config), SyntheticWorld(config)
    assert torch.equal(first.poses, second.poses) and torch.equal(first.intrinsics, second.intrinsics)
    whole = first.sample(0, 12)
    window = second.sample(5, 4)
    for name in ("images", "depth", "valid", "intrinsics", "poses"):
        assert torch.equal(getattr(window, name), getattr(whole, name)[5:9]), name
    assert window.frames.tolist() == [5, 6, 7, 8]
    assert whole.images.shape == (12, 3, H, W) and whole.images.dtype == torch.float32
    assert 0 <= whole.images.min() and whole.images.max() <= 1
    assert torch.equal(whole.valid, whole.depth > 0)
    other = SyntheticWorld(config, seed=9)
    assert not torch.equal(other.intrinsics, first.intrinsics)


# --- trajectories: smooth, collision-free, any length --------------------------------------------------------

def _turn_degrees(poses: torch.Tensor) -> torch.Tensor:
    rot = poses[:, :3, :3].double()
    rel = rot[:-1].transpose(1, 2) @ rot[1:]
    cos = ((rel.diagonal(dim1=1, dim2=2).sum(-1) - 1) / 2).clamp(-1, 1)
    return torch.rad2deg(torch.arccos(cos))


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("seed", [31, 32])
def test_trajectories_are_smooth_and_collision_free(scenes, family, seed):
    scene = scenes(family, seed)
    for kind in TRAJECTORIES:
        poses = trajectory(kind, scene, 1200, seed=seed)
        assert poses.shape == (1200, 4, 4) and poses.dtype == torch.float32 and torch.isfinite(poses).all()
        rot = poses[:, :3, :3].double()
        eye = torch.eye(3, dtype=torch.float64).expand(1200, 3, 3)
        assert torch.allclose(rot.transpose(1, 2) @ rot, eye, atol=1e-5)
        steps = (poses[1:, :3, 3] - poses[:-1, :3, 3]).norm(dim=-1)
        assert steps.max() < MAX_STEP[kind], (kind, steps.max())
        assert _turn_degrees(poses).max() < MAX_TURN[kind], (kind, _turn_degrees(poses).max())
        assert steps.sum() > 20.0, (kind, "the camera hardly moves in two minutes")
        assert clearance(scene, poses[:, :3, 3].numpy()).min() >= MIN_CLEARANCE, kind


def test_lengths_from_8_to_20000_frames():
    seq = make_sequence("terrain", seed=2, length=8, trajectory="orbit", height=H, width=W)
    assert len(seq) == 8 and seq.poses.shape == (8, 4, 4) and seq.intrinsics.shape == (8, 3, 3)
    assert seq.images.shape == (8, 3, H, W) and seq.depth.shape == (8, H, W)
    for kind in TRAJECTORIES:
        assert trajectory(kind, make_scene("indoor", 2), 1, seed=2).shape == (1, 4, 4)
    long = SyntheticWorld(family="street", trajectory="drive", seed=2, length=20_000, height=H, width=W)
    assert long.poses.shape == (20_000, 4, 4)
    travelled = (long.poses[1:, :3, 3] - long.poses[:-1, :3, 3]).norm(dim=-1).sum()
    assert travelled > 5_000  # kilometres of driving through the city
    turned = _turn_degrees(long.poses).sum()
    assert turned > 360 * 10  # it turns at junctions, again and again
    centres = long.poses[::10, :3, 3]
    near = torch.cdist(centres, centres) < 3.0
    apart = (torch.arange(len(centres))[:, None] - torch.arange(len(centres))[None]).abs() > 60
    assert (near & apart).any()  # and comes back to places it passed a minute or more before (loops)
    tail = long.sample(19_997, 3)
    assert tail.frames.tolist() == [19_997, 19_998, 19_999] and tail.valid.float().mean() > 0.3
    with pytest.raises(ValueError):
        long.sample(20_000, 1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_render_matches_cpu(scenes):
    scene = scenes("street", 5)
    poses = trajectory("drive", scene, 30, seed=5)[::10]
    k = intrinsics(W, H, 65.0)
    cpu = render(scene, poses, k, H, W)
    gpu = render(scene, poses, k, H, W, device="cuda")
    agree = (gpu.depth.cpu() - cpu.depth).abs() <= 1e-4 * cpu.depth.clamp_min(1)
    assert agree.float().mean() > 0.999
    assert (gpu.rgb.cpu() - cpu.rgb).abs().mean() < 1e-3


def test_packed_copy_gives_every_table_bit_for_bit():
    """A scene goes to a GPU in one packed copy (``packed_to``); unpacked, every table must come back with its
    dtype, shape and bits: street and indoor scenes' tables, and empty (of stride 0 too), bool and non-contiguous
    tensors."""
    odd = [torch.zeros(0, 3), torch.tensor([True, False, True]), torch.arange(5), torch.zeros(1).expand(0),
           torch.randn(2, 3, 3).transpose(1, 2), torch.zeros(0, dtype=torch.int64), torch.ones(1).expand(4)]
    cases = [odd]
    for family in ("street", "indoor"):  # an indoor scene has no planes: empty tables of stride 0
        scene = SyntheticWorld(WorldConfig(family=family, trajectory="drive", seed=3, length=20, height=28,
                                           width=56)).scene
        cases.append([getattr(t, f.name) for t in (scene.shapes, scene.planes, scene.materials) for f in fields(t)])
    for tensors in cases:
        moved = packed_to(tensors, torch.device("cpu"))
        assert all(a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b) for a, b in zip(tensors, moved))
