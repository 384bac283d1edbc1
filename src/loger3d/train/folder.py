"""Real multi-view training data: clips from a folder of sequences with images, depth, poses and intrinsics.

Any dataset converted to this layout trains the model (docs/training-data.md)::

    ROOT/SEQUENCE/rgb/000000.jpg ...      images (.jpg, .jpeg or .png), in natural-sorted name order
    ROOT/SEQUENCE/depth/000000.npy ...    z-depth per image: float metres (.npy) or 16-bit .png times depth_scale
    ROOT/SEQUENCE/poses.txt               one camera-to-world pose per image: 12 (3x4) or 16 numbers, row-major
    ROOT/SEQUENCE/intrinsics.txt          fx fy cx cy per image, or one line for all
    ROOT/SEQUENCE/meta.json               optional: {"depth_scale": 0.001, "max_depth": 80.0}

Poses use OpenCV axes (x right, y down, z forward); intrinsics the pixel-centre convention (pixel (r, c) at
u = c, v = r). Text tables are read and checked when the folder is opened; pixels are read per clip.

    source = SequenceFolder("/data/scannetpp_processed", 168, 224, stride=(1, 3), max_depth=20)
    clip = source.sample(np.random.default_rng(0), frames=16, device="cuda")
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from loger3d.errors import InputError
from loger3d.eval.datasets.base import (
    DatasetError,
    _read_depth_png,
    check_count,
    list_files,
    parse_floats,
    read_rows,
)
from loger3d.sources import IMAGE_EXTENSIONS, natural_key
from loger3d.sources.preprocess import frames_to_tensor, to_rgb8

from .clip import Clip
from .depth_filter import DepthFilter

__all__ = ["DatasetError", "SequenceFolder"]

DEPTH_SUFFIXES = (".npy", ".png")
META_KEYS = ("depth_scale", "max_depth")
_LAYOUT = "ROOT/SEQUENCE/{rgb/, depth/, poses.txt, intrinsics.txt} (see docs/training-data.md)"
_POSE = "camera-to-world pose: 12 or 16 numbers a line, row-major"
_INTRINSICS = "fx fy cx cy in pixels"


@dataclass(frozen=True)
class _Sequence:
    """One indexed sequence: file lists ``[N]``, ``poses`` ``[N, 4, 4]`` and ``intrinsics`` ``[N, 3, 3]`` float64."""

    name: str
    images: list[str]
    depths: list[str]
    poses: np.ndarray
    intrinsics: np.ndarray
    depth_scale: float
    depth_filter: DepthFilter

    def __len__(self) -> int:
        return len(self.images)


class SequenceFolder:
    """A :class:`~loger3d.train.clip.ClipSource` over the sequences under ``root`` (layout in the module docstring).

    A clip is ``frames`` frames ``start, start + s, ...`` of one sequence, with the step ``s`` drawn from the
    inclusive range ``stride`` (real videos at 30 fps move too little per frame at step 1). Every possible
    (sequence, step, start) is equally likely, so longer sequences are drawn more often. Each frame is resized,
    keeping its aspect, until it covers ``height × width``, then centre-cropped; depth is resampled with nearest
    neighbour on the same geometry (never blended across edges) and the intrinsics are transformed exactly.
    Far depth is dropped by :class:`DepthFilter` with ``max_depth`` (and meta.json's, the nearer wins) and
    ``depth_percentile``.
    """

    def __init__(self, root: str | os.PathLike, height: int, width: int, name: str | None = None,
                 stride: Sequence[int] = (1, 1), max_depth: float | None = None,
                 depth_percentile: float | None = None) -> None:
        self.root = os.path.abspath(os.fspath(root))
        if not all(_is_int(v) and v > 0 for v in (height, width)):
            raise DatasetError(f"height and width must be positive integers, got {height!r} and {width!r}")
        if not (isinstance(stride, Sequence) and len(stride) == 2 and all(_is_int(v) for v in stride)
                and 1 <= stride[0] <= stride[1]):
            raise DatasetError(f"stride must be (min, max) integers with 1 ≤ min ≤ max, got {stride!r}")
        DepthFilter(max_depth, depth_percentile)  # fail now on bad values, not at the first clip
        self.height, self.width = int(height), int(width)
        self.stride = (int(stride[0]), int(stride[1]))
        self.name = name or os.path.basename(self.root)
        self.max_depth, self.depth_percentile = max_depth, depth_percentile
        if not os.path.isdir(self.root):
            raise DatasetError(f"no sequence folder at {self.root}: expected {_LAYOUT}")
        if os.path.isdir(self._path("rgb")):
            raise DatasetError(f"{self.root} holds rgb/, so it is one sequence, not a folder of them; pass its "
                               "parent folder")
        folders = sorted((n for n in os.listdir(self.root) if not n.startswith(".")
                          and os.path.isdir(os.path.join(self.root, n))), key=natural_key)
        if not folders:
            raise DatasetError(f"no sequences under {self.root}: expected {_LAYOUT}")
        self._index = [self._load(folder) for folder in folders]

    @property
    def sequences(self) -> list[str]:
        """Names of the sequences (sub-folders of the root), natural-sorted."""
        return [seq.name for seq in self._index]

    def __len__(self) -> int:
        return len(self._index)

    def sample(self, rng: np.random.Generator, frames: int, device: torch.device | str = "cpu") -> Clip:
        """A clip of ``frames`` frames at ``height × width``; a pure function of ``rng``'s state."""
        if not _is_int(frames) or frames < 1:
            raise DatasetError(f"frames must be a positive integer, got {frames!r}")
        lengths = np.array([len(seq) for seq in self._index], dtype=np.int64)
        steps = np.arange(self.stride[0], self.stride[1] + 1, dtype=np.int64)
        counts = np.maximum(0, lengths[:, None] - (frames - 1) * steps[None, :]).ravel()  # [sequences × steps]
        if counts.sum() == 0:
            longest = int(lengths.argmax())
            raise DatasetError(f"{self.root}: no sequence is long enough for {frames} frames at stride "
                               f"{self.stride[0]} ({(frames - 1) * self.stride[0] + 1} frames needed, the longest, "
                               f"{self.sequences[longest]}, has {lengths[longest]}); use fewer frames or a smaller "
                               "stride, or add longer sequences")
        ends = counts.cumsum()
        pick = int(rng.integers(ends[-1]))
        cell = int(np.searchsorted(ends, pick, side="right"))
        start = pick - int(ends[cell] - counts[cell])
        seq, step = divmod(cell, len(steps))
        indices = start + int(steps[step]) * np.arange(frames)
        return self._read(self._index[seq], indices).to(device)

    def _read(self, seq: _Sequence, indices: np.ndarray) -> Clip:
        images, depths, intrinsics = [], [], []
        for i in indices:
            image, depth = _read_image(seq.images[i]), _read_depth(seq.depths[i], seq.depth_scale)
            w, h = image.size
            if depth.shape != (h, w):
                raise DatasetError(f"{seq.depths[i]}: depth is {depth.shape[1]}×{depth.shape[0]} but its image "
                                   f"{seq.images[i]} is {w}×{h}; save depth at the image's size")
            box, scale = _centre_crop(w, h, self.width, self.height)
            images.append(np.asarray(image.resize((self.width, self.height), Image.Resampling.LANCZOS, box=box)))
            rows, cols = _nearest(box[1], scale, self.height, h), _nearest(box[0], scale, self.width, w)
            depths.append(depth[np.ix_(rows, cols)])
            intrinsics.append(_crop_intrinsics(seq.intrinsics[i], box[0], box[1], scale))
        depth = torch.from_numpy(np.stack(depths))
        clip = Clip(images=frames_to_tensor(np.stack(images)), depth=depth, valid=depth > 0,
                    intrinsics=torch.from_numpy(np.stack(intrinsics)).float(),
                    poses=torch.from_numpy(seq.poses[indices]).float(), source=f"{self.name}/{seq.name}")
        return seq.depth_filter(clip)

    def _load(self, name: str) -> _Sequence:
        folder = self._path(name)
        images = list_files(os.path.join(folder, "rgb"), IMAGE_EXTENSIONS)
        if not images:
            raise DatasetError(f"{os.path.join(folder, 'rgb')}: no .jpg or .png images; every folder under the "
                               f"root must be a sequence: {_LAYOUT}")
        meta = _read_meta(os.path.join(folder, "meta.json"))
        depth_folder = os.path.join(folder, "depth")
        depths = list_files(depth_folder, DEPTH_SUFFIXES)
        check_count(depth_folder, len(depths), len(images), "depth maps",
                    "write one depth map per image (.npy metres or 16-bit .png)")
        if "depth_scale" not in meta and any(p.lower().endswith(".png") for p in depths):
            raise DatasetError(f"{os.path.join(folder, 'meta.json')}: 16-bit .png depth needs a depth_scale "
                               'in metres per unit; write e.g. {"depth_scale": 0.001} for millimetres')
        limits = [d for d in (self.max_depth, meta.get("max_depth")) if d is not None]
        return _Sequence(name=name, images=images, depths=depths,
                         poses=_read_poses(os.path.join(folder, "poses.txt"), len(images)),
                         intrinsics=_read_intrinsics(os.path.join(folder, "intrinsics.txt"), len(images)),
                         depth_scale=float(meta.get("depth_scale", 1.0)),
                         depth_filter=DepthFilter(min(limits) if limits else None, self.depth_percentile))

    def _path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)


