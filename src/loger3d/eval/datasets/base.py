"""Common types of the evaluation dataset readers: a loaded sequence, the reader interface, and file parsing.

Everything the readers return follows one convention, whatever the dataset stores:

- camera poses: camera-to-world ``[N, 4, 4]`` float64, OpenCV axes (x right, y down, z forward), of the camera
  that took the images, in the dataset's own world frame;
- intrinsics: ``[3, 3]`` float64 at the images' original resolution;
- depth: metres, float32 ``[H, W]``, 0 where invalid;
- timestamps: ``[N]`` float64 seconds, or the frame number where the dataset has no clock.

Data is never bundled: every reader takes the root of a tree the user downloaded, in the dataset's native layout.
Readers find and check files when a sequence is loaded; pixels are read later (images by the frame source,
depth by :meth:`Sequence.load_depth`).
"""

from __future__ import annotations

import copy
import enum
import os
import struct
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from loger3d.sinks.trajectory import quaternion_to_rotation
from loger3d.sources import natural_key

from ...errors import LogerError

__all__ = [
    "DPT_TAG",
    "PROTOCOL",
    "Dataset",
    "DatasetError",
    "Selection",
    "Sequence",
    "read_dpt",
    "text_lines",
]

DPT_TAG = 202021.25  # first float32 of Sintel .dpt/.cam files (the Middlebury .flo convention)


class DatasetError(LogerError, ValueError):
    """A dataset tree, file or request that cannot be read; the message names the problem and the fix."""


class _Default(enum.Enum):
    PROTOCOL = "protocol"


PROTOCOL = _Default.PROTOCOL
"""Default of :meth:`Dataset.load`'s frame selection: the value of the LoGeR paper's protocol for the dataset."""


@dataclass(frozen=True)
class Selection:
    """Which frames of a sequence to keep: Python's ``frames[start::stride][:max_frames]`` (None = no limit)."""

    start: int = 0
    stride: int = 1
    max_frames: int | None = None

    def __post_init__(self) -> None:
        if not _is_int(self.start) or self.start < 0:
            raise DatasetError(f"start must be an integer ≥ 0, got {self.start!r}")
        if not _is_int(self.stride) or self.stride < 1:
            raise DatasetError(f"stride must be an integer ≥ 1, got {self.stride!r}")
        if self.max_frames is not None and (not _is_int(self.max_frames) or self.max_frames < 1):
            raise DatasetError(f"max_frames must be an integer ≥ 1 or None (all frames), got {self.max_frames!r}")

    def indices(self, count: int, where: str) -> np.ndarray:
        """Indices ``[K]`` into ``count`` frames; fails when nothing is left."""
        picked = np.arange(self.start, count, self.stride)[: self.max_frames]
        if picked.size == 0:
            raise DatasetError(f"{where}: start {self.start} is past the last of {count} frames; use a smaller start")
        return picked

    def as_dict(self) -> dict[str, Any]:
        return {"start": self.start, "stride": self.stride, "max_frames": self.max_frames}


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


