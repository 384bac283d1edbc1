"""Bonn RGB-D Dynamic in its release layout (``rgbd_bonn_dataset.zip``), the video-depth protocol's frames.

Layout of ``root/<sequence>/`` (``rgbd_bonn_balloon2`` etc.; TUM's format)::

    rgb/*.png, depth/*.png   640×480 colour and 16-bit depth (5000 units = 1 m, 0 = no depth), named by timestamp
    rgb.txt, depth.txt       "timestamp path" lists
    groundtruth.txt          "timestamp tx ty tz qx qy qz qw" from motion capture

Frames follow the official scripts (MonST3R ``prepare_bonn.py``, LoGeR ``long_prepare_bonn.py``): sorted
``rgb/*.png`` and sorted ``depth/*.png`` paired by position, then ``[30:30+N]`` (N = 110 for the MonST3R/CUT3R
video-depth set). Timestamps come from ``rgb.txt`` (by file name), else from the file names.

Protocol (``PROTOCOL``): the 5 sequences balloon2, crowd2, crowd3, person_tracking2, synchronous; frames 30 to
140 (LoGeR's scripts also make 50-500 frames from 30 on), input long side 512, window 48 / overlap 3, depth
capped at 70 m, one scale per sequence, AbsRel and δ<1.25.

Ground truth: the official scripts never use Bonn poses (depth only; they slice ``groundtruth.txt`` rows by
position, which is not a per-frame pose). Here each frame takes the pose nearest in time within ``max_diff``
(evo's rule, 0.01 s); every selected frame must have one. The file holds the mocap *marker* pose; the Bonn page
gives the camera pose as ``T_ros⁻¹ · T_gt · T_ros · T_m`` with the constants below (quoted identically by several
public Bonn loaders; the page itself was not reachable here). ``T_m``'s published 3×3 is not quite orthonormal, so
its rotation is projected onto SO(3) (nearest rotation, SVD) to keep poses rigid. ``marker_to_camera=False``
returns the file's poses untouched; ``poses=False`` skips ground truth (depth-only use).

Intrinsics: the Bonn page's colour calibration (fx 542.822841, fy 542.576870, cx 315.593520, cy 237.756098;
radial-tangential distortion d0..d4 not applied).
"""

from __future__ import annotations

import os

import numpy as np

from loger3d.eval.datasets.association import nearest_matches
from loger3d.eval.datasets.base import Dataset, DatasetError, Selection, Sequence, check_count, list_files
from loger3d.eval.datasets.tum import read_stamped_paths, read_tum_trajectory

__all__ = ["Bonn"]