def _centre_crop(w: int, h: int, width: int, height: int) -> tuple[tuple[float, float, float, float], float]:
    """The largest centred box ``(x0, y0, x1, y1)`` of a ``w × h`` image with the aspect of ``width × height``, in
    source pixels, and the scale (target pixels per source pixel) that maps it onto the target."""
    scale = max(width / w, height / h)
    crop_w, crop_h = min(w, width / scale), min(h, height / scale)
    x0, y0 = (w - crop_w) / 2, (h - crop_h) / 2
    return (x0, y0, x0 + crop_w, y0 + crop_h), scale


def _nearest(start: float, scale: float, size: int, limit: int) -> np.ndarray:
    """Source indices ``[size]`` of the pixels whose area holds each target pixel's centre (nearest neighbour)."""
    return np.clip(np.floor(start + (np.arange(size) + 0.5) / scale).astype(np.int64), 0, limit - 1)


def _crop_intrinsics(k: np.ndarray, x0: float, y0: float, scale: float) -> np.ndarray:
    """``K`` ``[3, 3]`` after cropping at ``(x0, y0)`` and scaling: ``u' = (u + 0.5 - x0)·scale - 0.5``."""
    out = k.copy()
    out[:2, :2] *= scale
    out[0, 2] = (k[0, 2] + 0.5 - x0) * scale - 0.5
    out[1, 2] = (k[1, 2] + 0.5 - y0) * scale - 0.5
    return out


