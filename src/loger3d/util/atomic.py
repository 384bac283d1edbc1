"""Atomic file writes: a reader sees the old file or the whole new one, never a half-written one."""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_open", "atomic_path", "write_json"]


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a new hidden file next to ``path`` (mode "w" or "wb"); on success rename it to ``path``, on error delete it.

    The rename is atomic on one filesystem. The file is created like any other (umask
    permissions), unlike ``tempfile.mkstemp``'s 0600.
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


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A hidden temporary path next to ``path`` for writers that need a file name (safetensors); on
    success it is renamed to ``path``, on error deleted."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: str | os.PathLike, data: Any) -> None:
    """``data`` as indented JSON, atomically."""
    with atomic_open(path, "w") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