BONN_DEPTH_SCALE = 1.0 / 5000.0
BONN_INTRINSICS = np.array([[542.822841, 0.0, 315.593520], [0.0, 542.576870, 237.756098], [0.0, 0.0, 1.0]])
T_ROS = np.array([[-1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
T_M_PUBLISHED = np.array(
    [
        [1.0157, 0.1828, -0.2389, 0.0113],
        [0.0009, -0.8431, -0.6413, -0.0098],
        [-0.3009, 0.6147, -0.8085, 0.0111],
        [0.0, 0.0, 0.0, 1.0],
    ]
)

PROTOCOL = {
    "task": "video depth on dynamic scenes",
    "sequences": [f"rgbd_bonn_{s}" for s in ("balloon2", "crowd2", "crowd3", "person_tracking2", "synchronous")],
    "frames": "sorted rgb/*.png and depth/*.png paired by position, frames [start:start+max_frames]",
    "start": 30,
    "stride": 1,
    "max_frames": 110,
    "long_lengths": [50, 100, 110, 150, 200, 250, 300, 350, 400, 450, 500],
    "resolution": "video-depth launcher --size 512",
    "window": {"LoGeR": 48, "LoGeR*": 48},
    "overlap": 3,
    "reset_every": 0,
    "depth": "16-bit PNG / 5000 = metres, 0 invalid",
    "depth_cap_m": 70,
    "alignment": "one per sequence; LoGeR's run_bonn.sh scores 'scale' (the scorer also has 'scale&shift', 'metric')",
    "metric": "AbsRel and δ<1.25 (also SqRel, RMSE, log RMSE) on GT > 0",
    "source": "MonST3R datasets_preprocess/prepare_bonn.py; Junyi42/LoGeR eval/datasets_preprocess/"
    "long_prepare_bonn.py, eval/video_depth/run_bonn.sh, eval/video_depth/eval_depth.py",
}


def _marker_to_camera() -> np.ndarray:
    u, _, vt = np.linalg.svd(T_M_PUBLISHED[:3, :3])
    fix = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    t_m = T_M_PUBLISHED.copy()
    t_m[:3, :3] = u @ fix @ vt
    return t_m


T_M = _marker_to_camera()


class Bonn(Dataset):
    """Bonn RGB-D Dynamic sequences (module docstring for frames, poses and their corrections)."""

    title = "Bonn RGB-D Dynamic"
    layout = "<sequence>/rgb/*.png, depth/*.png and groundtruth.txt per sequence folder (rgbd_bonn_*)"
    protocol = PROTOCOL
    defaults = Selection(start=30, stride=1, max_frames=110)

    def __init__(
        self, root: str | os.PathLike, *, poses: bool = True, marker_to_camera: bool = True, max_diff: float = 0.01
    ) -> None:
        self.poses = poses
        self.marker_to_camera = marker_to_camera
        self.max_diff = float(max_diff)
        super().__init__(root)

    def _is_tree(self) -> bool:
        return bool(self._find())

    def _find(self) -> list[str]:
        return [n for n in os.listdir(self.root) if os.path.isdir(self._path(n, "rgb"))]

    def _load(self, name: str, selection: Selection) -> Sequence:
        folder = self._path(name)
        images = list_files(os.path.join(folder, "rgb"), (".png",))
        depths = list_files(os.path.join(folder, "depth"), (".png",))
        check_count(os.path.join(folder, "depth"), len(depths), len(images), "depth maps", "rgb/, depth/ must pair up")
        picked = selection.indices(len(images), f"{self.title} sequence {name}")
        stamps = _timestamps(folder, [images[i] for i in picked])
        return Sequence(
            name=name,
            image_paths=[images[i] for i in picked],
            timestamps=stamps,
            gt_poses=self._poses(folder, name, stamps) if self.poses else None,
            intrinsics=BONN_INTRINSICS.copy(),
            depth_paths=[depths[i] for i in picked],
            depth_scale=BONN_DEPTH_SCALE,
            protocol={"ground_truth": "camera (T_ros⁻¹ T_gt T_ros T_m)" if self.marker_to_camera else "mocap marker"},
        )

    def _poses(self, folder: str, name: str, stamps: np.ndarray) -> np.ndarray:
        gt_file = os.path.join(folder, "groundtruth.txt")
        if not os.path.isfile(gt_file):
            raise DatasetError(
                f"no ground truth for {self.title} sequence {name}: missing {gt_file}; "
                "use Bonn(root, poses=False) for depth only"
            )
        gt_stamps, gt_poses = read_tum_trajectory(gt_file, "Bonn ground truth")
        image_index, pose_index = nearest_matches(stamps, gt_stamps, self.max_diff)
        if image_index.size < stamps.size:
            missing = np.setdiff1d(np.arange(stamps.size), image_index)
            raise DatasetError(
                f"{gt_file}: {missing.size} of {stamps.size} selected frames have no pose within {self.max_diff} s "
                f"(first at t={stamps[missing[0]]!r}); pick other frames, raise max_diff, or use poses=False"
            )
        poses = gt_poses[pose_index]
        return T_ROS @ poses @ T_ROS @ T_M if self.marker_to_camera else poses  # T_ROS is its own inverse


def _timestamps(folder: str, images: list[str]) -> np.ndarray:
    """Seconds of each image: its ``rgb.txt`` entry, else its file name (Bonn names files by timestamp)."""
    listing = os.path.join(folder, "rgb.txt")
    known: dict[str, float] = {}
    if os.path.isfile(listing):
        stamps, paths = read_stamped_paths(listing, "Bonn image list")
        known = {os.path.basename(p): float(t) for t, p in zip(stamps, paths)}
    out = []
    for path in images:
        base = os.path.basename(path)
        if base in known:
            out.append(known[base])
            continue
        try:
            out.append(float(os.path.splitext(base)[0]))
        except ValueError:
            raise DatasetError(f"{path}: not in rgb.txt and not named by its timestamp; restore rgb.txt") from None
    return np.array(out, dtype=np.float64)
