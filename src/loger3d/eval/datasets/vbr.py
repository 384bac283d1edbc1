"""VBR (Vision Benchmark in Rome): the processed release LoGeR evaluates on, and the raw release it is made from.

Processed release (``"vbr"``; HF dataset ``Junyi42/vbr_processed``, made by LoGeR's
``eval/datasets_preprocess/vbr_preprocess.py``). ``root`` is the folder holding (``data/vbr`` in LoGeR's docs)::

    <seq>_processed_aligned/rgb/000000.png ...        left camera images, named by raw camera frame number (gaps
                                                      where no LiDAR sweep was within 10 ms), not undistorted
    <seq>_processed_aligned/camera_pose/000000.txt    4×4 camera-to-world of the left camera (np.savetxt)
    <seq>_processed_aligned/depthmap/000000.npy       float32 metres, projected LiDAR, 0 = none
    <seq>_processed_aligned/intrinsics.txt            3×3 K of the (distorted) images
    processed_gt/<seq>_gt.txt                         the scorer's TUM-format ground truth

Verified from LoGeR's repository: the folder and file names the preprocessing script writes, the ``rgb`` folder
the evaluation demo reads, the ``processed_gt/<seq>_gt.txt`` the scorer reads, and how poses are computed. Not
verified (the release could not be inspected here): which of those folders the published archive holds (a
third-party download script lists ``rgb/``, ``camera_pose/``, ``camera_pose.txt``, ``intrinsics.txt`` and the GT
file, no ``depthmap/``; depth is therefore optional) and what clock ``processed_gt`` uses. Poses come from
``camera_pose/`` (one per image, no association needed).
Timestamps follow LoGeR's demo: ``<seq>_processed_aligned/rgb.txt`` entries by file name, else the numbers of
``rgb/timestamps.txt`` in order, else the frame's position in ``rgb/`` (the usual case).

Protocol (``PROTOCOL``): the 7 train sequences, all frames (stride 1), demo resize to ≤255,000 pixels with sides
multiples of 14; window 48 (LoGeR) / 64 (LoGeR*), overlap 3, TTT reset every 5 windows; Sim(3) ATE RMSE, scored
on the first 1,000 to 19,000 GT poses.

Raw release (``"vbr-raw"``; KITTI-style export of the VBR devkit). ``root`` holds one folder per sequence::

    <seq>/camera_left/data/*.png, camera_left/timestamps.txt    one ISO-8601 time (or integer ns) per image
    <seq>/ouster_points/timestamps.txt                          LiDAR sweep times
    <seq>/<seq>_gt.txt                                          TUM format, seconds: LiDAR pose in the world
    <seq>/vbr_calib.yaml                                        cam_l/cam_r: intrinsics [fx, fy, cx, cy],
                                                                resolution, T_b (4×4 sensor-in-base); lidar: T_b

Reproduces ``vbr_preprocess.py``: images without a LiDAR sweep within 10 ms are skipped (``lidar_sync``), each
kept image takes the GT pose nearest in time (no limit, as the script), and the camera pose is
``T_world_lidar · T_b_lidar⁻¹ · T_b_cam`` (the script treats the GT as the LiDAR's pose). The script takes the
first ``*.txt`` of the sequence folder as GT; here it is ``<seq>_gt.txt`` by name. Timestamps are seconds.
Reading ``vbr_calib.yaml`` needs PyYAML (a dependency of huggingface_hub).
"""

from __future__ import annotations

import os

import numpy as np

from loger3d.eval.datasets.base import (
    Dataset,
    DatasetError,
    Selection,
    Sequence,
    check_count,
    list_files,
    read_matrix,
    read_numbers,
    text_lines,
    tum_poses,
)
from loger3d.eval.datasets.tum import read_stamped_paths

__all__ = ["VbrProcessed", "VbrRaw", "read_times_ns"]

SUFFIX = "_processed_aligned"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")

