"""TUM RGB-D (the TUM-dynamics protocol) in its release layout, one folder per sequence.

Layout of ``root/<sequence>/`` (``rgbd_dataset_freiburg3_walking_xyz`` etc.)::

    rgb.txt           "timestamp rgb/<timestamp>.png" lines, '#' comments
    rgb/*.png         640×480 colour
    depth.txt, depth/ the same for 16-bit depth PNGs, 5000 units = 1 m, 0 = no depth
    groundtruth.txt   "timestamp tx ty tz qx qy qz qw": pose of the colour camera's optical centre in the mocap
                      world frame, camera-to-world (TUM's optical frame is OpenCV's: x right, y down, z forward)

Frames are the ``rgb.txt`` entries that have a ground-truth pose; the selection (stride, limit) applies after that
association, as in the official preparation scripts. Association rules (``association.py``):

- ``"nearest"`` (default): evo's ``associate_trajectories`` rule, nearest pose at most 0.01 s away — what the
  issue asks for and what evo-based scorers do;
- ``"greedy"``: TUM's ``associate.py`` with 0.02 s, which MonST3R/CUT3R/TTT3R/LoGeR's preparation scripts
  (``long_prepare_tum.py``) used to build the evaluated frame lists; pick it to reproduce those lists exactly.

Protocol (``PROTOCOL``): LoGeR evaluates the 8 freiburg3 sitting/walking sequences at stride 1, first 50 to
1000 posed frames (default 1000; ``max_frames`` picks a shorter prefix), input long side 512, window 64 / overlap 3
(LoGeR* adds SE(3) chunk alignment), no resets, evo Sim(3) ATE / RPE. The older short set (MonST3R, CUT3R, TTT3R)
is stride 3, first 90 frames: ``load(name, stride=3, max_frames=90)``.

Depth maps are matched to the kept images by the nearest rule within 0.02 s (TUM's own rgb-depth tolerance); when
some image has none, ``depth_paths`` is None and a warning says how many. Intrinsics are TUM's published colour
calibration for the sequence's sensor (freiburg1/2/3, from the folder name; distortion not included), else None.
"""

from __future__ import annotations

import os
import warnings

import numpy as np

from loger3d.eval.datasets.association import RULES, associate, nearest_matches
from loger3d.eval.datasets.base import (
    Dataset,
    DatasetError,
    Selection,
    Sequence,
    parse_floats,
    read_numbers,
    read_rows,
    tum_poses,
)

__all__ = ["TumRgbd", "read_stamped_paths", "read_tum_trajectory"]

TUM_DEPTH_SCALE = 1.0 / 5000.0
TUM_DEPTH_MAX_DIFF = 0.02  # s, TUM associate.py's default tolerance for rgb-depth pairs

INTRINSICS = {  # fx, fy, cx, cy of the colour cameras (TUM RGB-D "file formats / intrinsic calibration" page)
    "freiburg1": (517.3, 516.5, 318.6, 255.3),
    "freiburg2": (520.9, 521.0, 325.1, 249.7),
    "freiburg3": (535.4, 539.2, 320.1, 247.6),
}

PROTOCOL = {
    "task": "camera pose on dynamic scenes (TUM-dynamics)",
    "sequences": [
        f"rgbd_dataset_freiburg3_{kind}_{motion}"
        for kind in ("sitting", "walking")
        for motion in ("static", "xyz", "halfsphere", "rpy")
    ],
    "frames": "rgb.txt frames that have a pose, first max_frames after the stride",
    "stride": 1,
    "max_frames": 1000,
    "prefix_lengths": [50, 100, 150, 200, 300, 400, 500, 600, 700, 800, 900, 1000],
    "short_protocol": {
        "stride": 3,
        "max_frames": 90,
        "source": "MonST3R datasets_preprocess/prepare_tum.py (the TUM-dynamics set of MonST3R, CUT3R, TTT3R)",
    },
    "resolution": "relpose launcher --size 512: long side 512, sides cut to the patch size",
    "window": {"LoGeR": 64, "LoGeR*": 64},
    "overlap": 3,
    "se3": {"LoGeR": False, "LoGeR*": True},
    "reset_every": 0,
    "association": "official frame lists: TUM associate.py, greedy one-to-one < 0.02 s; scorer: evo associate",
    "alignment": "Sim(3) Umeyama (evo align=True, correct_scale=True)",
    "metric": "ATE (RMSE of translation, m), RPE translation (m) and rotation (deg) over consecutive frames",
    "source": "Junyi42/LoGeR eval/eval.md, eval/datasets_preprocess/long_prepare_tum.py, eval/relpose/evo_utils.py",
}


