"""Point filtering as the official demos, bounded voxel fusion, and PLY/GLB files."""

import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from loger3d.sinks.cloud import VoxelCloud, filter_mask
from loger3d.sinks.pointcloud import read_ply, write_glb, write_ply


def official_mask(depth: np.ndarray, conf: np.ndarray, threshold: float = 0.1, rtol: float = 0.03) -> np.ndarray:
    """The official demo's mask: ``conf > threshold`` and not ``depth_edge(depth, rtol)`` (max_pool2d, padding 1)."""
    d = torch.from_numpy(depth)[:, None]
    diff = F.max_pool2d(d, 3, stride=1, padding=1) + F.max_pool2d(-d, 3, stride=1, padding=1)
    edge = (diff / d).nan_to_num_() > rtol
    return ((torch.from_numpy(conf) > threshold) & ~edge[:, 0]).numpy()


def test_filter_mask_marks_a_depth_step_and_keeps_flat_regions():
    depth = np.ones((1, 10, 12), np.float32)
    depth[:, :, 6:] = 2.0
    mask = filter_mask(depth, np.ones_like(depth))
    assert not mask[0, :, 5:7].any()  # both sides of the step
    assert mask[0, :, :5].all() and mask[0, :, 7:].all()  # flat, borders included


def test_filter_mask_threshold_and_invalid_depth():
    depth = np.full((2, 8, 8), 3.0, np.float32)
    conf = np.full_like(depth, 0.5)
    conf[0, 0, 0], conf[0, 0, 1] = 0.05, 0.1  # below, and at the threshold (strict, as official)
    depth[1, 4, 4], depth[1, 0, 7], depth[1, 7, 0] = np.nan, 0.0, -1.0
    mask = filter_mask(depth, conf, threshold=0.1)
    assert not mask[0, 0, 0] and not mask[0, 0, 1] and mask[0, 0, 2]
    assert not mask[1, 4, 4] and mask[1, 3:6, 3:6].sum() == 8  # a NaN is no neighbour: the rest stay
    assert not mask[1, 0, 7] and not mask[1, 7, 0]


def test_filter_mask_equals_the_official_formula():
    rng = np.random.default_rng(0)
    depth = np.exp(np.cumsum(rng.normal(scale=0.02, size=(3, 20, 28)), axis=2)).astype(np.float32)
    conf = rng.uniform(size=depth.shape).astype(np.float32)
    mask = filter_mask(depth, conf)
    np.testing.assert_array_equal(mask, official_mask(depth, conf))
    assert 0 < mask.mean() < 1


def grid_batch(points: np.ndarray, colors: np.ndarray):
    """``[k, 3]`` points and colours as one frame of ``1×k`` pixels, all masked in."""
    return points[None, None], colors[None, None].astype(np.uint8), np.ones((1, 1, len(points)), bool)


def test_points_in_one_voxel_are_averaged_across_batches():
    cloud = VoxelCloud(voxel_size=1.0)
    cloud.add(
        *grid_batch(
            np.array([[0.1, 0.2, 0.3], [0.5, 0.6, 0.7], [5.5, 0.5, 0.5]]),
            np.array([[0, 0, 0], [100, 50, 10], [9, 9, 9]]),
        )
    )
    cloud.add(*grid_batch(np.array([[0.9, 0.1, 0.2]]), np.array([[200, 250, 20]])))
    xyz, rgb = cloud.points()
    assert len(cloud) == 2 and xyz.dtype == np.float32 and rgb.dtype == np.uint8
    np.testing.assert_allclose(xyz[0], [0.5, 0.3, 0.4], rtol=1e-6)  # count-weighted over both batches
    np.testing.assert_array_equal(rgb[0], [100, 100, 10])
    np.testing.assert_allclose(xyz[1], [5.5, 0.5, 0.5])


def test_mask_nan_and_far_points_are_left_out():
    points = np.array([[0.5, 0.5, 0.5], [np.nan, 0, 0], [1e9, 0, 0], [2.5, 0.5, 0.5]])
    pts, col, mask = grid_batch(points, np.zeros((4, 3)))
    mask[0, 0, 3] = False
    cloud = VoxelCloud(voxel_size=1.0)
    cloud.add(pts, col, mask)
    np.testing.assert_allclose(cloud.points()[0], [[0.5, 0.5, 0.5]])


