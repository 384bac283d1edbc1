"""Intrinsics from point maps, the COLMAP text model, and nerfstudio's transforms.json."""

import json

import numpy as np
import pytest

from loger3d.sinks.colmap import read_colmap_text, write_colmap_text
from loger3d.sinks.intrinsics import estimate_intrinsics, estimate_shared_intrinsics, shared_intrinsics
from loger3d.sinks.nerfstudio import OPENCV_TO_OPENGL, write_transforms_json

H, W = 20, 28
K = np.array([[30.0, 0.0, 13.2], [0.0, 31.0, 9.7], [0.0, 0.0, 1.0]])


def local_points(ks: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """Camera-frame points ``[n, H, W, 3]`` seen at pixel (r, c) = (v, u) by cameras ``ks`` ``[n, 3, 3]``."""
    rows, cols = np.mgrid[0:H, 0:W].astype(np.float64)
    x = (cols - ks[:, 0, 2, None, None]) / ks[:, 0, 0, None, None]
    y = (rows - ks[:, 1, 2, None, None]) / ks[:, 1, 1, None, None]
    return np.stack([x * depth, y * depth, depth], axis=-1)


def random_poses(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(n, 3, 3)))
    poses = np.tile(np.eye(4), (n, 1, 1))
    poses[:, :3, :3] = q * np.linalg.det(q)[:, None, None]
    poses[:, :3, 3] = rng.normal(scale=3.0, size=(n, 3))
    return poses


def test_intrinsics_exact_per_frame():
    ks = np.stack([K, K * [[1.2, 1, 1.1], [1, 0.9, 0.95], [1, 1, 1]], K])
    depth = np.random.default_rng(0).uniform(1, 10, (3, H, W))
    np.testing.assert_allclose(estimate_intrinsics(local_points(ks, depth).astype(np.float32)), ks, rtol=1e-5)
    np.testing.assert_allclose(estimate_intrinsics(local_points(ks, depth)), ks, rtol=1e-10)


def test_intrinsics_with_noise_and_a_confidence_mask():
    rng = np.random.default_rng(1)
    ks = np.broadcast_to(K, (2, 3, 3))
    depth = rng.uniform(1, 10, (2, H, W))
    pts = local_points(ks, depth) * rng.uniform(0.8, 1.2, (2, H, W, 1))  # depth noise keeps the rays
    pts[..., :2] += rng.normal(scale=1e-6, size=(2, H, W, 2)) * pts[..., 2:]  # and a little off-ray noise
    conf = rng.uniform(0.2, 1.0, (2, H, W))
    outliers = rng.uniform(size=(2, H, W)) < 0.1
    pts[outliers] = rng.normal(size=(int(outliers.sum()), 3)) * 5  # garbage, given zero confidence
    conf[outliers] = 0.0
    pts[0, 0, :4] = [np.nan, 0, 1]  # invalid pixels are skipped whatever their confidence
    pts[1, 3, :4, 2] = -2.0
    np.testing.assert_allclose(estimate_intrinsics(pts, conf), ks, rtol=1e-4)
    np.testing.assert_allclose(estimate_shared_intrinsics(pts, conf), K, rtol=1e-4)


def test_shared_intrinsics_median_and_failed_frames():
    ks = np.stack([K, K, K * [[2, 1, 1], [1, 1, 1], [1, 1, 1]]])
    bad = np.full((1, H, W, 3), np.nan)
    per_frame = estimate_intrinsics(np.concatenate([local_points(ks, np.ones((3, H, W))), bad]))
    assert np.isnan(per_frame[3][[0, 1, 0, 1], [0, 1, 2, 2]]).all()  # fx, fy, cx, cy
    np.testing.assert_allclose(shared_intrinsics(per_frame), K, rtol=1e-10)
    with pytest.raises(ValueError, match="no frame"):
        shared_intrinsics(per_frame[3:])


