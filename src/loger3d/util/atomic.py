"""Checked, atomic file writes: a reader sees the old file or the whole new one, never a half-written one,
and a write that fails (disk full, no permission) raises one ``OutputError`` naming the file.

Every file of a run goes through here (or through ``checked_write`` for appends and folders), so
that no writer needs its own handling of full disks.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from ..errors import OutputError, describe_os_error

__all__ = ["TEMPORARY_NAME", "atomic_open", "atomic_write", "checked_write", "make_folder", "stream_safetensors",
           "write_json", "write_safetensors"]


TEMPORARY_NAME = re.compile(r"\..+\.[0-9a-f]{32}\.tmp")
"""The name of the hidden file an atomic write fills before renaming it (``_temporary``)."""
_OS_ERROR = re.compile(r"\(os error (\d+)\)")
"""How safetensors' writer ends the text of a failed write: ``... (os error 28)``."""


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")


@contextlib.contextmanager
def checked_write(path: str | os.PathLike) -> Iterator[None]:
    """Turn an ``OSError`` raised while writing ``path`` into an ``OutputError`` with the reason and the fix."""
    try:
        yield
    except OutputError:
        raise
    except OSError as e:
        error = OutputError(describe_os_error(e, path))
        error.errno, error.filename = e.errno, os.fspath(path)
        raise error from e


def make_folder(path: str | os.PathLike) -> Path:
    """``path`` and its parents, created as needed (``OutputError`` when that is impossible)."""
    path = Path(path)
    with checked_write(path):
        path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a new hidden file next to ``path`` (mode "w" or "wb"); on success rename it to ``path``, on error delete it.

    The rename is atomic on one filesystem. The file is created like any other (umask
    permissions), unlike ``tempfile.mkstemp``'s 0600.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode {mode!r} is not supported: use 'w' or 'wb'")
    path = Path(path)
    tmp = _temporary(path)
    with checked_write(path):
        f = open(tmp, mode.replace("w", "x"), **({"encoding": "utf-8"} if mode == "w" else {}))
        try:
            with f:
                yield f
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> None:
    """Write ``path`` atomically with a writer that needs a file name: ``write(tmp)`` fills a hidden temporary
    next to it, which is flushed to disk and renamed to ``path``; on error it is deleted, and an ``OSError`` is
    one ``OutputError``. For large files whose library streams them to a path (a checkpoint of gigabytes).

    The file gets the permissions of any new file (umask), even from a writer that replaces the temporary with
    its own (safetensors renames its 0600 temporary onto it)."""
    path = Path(path)
    tmp = _temporary(path)
    with checked_write(path):
        try:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            mode = stat.S_IMODE(os.stat(tmp).st_mode)
            write(tmp)
            os.chmod(tmp, mode)
            with open(tmp, "rb+") as f:  # on disk before the rename: no empty file after a power cut
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


def write_json(path: str | os.PathLike, data: Any) -> None:
    """``data`` as indented JSON, atomically."""
    with atomic_open(path, "w") as f:
        json.dump(data, f, indent=1)
        f.write("\n")


def write_safetensors(path: str | os.PathLike, tensors: Mapping[str, Any],
                      metadata: dict[str, str] | None = None) -> None:
    """Torch tensors to a safetensors file, atomically; serialised in memory first (a run's state is small), so
    that the only temporary file is ours, which a resumed run recognises and removes (safetensors' own writer
    makes another). Weights of gigabytes go through :func:`stream_safetensors`."""
    from safetensors.torch import save

    data = save(dict(tensors), metadata=metadata)
    with atomic_open(path, "wb") as f:
        f.write(data)


def stream_safetensors(path: str | os.PathLike, tensors: Mapping[str, Any],
                       metadata: dict[str, str] | None = None) -> None:
    """Torch tensors to a safetensors file, atomically (:func:`atomic_write`), written by safetensors itself: no
    copy in memory, for weights of gigabytes. Its failed writes, which it reports as its own error type with the
    OS error code in the text, are ``OutputError``s too."""
    atomic_write(path, lambda tmp: _save_file(tensors, tmp, metadata))


def _save_file(tensors: Mapping[str, Any], path: Path, metadata: dict[str, str] | None) -> None:
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    try:
        save_file(dict(tensors), str(path), metadata=metadata)
    except SafetensorError as e:
        code = _OS_ERROR.search(str(e))
        if code is None:
            raise
        raise OSError(int(code[1]), os.strerror(int(code[1]))) from e
