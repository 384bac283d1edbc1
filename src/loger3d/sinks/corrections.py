"""Per-frame Sim(3) corrections of the world, saved beside the frame store: ``OUT/loops/corrections.npz``.

Loop closure ends a run by moving each frame's part of the world, X' = s·R·X + t. The store's chunks
are never rewritten (a correction can be recomputed or removed without touching them); readers apply
these instead. Under (s, R, t) a camera-to-world pose [R_c | t_c] becomes [R·R_c | s·R·t_c + t] and
camera-frame points (local points, depth) scale by s, so that the new pose applied to the scaled
points gives the corrected world points. Intrinsics and confidence do not change.

A :class:`FrameCorrections` is checked when it is made: one built in code with bad arrays is a
``ValueError`` (a bug), one read from a file that is garbled or inconsistent is a one-line
``DamagedFileError`` naming the file.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DamagedFileError
from ..util.atomic import atomic_open, checked_write, make_folder

__all__ = ["CORRECTIONS_FILE", "FrameCorrections", "read_corrections", "remove_corrections", "write_corrections"]

CORRECTIONS_FILE = Path("loops") / "corrections.npz"
"""Where the corrections of a run's world lie, relative to its output folder."""
_MEMBERS = ("index", "scale", "rotation", "translation")
_ROTATION_TOL = 1e-5


@dataclass
class FrameCorrections:
    """One Sim(3) correction X' = s·R·X + t per frame.

    index       [N] int64      frame indices (the store's sequence index), sorted, unique
    scale       [N] float64    s > 0
    rotation    [N,3,3] float64 R, a proper rotation
    translation [N,3] float64  t
    """

    index: np.ndarray
    scale: np.ndarray
    rotation: np.ndarray
    translation: np.ndarray

    def __post_init__(self) -> None:
        index = np.asarray(self.index)
        if index.dtype.kind not in "iu":
            raise ValueError(f"correction index must be integers, not {index.dtype}")
        self.index = index.astype(np.int64)
        self.scale = np.asarray(self.scale, dtype=np.float64)
        self.rotation = np.asarray(self.rotation, dtype=np.float64)
        self.translation = np.asarray(self.translation, dtype=np.float64)
        self.check()

    def __len__(self) -> int:
        return len(self.index)

    def check(self) -> None:
        """Raise ``ValueError`` unless the arrays have the shapes above, are finite, the index is sorted and
        unique, the scales positive and the rotations orthonormal with determinant +1."""
        n = len(self.index)
        shapes = {"index": (n,), "scale": (n,), "rotation": (n, 3, 3), "translation": (n, 3)}
        for name, shape in shapes.items():
            if getattr(self, name).shape != shape:
                raise ValueError(f"correction {name} has shape {getattr(self, name).shape}, expected {shape}")
        if np.any(np.diff(self.index) <= 0):
            raise ValueError("correction index is not sorted and unique")
        for name in ("scale", "rotation", "translation"):
            if not np.all(np.isfinite(getattr(self, name))):
                raise ValueError(f"correction {name} is not finite")
        if np.any(self.scale <= 0):
            raise ValueError("correction scale is not positive")
        gram = np.einsum("nji,njk->nik", self.rotation, self.rotation)
        if np.any(np.abs(gram - np.eye(3)) > _ROTATION_TOL) or np.any(np.linalg.det(self.rotation) <= 0):
            raise ValueError("correction rotation is not a rotation matrix")

    def lookup(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """scale ``[n]``, rotation ``[n,3,3]``, translation ``[n,3]`` of frames ``indices`` ``[n]``; a frame
        without a correction is a ``DamagedFileError``: the corrections do not match the store."""
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        rows = np.searchsorted(self.index, indices).clip(max=max(len(self) - 1, 0))
        found = self.index[rows] == indices if len(self) else np.zeros(len(indices), bool)
        if not np.all(found):
            missing = int(indices[~found][0])
            raise DamagedFileError(f"frame {missing} has no correction in {CORRECTIONS_FILE}: it does not match "
                                   f"the frame store (remove it or run loop closure again)")
        return self.scale[rows], self.rotation[rows], self.translation[rows]

    def apply_to_poses(self, indices: np.ndarray, poses: np.ndarray) -> np.ndarray:
        """Camera-to-world poses ``[n,4,4]`` of frames ``indices`` ``[n]``, corrected: ``[n,4,4]`` float64."""
        scale, rotation, translation = self.lookup(indices)
        poses = np.asarray(poses, dtype=np.float64)
        out = poses.copy()
        out[:, :3, :3] = rotation @ poses[:, :3, :3]
        out[:, :3, 3] = scale[:, None] * np.einsum("nij,nj->ni", rotation, poses[:, :3, 3]) + translation
        return out

    def apply_to_points(self, indices: np.ndarray, points: np.ndarray) -> np.ndarray:
        """Camera-frame local points ``[n,H,W,3]`` or depth ``[n,H,W]`` of frames ``indices`` ``[n]``, scaled by
        each frame's s (in float64, returned in the input's dtype)."""
        points = np.asarray(points)
        scale = self.lookup(indices)[0].reshape((-1,) + (1,) * (points.ndim - 1))
        return (points * scale).astype(points.dtype)


def write_corrections(out: str | os.PathLike, corrections: FrameCorrections) -> Path:
    """Save ``corrections`` to ``out/loops/corrections.npz`` atomically; returns the file's path."""
    corrections.check()
    path = Path(out) / CORRECTIONS_FILE
    make_folder(path.parent)
    with atomic_open(path, "wb") as f:
        np.savez(f, **{name: getattr(corrections, name) for name in _MEMBERS})
    return path


def read_corrections(out: str | os.PathLike) -> FrameCorrections | None:
    """The corrections saved in ``out``, or None when there are none; a garbled file is a ``DamagedFileError``."""
    path = Path(out) / CORRECTIONS_FILE
    if not path.exists():
        return None
    try:
        archive = np.load(path)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ValueError("not an npz archive")
        with archive:
            return FrameCorrections(**{name: archive[name] for name in _MEMBERS})
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as e:
        reason = " ".join(str(e).split()) or type(e).__name__
        raise DamagedFileError(f"{path} is damaged ({reason})") from None


def remove_corrections(out: str | os.PathLike) -> None:
    """Delete ``out``'s corrections, if any: readers see the raw store again."""
    path = Path(out) / CORRECTIONS_FILE
    with checked_write(path):
        path.unlink(missing_ok=True)
