"""Dataset readers on tiny fake trees, each written here in its dataset's native layout."""

from __future__ import annotations

import os
import re
import struct

import numpy as np
import pytest
from PIL import Image

from loger3d.eval.datasets import (
    DATASETS,
    Bonn,
    DatasetError,
    KittiOdometry,
    ScanNet,
    Sequence,
    SevenScenes,
    Sintel,
    TumRgbd,
    VbrProcessed,
    VbrRaw,
    open_dataset,
)
from loger3d.eval.datasets.association import associate, greedy_matches, nearest_matches
from loger3d.eval.datasets.base import DPT_TAG, Selection, read_dpt
from loger3d.eval.datasets.bonn import T_M, T_M_PUBLISHED, T_ROS
from loger3d.sinks.trajectory import quaternion_to_rotation, rotation_to_quaternion
from loger3d.sources import open_source

W, H = 16, 14  # tiny, but at least one 14-pixel patch so the frame source accepts them


def _image(path, value: int = 0) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.full((H, W, 3), value % 256, dtype=np.uint8)).save(path)
    return str(path)


def _depth_png(path, pixel: int, at: tuple[int, int] = (2, 3), fill: int = 0) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    depth = np.full((H, W), fill, dtype=np.uint16)
    depth[at] = pixel
    Image.fromarray(depth).save(path)
    return str(path)


def _write(path, text: str) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    return str(path)


def _random_poses(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(n, 4))
    poses = np.tile(np.eye(4), (n, 1, 1))
    poses[:, :3, :3] = quaternion_to_rotation(q)
    poses[:, :3, 3] = rng.normal(size=(n, 3)) * 3
    return poses


def _tum_lines(stamps: np.ndarray, poses: np.ndarray) -> str:
    q = rotation_to_quaternion(poses[:, :3, :3])
    rows = [[t, *p[:3, 3], *qq] for t, p, qq in zip(stamps, poses, q)]
    return "# timestamp tx ty tz qx qy qz qw\n" + "".join(" ".join(repr(float(v)) for v in r) + "\n" for r in rows)


def _raises(match: str):
    return pytest.raises(DatasetError, match=match)


# --- KITTI odometry -------------------------------------------------------------------------------------------


P2 = np.array([[700.0, 0.0, 600.0, 44.0], [0.0, 700.0, 180.0, 0.21], [0.0, 0.0, 1.0, 0.0045]])


def _kitti(root, n: int = 5, calib: bool = True) -> np.ndarray:
    poses = _random_poses(n, seed=1)
    for i in range(n):
        _image(root / "sequences" / "00" / "image_2" / f"{i:06d}.png", i)
        _image(root / "sequences" / "11" / "image_2" / f"{i:06d}.png", i)
    _write(root / "poses" / "00.txt", "".join(" ".join(f"{v:.17g}" for v in p[:3].ravel()) + "\n" for p in poses))
    if calib:
        p0 = np.hstack([P2[:, :3], np.zeros((3, 1))])
        lines = [f"P{k}: " + " ".join(f"{v:.12e}" for v in m.ravel()) for k, m in enumerate([p0, p0, P2, P2])]
        _write(root / "sequences" / "00" / "calib.txt", "\n".join([*lines, "Tr: " + " ".join(["0"] * 12)]) + "\n")
    return poses


