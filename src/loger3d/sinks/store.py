"""The per-frame results of a run on disk: ``OUT/frames/chunk_#####.npz``, one file per finished batch.

What is kept is chosen per run (``keep``, the command line's ``--save``) and at what precision:

    always        index [n] int64, source_index [n] int64, timestamp [n] float64, name [n] unicode,
                  camera_poses [n,4,4] float64 camera-to-world (OpenCV axes),
                  intrinsics [n,3,3] float32 pinhole K fitted to the local points (pixel (r, c) at u=c, v=r)
    "depth"       depth [n,H,W]          float16 (default) or float32: the local points' Z
    "conf"        conf [n,H,W]           uint8 = round(255 · confidence) (default) or float32 confidence
    "points"      local_points [n,H,W,3] float16 or float32: the model's camera-frame points

At 924×266 the default (depth and conf, compact) is 0.74 MB a frame; float32 point maps would be
4.9 MB. float16 keeps depth to 1 part in 2,000 (2.5 cm at 50 m), below the model's own error;
``precision="float32"`` stores the model's outputs bit for bit. Readers rebuild what was not kept
where they can: local points from depth and the frame's K (the pinhole rays of the fitted K, not
the model's per-pixel rays), depth from local points.

One uncompressed npz per batch keeps memory bounded for any video length; files appear
atomically, so a crash never leaves a chunk that looks finished but is cut short, and a resumed
run drops chunks past its checkpoint (:meth:`FrameStore.restore`).

Loop closure never rewrites the chunks: it saves a Sim(3) correction per frame beside them
(``OUT/loops/corrections.npz``, :mod:`.corrections`), and readers return corrected poses, depth
and local points by default; ``FrameStore(out, corrected=False)`` reads the raw store, as the run's
own sinks do. Intrinsics and confidence are the same either way.
"""

from __future__ import annotations

import os
import re
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from ..errors import DamagedFileError, InputError
from ..util.atomic import atomic_open, make_folder
from .base import FrameBatch, SinkState
from .corrections import FrameCorrections, read_corrections
from .intrinsics import estimate_intrinsics

__all__ = ["FrameStore", "STORE_FIELDS", "STORE_PRECISIONS", "rebuild_local_points"]

STORE_FIELDS = ("depth", "conf", "points")
STORE_PRECISIONS = ("float16", "float32")
_CHUNK = re.compile(r"chunk_(\d{5,})\.npz")
_SMALL = ("index", "timestamp", "camera_poses", "name")
_EMPTY = {
    "index": np.zeros(0, np.int64),
    "timestamp": np.zeros(0, np.float64),
    "camera_poses": np.zeros((0, 4, 4), np.float64),
    "name": np.zeros(0, np.str_),
    "intrinsics": np.zeros((0, 3, 3), np.float32),
}


def rebuild_local_points(depth: np.ndarray, intrinsics: np.ndarray) -> np.ndarray:
    """Camera-frame points ``[n,H,W,3]`` float32 from depth ``[n,H,W]`` and pinhole K ``[n,3,3]`` (u=c, v=r)."""
    depth = np.asarray(depth, dtype=np.float32)
    n, h, w = depth.shape
    k = np.asarray(intrinsics, dtype=np.float64)
    cols = (np.arange(w)[None, :] - k[:, 0, 2, None]) / k[:, 0, 0, None]  # [n, W]
    rows = (np.arange(h)[None, :] - k[:, 1, 2, None]) / k[:, 1, 1, None]  # [n, H]
    x = cols[:, None, :].astype(np.float32) * depth
    y = rows[:, :, None].astype(np.float32) * depth
    return np.stack([x, y, depth], axis=-1)


