"""Microsoft 7-Scenes in its release layout, for the multi-view reconstruction protocol.

Layout under ``root`` (each ``<scene>.zip`` and its ``seq-XX.zip`` extracted)::

    <scene>/TestSplit.txt, TrainSplit.txt          "sequence1" lines naming seq-01 etc.
    <scene>/seq-XX/frame-000000.color.png          640×480 colour
    <scene>/seq-XX/frame-000000.depth.png          640×480 16-bit depth in mm, 65535 = no depth, *depth camera*
    <scene>/seq-XX/frame-000000.depth.proj.png     optional: depth reprojected into the colour camera
                                                   (SimpleRecon's preprocessing, which Spann3R/CUT3R/LoGeR use)
    <scene>/seq-XX/frame-000000.pose.txt           4×4 camera-to-world (KinectFusion tracking)

Sequences are named ``<scene>/seq-XX``; :meth:`SevenScenes.test_sequences` lists the test split the protocol
evaluates. The colour and depth cameras are not registered: raw ``.depth.png`` is in the depth camera
(7-Scenes' calibration: focal 585, principal point (320, 240)). ``.depth.proj.png`` is used when every selected
frame has one, else ``.depth.png`` (the choice is in ``protocol["depth_file"]``). ``intrinsics`` are the colour
camera values the protocol uses (SimpleRecon's fx = fy = 525, cx = 320, cy = 240). Timestamps are frame numbers.

Selection: ``sampling="sequential"`` (default) is ``frames[start::stride][:max_frames]`` with the protocol's
keyframe stride 2; ``sampling="uniform"`` spreads ``max_frames`` evenly over ``frames[start::stride]`` (index
``i·(total−1)//(max_frames−1)``, the official uniform variant; defaults stride 1, 1000 frames). Inputs are
crop-resized to 512×384, window 64 / overlap 3, and Acc/Comp/NC are scored on the central 224×224 crop of each
point map after ICP.
"""

from __future__ import annotations

import os
import re

import numpy as np

from loger3d.eval.datasets.base import (
    Dataset,
    DatasetError,
    Selection,
    Sequence,
    list_files,
    read_matrix,
    text_lines,
)

__all__ = ["SevenScenes"]

INTRINSICS = np.array([[525.0, 0.0, 320.0], [0.0, 525.0, 240.0], [0.0, 0.0, 1.0]])

PROTOCOL = {
    "task": "multi-view reconstruction from point maps",
    "sequences": "test split: <scene>/TestSplit.txt of chess, fire, heads, office, pumpkin, redkitchen, stairs",
    "frames": "sequential: every 2nd frame, first max_frames; uniform: max_frames evenly over all frames",
    "stride": 2,
    "max_frames": 500,
    "prefix_lengths": [50, 100, 150, 200, 250, 300, 350, 400, 450, 500],
    "uniform_lengths": [100, 500, 1000],
    "resolution": "512×384 crop-resize; metrics on the central 224×224 crop of each frame's point map",
    "intrinsics": "colour fx = fy = 525, cx = 320, cy = 240 (SimpleRecon); raw depth camera 585, (320, 240)",
    "depth": ".depth.proj.png / 1000 = metres; 65535 and 0 invalid; the loader also zeroes depth > 10 m and < 1 mm",
    "window": {"LoGeR": 64, "LoGeR*": 64},
    "overlap": 3,
    "se3": {"LoGeR": False, "LoGeR*": True},
    "reset_every": 0,
    "alignment": "prediction in the first camera's frame, then point-to-point ICP (0.1 m threshold)",
    "metric": "Acc and Comp (mean nearest-neighbour distance, m), NC; Chamfer = (Acc + Comp) / 2",
    "source": "Junyi42/LoGeR eval/mv_recon/data.py, eval/mv_recon/launch.py, eval/eval.md",
}

_COLOR = ".color.png"


class SevenScenes(Dataset):
    """7-Scenes sequences ``<scene>/seq-XX``; ``sampling`` is "sequential" or "uniform" (module docstring)."""

    title = "7-Scenes"
    layout = "<scene>/seq-XX/frame-XXXXXX.color.png with .depth.png and .pose.txt"
    protocol = PROTOCOL
    defaults = Selection(start=0, stride=2, max_frames=500)

    def __init__(self, root: str | os.PathLike, *, sampling: str = "sequential") -> None:
        if sampling not in ("sequential", "uniform"):
            raise DatasetError(f"unknown 7-Scenes sampling {sampling!r}; use 'sequential' or 'uniform'")
        self.sampling = sampling
        if sampling == "uniform":
            self.defaults = Selection(start=0, stride=1, max_frames=1000)
        super().__init__(root)

    def _is_tree(self) -> bool:
        return bool(self._find())

    def _find(self) -> list[str]:
        found = []
        for scene in os.listdir(self.root):
            if not os.path.isdir(self._path(scene)):
                continue
            for seq in os.listdir(self._path(scene)):
                if re.fullmatch(r"seq-\d+", seq) and list_files(self._path(scene, seq), (_COLOR,)):
                    found.append(f"{scene}/{seq}")
        return found

    def test_sequences(self) -> list[str]:
        """Sequences of the scenes' ``TestSplit.txt`` files that are on disk (the protocol's evaluation set)."""
        found = set(self.sequences())
        listed = []
        for scene in sorted({name.split("/")[0] for name in found}):
            split = self._path(scene, "TestSplit.txt")
            if os.path.isfile(split):
                numbers = [re.sub(r"\D", "", line) for line in text_lines(split) if line.strip()]
                listed += [f"{scene}/seq-{n.zfill(2)}" for n in numbers if n]
        return [name for name in listed if name in found]

    def _load(self, name: str, selection: Selection) -> Sequence:
        folder = self._path(*name.split("/"))
        colors = list_files(folder, (_COLOR,))
        picked = [colors[i] for i in self._indices(len(colors), selection, name)]
        stems = [p[: -len(_COLOR)] for p in picked]
        poses = []
        for stem in stems:
            if not os.path.isfile(stem + ".pose.txt"):
                raise DatasetError(f"missing 7-Scenes pose {stem}.pose.txt; every colour frame needs one")
            poses.append(read_matrix(stem + ".pose.txt", (4, 4), "7-Scenes camera-to-world 4×4"))
        depth_file, depth_paths = _depth(stems)
        return Sequence(
            name=name,
            image_paths=picked,
            timestamps=np.array([float(re.sub(r"\D", "", os.path.basename(s))) for s in stems]),
            gt_poses=np.stack(poses),
            intrinsics=INTRINSICS.copy(),
            depth_paths=depth_paths,
            depth_scale=1.0 / 1000.0,
            protocol={"depth_file": depth_file, "sampling": self.sampling},
            depth_invalid=65535,
        )

    def _indices(self, count: int, selection: Selection, name: str) -> np.ndarray:
        if self.sampling == "sequential":
            return selection.indices(count, f"{self.title} sequence {name}")
        pool = Selection(selection.start, selection.stride).indices(count, f"{self.title} sequence {name}")
        want = selection.max_frames
        if want is None or pool.size <= want:
            return pool
        if want == 1:
            return pool[:1]
        return pool[[(i * (pool.size - 1)) // (want - 1) for i in range(want)]]


def _depth(stems: list[str]) -> tuple[str | None, list[str] | None]:
    for suffix in (".depth.proj.png", ".depth.png"):
        paths = [stem + suffix for stem in stems]
        if all(os.path.isfile(p) for p in paths):
            return suffix, paths
    return None, None