def test_kitti_reads_poses_intrinsics_and_frame_numbers(tmp_path):
    poses = _kitti(tmp_path)
    data = KittiOdometry(tmp_path)
    assert data.sequences() == ["00", "11"]
    seq = data.load("00")
    assert [os.path.basename(p) for p in seq.image_paths] == [f"{i:06d}.png" for i in range(5)]
    np.testing.assert_array_equal(seq.timestamps, np.arange(5.0))
    np.testing.assert_allclose(seq.gt_poses, poses, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(seq.intrinsics, P2[:, :3])
    assert seq.depth_paths is None and len(seq) == 5
    assert seq.protocol["window"] == {"LoGeR": 32, "LoGeR*": 64} and seq.protocol["reset_every"] == 5
    assert seq.protocol["selection"] == {"start": 0, "stride": 1, "max_frames": None}
    assert open_source(seq.image_paths, resolution="14x14").num_frames == 5

    picked = data.load("00", start=1, stride=2)
    np.testing.assert_array_equal(picked.timestamps, [1.0, 3.0])
    np.testing.assert_allclose(picked.gt_poses, poses[[1, 3]], atol=1e-15)
    assert data.load("00", max_frames=2).timestamps.tolist() == [0.0, 1.0]


def test_kitti_camera_offset_moves_poses_to_camera_2(tmp_path):
    poses = _kitti(tmp_path)
    seq = KittiOdometry(tmp_path, camera_offset=True).load("00")
    np.testing.assert_allclose(seq.gt_poses[:, :3, :3], poses[:, :3, :3], atol=1e-15)
    offset = np.linalg.norm(seq.gt_poses[:, :3, 3] - poses[:, :3, 3], axis=1)
    np.testing.assert_allclose(offset, np.linalg.norm(np.linalg.solve(P2[:, :3], P2[:, 3])))
    # A world point projects the same through P2 (camera-0 coordinates) and through K2 with camera 2's pose.
    world = np.array([1.0, -2.0, 30.0, 1.0])
    for cam0, cam2 in zip(poses, seq.gt_poses):
        a = P2 @ (np.linalg.inv(cam0) @ world)
        b = P2[:, :3] @ (np.linalg.inv(cam2) @ world)[:3]
        np.testing.assert_allclose(a[:2] / a[2], b[:2] / b[2], rtol=1e-9)
    assert seq.protocol["ground_truth"].startswith("camera 2")


def test_kitti_errors(tmp_path):
    with _raises(r"no KITTI odometry tree at .*missing: expected sequences/XX/image_2 and poses/XX.txt"):
        KittiOdometry(tmp_path / "missing")
    with _raises("no KITTI odometry tree"):
        KittiOdometry(tmp_path)
    _kitti(tmp_path, calib=False)
    data = KittiOdometry(tmp_path)
    with _raises(r"no KITTI odometry sequence '05' under .*; found: 00, 11"):
        data.load("05")
    with _raises(r"no ground truth for KITTI odometry sequence 11: missing .*poses/11.txt"):
        data.load("11")
    assert data.load("00").intrinsics is None
    with _raises(r"camera_offset=True needs .*calib.txt"):
        KittiOdometry(tmp_path, camera_offset=True).load("00")
    with _raises(r"start 9 is past the last of 5 frames"):
        data.load("00", start=9)
    pose_file = tmp_path / "poses" / "00.txt"
    lines = pose_file.read_text().splitlines()
    _write(pose_file, "\n".join(lines[:4]) + "\n")
    with _raises(r"00.txt: 4 poses for 5 images"):
        data.load("00")
    _write(pose_file, "\n".join([*lines[:2], "1 2 3", *lines[3:]]) + "\n")
    with _raises(r"00.txt:3: 3 fields, expected 12"):
        data.load("00")
    _write(pose_file, "\n".join([*lines[:2], "1 2 3 4 5 6 7 8 9 10 11 x", *lines[3:]]) + "\n")
    with _raises(r"00.txt:3: not numbers"):
        data.load("00")


# --- association (evo's rule, TUM associate.py's rule) ---------------------------------------------------------


def test_nearest_matches_equal_evo_matching_time_indices():
    sync = pytest.importorskip("evo.core.sync")
    rng = np.random.default_rng(0)
    for trial in range(200):
        reference = np.sort(rng.uniform(0, 1, size=rng.integers(1, 40))).round(3)
        stamps = rng.uniform(-0.05, 1.05, size=rng.integers(1, 30)).round(3)
        if trial % 3 == 0:  # exact ties between two reference samples
            stamps = np.concatenate([stamps, (reference[:-1] + reference[1:]) / 2])
        max_diff = [0.0, 0.005, 0.01, 0.05][trial % 4]
        ours = nearest_matches(stamps, reference, max_diff)
        theirs = sync.matching_time_indices(stamps, reference, max_diff)
        assert ours[0].tolist() == theirs[0] and ours[1].tolist() == theirs[1]


def test_greedy_matches_follow_tum_associate_rule():
    rng = np.random.default_rng(1)
    for _ in range(100):
        stamps = np.sort(rng.uniform(0, 1, size=rng.integers(1, 25)).round(3))
        reference = np.sort(rng.uniform(0, 1, size=rng.integers(1, 25)).round(3))
        # TUM associate.py, pair by pair: candidates strictly closer than max_diff, by (diff, a, b), one-to-one.
        candidates = sorted(
            (abs(a - b), a, b) for a in set(stamps.tolist()) for b in set(reference.tolist()) if abs(a - b) < 0.02
        )
        free_a, free_b, expected = set(stamps.tolist()), set(reference.tolist()), []
        for _, a, b in candidates:
            if a in free_a and b in free_b:
                free_a.remove(a)
                free_b.remove(b)
                expected.append((a, b))
        if len(set(stamps.tolist())) < stamps.size or len(set(reference.tolist())) < reference.size:
            continue  # associate.py keys dicts by timestamp; duplicates are outside the rule
        image, sample = greedy_matches(stamps, reference, 0.02)
        assert sorted(zip(stamps[image].tolist(), reference[sample].tolist())) == sorted(expected)


def test_associate_checks_its_arguments():
    with _raises("unknown association rule 'closest'"):
        associate(np.zeros(1), np.zeros(1), "closest")
    with _raises("max_diff must be ≥ 0"):
        associate(np.zeros(1), np.zeros(1), "nearest", -1.0)
    with _raises("reference timestamps are not sorted"):
        associate(np.zeros(1), np.array([1.0, 0.0]), "nearest")


# --- TUM RGB-D ------------------------------------------------------------------------------------------------


TUM_SEQ = "rgbd_dataset_freiburg3_walking_xyz"


def _tum(root, n: int = 12, depth_gap: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(2)
    folder = root / TUM_SEQ
    rgb_t = 1305031102.0 + np.arange(n) / 30 + rng.uniform(-0.004, 0.004, n)
    gt_t = 1305031101.99 + np.arange(int(n / 30 * 100) + 3) / 100 + rng.uniform(-0.002, 0.002, int(n / 30 * 100) + 3)
    gt_t = gt_t[(gt_t < rgb_t[4] - 0.012) | (gt_t > rgb_t[4] + 0.012)]  # frame 4 has no pose within 0.01 s
    gt = _random_poses(gt_t.size, seed=3)
    rgb_lines = "".join(f"{t:.6f} rgb/{t:.6f}.png\n" for t in rgb_t)
    for t in rgb_t:
        _image(folder / "rgb" / f"{t:.6f}.png")
    depth_t = rgb_t + 0.012
    if depth_gap:
        depth_t[7] += 0.5
    for t in depth_t:
        _depth_png(folder / "depth" / f"{t:.6f}.png", 5000)
    _write(folder / "rgb.txt", "# color images\n# file: 'x'\n# timestamp filename\n" + rgb_lines)
    _write(folder / "depth.txt", "".join(f"{t:.6f} depth/{t:.6f}.png\n" for t in depth_t))
    _write(folder / "groundtruth.txt", _tum_lines(gt_t, gt))
    rgb_t = np.array([float(f"{t:.6f}") for t in rgb_t])
    return rgb_t, np.array([float(repr(float(t))) for t in gt_t]), gt


def test_tum_associates_like_evo_and_reads_quaternions(tmp_path):
    trajectory = pytest.importorskip("evo.core.trajectory")
    sync = pytest.importorskip("evo.core.sync")
    rgb_t, gt_t, gt = _tum(tmp_path)
    data = TumRgbd(tmp_path)
    assert data.sequences() == [TUM_SEQ]
    seq = data.load(TUM_SEQ)
    assert 4 not in [np.argmin(abs(rgb_t - t)) for t in seq.timestamps] and len(seq) == 11

    gt_traj = trajectory.PoseTrajectory3D(poses_se3=list(gt), timestamps=gt_t)
    est = trajectory.PoseTrajectory3D(poses_se3=[np.eye(4)] * rgb_t.size, timestamps=rgb_t)
    gt_sync, est_sync = sync.associate_trajectories(gt_traj, est)
    np.testing.assert_array_equal(seq.timestamps, est_sync.timestamps)
    np.testing.assert_allclose(seq.gt_poses, np.stack(gt_sync.poses_se3), atol=1e-12)

    rows = np.loadtxt(tmp_path / TUM_SEQ / "groundtruth.txt")
    matched = [np.flatnonzero(np.isclose(rows[:, 1:4], p[:3, 3]).all(axis=1))[0] for p in seq.gt_poses]
    np.testing.assert_allclose(seq.gt_poses[:, :3, :3], quaternion_to_rotation(rows[matched, 4:8]), atol=1e-15)

    np.testing.assert_allclose(seq.intrinsics, [[535.4, 0, 320.1], [0, 539.2, 247.6], [0, 0, 1]])
    depth = seq.load_depth(0)
    assert depth.dtype == np.float32 and depth.shape == (H, W) and depth[2, 3] == 1.0 and depth[0, 0] == 0.0
    assert seq.depth_scale == 1 / 5000 and seq.protocol["prefix_lengths"][-1] == 1000
    assert data.load(TUM_SEQ, stride=3).timestamps.tolist() == seq.timestamps[::3].tolist()


def test_tum_greedy_association_and_depth_gap(tmp_path):
    rgb_t, gt_t, _ = _tum(tmp_path, depth_gap=True)
    with pytest.warns(UserWarning, match=r"1 of 12 frames have no depth"):
        greedy = TumRgbd(tmp_path, association="greedy").load(TUM_SEQ)
    image, _ = greedy_matches(rgb_t, np.sort(gt_t), 0.02)
    np.testing.assert_array_equal(greedy.timestamps, rgb_t[image])
    assert greedy.protocol["association_used"] == {"rule": "greedy", "max_diff": 0.02}
    with pytest.warns(UserWarning, match=r"depth.txt: 1 of 11 frames have no depth within 0.02 s"):
        assert TumRgbd(tmp_path).load(TUM_SEQ).depth_paths is None


def test_tum_errors(tmp_path):
    with _raises(r"no TUM RGB-D tree at .*: expected <sequence>/rgb.txt"):
        TumRgbd(tmp_path)
    with _raises("unknown association 'exact'"):
        TumRgbd(tmp_path, association="exact")
    _tum(tmp_path)
    gt_file = tmp_path / TUM_SEQ / "groundtruth.txt"
    text = gt_file.read_text()
    _write(gt_file, text.replace("\n", "\n1.0 2.0\n", 3))
    with _raises(r"groundtruth.txt:2: 2 fields, expected 8"):
        TumRgbd(tmp_path).load(TUM_SEQ)
    _write(gt_file, "0.0 0 0 0 0 0 0 1\n")
    with _raises(r"groundtruth.txt: no pose within 0.01 s of any image"):
        TumRgbd(tmp_path).load(TUM_SEQ)
    os.remove(gt_file)
    with _raises(r"no ground truth for TUM RGB-D sequence .*: missing .*groundtruth.txt"):
        TumRgbd(tmp_path).load(TUM_SEQ)


# --- ScanNet --------------------------------------------------------------------------------------------------


def _scannet(root, n: int = 10, bad: int = 3) -> np.ndarray:
    folder = root / "scene0707_00"
    poses = _random_poses(n, seed=4)
    poses[bad] = -np.inf
    os.makedirs(folder / "pose")
    os.makedirs(folder / "intrinsic")
    for i in range(n):
        _image(folder / "color" / f"{i}.jpg", i)
        _depth_png(folder / "depth" / f"{i}.png", 1500)
        np.savetxt(folder / "pose" / f"{i}.txt", poses[i])
    k = np.array([[1170.2, 0, 647.7, 0], [0, 1170.2, 483.75, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    np.savetxt(folder / "intrinsic" / "intrinsic_color.txt", k)
    return poses


def test_scannet_stride_invalid_poses_and_depth(tmp_path):
    poses = _scannet(tmp_path)
    data = ScanNet(tmp_path)
    with pytest.warns(UserWarning, match=r"dropped 1 frames with non-finite poses: 3"):
        seq = data.load("scene0707_00")
    assert seq.timestamps.tolist() == [0.0, 6.0, 9.0]
    assert [os.path.basename(p) for p in seq.image_paths] == ["0.jpg", "6.jpg", "9.jpg"]
    np.testing.assert_allclose(seq.gt_poses, poses[[0, 6, 9]], atol=1e-15)
    np.testing.assert_allclose(seq.intrinsics, [[1170.2, 0, 647.7], [0, 1170.2, 483.75], [0, 0, 1]])
    assert seq.load_depth(1)[2, 3] == np.float32(1.5) and seq.protocol["selection"]["stride"] == 3

    kept = ScanNet(tmp_path, drop_invalid_poses=False).load("scene0707_00")
    assert kept.timestamps.tolist() == [0.0, 3.0, 6.0, 9.0] and not np.isfinite(kept.gt_poses[1]).any()


def test_scannet_errors(tmp_path):
    with _raises("no ScanNet tree"):
        ScanNet(tmp_path)
    _scannet(tmp_path)
    os.remove(tmp_path / "scene0707_00" / "pose" / "5.txt")
    with _raises(r"pose: 9 pose files for 10 images"):
        ScanNet(tmp_path).load("scene0707_00")
    _write(tmp_path / "scene0707_00" / "pose" / "5.txt", "1 0 0 0\n0 1 0 0\n0 0 1 0\n")
    with _raises(r"5.txt: 3 rows of numbers, expected 4"):
        ScanNet(tmp_path).load("scene0707_00", stride=1, max_frames=6)
    os.rename(tmp_path / "scene0707_00" / "pose", tmp_path / "scene0707_00" / "poses")
    with _raises(r"no ground truth for ScanNet scene scene0707_00: missing .*pose"):
        ScanNet(tmp_path).load("scene0707_00")


# --- 7-Scenes -------------------------------------------------------------------------------------------------


def _seven(root, n: int = 6, projected: bool = True) -> np.ndarray:
    folder = root / "chess" / "seq-01"
    poses = _random_poses(n, seed=5)
    for i in range(n):
        stem = folder / f"frame-{i:06d}"
        _image(f"{stem}.color.png", i)
        _depth_png(f"{stem}.depth.png", 1500, fill=65535)
        if projected:
            _depth_png(f"{stem}.depth.proj.png", 2500, fill=65535)
        np.savetxt(f"{stem}.pose.txt", poses[i])
    _write(root / "chess" / "TestSplit.txt", "sequence1\nsequence3\n")
    _image(root / "chess" / "seq-02" / "frame-000000.color.png")
    return poses


def test_sevenscenes_keyframes_depth_and_uniform_sampling(tmp_path):
    poses = _seven(tmp_path)
    data = SevenScenes(tmp_path)
    assert data.sequences() == ["chess/seq-01", "chess/seq-02"] and data.test_sequences() == ["chess/seq-01"]
    seq = data.load("chess/seq-01")
    assert seq.timestamps.tolist() == [0.0, 2.0, 4.0]
    np.testing.assert_allclose(seq.gt_poses, poses[[0, 2, 4]], atol=1e-15)
    depth = seq.load_depth(0)
    assert depth[2, 3] == np.float32(2.5) and depth[0, 0] == 0.0  # 65535 marks no depth
    assert seq.protocol["depth_file"] == ".depth.proj.png" and seq.intrinsics[0, 0] == 525.0

    uniform = SevenScenes(tmp_path, sampling="uniform").load("chess/seq-01", max_frames=3)
    assert uniform.timestamps.tolist() == [0.0, 2.0, 5.0]
    assert SevenScenes(tmp_path, sampling="uniform").load("chess/seq-01").timestamps.size == 6


def test_sevenscenes_raw_depth_and_errors(tmp_path):
    _seven(tmp_path, projected=False)
    seq = SevenScenes(tmp_path).load("chess/seq-01")
    assert seq.protocol["depth_file"] == ".depth.png" and seq.load_depth(1)[2, 3] == np.float32(1.5)
    with _raises("unknown 7-Scenes sampling 'random'"):
        SevenScenes(tmp_path, sampling="random")
    with _raises(r"missing 7-Scenes pose .*frame-000000.pose.txt"):
        SevenScenes(tmp_path).load("chess/seq-02")
    with _raises(r"no 7-Scenes sequence 'fire/seq-01' under .*; found: chess/seq-01, chess/seq-02"):
        SevenScenes(tmp_path).load("fire/seq-01")


# --- Bonn RGB-D Dynamic ---------------------------------------------------------------------------------------


BONN_SEQ = "rgbd_bonn_balloon2"


def _bonn(root, n: int = 34) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    folder = root / BONN_SEQ
    rgb_t = np.round(1548266469.0 + np.arange(n) / 30, 5)
    for i, t in enumerate(rgb_t):
        _image(folder / "rgb" / f"{t:.5f}.png", i)
        _depth_png(folder / "depth" / f"{t:.5f}.png", 5000 + i)
    _write(folder / "rgb.txt", "".join(f"{t:.5f} rgb/{t:.5f}.png\n" for t in rgb_t))
    gt_t = 1548266469.5 + np.arange(100) / 100  # no poses for the first half second
    gt = _random_poses(gt_t.size, seed=6)
    _write(folder / "groundtruth.txt", _tum_lines(gt_t, gt))
    return rgb_t, gt_t, gt


def test_bonn_video_depth_frames_and_camera_poses(tmp_path):
    rgb_t, gt_t, gt = _bonn(tmp_path)
    seq = Bonn(tmp_path).load(BONN_SEQ)
    assert seq.protocol["selection"] == {"start": 30, "stride": 1, "max_frames": 110} and len(seq) == 4
    np.testing.assert_array_equal(seq.timestamps, rgb_t[30:])
    assert seq.load_depth(1)[2, 3] == np.float32(5031 / 5000) and seq.protocol["depth_cap_m"] == 70
    nearest = [int(np.argmin(abs(gt_t - t))) for t in rgb_t[30:]]
    np.testing.assert_allclose(seq.gt_poses, T_ROS @ gt[nearest] @ T_ROS @ T_M, atol=1e-9)
    raw = Bonn(tmp_path, marker_to_camera=False).load(BONN_SEQ)
    np.testing.assert_allclose(raw.gt_poses, gt[nearest], atol=1e-12)
    np.testing.assert_allclose(T_M[:3, :3] @ T_M[:3, :3].T, np.eye(3), atol=1e-12)
    assert np.linalg.det(T_M[:3, :3]) > 0 and np.abs(T_M - T_M_PUBLISHED).max() < 0.1
    assert Bonn(tmp_path, poses=False).load(BONN_SEQ, start=0).gt_poses is None


def test_bonn_errors(tmp_path):
    _bonn(tmp_path)
    folder = tmp_path / BONN_SEQ
    with _raises(r"selected frames have no pose within 0.01 s \(first at t="):
        Bonn(tmp_path).load(BONN_SEQ, start=0)
    os.remove(next(iter(sorted((folder / "depth").iterdir()))))
    with _raises(r"depth: 33 depth maps for 34 images"):
        Bonn(tmp_path).load(BONN_SEQ)
    _depth_png(folder / "depth" / "1548266469.00000.png", 5000)
    os.remove(folder / "groundtruth.txt")
    with _raises(r"no ground truth for Bonn RGB-D Dynamic sequence .*use Bonn\(root, poses=False\)"):
        Bonn(tmp_path).load(BONN_SEQ)


# --- Sintel ---------------------------------------------------------------------------------------------------


def _cam_bytes(k: np.ndarray, world_to_camera: np.ndarray) -> bytes:
    return struct.pack("<f", DPT_TAG) + k.astype("<f8").tobytes() + world_to_camera.astype("<f8").tobytes()


def _dpt_bytes(depth: np.ndarray) -> bytes:
    return struct.pack("<fii", DPT_TAG, depth.shape[1], depth.shape[0]) + depth.astype("<f4").tobytes()


def _sintel(root, n: int = 4) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    k = np.array([[1120.0, 0, 511.5], [0, 1120.0, 217.5], [0, 0, 1]])
    c2w = _random_poses(n, seed=7)
    depths = []
    for i in range(1, n + 1):
        name = f"frame_{i:04d}"
        _image(root / "training" / "final" / "alley_2" / f"{name}.png", i)
        cam = root / "training" / "camdata_left" / "alley_2" / f"{name}.cam"
        os.makedirs(cam.parent, exist_ok=True)
        cam.write_bytes(_cam_bytes(k, np.linalg.inv(c2w[i - 1])[:3]))
        depth = np.random.default_rng(i).uniform(0.5, 80, size=(H, W)).astype(np.float32)
        dpt = root / "training" / "depth" / "alley_2" / f"{name}.dpt"
        os.makedirs(dpt.parent, exist_ok=True)
        dpt.write_bytes(_dpt_bytes(depth))
        depths.append(depth)
    return k, c2w, depths


def test_sintel_cam_inversion_and_dpt(tmp_path):
    k, c2w, depths = _sintel(tmp_path)
    seq = Sintel(tmp_path).load("alley_2")
    assert seq.timestamps.tolist() == [1.0, 2.0, 3.0, 4.0]
    np.testing.assert_allclose(seq.gt_poses, c2w, atol=1e-12)
    np.testing.assert_array_equal(seq.intrinsics, k)
    world = np.array([0.3, -0.2, 5.0, 1.0])  # x = M · N · X with N = inverse of the returned pose
    cam_file = tmp_path / "training" / "camdata_left" / "alley_2" / "frame_0002.cam"
    n_matrix = np.frombuffer(cam_file.read_bytes(), "<f8", offset=4)[9:].reshape(3, 4)
    np.testing.assert_allclose(k @ n_matrix @ world, k @ (np.linalg.inv(seq.gt_poses[1]) @ world)[:3], rtol=1e-10)
    np.testing.assert_array_equal(seq.load_depth(2), depths[2])
    np.testing.assert_array_equal(read_dpt(seq.depth_paths[0]), depths[0])
    assert seq.protocol["image_pass"] == "final" and seq.protocol["depth_cap_m"] == 70
    assert Sintel(tmp_path).load("alley_2", start=2).timestamps.tolist() == [3.0, 4.0]


def test_sintel_errors(tmp_path):
    _sintel(tmp_path)
    with _raises("no MPI Sintel tree"):
        Sintel(tmp_path, image_pass="clean")
    with _raises("unknown Sintel pass 'albedo'"):
        Sintel(tmp_path, image_pass="albedo")
    dpt = tmp_path / "training" / "depth" / "alley_2" / "frame_0001.dpt"
    dpt.write_bytes(struct.pack("<fii", 1.0, W, H) + bytes(4 * W * H))
    with _raises(r"frame_0001.dpt: not a Sintel .dpt file"):
        Sintel(tmp_path).load("alley_2").load_depth(0)
    dpt.write_bytes(struct.pack("<fii", DPT_TAG, W, H + 1) + bytes(4 * W * H))
    with _raises(rf"header says {W}×{H + 1} but the file holds {4 * W * H} bytes"):
        read_dpt(str(dpt))
    cam = tmp_path / "training" / "camdata_left" / "alley_2" / "frame_0003.cam"
    cam.write_bytes(cam.read_bytes()[:-8])
    with _raises(r"frame_0003.cam: not a Sintel .cam file"):
        Sintel(tmp_path).load("alley_2")
    os.remove(cam)
    with _raises(r"alley_2: 3 camera files for 4 images"):
        Sintel(tmp_path).load("alley_2")
    os.rename(cam.parent, cam.parent.with_name("other"))
    with _raises(r"no ground truth for MPI Sintel sequence alley_2: missing .*camdata_left/alley_2"):
        Sintel(tmp_path).load("alley_2")


# --- VBR ------------------------------------------------------------------------------------------------------


def _vbr_processed(root) -> tuple[list[str], np.ndarray]:
    folder = root / "campus_train0_processed_aligned"
    stems = ["000000", "000002", "000003"]  # gaps: camera frames without a LiDAR sweep were skipped
    poses = _random_poses(3, seed=8)
    os.makedirs(folder / "camera_pose")
    os.makedirs(folder / "depthmap")
    for stem, pose in zip(stems, poses):
        _image(folder / "rgb" / f"{stem}.png")
        np.savetxt(folder / "camera_pose" / f"{stem}.txt", pose)
        np.save(folder / "depthmap" / f"{stem}.npy", np.full((H, W), 12.5, dtype=np.float32))
    np.savetxt(folder / "intrinsics.txt", [[800, 0, 700], [0, 800, 350], [0, 0, 1]])
    _write(root / "processed_gt" / "campus_train0_gt.txt", "0 0 0 0 0 0 0 1\n")
    return stems, poses


def test_vbr_processed_release(tmp_path):
    stems, poses = _vbr_processed(tmp_path)
    data = VbrProcessed(tmp_path)
    assert data.sequences() == ["campus_train0"]
    seq = data.load("campus_train0")
    assert [os.path.basename(p) for p in seq.image_paths] == [f"{s}.png" for s in stems]
    assert seq.timestamps.tolist() == [0.0, 1.0, 2.0]  # position in rgb/, as LoGeR's demo writes them
    np.testing.assert_allclose(seq.gt_poses, poses, atol=1e-15)
    assert seq.intrinsics[0, 0] == 800 and seq.load_depth(2)[0, 0] == np.float32(12.5)
    assert seq.protocol["window"] == {"LoGeR": 48, "LoGeR*": 64} and seq.protocol["scorer_ground_truth"].endswith(
        os.path.join("processed_gt", "campus_train0_gt.txt")
    )
    folder = tmp_path / "campus_train0_processed_aligned"
    _write(folder / "rgb.txt", "".join(f"{1.5 + i} rgb/{s}.png\n" for i, s in enumerate(stems)))
    assert data.load("campus_train0", stride=2).timestamps.tolist() == [1.5, 3.5]


def test_vbr_processed_errors(tmp_path):
    with _raises(r"no VBR processed tree at .*: expected <seq>_processed_aligned/rgb"):
        VbrProcessed(tmp_path)
    _vbr_processed(tmp_path)
    folder = tmp_path / "campus_train0_processed_aligned"
    os.remove(folder / "camera_pose" / "000003.txt")
    with _raises(r"camera_pose: 2 pose files for 3 images"):
        VbrProcessed(tmp_path).load("campus_train0")
    os.rename(folder / "camera_pose", folder / "poses")
    with _raises(r"no ground truth for VBR processed sequence campus_train0: missing .*camera_pose"):
        VbrProcessed(tmp_path).load("campus_train0")


VBR_CALIB = """\
cam_l:
  intrinsics: [800.5, 801.5, 690.0, 350.0]
  distortion_coeffs: [0.1, -0.2, 0.0, 0.0]
  resolution: [1388, 700]
  T_b:
  - [0.0, 0.0, 1.0, 0.2]
  - [-1.0, 0.0, 0.0, 0.1]
  - [0.0, -1.0, 0.0, 0.3]
  - [0.0, 0.0, 0.0, 1.0]
lidar:
  T_b:
  - [1.0, 0.0, 0.0, 0.05]
  - [0.0, 1.0, 0.0, 0.0]
  - [0.0, 0.0, 1.0, 0.5]
  - [0.0, 0.0, 0.0, 1.0]
"""


def _vbr_raw(root) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    folder = root / "diag_train0"
    camera_s = 1658489151.0 + np.array([0.0, 0.05, 0.1, 0.15, 0.2])
    iso = [str(np.datetime64(int(round(t * 1e9)), "ns")) for t in camera_s]
    _write(
        folder / "camera_left" / "timestamps.txt", "\n".join(iso[:2] + [s.replace("T", " ") for s in iso[2:]]) + "\n"
    )
    for i in range(5):
        _image(folder / "camera_left" / "data" / f"{i:010d}.png", i)
    lidar_s = camera_s[[0, 2, 3, 4]] + np.array([0.004, -0.009, 0.02, 0.0])  # frame 1: no sweep, frame 3: 20 ms
    _write(folder / "ouster_points" / "timestamps.txt", "".join(f"{int(round(t * 1e9))}\n" for t in lidar_s))
    gt_t = 1658489150.95 + np.arange(10) * 0.03
    gt = _random_poses(10, seed=9)
    _write(folder / "diag_train0_gt.txt", _tum_lines(gt_t, gt))
    _write(folder / "vbr_calib.yaml", VBR_CALIB)
    return camera_s, gt_t, gt


def test_vbr_raw_lidar_sync_and_camera_poses(tmp_path):
    camera_s, gt_t, gt = _vbr_raw(tmp_path)
    seq = VbrRaw(tmp_path).load("diag_train0")
    assert [os.path.basename(p) for p in seq.image_paths] == ["0000000000.png", "0000000002.png", "0000000004.png"]
    np.testing.assert_allclose(seq.timestamps, camera_s[[0, 2, 4]], atol=1e-6)
    calib = re.findall(r"\[([^\]]+)\]", VBR_CALIB)
    cam_in_base = np.array([[float(v) for v in row.split(",")] for row in calib[3:7]])
    lidar_in_base = np.array([[float(v) for v in row.split(",")] for row in calib[7:11]])
    nearest = [int(np.argmin(abs(gt_t - t))) for t in camera_s[[0, 2, 4]]]
    np.testing.assert_allclose(seq.gt_poses, gt[nearest] @ np.linalg.inv(lidar_in_base) @ cam_in_base, atol=1e-9)
    np.testing.assert_allclose(seq.intrinsics, [[800.5, 0, 690], [0, 801.5, 350], [0, 0, 1]])
    assert VbrRaw(tmp_path, lidar_sync=False).load("diag_train0").timestamps.size == 5


def test_vbr_raw_errors(tmp_path):
    _vbr_raw(tmp_path)
    folder = tmp_path / "diag_train0"
    os.remove(folder / "ouster_points" / "timestamps.txt")
    with _raises(r"ouster_points/timestamps.txt: .* pass lidar_sync=False"):
        VbrRaw(tmp_path).load("diag_train0")
    _write(folder / "camera_left" / "timestamps.txt", "2022-07-22T11:25:51\nyesterday\n")
    with _raises(r"timestamps.txt:2: 'yesterday' is not ISO-8601 time or integer nanoseconds"):
        VbrRaw(tmp_path, lidar_sync=False).load("diag_train0")
    _write(folder / "camera_left" / "timestamps.txt", "1\n2\n")
    with _raises(r"timestamps.txt: 2 timestamps for 5 images"):
        VbrRaw(tmp_path, lidar_sync=False).load("diag_train0")
    _write(folder / "camera_left" / "timestamps.txt", "1\n2\n3\n4\n5\n")
    _write(folder / "vbr_calib.yaml", "cam_l: {intrinsics: [1, 2, 3, 4]}\n")
    with _raises(r"vbr_calib.yaml: expected cam_l.intrinsics"):
        VbrRaw(tmp_path, lidar_sync=False).load("diag_train0")
    os.remove(folder / "diag_train0_gt.txt")
    with _raises(r"no ground truth for VBR raw sequence diag_train0: missing .*diag_train0_gt.txt"):
        VbrRaw(tmp_path, lidar_sync=False).load("diag_train0")


# --- registry and shared types --------------------------------------------------------------------------------


def test_registry_opens_every_dataset_and_describes_it(tmp_path):
    assert set(DATASETS) == {"kitti", "vbr", "vbr-raw", "tum", "scannet", "7scenes", "bonn", "sintel"}
    _kitti(tmp_path)
    data = open_dataset("kitti", tmp_path, camera_offset=True)
    assert isinstance(data, KittiOdometry) and data.camera_offset
    info = data.describe()
    assert info["sequences"] == ["00", "11"] and info["protocol"]["metric"].startswith("ATE")
    for cls in DATASETS.values():
        assert {"stride", "max_frames", "window", "overlap", "metric", "source"} <= set(cls.protocol)
    with _raises("unknown dataset 'euroc'; choose one of kitti, vbr, vbr-raw"):
        open_dataset("euroc", tmp_path)


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_every_reader_names_a_missing_tree(tmp_path, name):
    reader = DATASETS[name]
    with _raises(rf"^no {re.escape(reader.title)} tree at .*absent: expected {re.escape(reader.layout)}$"):
        open_dataset(name, tmp_path / "absent")


def test_selection_and_sequence_checks(tmp_path):
    with _raises("stride must be an integer ≥ 1, got 0"):
        Selection(stride=0)
    with _raises("max_frames must be an integer ≥ 1 or None"):
        Selection(max_frames=0)
    with _raises("start must be an integer ≥ 0"):
        Selection(start=-1)
    seq = Sequence("s", ["a.png"], np.zeros(1), None, None, None, 1.0, {})
    with _raises("sequence s has no depth maps"):
        seq.load_depth(0)
    with _raises(r"s: \(2,\) timestamps for 1 images"):
        Sequence("s", ["a.png"], np.zeros(2), None, None, None, 1.0, {})
    Image.fromarray(np.zeros((H, W), dtype=np.uint8)).save(tmp_path / "d.png")
    with _raises(r"d.png: L image, expected a 16-bit depth PNG"):
        Sequence("s", ["a.png"], np.zeros(1), None, None, [str(tmp_path / "d.png")], 1.0, {}).load_depth(0)