@dataclass
class Sequence:
    """One sequence of a dataset, after the protocol's frame selection.

    ``image_paths`` ``[N]`` in order (what ``loger3d.sources.open_source`` takes); ``timestamps`` ``[N]``;
    ``gt_poses`` ``[N, 4, 4]`` camera-to-world or None; ``intrinsics`` ``[3, 3]`` or None; ``depth_paths`` ``[N]``
    or None, decoded by :meth:`load_depth` as ``raw * depth_scale`` with 0 and ``depth_invalid`` marking no depth.
    ``protocol`` holds the LoGeR paper's settings for the dataset plus ``selection`` (the frames actually kept).
    """

    name: str
    image_paths: list[str]
    timestamps: np.ndarray
    gt_poses: np.ndarray | None
    intrinsics: np.ndarray | None
    depth_paths: list[str] | None
    depth_scale: float
    protocol: dict[str, Any]
    depth_invalid: int | None = None

    def __post_init__(self) -> None:
        n = len(self.image_paths)
        self.timestamps = np.asarray(self.timestamps, dtype=np.float64)
        if self.timestamps.shape != (n,):
            raise DatasetError(f"{self.name}: {self.timestamps.shape} timestamps for {n} images")
        if self.gt_poses is not None:
            self.gt_poses = np.asarray(self.gt_poses, dtype=np.float64)
            if self.gt_poses.shape != (n, 4, 4):
                raise DatasetError(f"{self.name}: poses of shape {self.gt_poses.shape} for {n} images")
        if self.depth_paths is not None and len(self.depth_paths) != n:
            raise DatasetError(f"{self.name}: {len(self.depth_paths)} depth maps for {n} images")

    def __len__(self) -> int:
        return len(self.image_paths)

    def load_depth(self, i: int) -> np.ndarray:
        """Depth of frame ``i`` in metres, float32 ``[H, W]``, 0 where the file has no depth.

        By extension: ``.png`` 16-bit integers times ``depth_scale``; ``.npy`` float arrays times ``depth_scale``;
        ``.dpt`` Sintel depth (:func:`read_dpt`). Non-finite values become 0.
        """
        if self.depth_paths is None:
            raise DatasetError(f"sequence {self.name} has no depth maps; load a dataset that ships depth")
        path = self.depth_paths[i]
        suffix = os.path.splitext(path)[1].lower()
        if suffix == ".dpt":
            raw = read_dpt(path)
        elif suffix == ".npy":
            raw = _read_depth_npy(path)
        elif suffix == ".png":
            raw = _read_depth_png(path)
        else:
            raise DatasetError(f"{path}: unknown depth format {suffix!r}; expected .png, .npy or .dpt")
        invalid = (raw == 0) | ~np.isfinite(raw)
        if self.depth_invalid is not None:
            invalid |= raw == self.depth_invalid
        depth = (raw.astype(np.float64) * self.depth_scale).astype(np.float32)
        depth[invalid] = 0.0
        return depth


def _read_depth_npy(path: str) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False).astype(np.float32)
    except (OSError, ValueError, EOFError) as e:  # cut short, not .npy, or an object array
        raise DatasetError(f"{path}: cannot read the depth ({' '.join(str(e).split())}); re-download it") from None


def _read_depth_png(path: str) -> np.ndarray:
    with Image.open(path) as image:
        if image.mode not in ("I;16", "I;16B", "I;16L", "I"):
            raise DatasetError(f"{path}: {image.mode} image, expected a 16-bit depth PNG")
        return np.asarray(image).astype(np.float32)


def read_dpt(path: str) -> np.ndarray:
    """Sintel depth ``[H, W]`` float32 from a ``.dpt`` file.

    Layout (little-endian): float32 tag 202021.25, int32 width, int32 height, then width·height float32 depths,
    row-major. Sintel depths are z-depth (distance along the optical axis) in the renderer's units, taken as metres.
    """
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 12 or struct.unpack_from("<f", data)[0] != DPT_TAG:
        raise DatasetError(f"{path}: not a Sintel .dpt file (first float is not {DPT_TAG}); re-download the depth")
    width, height = struct.unpack_from("<ii", data, 4)
    if width <= 0 or height <= 0 or len(data) != 12 + 4 * width * height:
        raise DatasetError(f"{path}: header says {width}×{height} but the file holds {len(data) - 12} bytes of depth")
    return np.frombuffer(data, dtype="<f4", offset=12).reshape(height, width).astype(np.float32)


