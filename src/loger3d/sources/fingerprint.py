"""What identifies a run's input files, so that ``--resume`` continues on the same frames it started with.

A fingerprint holds, per input file, its resolved absolute path, size, modification time and a
SHA-256 of its first and last bytes (1 MiB of each for a video, 4 KiB for an image: the tail of a
compressed image is its entropy-coded data, unlike its header). Two fingerprints name the same
input when sizes and hashes agree, wherever the files now are and whatever their modification
times (a copy keeps the content, not the time); ``compare_fingerprints`` says what differs.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from typing import Any

__all__ = ["VIDEO_SPAN", "IMAGE_SPAN", "compare_fingerprints", "fingerprint_files"]

VIDEO_SPAN = 1 << 20
IMAGE_SPAN = 1 << 12


def _file_entry(path: str, span: int) -> dict[str, Any]:
    real = os.path.realpath(path)
    with open(real, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        digest = hashlib.sha256(size.to_bytes(8, "little"))
        digest.update(f.read(span))
        if size > span:
            f.seek(max(span, size - span))
            digest.update(f.read(span))
        mtime = os.fstat(f.fileno()).st_mtime_ns
    return {"path": real, "size": size, "mtime_ns": mtime, "sha256": digest.hexdigest()}


def fingerprint_files(paths: Sequence[str | os.PathLike], span: int = IMAGE_SPAN) -> dict[str, Any]:
    """The fingerprint of the files a source reads, in the order it reads them (JSON-serialisable)."""
    files = [_file_entry(os.fspath(p), span) for p in paths]
    whole = hashlib.sha256("".join(f"{f['size']}:{f['sha256']};" for f in files).encode())
    return {"files": len(files), "bytes": sum(f["size"] for f in files), "sha256": whole.hexdigest(),
            "first": files[0] if files else None, "last": files[-1] if files else None}


def compare_fingerprints(recorded: dict[str, Any], current: dict[str, Any]) -> str | None:
    """``None`` when both name the same input; otherwise what differs, as a phrase."""
    if recorded.get("sha256") == current.get("sha256"):
        return None
    if recorded.get("files") != current.get("files"):
        return f"{recorded.get('files')} files then, {current.get('files')} now"
    for end in ("first", "last"):
        then, now = recorded.get(end) or {}, current.get(end) or {}
        if then.get("size") != now.get("size"):
            return f"{now.get('path')} is {now.get('size')} bytes, {then.get('size')} when the run started"
        if then.get("sha256") != now.get("sha256"):
            return f"the content of {now.get('path')} changed"
    return "the content of one of the files changed"