def test_colmap_round_trip(tmp_path):
    poses = random_poses(4)
    names = [f"frame_{i:06d}" for i in range(4)]
    rng = np.random.default_rng(2)
    xyz, rgb = rng.normal(size=(30, 3)), rng.integers(0, 256, (30, 3)).astype(np.uint8)
    write_colmap_text(tmp_path, names, poses, K, W, H, xyz, rgb)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cameras.txt", "images.txt", "points3D.txt"]
    model = read_colmap_text(tmp_path)
    assert list(model.cameras) == [1] and model.camera_ids.tolist() == [1] * 4
    width, height, k = model.cameras[1]
    assert (width, height) == (W, H)
    np.testing.assert_allclose(k, K, atol=1e-12)
    assert model.image_names == [f"{n}.jpg" for n in names]
    np.testing.assert_allclose(model.poses, poses, rtol=0, atol=1e-9)
    np.testing.assert_allclose(model.xyz, xyz, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(model.rgb, rgb)
    line = (tmp_path / "cameras.txt").read_text().splitlines()[-1].split()
    assert line[1:4] == ["PINHOLE", str(W), str(H)] and float(line[6]) == K[0, 2] + 0.5


def test_colmap_per_frame_cameras(tmp_path):
    ks = np.stack([K, K * [[1.1, 1, 1], [1, 1.1, 1], [1, 1, 1]]])
    write_colmap_text(tmp_path / "a", ["a", "b"], random_poses(2), ks, W, H)
    model = read_colmap_text(tmp_path / "a")
    assert model.camera_ids.tolist() == [1, 2] and model.xyz.shape == (0, 3)
    np.testing.assert_allclose(model.cameras[2][2], ks[1], atol=1e-12)
    write_colmap_text(tmp_path / "b", ["a", "b"], random_poses(2), np.stack([K, K]), W, H)
    assert list(read_colmap_text(tmp_path / "b").cameras) == [1]  # equal per-frame K: one camera
    with pytest.raises(ValueError, match="one per name"):
        write_colmap_text(tmp_path / "c", ["a"], random_poses(2), K, W, H)
    with pytest.raises(ValueError, match="whitespace"):
        write_colmap_text(tmp_path / "d", ["a b"], random_poses(1), K, W, H)
    with pytest.raises(ValueError, match="uint8"):
        write_colmap_text(tmp_path / "e", ["a"], random_poses(1), K, W, H, np.zeros((2, 3)), np.zeros((2, 3)))
    assert not (tmp_path / "c").exists() and not (tmp_path / "d").exists() and not (tmp_path / "e").exists()


def test_pycolmap_reads_our_model(tmp_path):
    pycolmap = pytest.importorskip("pycolmap")
    poses = random_poses(3, seed=4)
    names = ["x0", "x1", "x2"]
    write_colmap_text(tmp_path, names, poses, K, W, H, np.zeros((2, 3)), np.zeros((2, 3), np.uint8))
    rec = pycolmap.Reconstruction(str(tmp_path))
    assert rec.num_images() == 3 and rec.num_cameras() == 1 and rec.num_points3D() == 2
    camera = rec.cameras[1]
    assert (camera.width, camera.height) == (W, H)
    np.testing.assert_allclose(camera.params, [K[0, 0], K[1, 1], K[0, 2] + 0.5, K[1, 2] + 0.5])
    image = rec.images[2]
    assert image.name == "x1.jpg"
    np.testing.assert_allclose(image.projection_center(), poses[1, :3, 3], atol=1e-9)
    # Our pixel (r, c) = (4, 7) at depth 2: COLMAP sees it at (c + 0.5, r + 0.5).
    local = local_points(K[None], np.full((1, H, W), 2.0))[0, 4, 7]
    world = poses[1, :3, :3] @ local + poses[1, :3, 3]
    np.testing.assert_allclose(image.project_point(world), [7.5, 4.5], atol=1e-9)


def test_transforms_json(tmp_path):
    poses = random_poses(3, seed=5)
    names = ["f0", "f1", "f2"]
    write_transforms_json(tmp_path / "transforms.json", names, poses, K, W, H, ply_file_path="cloud.ply")
    assert [p.name for p in tmp_path.iterdir()] == ["transforms.json"]
    doc = json.loads((tmp_path / "transforms.json").read_text())
    assert doc["camera_model"] == "OPENCV" and doc["ply_file_path"] == "cloud.ply"
    assert (doc["w"], doc["h"], doc["fl_x"], doc["fl_y"]) == (W, H, K[0, 0], K[1, 1])
    assert (doc["cx"], doc["cy"]) == (K[0, 2] + 0.5, K[1, 2] + 0.5)
    assert all(doc[k] == 0 for k in ("k1", "k2", "p1", "p2"))
    assert [f["file_path"] for f in doc["frames"]] == ["images/f0.jpg", "images/f1.jpg", "images/f2.jpg"]
    matrices = np.array([f["transform_matrix"] for f in doc["frames"]])
    np.testing.assert_array_equal(matrices, poses @ np.diag([1.0, -1, -1, 1]))
    np.testing.assert_array_equal(OPENCV_TO_OPENGL, np.diag([1.0, -1, -1, 1]))
    # The OpenGL camera looks down its -z: the same direction as our +z.
    np.testing.assert_allclose(-matrices[:, :3, 2], poses[:, :3, 2])


def test_transforms_json_per_frame_intrinsics(tmp_path):
    ks = np.stack([K, K * [[1.1, 1, 1], [1, 1.1, 1], [1, 1, 1]]])
    write_transforms_json(tmp_path / "t.json", ["a", "b"], random_poses(2), ks, W, H)
    doc = json.loads((tmp_path / "t.json").read_text())
    assert "fl_x" not in doc and "ply_file_path" not in doc
    assert [f["fl_x"] for f in doc["frames"]] == [ks[0, 0, 0], ks[1, 0, 0]]
    assert all(f["w"] == W and f["cy"] == K[1, 2] + 0.5 for f in doc["frames"])