PROTOCOL = {
    "task": "camera pose, very long outdoor sequences (8,815-18,846 frames, 1.4-11.5 km)",
    "sequences": [
        "campus_train0",
        "campus_train1",
        "ciampino_train1",
        "colosseo_train0",
        "diag_train0",
        "pincio_train0",
        "spagna_train0",
    ],
    "frames": "all left-camera frames with a LiDAR sweep within 10 ms (official end_frame 20000)",
    "stride": 1,
    "max_frames": None,
    "resolution": "demo resize to ≤255,000 pixels with sides multiples of 14",
    "window": {"LoGeR": 48, "LoGeR*": 64},
    "overlap": 3,
    "reset_every": 5,
    "association": "scorer: each GT pose takes the estimate nearest in time",
    "scored_lengths": list(range(1000, 19001, 2000)),
    "alignment": "Sim(3) Umeyama on the matched translations",
    "metric": "ATE = RMSE of translation (m); the paper's v1 numbers used the 'legacy' sqrt(mean |e|), fixed "
    "2026-04-16; RPE over 1, 2, 3, 5, 8, 13, 21, 34, 55 % of the trajectory length",
    "source": "Junyi42/LoGeR eval/run_vbr.sh, eval/demo_run_longeval.sh, eval/datasets_preprocess/vbr_preprocess.py, "
    "eval/long_eval_script/vbr_benchmark.cpp",
}


class VbrProcessed(Dataset):
    """VBR as LoGeR's processed release lays it out (module docstring)."""

    title = "VBR processed"
    layout = "<seq>_processed_aligned/rgb/*.png with camera_pose/*.txt (processed_gt/<seq>_gt.txt beside)"
    protocol = PROTOCOL
    defaults = Selection(start=0, stride=1, max_frames=None)

    def _is_tree(self) -> bool:
        return bool(self._find())

    def _find(self) -> list[str]:
        names = [n for n in os.listdir(self.root) if n.endswith(SUFFIX)]
        return [n[: -len(SUFFIX)] for n in names if os.path.isdir(self._path(n, "rgb"))]

    def _load(self, name: str, selection: Selection) -> Sequence:
        folder = self._path(name + SUFFIX)
        images = list_files(os.path.join(folder, "rgb"), IMAGE_SUFFIXES)
        pose_folder = os.path.join(folder, "camera_pose")
        if not os.path.isdir(pose_folder):
            raise DatasetError(f"no ground truth for {self.title} sequence {name}: missing {pose_folder}")
        check_count(
            pose_folder,
            len(list_files(pose_folder, (".txt",))),
            len(images),
            "pose files",
            "the release has one camera_pose/<frame>.txt per rgb/<frame>.png",
        )
        picked = selection.indices(len(images), f"{self.title} sequence {name}")
        stems = [os.path.splitext(os.path.basename(images[i]))[0] for i in picked]
        poses = []
        for stem in stems:
            path = os.path.join(pose_folder, f"{stem}.txt")
            if not os.path.isfile(path):
                raise DatasetError(f"missing VBR pose {path}; every rgb/ image needs one")
            poses.append(read_matrix(path, (4, 4), "VBR camera-to-world 4×4"))
        depth_folder = os.path.join(folder, "depthmap")
        depth_paths = None
        if os.path.isdir(depth_folder):
            depth_paths = [os.path.join(depth_folder, f"{stem}.npy") for stem in stems]
            absent = [p for p in depth_paths if not os.path.isfile(p)]
            if absent:
                raise DatasetError(f"missing VBR depth {absent[0]} ({len(absent)} absent); re-extract the release")
        k_file = os.path.join(folder, "intrinsics.txt")
        return Sequence(
            name=name,
            image_paths=[images[i] for i in picked],
            timestamps=_demo_timestamps(folder, images)[picked],
            gt_poses=np.stack(poses),
            intrinsics=read_matrix(k_file, (3, 3), "VBR intrinsics 3×3") if os.path.isfile(k_file) else None,
            depth_paths=depth_paths,
            depth_scale=1.0,
            protocol={"scorer_ground_truth": self._path("processed_gt", f"{name}_gt.txt")},
        )


