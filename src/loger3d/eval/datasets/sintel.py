"""MPI Sintel (training set) in its release layout: images, camera files and depth of the "MPI-Sintel-depth" add-on.

Layout under ``root`` (the folder holding ``training/``)::

    training/final/<scene>/frame_0001.png ...       1024×436 renders ("clean" pass: training/clean/)
    training/camdata_left/<scene>/frame_0001.cam    camera per frame
    training/depth/<scene>/frame_0001.dpt           z-depth per frame

Protocol (``PROTOCOL``): all frames (stride 1) of 14 sequences (643 frames; video depth with MonST3R's
``--full_seq`` uses all 23 scenes), "final" pass, input long side 512, depth capped at 70 m; pose by evo Sim(3)
ATE / RPE. LoGeR releases no Sintel run script of its own, so no window is recorded.

``.cam`` (little-endian, 172 bytes): float32 tag 202021.25, then the 3×3 intrinsics ``M`` and the 3×4 extrinsics
``N`` as float64, row-major, with ``x = M · N · X`` for a world point X, i.e. ``N`` is world-to-camera in OpenCV
axes; poses are ``inv([N; 0 0 0 1])``. ``.dpt``: see :func:`loger3d.eval.datasets.base.read_dpt`. Timestamps are
the frame numbers of the file names. ``intrinsics`` is the first frame's ``M`` when every frame of the sequence
has the same one, else None (per-frame values differ; read the .cam files).
"""

from __future__ import annotations

import os
import re
import struct

import numpy as np

from loger3d.eval.datasets.base import DPT_TAG, Dataset, DatasetError, Selection, Sequence, check_count, list_files

__all__ = ["Sintel", "read_cam"]

_CAM_BYTES = 4 + 9 * 8 + 12 * 8

PROTOCOL = {
    "task": "camera pose and video depth on synthetic dynamic scenes (short-context cross-check)",
    "sequences": [
        "alley_2",
        "ambush_4",
        "ambush_5",
        "ambush_6",
        "cave_2",
        "cave_4",
        "market_2",
        "market_5",
        "market_6",
        "shaman_3",
        "sleeping_1",
        "sleeping_2",
        "temple_2",
        "temple_3",
    ],
    "frames": "all frames of each sequence (643 over the 14 sequences)",
    "stride": 1,
    "max_frames": None,
    "image_pass": "final",
    "video_depth_sequences": "the same 14 in LoGeR's scripts; all 23 training scenes with MonST3R's --full_seq",
    "resolution": "launcher --size 512",
    "window": None,
    "overlap": None,
    "reset_every": 0,
    "window_note": "no LoGeR Sintel run script is released (eval/relpose/run_sintel.sh is TTT3R's)",
    "depth_cap_m": 70,
    "alignment": "pose: Sim(3) Umeyama (evo); depth: one per sequence, 'metric', 'scale' or 'scale&shift'",
    "metric": "pose: ATE, RPE translation/rotation; depth: AbsRel, δ<1.25 on GT > 0",
    "source": "Junyi42/LoGeR eval/relpose/metadata.py, eval/relpose/evo_utils.py, eval/video_depth/eval_depth.py",
}


def read_cam(path: str) -> tuple[np.ndarray, np.ndarray]:
    """Intrinsics ``[3, 3]`` and world-to-camera extrinsics ``[3, 4]`` float64 from a Sintel ``.cam`` file."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) != _CAM_BYTES or struct.unpack_from("<f", data)[0] != DPT_TAG:
        raise DatasetError(f"{path}: not a Sintel .cam file (tag 202021.25 + 21 float64); re-download camdata_left")
    values = np.frombuffer(data, dtype="<f8", offset=4)
    return values[:9].reshape(3, 3).copy(), values[9:].reshape(3, 4).copy()


class Sintel(Dataset):
    """Sintel training scenes of one render pass ("final" or "clean")."""

    title = "MPI Sintel"
    layout = "training/<pass>/<scene>/frame_XXXX.png with training/camdata_left/<scene>/frame_XXXX.cam"
    protocol = PROTOCOL
    defaults = Selection(start=0, stride=1, max_frames=None)

    def __init__(self, root: str | os.PathLike, *, image_pass: str = "final") -> None:
        if image_pass not in ("final", "clean"):
            raise DatasetError(f"unknown Sintel pass {image_pass!r}; use 'final' or 'clean'")
        self.image_pass = image_pass
        super().__init__(root)

    def _is_tree(self) -> bool:
        return os.path.isdir(self._path("training", self.image_pass))

    def _find(self) -> list[str]:
        folder = self._path("training", self.image_pass)
        return [n for n in os.listdir(folder) if os.path.isdir(os.path.join(folder, n))]

    def _load(self, name: str, selection: Selection) -> Sequence:
        images = list_files(self._path("training", self.image_pass, name), (".png",))
        cam_folder = self._path("training", "camdata_left", name)
        if not os.path.isdir(cam_folder):
            raise DatasetError(f"no ground truth for {self.title} sequence {name}: missing {cam_folder}")
        check_count(
            cam_folder,
            len(list_files(cam_folder, (".cam",))),
            len(images),
            "camera files",
            "every frame needs a .cam file",
        )
        picked = [images[i] for i in selection.indices(len(images), f"{self.title} sequence {name}")]
        stems = [os.path.splitext(os.path.basename(p))[0] for p in picked]
        cams = [_read_cam_of(cam_folder, stem) for stem in stems]
        extrinsics = np.tile(np.eye(4), (len(cams), 1, 1))
        extrinsics[:, :3, :] = [n for _, n in cams]
        intrinsics = [m for m, _ in cams]
        depth_folder = self._path("training", "depth", name)
        depth_paths = None
        if os.path.isdir(depth_folder):
            depth_paths = [os.path.join(depth_folder, f"{stem}.dpt") for stem in stems]
            absent = [p for p in depth_paths if not os.path.isfile(p)]
            if absent:
                raise DatasetError(f"missing Sintel depth {absent[0]} ({len(absent)} absent); re-extract the depth")
        same = all(np.array_equal(m, intrinsics[0]) for m in intrinsics)
        return Sequence(
            name=name,
            image_paths=picked,
            timestamps=np.array([_frame_number(stem, i) for i, stem in enumerate(stems)], dtype=np.float64),
            gt_poses=np.linalg.inv(extrinsics),
            intrinsics=intrinsics[0] if same else None,
            depth_paths=depth_paths,
            depth_scale=1.0,
            protocol={"image_pass": self.image_pass},
        )


def _read_cam_of(folder: str, stem: str) -> tuple[np.ndarray, np.ndarray]:
    path = os.path.join(folder, f"{stem}.cam")
    if not os.path.isfile(path):
        raise DatasetError(f"missing Sintel camera file {path}; every frame needs one")
    return read_cam(path)


def _frame_number(stem: str, fallback: int) -> float:
    digits = re.search(r"(\d+)$", stem)
    return float(digits.group(1)) if digits else float(fallback)