class FrameStore:
    """Chunked per-frame results under ``root/frames``: a sink (write / state / restore) and its reader.

    ``keep``: which of ``STORE_FIELDS`` to write; ``precision``: "float16" (depth and points in
    float16, confidence in uint8) or "float32" (all exact). Reading needs neither: each chunk
    says what it holds. New chunks are numbered after the highest one present. ``corrected``:
    readers apply ``root/loops/corrections.npz`` where it exists (read once, at the first read);
    False reads the raw chunks. Writing is the same either way.
    """

    def __init__(self, root: str | os.PathLike, keep: tuple[str, ...] = ("depth", "conf"),
                 precision: str = "float16", corrected: bool = True) -> None:
        if precision not in STORE_PRECISIONS:
            raise InputError(f"store precision {precision!r} is not supported: use 'float16' or 'float32'")
        unknown = set(keep) - set(STORE_FIELDS)
        if unknown:
            raise InputError(f"cannot keep {', '.join(sorted(unknown))} in the frame store: "
                             f"choose from {', '.join(STORE_FIELDS)}")
        self.folder = Path(root) / "frames"
        self.keep = tuple(keep)
        self.precision = precision
        self.corrected = corrected
        self._next = self._after_last()
        self._index: dict[int, tuple[Path, int]] = {}  # frame -> (chunk file, row), of the chunks in _indexed
        self._indexed: set[Path] = set()
        self._corrections: FrameCorrections | None = None
        self._corrections_read = False

    # ------------------------------------------------------------------ sink
    def write(self, batch: FrameBatch) -> None:
        self.append(batch)

    def state(self) -> SinkState:
        return {"chunks": np.array(len(self.chunks()), np.int64)}

    def verify(self, state: SinkState, frames: int) -> None:
        self.verify_chunks(_chunk_count(state))

    def restore(self, state: SinkState, frames: int) -> None:
        self.truncate(_chunk_count(state))

    def finish(self) -> None:
        pass

    # ------------------------------------------------------------------ writing
    def append(self, batch: FrameBatch) -> int:
        """Write ``batch`` as the next chunk file and return its number."""
        if len(batch) == 0:
            raise ValueError("empty FrameBatch: append batches with at least one frame")
        make_folder(self.folder)
        number = self._next
        path = self.folder / f"chunk_{number:05d}.npz"
        local = np.asarray(batch.local_points)
        arrays = {
            "index": np.asarray(batch.index, dtype=np.int64),
            "source_index": np.asarray(batch.source_index, dtype=np.int64),
            "timestamp": np.asarray(batch.timestamp, dtype=np.float64),
            "name": np.asarray(list(batch.name), dtype=np.str_),
            "camera_poses": np.asarray(batch.camera_poses, dtype=np.float64),
            "intrinsics": estimate_intrinsics(local, batch.conf, step=4).astype(np.float32),
        }
        wide = np.dtype(self.precision)
        if "depth" in self.keep:
            arrays["depth"] = local[..., 2].astype(wide)
        if "conf" in self.keep:
            conf = np.asarray(batch.conf)
            arrays["conf"] = conf.astype(np.float32) if self.precision == "float32" else \
                np.rint(np.clip(conf, 0.0, 1.0) * 255).astype(np.uint8)
        if "points" in self.keep:
            arrays["local_points"] = local.astype(wide)
        with atomic_open(path, "wb") as f:
            np.savez(f, **arrays)
        self._next = number + 1
        if self._indexed:  # a reader's index stays current; a writer that never reads keeps none
            self._add_to_index(path, arrays["index"])
        return number

    def truncate(self, num_chunks: int) -> None:
        """Delete chunk files numbered ``num_chunks`` and above (a resumed run rewrites them)."""
        for path in self.chunks():
            if _chunk_number(path) >= num_chunks:
                path.unlink()
        self._next = self._after_last()
        self._index, self._indexed = {}, set()
        self._corrections_read = False

    # ------------------------------------------------------------------ reading
    @property
    def corrections(self) -> FrameCorrections | None:
        """The corrections readers apply: None for a raw reader (``corrected=False``) or a store without them."""
        if self.corrected and not self._corrections_read:
            self._corrections = read_corrections(self.folder.parent)
            self._corrections_read = True
        return self._corrections if self.corrected else None

    def chunks(self) -> list[Path]:
        """The chunk files present, in chunk-number order."""
        if not self.folder.is_dir():
            return []
        found = [p for p in self.folder.iterdir() if _CHUNK.fullmatch(p.name)]
        return sorted(found, key=_chunk_number)

    def iter_batches(self) -> Iterator[dict[str, np.ndarray]]:
        """Each chunk's arrays in chunk order, decoded: depth, conf and local_points as float32 where
        they are stored or can be rebuilt (see the module docstring); ``image`` only in stores of
        loger3d 0.1, which kept it. Poses, depth and local points are corrected unless the reader is raw."""
        for path in self.chunks():
            yield self._corrected(_decoded(_load(path)))

    def read_frame(self, i: int) -> dict[str, np.ndarray]:
        """Frame with sequence index ``i``, decoded as :meth:`iter_batches` does (0-d arrays for index, name, ...)."""
        path, row = self._locate([i])[0]
        frame = self._corrected(_decoded({k: v[row:row + 1] for k, v in _load(path).items()}))
        return {k: v[0] for k, v in frame.items()}

    def read_frames(self, indices: Sequence[int]) -> dict[str, np.ndarray]:
        """Frames with sequence indices ``indices`` ``[n]``, decoded as :meth:`iter_batches` does and stacked in
        the order asked (``[n, ...]`` per member that every chunk read holds; ``{}`` for none). Each chunk file
        is read once."""
        places = self._locate(indices)
        wanted: dict[Path, set[int]] = {}
        for path, row in places:
            wanted.setdefault(path, set()).add(row)
        parts: list[dict[str, np.ndarray]] = []
        position: dict[tuple[Path, int], int] = {}  # (chunk, row) -> row of the concatenated parts
        for path, rows in wanted.items():
            chosen = sorted(rows)
            start = len(position)
            position.update({(path, row): start + j for j, row in enumerate(chosen)})
            parts.append(self._corrected(_decoded({k: v[chosen] for k, v in _load(path).items()})))
        if not parts:
            return {}
        take = np.array([position[place] for place in places], dtype=np.int64)
        keys = [k for k in parts[0] if all(k in p for p in parts)]
        return {k: np.concatenate([p[k] for p in parts])[take] for k in keys}

    def read_poses(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
        """index ``[N]`` int64, timestamp ``[N]`` float64, camera-to-world ``[N, 4, 4]`` (corrected unless the
        reader is raw), names: small members only."""
        parts = self._corrected(self._read_members(_SMALL))
        return parts["index"], parts["timestamp"], parts["camera_poses"], [str(s) for s in parts["name"]]

    def read_intrinsics(self) -> np.ndarray:
        """Per-frame pinhole K ``[N, 3, 3]`` float32 in frame order (pixel (r, c) centred at u=c, v=r)."""
        return self._read_members(("intrinsics",))["intrinsics"]

    def verify_chunks(self, num_chunks: int) -> None:
        """Check that chunks ``0 .. num_chunks-1`` are all there and readable (their small members are
        read); ``DamagedFileError`` names the first that is not. Nothing is changed."""
        present = {_chunk_number(p): p for p in self.chunks()}
        for number in range(num_chunks):
            path = present.get(number, self.folder / f"chunk_{number:05d}.npz")
            if number not in present:
                raise DamagedFileError(f"{path} is missing")
            _load(path, _SMALL)

    def _after_last(self) -> int:
        chunks = self.chunks()
        return _chunk_number(chunks[-1]) + 1 if chunks else 0

    def _locate(self, indices: Sequence[int]) -> list[tuple[Path, int]]:
        """(chunk file, row) of each frame in ``indices``; a frame not in the store is a ``KeyError``."""
        indices = [int(i) for i in indices]
        if any(i not in self._index for i in indices):  # a miss reads the chunks written since (by any process)
            for path in self.chunks():
                if path not in self._indexed:
                    self._add_to_index(path, _load(path, ("index",))["index"])
        for i in indices:
            if i not in self._index:
                raise KeyError(f"frame {i} is not in {self.folder}: it holds {len(self._index)} frames")
        return [self._index[i] for i in indices]

    def _corrected(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Decoded ``arrays`` of frames ``arrays["index"]`` with the corrections applied to poses, depth and local
        points (each scaled in float64 and rounded once, so depth stays the local points' Z)."""
        corrections = self.corrections
        if corrections is None:
            return arrays
        index = arrays["index"]
        arrays["camera_poses"] = corrections.apply_to_poses(index, arrays["camera_poses"])
        for key in ("depth", "local_points"):
            if key in arrays:
                arrays[key] = corrections.apply_to_points(index, arrays[key])
        return arrays

    def _read_members(self, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
        parts: dict[str, list[np.ndarray]] = {k: [] for k in keys}
        for path in self.chunks():
            chunk = _load(path, keys)
            for k in keys:
                parts[k].append(chunk[k])
        return {k: np.concatenate(v) if v else _EMPTY[k] for k, v in parts.items()}

    def _add_to_index(self, path: Path, index: np.ndarray) -> None:
        self._index.update({int(i): (path, row) for row, i in enumerate(index)})
        self._indexed.add(path)


def _load(path: Path, keys: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    """Members ``keys`` (default: all) of one chunk file, read in full; a damaged file is a ``DamagedFileError``."""
    try:
        with np.load(path) as z:
            return {k: z[k] for k in (z.files if keys is None else keys)}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as e:
        reason = " ".join(str(e).split()) or type(e).__name__
        raise DamagedFileError(f"{path} is damaged ({reason})") from None


def _decoded(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Stored members as readers use them: float32 depth / conf / local points, rebuilt where missing."""
    if "conf" in arrays:
        conf = arrays["conf"]
        arrays["conf"] = conf.astype(np.float32) / 255 if conf.dtype == np.uint8 else conf.astype(np.float32)
    if "local_points" in arrays:
        arrays["local_points"] = arrays["local_points"].astype(np.float32)
        arrays.setdefault("depth", arrays["local_points"][..., 2])
    if "depth" in arrays:
        arrays["depth"] = arrays["depth"].astype(np.float32)
        if "local_points" not in arrays:
            arrays["local_points"] = rebuild_local_points(arrays["depth"], arrays["intrinsics"])
    return arrays


def _chunk_count(state: SinkState) -> int:
    return int(np.asarray(state["chunks"]).reshape(-1)[0]) if "chunks" in state else 0


def _chunk_number(path: Path) -> int:
    return int(_CHUNK.fullmatch(path.name).group(1))