def _demo_timestamps(folder: str, images: list[str]) -> np.ndarray:
    """Timestamps ``[N]`` of all images by the LoGeR demo's rule (module docstring)."""
    listing = os.path.join(folder, "rgb.txt")
    if os.path.isfile(listing):
        stamps, paths = read_stamped_paths(listing, "VBR image list")
        known = {os.path.basename(p): t for t, p in zip(stamps, paths)}
        if all(os.path.basename(p) in known for p in images):
            return np.array([known[os.path.basename(p)] for p in images], dtype=np.float64)
    numbers = os.path.join(folder, "rgb", "timestamps.txt")
    if os.path.isfile(numbers):
        stamps = read_numbers(numbers, 1, "VBR image timestamps, one per line")[:, 0]
        check_count(numbers, len(stamps), len(images), "timestamps", "write one line per image")
        return stamps
    return np.arange(len(images), dtype=np.float64)


class VbrRaw(Dataset):
    """VBR's raw release, turned into camera frames and poses as LoGeR's preprocessing does (module docstring)."""

    title = "VBR raw"
    layout = "<seq>/camera_left/data/*.png, camera_left/timestamps.txt, <seq>_gt.txt and vbr_calib.yaml"
    protocol = PROTOCOL
    defaults = Selection(start=0, stride=1, max_frames=None)

    def __init__(
        self, root: str | os.PathLike, *, camera: str = "left", lidar_sync: bool = True, max_lidar_diff: float = 0.01
    ) -> None:
        if camera not in ("left", "right"):
            raise DatasetError(f"unknown VBR camera {camera!r}; use 'left' or 'right'")
        self.camera = camera
        self.lidar_sync = lidar_sync
        self.max_lidar_ns = int(max_lidar_diff * 1e9)
        super().__init__(root)

    @property
    def _camera_dir(self) -> str:
        return f"camera_{self.camera}"

    def _is_tree(self) -> bool:
        return bool(self._find())

    def _find(self) -> list[str]:
        return [n for n in os.listdir(self.root) if os.path.isdir(self._path(n, self._camera_dir, "data"))]

    def _load(self, name: str, selection: Selection) -> Sequence:
        folder = self._path(name)
        images = list_files(os.path.join(folder, self._camera_dir, "data"), IMAGE_SUFFIXES)
        stamps_file = os.path.join(folder, self._camera_dir, "timestamps.txt")
        camera_ns = read_times_ns(stamps_file)
        check_count(stamps_file, len(camera_ns), len(images), "timestamps", "the devkit writes one line per image")
        gt_file = os.path.join(folder, f"{name}_gt.txt")
        if not os.path.isfile(gt_file):
            raise DatasetError(f"no ground truth for {self.title} sequence {name}: missing {gt_file}")
        gt_rows = read_numbers(gt_file, 8, "VBR ground truth: 'timestamp tx ty tz qx qy qz qw'")
        if gt_rows.size == 0:
            raise DatasetError(f"{gt_file}: no poses; re-download the sequence's ground truth")
        gt_rows = gt_rows[np.argsort(gt_rows[:, 0], kind="stable")]
        gt_ns = (gt_rows[:, 0] * 1e9 if gt_rows[-1, 0] < 1e12 else gt_rows[:, 0]).astype(np.int64)
        usable = np.arange(len(images))
        if self.lidar_sync:
            usable = usable[self._has_lidar(folder, camera_ns)]
        picked = usable[selection.indices(usable.size, f"{self.title} sequence {name} ({usable.size} synced frames)")]
        nearest, _ = _nearest(gt_ns, camera_ns[picked])
        cam_in_base, lidar_in_base, intrinsics = _calibration(os.path.join(folder, "vbr_calib.yaml"), self.camera)
        poses = tum_poses(gt_rows[nearest, 1:]) @ np.linalg.inv(lidar_in_base) @ cam_in_base
        return Sequence(
            name=name,
            image_paths=[images[i] for i in picked],
            timestamps=camera_ns[picked] / 1e9,
            gt_poses=poses,
            intrinsics=intrinsics,
            depth_paths=None,
            depth_scale=1.0,
            protocol={"camera": self.camera, "lidar_sync": self.lidar_sync},
        )

    def _has_lidar(self, folder: str, camera_ns: np.ndarray) -> np.ndarray:
        """Mask ``[N]``: a LiDAR sweep lies within ``max_lidar_diff`` of the image (the script's nearest sweep)."""
        path = os.path.join(folder, "ouster_points", "timestamps.txt")
        if not os.path.isfile(path):
            raise DatasetError(
                f"missing {path}: the protocol keeps frames with a LiDAR sweep within 10 ms; "
                "download ouster_points or pass lidar_sync=False to keep every frame"
            )
        lidar_ns = np.sort(read_times_ns(path))
        if lidar_ns.size == 0:
            return np.zeros(camera_ns.size, dtype=bool)
        return _nearest(lidar_ns, camera_ns)[1] <= self.max_lidar_ns