def read_stamped_paths(path: str, what: str) -> tuple[np.ndarray, list[str]]:
    """Timestamps ``[M]`` and absolute file paths from a TUM list file (``rgb.txt``/``depth.txt``)."""
    folder = os.path.dirname(path)
    rows = read_rows(path, (2, 2), f"{what}: 'timestamp path'")
    stamps = [parse_floats(path, lineno, fields[:1], f"{what} timestamp")[0] for lineno, fields in rows]
    return np.array(stamps, dtype=np.float64), [os.path.join(folder, fields[1]) for _, fields in rows]


def read_tum_trajectory(path: str, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Timestamps ``[M]`` and camera-to-world poses ``[M, 4, 4]`` of a TUM trajectory, sorted by time."""
    rows = read_numbers(path, 8, f"{what}: 'timestamp tx ty tz qx qy qz qw'")
    order = np.argsort(rows[:, 0], kind="stable")
    return rows[order, 0], tum_poses(rows[order, 1:])


class TumRgbd(Dataset):
    """TUM RGB-D sequences; ``association`` is "nearest" (evo) or "greedy" (TUM associate.py), see module docstring."""

    title = "TUM RGB-D"
    layout = "<sequence>/rgb.txt, rgb/ and groundtruth.txt (optionally depth.txt, depth/) per sequence folder"
    protocol = PROTOCOL
    defaults = Selection(start=0, stride=1, max_frames=1000)

    def __init__(self, root: str | os.PathLike, *, association: str = "nearest", max_diff: float | None = None) -> None:
        if association not in RULES:
            raise DatasetError(f"unknown association {association!r}; use one of {', '.join(RULES)}")
        self.association = association
        self.max_diff = RULES[association] if max_diff is None else float(max_diff)
        super().__init__(root)

    def _is_tree(self) -> bool:
        return bool(self._find())

    def _find(self) -> list[str]:
        return [n for n in os.listdir(self.root) if os.path.isfile(self._path(n, "rgb.txt"))]

    def _load(self, name: str, selection: Selection) -> Sequence:
        folder = self._path(name)
        stamps, images = read_stamped_paths(os.path.join(folder, "rgb.txt"), "TUM image list")
        gt_file = os.path.join(folder, "groundtruth.txt")
        if not os.path.isfile(gt_file):
            raise DatasetError(f"no ground truth for {self.title} sequence {name}: missing {gt_file}")
        gt_stamps, gt_poses = read_tum_trajectory(gt_file, "TUM ground truth")
        image_index, pose_index = associate(stamps, gt_stamps, self.association, self.max_diff)
        if image_index.size == 0:
            raise DatasetError(
                f"{gt_file}: no pose within {self.max_diff} s of any image in rgb.txt; "
                "are both files from the same sequence?"
            )
        picked = selection.indices(image_index.size, f"{self.title} sequence {name} ({image_index.size} posed frames)")
        image_index, pose_index = image_index[picked], pose_index[picked]
        kept = stamps[image_index]
        return Sequence(
            name=name,
            image_paths=[images[i] for i in image_index],
            timestamps=kept,
            gt_poses=gt_poses[pose_index],
            intrinsics=_intrinsics(name),
            depth_paths=_depth_for(folder, kept),
            depth_scale=TUM_DEPTH_SCALE,
            protocol={"association_used": {"rule": self.association, "max_diff": self.max_diff}},
        )


def _intrinsics(name: str) -> np.ndarray | None:
    for sensor, (fx, fy, cx, cy) in INTRINSICS.items():
        if sensor in name:
            return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    return None


def _depth_for(folder: str, stamps: np.ndarray) -> list[str] | None:
    """Depth files nearest to ``stamps`` within 0.02 s, or None (with a warning) when some image has none."""
    listing = os.path.join(folder, "depth.txt")
    if not os.path.isfile(listing):
        return None
    depth_stamps, depth_files = read_stamped_paths(listing, "TUM depth list")
    order = np.argsort(depth_stamps, kind="stable")
    image_index, depth_index = nearest_matches(stamps, depth_stamps[order], TUM_DEPTH_MAX_DIFF)
    if image_index.size < stamps.size:
        warnings.warn(
            f"{listing}: {stamps.size - image_index.size} of {stamps.size} frames have no depth within "
            f"{TUM_DEPTH_MAX_DIFF} s; the sequence is loaded without depth",
            stacklevel=4,
        )
        return None
    return [depth_files[order[j]] for j in depth_index]
