"""Camera trajectories as TUM and KITTI text files, the formats that evaluation tools (evo) read,
and the sink that appends a run's poses to them.

Poses are camera-to-world ``[N, 4, 4]`` float64 with OpenCV axes; the files hold them as they are
(no axis change). Numbers are written with ``repr`` (the shortest string that parses back to the
same double), so a write/read round trip is exact except for the rotation's trip through a
quaternion in TUM files (about 1e-16).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InputError
from ..util.atomic import atomic_open, checked_write
from .base import FrameBatch, SinkState

if TYPE_CHECKING:
    from .store import FrameStore

__all__ = [
    "TrajectoryWriter",
    "quaternion_to_rotation",
    "read_kitti",
    "read_tum",
    "rotation_to_quaternion",
    "trajectory_lines",
    "write_kitti",
    "write_tum",
]


def rotation_to_quaternion(rotations: np.ndarray) -> np.ndarray:
    """Unit quaternions ``[..., 4]`` in ``[x, y, z, w]`` order from rotation matrices ``[..., 3, 3]``.

    Each candidate formula divides by one of 4w², 4x², 4y², 4z²; the largest is taken, so no
    rotation (180° turns included) loses precision. The sign is canonical: w ≥ 0.
    """
    m = np.asarray(rotations, dtype=np.float64)
    m00, m01, m02 = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    m10, m11, m12 = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    m20, m21, m22 = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    four_sq = np.stack(
        [1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], axis=-1
    )  # 4w², 4x², 4y², 4z²
    # Row k is 4·q_k·(w, x, y, z), exact for any k; dividing by 2·sqrt(4·q_k²) gives q.
    candidates = np.stack(
        [
            np.stack([four_sq[..., 0], m21 - m12, m02 - m20, m10 - m01], axis=-1),
            np.stack([m21 - m12, four_sq[..., 1], m10 + m01, m02 + m20], axis=-1),
            np.stack([m02 - m20, m10 + m01, four_sq[..., 2], m12 + m21], axis=-1),
            np.stack([m10 - m01, m20 + m02, m21 + m12, four_sq[..., 3]], axis=-1),
        ],
        axis=-2,
    )
    best = np.argmax(four_sq, axis=-1)
    wxyz = np.take_along_axis(candidates, best[..., None, None], axis=-2)[..., 0, :]
    wxyz = wxyz / (2.0 * np.sqrt(np.take_along_axis(four_sq, best[..., None], axis=-1)))
    wxyz = wxyz / np.linalg.norm(wxyz, axis=-1, keepdims=True)
    wxyz = np.where(wxyz[..., :1] < 0, -wxyz, wxyz)
    return np.concatenate([wxyz[..., 1:], wxyz[..., :1]], axis=-1)


def quaternion_to_rotation(quaternions: np.ndarray) -> np.ndarray:
    """Rotation matrices ``[..., 3, 3]`` from quaternions ``[..., 4]`` in ``[x, y, z, w]`` order (normalised first)."""
    q = np.asarray(quaternions, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    x, y, z, w = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    rows = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ]
    return np.stack([np.stack(r, axis=-1) for r in rows], axis=-2)


def write_tum(path: str | os.PathLike, timestamps: np.ndarray, poses: np.ndarray, append: bool = False) -> None:
    """Write ``timestamp tx ty tz qx qy qz qw`` lines for timestamps ``[N]`` and camera-to-world ``[N, 4, 4]``.

    ``append`` adds the lines to the file (a streaming run's chunks); otherwise the file is
    replaced atomically.
    """
    poses = _check_poses(poses)
    timestamps = np.asarray(timestamps, dtype=np.float64)
    if timestamps.shape != (len(poses),):
        raise ValueError(f"timestamps have shape {timestamps.shape}, expected ({len(poses)},): one per pose")
    rows = np.concatenate([timestamps[:, None], poses[:, :3, 3], rotation_to_quaternion(poses[:, :3, :3])], axis=1)
    _write_rows(path, rows, "# timestamp tx ty tz qx qy qz qw\n", append)


def write_kitti(path: str | os.PathLike, poses: np.ndarray, append: bool = False) -> None:
    """Write the top 3×4 of each camera-to-world pose ``[N, 4, 4]`` as 12 numbers, row-major."""
    poses = _check_poses(poses)
    _write_rows(path, poses[:, :3, :].reshape(len(poses), 12), "", append)


def read_tum(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Timestamps ``[N]`` float64 and camera-to-world poses ``[N, 4, 4]`` from a TUM file ('#' lines skipped).

    A line that is not 8 finite numbers, or whose quaternion is zero, is an ``InputError`` naming
    the file and the line.
    """
    rows, lines = _read_rows(path, 8)
    zero = np.flatnonzero(~(np.linalg.norm(rows[:, 4:8], axis=1) > 0.0))
    if len(zero):
        raise InputError(
            f"{os.fspath(path)}:{lines[zero[0]]}: the quaternion (qx qy qz qw) is zero, not a rotation: "
            "remove or repair that line"
        )
    poses = _identity(len(rows))
    poses[:, :3, :3] = quaternion_to_rotation(rows[:, 4:8])
    poses[:, :3, 3] = rows[:, 1:4]
    return rows[:, 0].copy(), poses


def read_kitti(path: str | os.PathLike) -> np.ndarray:
    """Camera-to-world poses ``[N, 4, 4]`` float64 from a KITTI file (12 numbers a line).

    A line that is not 12 finite numbers is an ``InputError`` naming the file and the line.
    """
    rows, _ = _read_rows(path, 12)
    poses = _identity(len(rows))
    poses[:, :3, :] = rows.reshape(-1, 3, 4)
    return poses


def _check_poses(poses: np.ndarray) -> np.ndarray:
    poses = np.asarray(poses, dtype=np.float64)
    if poses.ndim != 3 or poses.shape[1:] != (4, 4):
        raise ValueError(f"poses have shape {poses.shape}, expected [N, 4, 4] camera-to-world matrices")
    return poses


def _identity(n: int) -> np.ndarray:
    return np.tile(np.eye(4), (n, 1, 1))


def _write_rows(path: str | os.PathLike, rows: np.ndarray, header: str, append: bool) -> None:
    if not append:
        with atomic_open(path, "w") as f:
            f.write(header)
            f.writelines(_format_line(row) for row in rows.tolist())
        return
    size = os.path.getsize(path) if os.path.exists(path) else 0
    with checked_write(path), open(path, "a") as f:
        try:
            f.write((header if size == 0 else "") + "".join(_format_line(row) for row in rows.tolist()))
            f.flush()
            os.fsync(f.fileno())
        except OSError:  # a full disk: no partial line is left behind
            f.truncate(size)
            raise


def _format_line(values: Iterable[float]) -> str:
    return " ".join(repr(v) for v in values) + "\n"


def trajectory_lines(path: str | os.PathLike) -> Iterator[tuple[int, str]]:
    """The stripped lines of a trajectory file with their numbers (from 1), '#' comments and blank lines
    skipped; a file that is not UTF-8 text (an image, a binary) is an ``InputError`` naming it."""
    try:
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, start=1):
                line = line.strip()
                if line and not line.startswith("#"):
                    yield lineno, line
    except UnicodeDecodeError as e:
        raise InputError(f"{os.fspath(path)} is not a text file ({e.reason}): pass a TUM or KITTI trajectory "
                         "file") from None


