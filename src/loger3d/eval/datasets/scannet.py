"""ScanNet (v2) scenes as exported from their ``.sens`` files by ScanNet's SensReader.

Layout of ``root/<scene>/`` (``scene0707_00`` etc.)::

    color/<i>.jpg                     1296×968 colour, i = 0, 1, 2, ...
    depth/<i>.png                     640×480 16-bit depth in millimetres, 0 = no depth (aligned with the colour
                                      frame's pose, but with its own intrinsics: intrinsic/intrinsic_depth.txt)
    pose/<i>.txt                      4×4 camera-to-world; frames where tracking failed hold -inf/nan
    intrinsic/intrinsic_color.txt     4×4, top-left 3×3 = colour intrinsics

The protocol (MonST3R's ``prepare_scannet.py``, LoGeR's ``long_prepare_scannet.py``) takes every 3rd frame,
then the first N (90 for the short set, 50-1000 for LoGeR's), over the test scenes scene0707_00 to scene0806_00.
Input long side 512, window 64 / overlap 3 (LoGeR* adds SE(3) chunk alignment), no resets, evo Sim(3) ATE / RPE.
The official scorer keeps frames with non-finite poses in the model's input and leaves them out of the metric.
Here such frames are dropped after the selection (``drop_invalid_poses=True``, the default) with a warning that
lists them, so every returned frame has a valid pose; ``drop_invalid_poses=False`` keeps them (non-finite rows in
``gt_poses``) to feed the model exactly the official input. Timestamps are the frame numbers.
"""

from __future__ import annotations

import os
import warnings

import numpy as np

from loger3d.eval.datasets.base import (
    Dataset,
    DatasetError,
    Selection,
    Sequence,
    check_count,
    list_files,
    read_matrix,
)

__all__ = ["ScanNet"]

PROTOCOL = {
    "task": "camera pose on indoor scans",
    "sequences": [f"scene{i:04d}_00" for i in range(707, 807)],
    "frames": "color/<i>.jpg sorted by i, every 3rd, first max_frames",
    "stride": 3,
    "max_frames": 1000,
    "prefix_lengths": [50, 90, 100, 150, 200, 300, 400, 500, 600, 700, 800, 900, 1000],
    "short_protocol": {"stride": 3, "max_frames": 90, "source": "MonST3R datasets_preprocess/prepare_scannet.py"},
    "resolution": "relpose launcher --size 512: long side 512, sides cut to the patch size",
    "window": {"LoGeR": 64, "LoGeR*": 64},
    "overlap": 3,
    "se3": {"LoGeR": False, "LoGeR*": True},
    "reset_every": 0,
    "invalid_poses": "official: kept as input, skipped by the scorer; here: dropped unless drop_invalid_poses=False",
    "association": "frame index",
    "alignment": "Sim(3) Umeyama (evo align=True, correct_scale=True)",
    "metric": "ATE (RMSE of translation, m), RPE translation (m) and rotation (deg) over consecutive frames",
    "source": "Junyi42/LoGeR eval/eval.md, eval/datasets_preprocess/long_prepare_scannet.py, eval/relpose/evo_utils.py",
}


class ScanNet(Dataset):
    """ScanNet scenes (SensReader export); see the module docstring for frames with invalid poses."""

    title = "ScanNet"
    layout = "<scene>/color/<i>.jpg, depth/<i>.png and pose/<i>.txt per scene folder (SensReader export)"
    protocol = PROTOCOL
    defaults = Selection(start=0, stride=3, max_frames=1000)

    def __init__(self, root: str | os.PathLike, *, drop_invalid_poses: bool = True) -> None:
        self.drop_invalid_poses = drop_invalid_poses
        super().__init__(root)

    def _is_tree(self) -> bool:
        return bool(self._find())

    def _find(self) -> list[str]:
        return [n for n in os.listdir(self.root) if os.path.isdir(self._path(n, "color"))]

    def _load(self, name: str, selection: Selection) -> Sequence:
        folder = self._path(name)
        images = list_files(os.path.join(folder, "color"), (".jpg",))
        pose_folder = os.path.join(folder, "pose")
        if not os.path.isdir(pose_folder):
            raise DatasetError(f"no ground truth for {self.title} scene {name}: missing {pose_folder}")
        check_count(
            pose_folder,
            len(list_files(pose_folder, (".txt",))),
            len(images),
            "pose files",
            "export poses with SensReader (--export_poses) for every frame",
        )
        ids = [
            os.path.splitext(os.path.basename(images[i]))[0]
            for i in selection.indices(len(images), f"{self.title} scene {name}")
        ]
        poses = np.stack([_pose(pose_folder, i) for i in ids])
        valid = np.isfinite(poses).all(axis=(1, 2))
        if self.drop_invalid_poses and not valid.all():
            dropped = [i for i, ok in zip(ids, valid) if not ok]
            if len(dropped) == len(ids):
                raise DatasetError(f"{pose_folder}: every selected frame has a non-finite pose; pick other frames")
            warnings.warn(
                f"{self.title} {name}: dropped {len(dropped)} frames with non-finite poses: {', '.join(dropped)}",
                stacklevel=4,
            )
            ids = [i for i, ok in zip(ids, valid) if ok]
            poses = poses[valid]
        return Sequence(
            name=name,
            image_paths=[os.path.join(folder, "color", f"{i}.jpg") for i in ids],
            timestamps=np.array([float(i) for i in ids]),
            gt_poses=poses,
            intrinsics=_intrinsics(folder),
            depth_paths=_depth(folder, ids),
            depth_scale=1.0 / 1000.0,
            protocol={},
        )


def _pose(folder: str, frame: str) -> np.ndarray:
    path = os.path.join(folder, f"{frame}.txt")
    if not os.path.isfile(path):
        raise DatasetError(f"missing ScanNet pose {path}; every colour frame needs one")
    return read_matrix(path, (4, 4), "ScanNet camera-to-world 4×4")


def _intrinsics(folder: str) -> np.ndarray | None:
    path = os.path.join(folder, "intrinsic", "intrinsic_color.txt")
    return read_matrix(path, (4, 4), "ScanNet colour intrinsics 4×4")[:3, :3].copy() if os.path.isfile(path) else None


def _depth(folder: str, ids: list[str]) -> list[str] | None:
    if not os.path.isdir(os.path.join(folder, "depth")):
        return None
    paths = [os.path.join(folder, "depth", f"{i}.png") for i in ids]
    absent = [p for p in paths if not os.path.isfile(p)]
    if absent:
        raise DatasetError(f"missing ScanNet depth {absent[0]} ({len(absent)} absent); re-export with SensReader")
    return paths
