"""TUM and KITTI trajectories: exact round trips, robust quaternions, and evo reading our files."""

import numpy as np
import pytest

from loger3d.sinks.trajectory import (
    quaternion_to_rotation,
    read_kitti,
    read_tum,
    rotation_to_quaternion,
    write_kitti,
    write_tum,
)


def random_rotations(n: int, seed: int = 0) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(n, 3, 3)))
    q = q * np.sign(np.diagonal(r, axis1=1, axis2=2))[:, None, :]
    return q * np.linalg.det(q)[:, None, None]


def random_poses(n: int, seed: int = 0) -> np.ndarray:
    poses = np.tile(np.eye(4), (n, 1, 1))
    poses[:, :3, :3] = random_rotations(n, seed)
    poses[:, :3, 3] = np.random.default_rng(seed + 1).normal(scale=10.0, size=(n, 3))
    return poses


def hard_rotations() -> np.ndarray:
    """Identity, 180° turns about each axis and a diagonal, and a near-180° turn."""
    axis = np.array([1.0, 1.0, 0.0]) / np.sqrt(2)
    half_turn = 2 * np.outer(axis, axis) - np.eye(3)
    c, s = np.cos(np.pi - 1e-9), np.sin(np.pi - 1e-9)
    near = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    return np.stack(
        [np.eye(3), np.diag([1.0, -1, -1]), np.diag([-1.0, 1, -1]), np.diag([-1.0, -1, 1]), half_turn, near]
    )


def test_quaternion_convention_and_sign():
    c = np.cos(np.pi / 2)
    rz90 = np.array([[c, -1.0, 0], [1.0, c, 0], [0, 0, 1]])
    np.testing.assert_allclose(rotation_to_quaternion(rz90), [0, 0, np.sqrt(0.5), np.sqrt(0.5)], atol=1e-15)
    q = rotation_to_quaternion(random_rotations(200))
    assert q.shape == (200, 4) and (q[:, 3] >= 0).all()
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-15)


@pytest.mark.parametrize("rotations", [random_rotations(500), hard_rotations()], ids=["random", "hard"])
def test_rotation_quaternion_round_trip(rotations):
    back = quaternion_to_rotation(rotation_to_quaternion(rotations))
    np.testing.assert_allclose(back, rotations, atol=2e-15)


def test_batched_shapes():
    rot = random_rotations(6).reshape(2, 3, 3, 3)
    q = rotation_to_quaternion(rot)
    assert q.shape == (2, 3, 4)
    np.testing.assert_allclose(quaternion_to_rotation(q), rot, atol=2e-15)
    np.testing.assert_allclose(quaternion_to_rotation(-3.0 * q), rot, atol=2e-15)  # sign and scale free


def test_tum_round_trip(tmp_path):
    poses = random_poses(50)
    stamps = np.arange(50) / 29.97 + 1e9  # large, non-round values need full precision
    write_tum(tmp_path / "t.txt", stamps, poses)
    read_stamps, read_poses = read_tum(tmp_path / "t.txt")
    np.testing.assert_array_equal(read_stamps, stamps)
    np.testing.assert_array_equal(read_poses[:, :3, 3], poses[:, :3, 3])
    np.testing.assert_allclose(read_poses, poses, atol=1e-15)
    assert [p.name for p in tmp_path.iterdir()] == ["t.txt"]


def test_kitti_round_trip_is_exact(tmp_path):
    poses = random_poses(50, seed=3)
    write_kitti(tmp_path / "k.txt", poses)
    np.testing.assert_array_equal(read_kitti(tmp_path / "k.txt"), poses)
    assert len((tmp_path / "k.txt").read_text().splitlines()[0].split()) == 12


def test_evo_reads_our_files(tmp_path):
    file_interface = pytest.importorskip("evo.tools.file_interface")
    poses = random_poses(20, seed=5)
    stamps = 0.5 + np.arange(20) / 30.0
    write_tum(tmp_path / "t.txt", stamps, poses)
    write_kitti(tmp_path / "k.txt", poses)
    tum = file_interface.read_tum_trajectory_file(str(tmp_path / "t.txt"))
    np.testing.assert_allclose(tum.timestamps, stamps, rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.stack(tum.poses_se3), poses, rtol=0, atol=1e-9)
    kitti = file_interface.read_kitti_poses_file(str(tmp_path / "k.txt"))
    np.testing.assert_allclose(np.stack(kitti.poses_se3), poses, rtol=0, atol=1e-9)


def test_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match=r"\[N, 4, 4\]"):
        write_kitti(tmp_path / "k.txt", np.eye(4))
    with pytest.raises(ValueError, match="one per pose"):
        write_tum(tmp_path / "t.txt", np.zeros(3), random_poses(2))
    write_kitti(tmp_path / "k.txt", random_poses(2))
    with pytest.raises(ValueError, match="12 numbers, expected 8"):
        read_tum(tmp_path / "k.txt")
    assert [p.name for p in tmp_path.iterdir()] == ["k.txt"]
