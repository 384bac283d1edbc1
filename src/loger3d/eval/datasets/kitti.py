"""KITTI odometry in its release layout (``data_odometry_color.zip`` + ``data_odometry_poses.zip``).

Layout under ``root`` (the ``dataset/`` folder of the zips)::

    sequences/XX/image_2/000000.png ...   left colour camera (what LoGeR evaluates)
    sequences/XX/calib.txt                optional (``data_odometry_calib.zip``): lines ``P0:`` .. ``P3:``, ``Tr:``
    poses/XX.txt                          00-10 only: 12 numbers a line, row-major top 3×4 of a camera-to-world pose

Ground truth: ``poses/XX.txt`` gives camera 0's pose (the left *grey* camera) in camera 0's frame at frame 0, one
line per frame. ``image_2`` is the left *colour* camera, mounted beside camera 0 with the same orientation
(rectified): ``P2 = K2 [I | t]`` with ``t = K2⁻¹ P2[:, 3]`` (about +6 cm in x: camera 2's centre sits ~6 cm left
of camera 0's; the ``P2[0,3]/P2[0,0]`` shortcut ignores t's few-millimetre y/z parts). LoGeR's scorer compares against
``poses/XX.txt`` as is, so the raw camera-0 poses are the default; ``camera_offset=True`` returns camera 2's poses
``T_w_cam0 · [I | −t]`` instead (needs ``calib.txt``). Under the paper's Sim(3) ATE the offset is a 6 cm lever arm.

Protocol (``PROTOCOL``): sequences 00-10, all frames of ``image_2`` (stride 1), resized by the demo rule to
≤255,000 pixels with sides multiples of 14 (924×266 for 1241×376); LoGeR window 32, LoGeR* 64, overlap 3, TTT
reset every 5 windows; Sim(3) ATE over all frames' translations.

Timestamps are frame numbers, not ``times.txt`` seconds: the LoGeR demo writes the frame index as the TUM timestamp
and the scorer matches estimate to ground truth on that index. Intrinsics (``P2``'s 3×3) come from ``calib.txt``
when present, else None; image sizes differ by sequence (1241×376, 1226×370, 1242×375).
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
    parse_floats,
    read_numbers,
    read_rows,
)

__all__ = ["KittiOdometry"]

PROTOCOL = {
    "task": "camera pose, long sequences",
    "sequences": [f"{i:02d}" for i in range(11)],
    "frames": "all frames of image_2 (official end_frame 10000 exceeds every sequence)",
    "stride": 1,
    "max_frames": None,
    "resolution": "demo resize to ≤255,000 pixels with sides multiples of 14 (924×266 for 1241×376)",
    "window": {"LoGeR": 32, "LoGeR*": 64},
    "overlap": 3,
    "reset_every": 5,
    "association": "frame index (estimate timestamp = frame number)",
    "alignment": "Sim(3) Umeyama on all frames' translations (SE(3) with the scorer's --se3)",
    "metric": "ATE = RMSE of translation error in metres; also KITTI-style segment t_err/r_err",
    "ground_truth": "poses/XX.txt as is (camera 0, ~6 cm from image_2's camera)",
    "source": "Junyi42/LoGeR eval/run_kitti.sh, eval/demo_run_longeval.sh, eval/long_eval_script/kitti_benchmark.cpp",
}


class KittiOdometry(Dataset):
    """KITTI odometry sequences; ``camera_offset=True`` moves the GT poses to camera 2 (module docstring)."""

    title = "KITTI odometry"
    layout = "sequences/XX/image_2 and poses/XX.txt"
    protocol = PROTOCOL
    defaults = Selection(start=0, stride=1, max_frames=None)

    def __init__(self, root: str | os.PathLike, *, camera_offset: bool = False) -> None:
        super().__init__(root)
        self.camera_offset = camera_offset

    def _is_tree(self) -> bool:
        return os.path.isdir(self._path("sequences"))

    def _find(self) -> list[str]:
        folder = self._path("sequences")
        return [n for n in os.listdir(folder) if os.path.isdir(os.path.join(folder, n, "image_2"))]

    def _load(self, name: str, selection: Selection) -> Sequence:
        images = list_files(self._path("sequences", name, "image_2"), (".png",))
        pose_file = self._path("poses", f"{name}.txt")
        if not os.path.isfile(pose_file):
            raise DatasetError(
                f"no ground truth for KITTI odometry sequence {name}: missing {pose_file} "
                "(only 00-10 have public poses; unzip data_odometry_poses.zip into the root)"
            )
        rows = read_numbers(pose_file, 12, "KITTI pose: 12 numbers, row-major 3×4 camera-to-world")
        check_count(pose_file, len(rows), len(images), "poses", "the pose file must have one line per image_2 frame")
        picked = selection.indices(len(images), f"KITTI odometry sequence {name}")
        poses = np.tile(np.eye(4), (len(picked), 1, 1))
        poses[:, :3, :] = rows[picked].reshape(-1, 3, 4)
        calib = self._path("sequences", name, "calib.txt")
        p2 = _projection(calib, "P2") if os.path.isfile(calib) else None
        if self.camera_offset:
            if p2 is None:
                raise DatasetError(f"camera_offset=True needs {calib}: unzip data_odometry_calib.zip into the root")
            poses[:, :3, 3] -= poses[:, :3, :3] @ camera2_offset(p2)
        return Sequence(
            name=name,
            image_paths=[images[i] for i in picked],
            timestamps=picked.astype(np.float64),
            gt_poses=poses,
            intrinsics=None if p2 is None else p2[:, :3].copy(),
            depth_paths=None,
            depth_scale=1.0,
            protocol={"ground_truth": "camera 2 (image_2)" if self.camera_offset else PROTOCOL["ground_truth"]},
        )


def camera2_offset(p2: np.ndarray) -> np.ndarray:
    """``t`` ``[3]`` of ``P2 = K2 [I | t]``: a point's camera-2 coordinates are its camera-0 coordinates plus t."""
    return np.linalg.solve(p2[:, :3], p2[:, 3])


def _projection(path: str, key: str) -> np.ndarray:
    """The 3×4 matrix on the ``key:`` line of a KITTI ``calib.txt``."""
    for lineno, fields in read_rows(path, (1, 13), "KITTI calibration: 'P0: ' followed by 12 numbers"):
        if fields[0] == f"{key}:":
            if len(fields) != 13:
                raise DatasetError(f"{path}:{lineno}: {len(fields) - 1} numbers after {key}:, expected 12")
            return np.array(parse_floats(path, lineno, fields[1:], f"{key} projection"), dtype=np.float64).reshape(3, 4)
    raise DatasetError(f"{path}: no {key}: line; re-download data_odometry_calib.zip")
