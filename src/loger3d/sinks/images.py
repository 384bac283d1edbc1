"""The frames as the model saw them: ``OUT/images/<name>.jpg``, for COLMAP, nerfstudio and viewers."""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import InputError
from ..util.atomic import atomic_open, make_folder
from ..util.workers import background_priority
from .base import FrameBatch, SinkState

__all__ = ["ImageWriter", "image_relpath", "read_images"]

JPEG_QUALITY = 95


def image_relpath(name: str) -> str:
    """Where :class:`ImageWriter` puts frame ``name``, relative to the output folder (COLMAP/nerfstudio refer to it)."""
    return f"images/{name}.jpg"


def read_images(root: str | os.PathLike, names) -> np.ndarray:
    """Frames ``names`` of a run as uint8 ``[n, H, W, 3]``, decoded from their JPEGs (FileNotFoundError
    when a run kept no images)."""
    frames = []
    for name in names:
        with Image.open(Path(root) / image_relpath(str(name))) as img:
            frames.append(np.asarray(img.convert("RGB")))
    return np.stack(frames)


class ImageWriter:
    """A sink writing each frame's RGB image as JPEG (quality 95), encoded on ``threads`` threads.

    PIL's encoder releases the GIL, so encoding overlaps the run's other work; every image of a
    batch is on disk before the next checkpoint (``state``) and at ``finish``.
    """

    def __init__(self, root: str | os.PathLike, threads: int = 2) -> None:
        self.root = Path(root)
        self._pool = ThreadPoolExecutor(max_workers=max(threads, 1), thread_name_prefix="loger3d-jpeg",
                                        initializer=background_priority)
        self._pending: list[Future] = []

    def write(self, batch: FrameBatch) -> list[Path]:
        """Queue the ``[n, H, W, 3]`` uint8 images of ``batch``; returns the paths they go to."""
        paths = []
        for name, image in zip(batch.name, batch.image):
            if not name or Path(name).name != name or name.startswith("."):
                raise InputError(f"frame name {name!r} is not a plain file name: use names without '/' or leading '.'")
            path = self.root / image_relpath(name)
            make_folder(path.parent)
            self._pending.append(self._pool.submit(_write_jpeg, path, image))
            paths.append(path)
        if len(self._pending) > 256:  # bounded: wait for the oldest
            self._wait(len(self._pending) - 128)
        return paths

    def state(self) -> SinkState:
        self._wait()
        return {}

    def verify(self, state: SinkState, frames: int) -> None:
        pass  # images are named by frame and independent: nothing the next chunks depend on

    def restore(self, state: SinkState, frames: int) -> None:
        pass  # images are named by frame: a resumed run rewrites the ones after the checkpoint

    def finish(self) -> None:
        try:
            self._wait()
        finally:
            self._pool.shutdown(wait=True)

    def _wait(self, count: int | None = None) -> None:
        done, self._pending = (self._pending, []) if count is None else (self._pending[:count], self._pending[count:])
        for future in done:
            future.result()


def _write_jpeg(path: Path, image: np.ndarray) -> None:
    with atomic_open(path, "wb") as f:
        Image.fromarray(np.ascontiguousarray(image)).save(f, format="JPEG", quality=JPEG_QUALITY)