def _nearest(reference: np.ndarray, stamps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index into sorted ``reference`` nearest to each stamp (ties: the earlier, as ``argmin``) and the gap, int ns."""
    upper = np.clip(np.searchsorted(reference, stamps), 0, reference.size - 1)
    lower = np.maximum(upper - 1, 0)
    gap_upper, gap_lower = np.abs(reference[upper] - stamps), np.abs(reference[lower] - stamps)
    take_lower = gap_lower <= gap_upper
    return np.where(take_lower, lower, upper), np.where(take_lower, gap_lower, gap_upper)


def read_times_ns(path: str) -> np.ndarray:
    """Times ``[N]`` int64 nanoseconds from a devkit ``timestamps.txt``: ISO-8601 (``T`` or space) or integer ns."""
    if not os.path.isfile(path):
        raise DatasetError(f"missing timestamps file {path}")
    out = []
    for lineno, line in enumerate(text_lines(path), start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        try:
            out.append(int(text) if text.isdigit() else int(np.datetime64(text, "ns").astype(np.int64)))
        except ValueError:
            raise DatasetError(f"{path}:{lineno}: {text!r} is not ISO-8601 time or integer nanoseconds") from None
    return np.array(out, dtype=np.int64)


def _calibration(path: str, camera: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``T_b_cam`` ``[4, 4]``, ``T_b_lidar`` ``[4, 4]`` and the camera's K ``[3, 3]`` from ``vbr_calib.yaml``."""
    if not os.path.isfile(path):
        raise DatasetError(f"missing {path}: VBR poses need the calibration that ships with each sequence")
    try:
        import yaml
    except ImportError:
        raise DatasetError("reading vbr_calib.yaml needs PyYAML: pip install pyyaml") from None
    try:
        calib = yaml.safe_load("".join(text_lines(path)))
    except yaml.YAMLError as e:
        raise DatasetError(f"{path} is not valid YAML ({str(e).splitlines()[0]}); re-download it") from None
    key = "cam_l" if camera == "left" else "cam_r"
    try:
        fx, fy, cx, cy = (float(v) for v in calib[key]["intrinsics"])
        cam = np.array(calib[key]["T_b"], dtype=np.float64).reshape(4, 4)
        lidar = np.array(calib["lidar"]["T_b"], dtype=np.float64).reshape(4, 4)
    except (KeyError, TypeError, ValueError):
        raise DatasetError(f"{path}: expected {key}.intrinsics [fx, fy, cx, cy], {key}.T_b, lidar.T_b (4×4)") from None
    return cam, lidar, np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