def test_bounded_size_doubles_the_voxel_like_binning_at_that_size():
    g = np.stack(np.meshgrid(np.arange(10), np.arange(10), [0], indexing="ij"), -1).reshape(-1, 3) + 0.25
    colors = np.random.default_rng(0).integers(0, 256, (100, 3))
    bounded = VoxelCloud(voxel_size=1.0, max_points=30)
    bounded.add(*grid_batch(g[:50], colors[:50]))
    bounded.add(*grid_batch(g[50:], colors[50:]))
    assert bounded.voxel_size == 2.0 and len(bounded) == 25
    direct = VoxelCloud(voxel_size=2.0)
    direct.add(*grid_batch(g, colors))
    for a, b in zip(bounded.points(), direct.points()):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_deterministic():
    rng = np.random.default_rng(1)
    pts = rng.normal(size=(2, 6, 7, 3)).astype(np.float32)
    col = rng.integers(0, 256, size=(2, 6, 7, 3)).astype(np.uint8)
    mask = rng.uniform(size=(2, 6, 7)) > 0.3
    runs = []
    for _ in range(2):
        cloud = VoxelCloud(max_points=40)
        cloud.add(pts[:1], col[:1], mask[:1])
        cloud.add(pts[1:], col[1:], mask[1:])
        runs.append(cloud.points())
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


def test_automatic_voxel_size():
    rng = np.random.default_rng(2)
    directions = rng.normal(size=(2, 4, 5, 3))
    directions /= np.linalg.norm(directions, axis=-1, keepdims=True)
    centers = np.array([[0.0, 0, 0], [10.0, 0, 0]])
    pts = centers[:, None, None] + 3.0 * directions  # every point 3 from its camera
    col = np.zeros(pts.shape, np.uint8)
    cloud = VoxelCloud()
    cloud.add(pts, col, np.ones(pts.shape[:-1], bool), centers=centers)
    assert cloud.voxel_size == pytest.approx(3.0 / 300)
    spread = VoxelCloud()
    spread.add(pts, col, np.ones(pts.shape[:-1], bool))
    expected = np.median(np.linalg.norm(pts.reshape(-1, 3) - np.median(pts.reshape(-1, 3), axis=0), axis=1)) / 300
    assert spread.voxel_size == pytest.approx(expected)


def random_cloud(m: int = 50):
    rng = np.random.default_rng(3)
    return (
        rng.normal(size=(m, 3)).astype(np.float32),
        rng.integers(0, 256, (m, 3)).astype(np.uint8),
        rng.uniform(size=m).astype(np.float32),
    )


def test_ply_round_trip_with_our_reader_plyfile_and_trimesh(tmp_path):
    xyz, rgb, conf = random_cloud()
    path = tmp_path / "cloud.ply"
    write_ply(path, xyz, rgb, extra={"confidence": conf})
    assert [p.name for p in tmp_path.iterdir()] == ["cloud.ply"]
    r_xyz, r_rgb, r_extra = read_ply(path)
    np.testing.assert_array_equal(r_xyz, xyz)
    np.testing.assert_array_equal(r_rgb, rgb)
    np.testing.assert_array_equal(r_extra["confidence"], conf)

    plyfile = pytest.importorskip("plyfile")
    v = plyfile.PlyData.read(str(path))["vertex"]
    np.testing.assert_array_equal(np.stack([v["x"], v["y"], v["z"]], 1), xyz)
    np.testing.assert_array_equal(np.stack([v["red"], v["green"], v["blue"]], 1), rgb)
    np.testing.assert_array_equal(v["confidence"], conf)

    trimesh = pytest.importorskip("trimesh")
    cloud = trimesh.load(str(path))
    np.testing.assert_array_equal(np.asarray(cloud.vertices, np.float32), xyz)
    np.testing.assert_array_equal(np.asarray(cloud.colors)[:, :3], rgb)