def _read_image(path: str) -> Image.Image:
    """The image as 8-bit RGB, decoded (so that the file can be closed)."""
    try:
        with Image.open(path) as opened:
            rgb = to_rgb8(opened)
            rgb.load()
    except (OSError, InputError) as e:  # unreadable, or a mode that has no RGB
        raise DatasetError(f"{path}: cannot read the image ({' '.join(str(e).split())}); re-export it") from None
    return rgb


def _read_depth(path: str, scale: float) -> np.ndarray:
    """Depth ``[H, W]`` float32 metres: stored values times ``scale``; 0, negative and non-finite become 0."""
    if path.lower().endswith(".png"):
        raw = _read_depth_png(path)
    else:
        try:
            raw = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise DatasetError(f"{path}: cannot read the depth ({' '.join(str(e).split())}); re-export it") from None
        if raw.ndim != 2:
            raise DatasetError(f"{path}: depth of shape {list(raw.shape)}, expected [H, W]; save one 2-D array")
    depth = (raw.astype(np.float64) * scale).astype(np.float32)
    depth[~(np.isfinite(depth) & (depth > 0))] = 0.0
    return depth


def _read_poses(path: str, count: int) -> np.ndarray:
    """Camera-to-world ``[count, 4, 4]`` float64 from ``poses.txt``, each checked to be a rigid motion."""
    if not os.path.isfile(path):
        raise DatasetError(f"missing {path}; write one {_POSE} per image")
    rows = read_rows(path, (12, 16), _POSE)
    check_count(path, len(rows), count, "poses", "write one pose line per image in rgb/")
    poses = np.tile(np.eye(4), (count, 1, 1))
    for pose, (lineno, fields) in zip(poses, rows):
        if len(fields) not in (12, 16):
            raise DatasetError(f"{path}:{lineno}: {len(fields)} fields, expected 12 or 16 ({_POSE})")
        values = np.array(parse_floats(path, lineno, fields, _POSE)).reshape(-1, 4)
        pose[:len(values)] = values
        rot = pose[:3, :3]
        if not np.isfinite(values).all():
            problem = "numbers that are not finite"
        elif not np.allclose(pose[3], [0, 0, 0, 1], atol=1e-6):
            problem = "last row is not 0 0 0 1"
        elif not np.allclose(rot.T @ rot, np.eye(3), atol=1e-3) or np.linalg.det(rot) < 0:
            problem = "rotation not orthonormal with determinant +1"
        else:
            continue
        raise DatasetError(f"{path}:{lineno}: not a rigid camera-to-world pose ({problem}); fix the line or drop "
                           "the frame's image, depth and pose")
    return poses