def _read_rows(path: str | os.PathLike, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The rows ``[N, width]`` of numbers of a text file ('#' comments and blank lines skipped) and each
    row's line number ``[N]`` (from 1); a line that is not ``width`` finite numbers is an ``InputError``
    that names the file and the line, such as ``est.txt:17: not a finite number ('nan')``."""
    rows, lines = [], []
    for lineno, line in trajectory_lines(path):
        values = line.replace(",", " ").split()
        where = f"{os.fspath(path)}:{lineno}"
        if len(values) != width:
            raise InputError(f"{where}: {len(values)} numbers, expected {width}: wrong trajectory format")
        try:
            row = [float(v) for v in values]
        except ValueError:
            bad = next(v for v in values if not _is_float(v))
            raise InputError(f"{where}: not a number ({bad!r}): remove or repair that line") from None
        if not all(map(math.isfinite, row)):
            bad = next(v for v, x in zip(values, row) if not math.isfinite(x))
            raise InputError(f"{where}: not a finite number ({bad!r}): remove or repair that line")
        rows.append(row)
        lines.append(lineno)
    return np.asarray(rows, dtype=np.float64).reshape(-1, width), np.asarray(lines, dtype=np.int64)


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class TrajectoryWriter:
    """A sink appending each finished frame's pose to ``trajectory_tum.txt`` and ``trajectory_kitti.txt``.

    With the run's ``store``, a resumed run rebuilds files that lost poses the checkpoint covers
    from the poses and timestamps kept there (the same numbers, so the same bytes).
    """

    FILES = ("trajectory_tum.txt", "trajectory_kitti.txt")

    def __init__(self, root: str | os.PathLike, store: FrameStore | None = None) -> None:
        self.root = Path(root)
        self.store = store

    def write(self, batch: FrameBatch) -> None:
        write_tum(self.root / self.FILES[0], batch.timestamp, batch.camera_poses, append=True)
        write_kitti(self.root / self.FILES[1], batch.camera_poses, append=True)

    def state(self) -> SinkState:
        return {}

    def verify(self, state: SinkState, frames: int) -> None:
        pass  # missing or short files are rebuilt from the store by restore

    def restore(self, state: SinkState, frames: int) -> None:
        """Keep the first ``frames`` poses of each file (lines after the checkpoint are rewritten); rebuild a
        file that holds fewer from the store."""
        short = [name for name in self.FILES if _keep_poses(self.root / name, frames) < frames]
        if short and self.store is not None:
            _, timestamps, poses, _ = self.store.read_poses()
            write_tum(self.root / self.FILES[0], timestamps[:frames], poses[:frames])
            write_kitti(self.root / self.FILES[1], poses[:frames])

    def finish(self) -> None:
        pass


def _keep_poses(path: Path, frames: int) -> int:
    """Cut ``path`` after its first ``frames`` poses (atomically); how many it keeps (0 when it is missing)."""
    if not path.exists():
        return 0
    kept, count = [], 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.startswith("#"):
                if count == frames or not line.endswith("\n"):
                    break
                count += 1
            kept.append(line)
    with atomic_open(path, "w") as f:
        f.writelines(kept if count else [])
    return count
