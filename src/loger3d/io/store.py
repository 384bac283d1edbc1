"""The per-frame results of a run on disk: ``OUT/frames/chunk_#####.npz`` and ``OUT/images/<name>.jpg``.

One uncompressed npz per appended batch (compressing cost more time than the model; ``--float16``
halves the size) keeps memory bounded for any video length, and a resumed
run can drop chunks past its checkpoint with :meth:`FrameStore.truncate`. Every file appears
atomically (written next to its final name, then renamed), so a crash never leaves a chunk that
looks finished but is cut short.

Chunk members (n frames of size H×W):
    index [n] int64, source_index [n] int64, timestamp [n] float64, name [n] unicode,
    conf [n,H,W], local_points [n,H,W,3]   (float32, or float16 if asked)
    image [n,H,W,3] uint8 the frames as the model saw them (exact, unlike the JPEG exports)
    camera_poses [n,4,4] float64 camera-to-world (OpenCV axes)
    intrinsics [n,3,3] float32 pinhole K estimated from local_points (pixel (r, c) centred at u=c, v=r)

Derived values are not stored: depth is ``local_points[..., 2]`` (readers add it as ``depth``), world
points are ``camera_poses`` applied to ``local_points``.
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image

from loger3d.io.frames import FrameBatch
from loger3d.io.intrinsics import estimate_intrinsics

__all__ = ["FrameStore", "ImageWriter", "atomic_open", "image_relpath"]

_CHUNK = re.compile(r"chunk_(\d{5,})\.npz")
_SMALL = ("index", "timestamp", "camera_poses", "name")
_EMPTY = {
    "index": np.zeros(0, np.int64),
    "timestamp": np.zeros(0, np.float64),
    "camera_poses": np.zeros((0, 4, 4), np.float64),
    "name": np.zeros(0, np.str_),
    "intrinsics": np.zeros((0, 3, 3), np.float32),
}


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a new hidden file next to ``path`` (mode "w" or "wb"); on success rename it to ``path``, on error delete it.

    The rename is atomic on one filesystem, so readers see the old file or the whole new one. The
    file is created like any other (umask permissions), unlike ``tempfile.mkstemp``'s 0600.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode {mode!r} is not supported: use 'w' or 'wb'")
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    f = open(tmp, mode.replace("w", "x"), **({"encoding": "utf-8"} if mode == "w" else {}))
    try:
        with f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink()
        raise


def image_relpath(name: str) -> str:
    """Where :class:`ImageWriter` puts frame ``name``, relative to the output folder (COLMAP/nerfstudio refer to it)."""
    return f"images/{name}.jpg"


class FrameStore:
    """Chunked per-frame results under ``root/frames``; write with :meth:`append`, read with the other methods.

    ``dtype`` ("float32" or "float16") applies to depth, conf and local_points; poses stay float64
    and intrinsics float32. New chunks are numbered after the highest one present.
    """

    def __init__(self, root: str | os.PathLike, dtype: str = "float32") -> None:
        if dtype not in ("float32", "float16"):
            raise ValueError(f"dtype {dtype!r} is not supported: use 'float32' or 'float16'")
        self.folder = Path(root) / "frames"
        self.dtype = np.dtype(dtype)
        self._next = self._after_last()
        self._index: dict[int, tuple[Path, int]] | None = None

    def chunks(self) -> list[Path]:
        """The chunk files present, in chunk-number order."""
        if not self.folder.is_dir():
            return []
        found = [p for p in self.folder.iterdir() if _CHUNK.fullmatch(p.name)]
        return sorted(found, key=_chunk_number)

    def append(self, batch: FrameBatch) -> int:
        """Write ``batch`` as the next chunk file and return its number."""
        n = len(batch)
        if n == 0:
            raise ValueError("empty FrameBatch: append batches with at least one frame")
        self.folder.mkdir(parents=True, exist_ok=True)
        number = self._next
        path = self.folder / f"chunk_{number:05d}.npz"
        local = np.asarray(batch.local_points)
        arrays = {
            "index": np.asarray(batch.index, dtype=np.int64),
            "source_index": np.asarray(batch.source_index, dtype=np.int64),
            "timestamp": np.asarray(batch.timestamp, dtype=np.float64),
            "name": np.asarray(list(batch.name), dtype=np.str_),
            "conf": np.asarray(batch.conf).astype(self.dtype),
            "local_points": local.astype(self.dtype),
            "image": np.asarray(batch.image, dtype=np.uint8),
            "camera_poses": np.asarray(batch.camera_poses, dtype=np.float64),
            "intrinsics": estimate_intrinsics(local, batch.conf, step=4).astype(np.float32),
        }
        with atomic_open(path, "wb") as f:
            np.savez(f, **arrays)
        self._next = number + 1
        if self._index is not None:
            self._index.update({int(i): (path, row) for row, i in enumerate(arrays["index"])})
        return number

    def truncate(self, num_chunks: int) -> None:
        """Delete chunk files numbered ``num_chunks`` and above (a resumed run rewrites them)."""
        for path in self.chunks():
            if _chunk_number(path) >= num_chunks:
                path.unlink()
        self._next = self._after_last()
        self._index = None

    def iter_batches(self) -> Iterator[dict[str, np.ndarray]]:
        """Each chunk's arrays (all members, loaded), in chunk order."""
        for path in self.chunks():
            with np.load(path) as z:
                arrays = {k: z[k] for k in z.files}
            arrays["depth"] = arrays["local_points"][..., 2]
            yield arrays

    def read_frame(self, i: int) -> dict[str, np.ndarray]:
        """Frame with sequence index ``i``: every member's row (0-d arrays for index, name, ...)."""
        if self._index is None or i not in self._index:
            self._index = self._build_index()  # a miss rebuilds once: another process may have appended
        if i not in self._index:
            raise KeyError(f"frame {i} is not in {self.folder}: it holds {len(self._index)} frames")
        path, row = self._index[i]
        with np.load(path) as z:
            frame = {k: z[k][row] for k in z.files}
        frame["depth"] = frame["local_points"][..., 2]
        return frame

    def read_poses(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
        """index ``[N]`` int64, timestamp ``[N]`` float64, camera-to-world ``[N, 4, 4]``, names: small members only."""
        parts = self._read_members(_SMALL)
        return parts["index"], parts["timestamp"], parts["camera_poses"], [str(s) for s in parts["name"]]

    def read_intrinsics(self) -> np.ndarray:
        """Per-frame pinhole K ``[N, 3, 3]`` float32 in frame order (pixel (r, c) centred at u=c, v=r)."""
        return self._read_members(("intrinsics",))["intrinsics"]

    def _after_last(self) -> int:
        chunks = self.chunks()
        return _chunk_number(chunks[-1]) + 1 if chunks else 0

    def _read_members(self, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
        parts: dict[str, list[np.ndarray]] = {k: [] for k in keys}
        for path in self.chunks():
            with np.load(path) as z:  # lazy: each member is decompressed only when indexed
                for k in keys:
                    parts[k].append(z[k])
        return {k: np.concatenate(v) if v else _EMPTY[k] for k, v in parts.items()}

    def _build_index(self) -> dict[int, tuple[Path, int]]:
        index: dict[int, tuple[Path, int]] = {}
        for path in self.chunks():
            with np.load(path) as z:
                index.update({int(i): (path, row) for row, i in enumerate(z["index"])})
        return index


class ImageWriter:
    """Writes each frame's RGB image to ``root/images/<name>.jpg`` (JPEG quality 95) for COLMAP, nerfstudio, viewers."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def write(self, batch: FrameBatch) -> list[Path]:
        """Write the ``[n, H, W, 3]`` uint8 images of ``batch``; returns the paths written."""
        paths = []
        for name, image in zip(batch.name, batch.image):
            if not name or Path(name).name != name or name.startswith("."):
                raise ValueError(f"frame name {name!r} is not a plain file name: use names without '/' or leading '.'")
            path = self.root / image_relpath(name)
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_open(path, "wb") as f:
                Image.fromarray(np.ascontiguousarray(image)).save(f, format="JPEG", quality=95)
            paths.append(path)
        return paths


def _chunk_number(path: Path) -> int:
    return int(_CHUNK.fullmatch(path.name).group(1))