def read_rows(path: str, columns: int | tuple[int, int], what: str) -> list[tuple[int, list[str]]]:
    """Whitespace-separated fields of each line with its line number; blank and ``#`` lines are skipped.

    ``columns`` is the exact count or a ``(min, max)`` range; other lines fail with ``file:line``.
    """
    low, high = (columns, columns) if isinstance(columns, int) else columns
    if not os.path.isfile(path):
        raise DatasetError(f"missing {what} file {path}")
    rows = []
    for lineno, line in enumerate(text_lines(path), start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if not low <= len(fields) <= high:
            expected = low if low == high else f"{low} to {high}"
            raise DatasetError(f"{path}:{lineno}: {len(fields)} fields, expected {expected} ({what})")
        rows.append((lineno, fields))
    return rows


def text_lines(path: str) -> list[str]:
    """The lines of a UTF-8 text file of the dataset; one that is not text is a ``DatasetError`` naming it."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.readlines()
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path} is not a text file ({e.reason}); re-download it") from None


def read_numbers(path: str, columns: int, what: str) -> np.ndarray:
    """Numbers ``[M, columns]`` float64 of a text table (``inf``/``nan`` allowed); bad lines fail with ``file:line``."""
    out = np.empty((0, columns), dtype=np.float64)
    rows = read_rows(path, columns, what)
    if rows:
        out = np.array([parse_floats(path, lineno, fields, what) for lineno, fields in rows], dtype=np.float64)
    return out


def parse_floats(path: str, lineno: int, fields: list[str], what: str) -> list[float]:
    try:
        return [float(v) for v in fields]
    except ValueError:
        raise DatasetError(f"{path}:{lineno}: not numbers: {' '.join(fields)!r} ({what})") from None


def read_matrix(path: str, shape: tuple[int, int], what: str) -> np.ndarray:
    """A small matrix written as rows of numbers (ScanNet/7-Scenes poses, intrinsics files)."""
    numbers = read_numbers(path, shape[1], what)
    if numbers.shape != shape:
        raise DatasetError(f"{path}: {numbers.shape[0]} rows of numbers, expected {shape[0]} ({what})")
    return numbers


def tum_poses(rows: np.ndarray) -> np.ndarray:
    """Camera-to-world ``[N, 4, 4]`` from TUM rows ``[N, 7]`` (``tx ty tz qx qy qz qw``)."""
    poses = np.tile(np.eye(4), (len(rows), 1, 1))
    poses[:, :3, :3] = quaternion_to_rotation(rows[:, 3:7])
    poses[:, :3, 3] = rows[:, :3]
    return poses


def list_files(folder: str, suffixes: tuple[str, ...]) -> list[str]:
    """Files of ``folder`` with one of ``suffixes`` (lower case), natural-sorted; [] when the folder is missing."""
    if not os.path.isdir(folder):
        return []
    names = [n for n in os.listdir(folder) if n.lower().endswith(suffixes)]
    return [os.path.join(folder, n) for n in sorted(names, key=natural_key)]


def check_count(path: str, got: int, expected: int, what: str, fix: str) -> None:
    if got != expected:
        raise DatasetError(f"{path}: {got} {what} for {expected} images; {fix}")


class Dataset:
    """Reader of one dataset's native layout under ``root``.

    Subclasses set the class attributes and implement ``_is_tree``, ``_find`` and ``_load``; the base class checks
    the root, sequence names and frame selection so that every reader fails the same way.
    """

    title: ClassVar[str]  # "KITTI odometry"
    layout: ClassVar[str]  # what the root must hold, for the missing-tree message
    protocol: ClassVar[dict[str, Any]]  # the LoGeR paper's settings (see each module's docstring)
    defaults: ClassVar[Selection] = Selection()

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = os.path.abspath(os.fspath(root))
        if not os.path.isdir(self.root) or not self._is_tree():
            raise DatasetError(f"no {self.title} tree at {self.root}: expected {self.layout}")

    def sequences(self) -> list[str]:
        """Names of the sequences found on disk, natural-sorted."""
        return sorted(self._find(), key=natural_key)

    def load(
        self,
        name: str,
        *,
        stride: int | _Default = PROTOCOL,
        max_frames: int | None | _Default = PROTOCOL,
        start: int | _Default = PROTOCOL,
    ) -> Sequence:
        """Sequence ``name`` with frames ``[start::stride][:max_frames]`` (omitted: the protocol's values)."""
        found = self.sequences()
        if name not in found:
            listed = ", ".join(found) if found else "none"
            raise DatasetError(f"no {self.title} sequence {name!r} under {self.root}; found: {listed}")
        selection = Selection(
            start=self.defaults.start if start is PROTOCOL else start,
            stride=self.defaults.stride if stride is PROTOCOL else stride,
            max_frames=self.defaults.max_frames if max_frames is PROTOCOL else max_frames,
        )
        sequence = self._load(name, selection)
        sequence.protocol = {**copy.deepcopy(self.protocol), **sequence.protocol, "selection": selection.as_dict()}
        return sequence

    def describe(self) -> dict[str, Any]:
        """Root, layout, sequences on disk and the protocol, for logs and reports."""
        return {
            "dataset": self.title,
            "root": self.root,
            "layout": self.layout,
            "sequences": self.sequences(),
            "protocol": copy.deepcopy(self.protocol),
        }

    def _path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    def _is_tree(self) -> bool:
        raise NotImplementedError

    def _find(self) -> list[str]:
        raise NotImplementedError

    def _load(self, name: str, selection: Selection) -> Sequence:
        raise NotImplementedError