def _read_intrinsics(path: str, count: int) -> np.ndarray:
    """``K`` ``[count, 3, 3]`` float64 from ``intrinsics.txt`` (one line per image, or one line for all)."""
    if not os.path.isfile(path):
        raise DatasetError(f"missing {path}; write {_INTRINSICS}: one line per image or a single line for all")
    rows = read_rows(path, 4, _INTRINSICS)
    if len(rows) not in (1, count):
        raise DatasetError(f"{path}: {len(rows)} lines for {count} images; write one line of {_INTRINSICS} per "
                           "image or a single line for all")
    k = np.tile(np.eye(3), (len(rows), 1, 1))
    for matrix, (lineno, fields) in zip(k, rows):
        fx, fy, cx, cy = parse_floats(path, lineno, fields, _INTRINSICS)
        if not (math.isfinite(cx) and math.isfinite(cy) and 0 < fx < math.inf and 0 < fy < math.inf):
            raise DatasetError(f"{path}:{lineno}: fx and fy must be positive and all four numbers finite "
                               f"({_INTRINSICS})")
        matrix[0, 0], matrix[1, 1], matrix[0, 2], matrix[1, 2] = fx, fy, cx, cy
    return np.repeat(k, count // len(rows), axis=0)


def _read_meta(path: str) -> dict[str, float]:
    """meta.json's settings (``depth_scale``, ``max_depth``), each a positive number; {} when there is none."""
    if not os.path.isfile(path):
        return {}
    example = 'e.g. {"depth_scale": 0.001, "max_depth": 80.0}'
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
    except (ValueError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path}: not valid JSON ({e}); write {example}") from None
    if not isinstance(meta, dict):
        raise DatasetError(f"{path}: expected a JSON object, {example}")
    unknown = sorted(set(meta) - set(META_KEYS))
    if unknown:
        raise DatasetError(f"{path}: unknown keys {unknown}; meta.json may hold only {', '.join(META_KEYS)}")
    for key, value in meta.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
            raise DatasetError(f"{path}: {key} must be a positive number, got {value!r}")
    return meta


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)