def test_ply_without_extra_and_bad_inputs(tmp_path):
    xyz, rgb, _ = random_cloud(0)
    write_ply(tmp_path / "empty.ply", xyz, rgb)
    r_xyz, r_rgb, r_extra = read_ply(tmp_path / "empty.ply")
    assert r_xyz.shape == (0, 3) and r_rgb.shape == (0, 3) and r_extra == {}
    with pytest.raises(ValueError, match="uint8"):
        write_ply(tmp_path / "bad.ply", np.zeros((2, 3)), np.zeros((2, 3)))
    (tmp_path / "ascii.ply").write_text("ply\nformat ascii 1.0\nelement vertex 0\nend_header\n")
    with pytest.raises(ValueError, match="binary_little_endian"):
        read_ply(tmp_path / "ascii.ply")
    assert not (tmp_path / "bad.ply").exists()


def test_glb(tmp_path, monkeypatch):
    trimesh = pytest.importorskip("trimesh")
    xyz, rgb, _ = random_cloud()
    cameras = np.tile(np.eye(4), (2, 1, 1))
    cameras[1, :3, 3] = [1.0, 0, 0]
    write_glb(tmp_path / "scene.glb", xyz, rgb, cameras=cameras)
    scene = trimesh.load(str(tmp_path / "scene.glb"))
    points = scene.geometry["points"]
    np.testing.assert_allclose(points.vertices, xyz * [1, -1, -1], rtol=1e-6)  # OpenCV → glTF (y up)
    np.testing.assert_array_equal(np.asarray(points.colors)[:, :3], rgb)
    assert len(scene.geometry["cameras"].vertices) == 2 * 8 * 2  # 8 segments per camera
    monkeypatch.setitem(sys.modules, "trimesh", None)
    with pytest.raises(ImportError, match="pip install trimesh"):
        write_glb(tmp_path / "other.glb", xyz, rgb)


def test_intrinsics_on_a_pixel_subsample_match_the_full_fit():
    from loger3d.sinks.intrinsics import estimate_intrinsics

    h, w = 40, 56
    K = np.array([[50.0, 0, 27.5], [0, 48.0, 19.0], [0, 0, 1]])
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    z = 1.0 + 0.1 * np.sin(rows / 5.0)[None]
    local = np.stack([(cols - K[0, 2]) / K[0, 0] * z, (rows - K[1, 2]) / K[1, 1] * z, z], axis=-1)
    for step in (1, 3, 4):
        np.testing.assert_allclose(estimate_intrinsics(local, step=step)[0], K, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("stride", [2, 3])
def test_strided_filter_mask_equals_the_full_mask_subsampled(stride):
    rng = np.random.default_rng(7)
    depth = rng.uniform(1.0, 3.0, size=(2, 17, 23)).astype(np.float32)
    depth[0, 5:, 9:] += 4.0  # depth steps
    depth[1, ::4, ::5] = np.nan
    conf = rng.uniform(0, 1, size=depth.shape).astype(np.float32)
    for rtol in (0.03, 0.0):
        full = filter_mask(depth, conf, 0.2, rtol)
        np.testing.assert_array_equal(filter_mask(depth, conf, 0.2, rtol, stride=stride), full[:, ::stride, ::stride])


def test_voxel_cloud_state_round_trip_continues_identically():
    rng = np.random.default_rng(8)
    batches = [(rng.normal(size=(2, 6, 7, 3)), rng.integers(0, 255, size=(2, 6, 7, 3)).astype(np.uint8))
               for _ in range(3)]
    mask = np.ones((2, 6, 7), bool)
    straight = VoxelCloud(max_points=60)
    for xyz, rgb in batches:
        straight.add(xyz, rgb, mask)
    first = VoxelCloud(max_points=60)
    first.add(*batches[0], mask)
    resumed = VoxelCloud(max_points=60)
    resumed.load_state_dict({k: np.array(v) for k, v in first.state_dict().items()})
    for xyz, rgb in batches[1:]:
        resumed.add(xyz, rgb, mask)
    assert resumed.voxel_size == straight.voxel_size
    for a, b in zip(resumed.points(), straight.points()):
        np.testing.assert_array_equal(a, b)
    assert np.isnan(VoxelCloud().state_dict()["voxel_size"])  # no size chosen yet
