"""Frame sources: a video, a folder, a glob or a list of images, read as resized RGB frames in order.

Selection and sizing follow the official LoGeR demo (ARCHITECTURE.md §2.2 of the reference notes):
folders are natural-sorted ``.png/.jpg/.jpeg`` files without "depth" in the name, frames are
picked like Python's ``[start:end:stride]``, and every frame is resized with LANCZOS to the size
the first selected frame gives (``preprocess.demo_target_size``). Videos are decoded with PyAV
directly, and turned upright by their rotation metadata as the demo's OpenCV reader does.

Sources are opened eagerly (bad input fails at ``open_source`` with a one-line
:class:`SourceError`) but read lazily: iterating decodes and resizes frames on a pool of threads
(results in order), fed by a background thread that runs up to ``prefetch`` frames ahead
(:class:`Prefetcher`). Iteration is restartable, and
``frames(skip=k)`` resumes at sampled frame ``k``.

    source = open_source("walk.mp4", fps=10)
    for frame in source:                 # Frame(index, source_index, timestamp, name, image [H,W,3] uint8)
        ...
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import re
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from ..errors import LogerError
from ..util.workers import ordered_map
from .fingerprint import IMAGE_SPAN, VIDEO_SPAN, fingerprint_files
from .prefetch import Prefetcher
from .preprocess import PATCH, PIXEL_LIMIT, demo_target_size, parse_resolution, resize_frame

if TYPE_CHECKING:
    import av

__all__ = ["SourceError", "Frame", "FrameSource", "ImageSource", "VideoSource", "open_source", "natural_key",
           "default_decode_threads", "VIDEO_EXTENSIONS", "IMAGE_EXTENSIONS"]

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".flv", ".wmv", ".webm", ".m4v")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
MIXED_SIZES = ("resize", "error")
_GLOB_CHARS = re.compile(r"[*?\[]")
_DIGITS = re.compile(r"(\d+)")
_IMAGE_ERRORS = (OSError, ValueError, Image.DecompressionBombError)


def _av():
    """PyAV, imported on first use: image inputs never load FFmpeg."""
    import av

    return av


def _video_errors() -> tuple[type[BaseException], ...]:
    return (_av().FFmpegError, OSError)
_ROTATIONS = {1: Image.Transpose.ROTATE_90, 2: Image.Transpose.ROTATE_180, 3: Image.Transpose.ROTATE_270}



def default_decode_threads() -> int:
    """Threads that decode and resize frames ahead of the model: half the cores, 1 to 8 (PIL and FFmpeg
    release the GIL, so they run beside the model's own threads)."""
    return min(8, max(1, (os.cpu_count() or 2) // 2))


class SourceError(LogerError, ValueError):
    """Input frames that cannot be found, read or selected; the message is one line with the fix."""


@dataclass
class Frame:
    """One input frame, resized and ready to stack (``preprocess.frames_to_tensor`` makes it model input).

    index         position in the sampled sequence (0, 1, 2, ... without gaps)
    source_index  frame number in the input: decoded-frame number of a video, position in the file list
    timestamp     seconds: the video frame's presentation time; for images ``float(source_index)``
    name          file stem, or ``frame_{source_index:06d}`` for a video
    image         uint8 [H,W,3] RGB at the source's ``size``
    """

    index: int
    source_index: int
    timestamp: float
    name: str
    image: np.ndarray


def natural_key(name: str) -> tuple[str | int, ...]:
    """Sort key that puts ``frame2`` before ``frame10``: digit runs compare as numbers, text case-insensitively."""
    return tuple(int(part) if i % 2 else part.lower() for i, part in enumerate(_DIGITS.split(name)))


def _one_line(error: object) -> str:
    """The error's text on one line; for OS and FFmpeg errors just the reason, without the repeated path."""
    return " ".join(str(getattr(error, "strerror", None) or error).split())


def _is_image_file(path: str) -> bool:
    name = os.path.basename(path)
    return name.lower().endswith(IMAGE_EXTENSIONS) and "depth" not in name and os.path.isfile(path)


# ----------------------------------------------------------------------------- sources
class FrameSource:
    """The sampled, resized frames of one input; iterate it (restartable) or call ``frames(skip)`` to resume."""

    kind: str = ""

    def __init__(self, path: str | list[str], original_size: tuple[int, int], size: tuple[int, int] | None,
                 start: int, end: int | None, stride: int, max_pixels: int, decode_threads: int | None = None) -> None:
        self.path = path
        self.decode_threads = decode_threads or default_decode_threads()
        self.original_size = original_size
        self._fixed = size is not None
        self._size = size if size is not None else demo_target_size(*original_size, max_pixels=max_pixels)
        self.start, self.end, self.stride, self.max_pixels = start, end, stride, max_pixels

    @property
    def size(self) -> tuple[int, int]:
        """``(W, H)`` of every frame this source yields, multiples of 14."""
        return self._size

    @property
    def num_frames(self) -> int | None:
        """How many frames iteration yields: exact for images, an estimate (or None) for a video."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """What was opened and how it is sampled, for logs and run metadata (JSON-serialisable)."""
        return {"kind": self.kind, "path": self.path, "original_size": self.original_size, "size": self.size,
                "resolution": "fixed" if self._fixed else f"auto (max_pixels={self.max_pixels})",
                "start": self.start, "end": self.end, "stride": self.stride, "frames": self.num_frames,
                "frames_exact": self.kind != "video"}

    def files(self) -> list[str]:
        """The files this source reads, in order."""
        raise NotImplementedError

    def fingerprint(self) -> dict[str, Any]:
        """What identifies the input (``sources.fingerprint``): recorded by a run, compared on resume."""
        return fingerprint_files(self.files(), VIDEO_SPAN if self.kind == "video" else IMAGE_SPAN)

    def frames(self, skip: int = 0, prefetch: int = 8) -> Iterator[Frame]:
        """Frames from sampled index ``skip`` on, decoded ``prefetch`` frames ahead in a thread (0: inline).

        Decoding and resizing run on ``decode_threads`` threads, results in order.
        """
        if skip < 0:
            raise SourceError(f"skip must be >= 0, got {skip}")
        frames = self._frames(skip)
        return Prefetcher(frames, prefetch) if prefetch > 0 else frames

    def __iter__(self) -> Iterator[Frame]:
        return self.frames()

    def _frames(self, skip: int) -> Iterator[Frame]:
        raise NotImplementedError


def _no_frames(where: str, total: int | None, start: int, end: int | None, stride: int,
               fps: float | Fraction | None = None) -> str:
    rate = "" if fps is None else f", fps={float(fps):g}"
    return (f"no frames selected from {where} ({total} frames, start={start}, end={end}, stride={stride}{rate}); "
            "check start/end/stride" + ("/fps" if rate else ""))


def _image_size(path: str) -> tuple[int, int]:
    try:
        with Image.open(path) as img:
            return img.size
    except _IMAGE_ERRORS as e:
        raise SourceError(f"cannot read image {path}: {_one_line(e)}") from None


class ImageSource(FrameSource):
    """Image files in a given order (kind "folder", "glob" or "list"); sizes are read from the headers on open."""

    def __init__(self, paths: Sequence[str], *, kind: str, path: str | list[str], start: int = 0,
                 end: int | None = None, stride: int = 1, resolution: tuple[int, int] | None = None,
                 max_pixels: int = PIXEL_LIMIT, mixed_sizes: str = "resize", decode_threads: int | None = None) -> None:
        self.kind = kind
        indices = range(len(paths))[start:end:stride]
        if not indices:
            where = path if isinstance(path, str) else f"the {len(paths)} listed images"
            raise SourceError(_no_frames(where, len(paths), start, end, stride))
        self._indices = list(indices)
        self._paths = [paths[i] for i in indices]
        sizes = [_image_size(p) for p in self._paths]
        for p, (w, h) in zip(self._paths, sizes):
            if w < PATCH or h < PATCH:
                raise SourceError(f"image {p} is {w}x{h}, smaller than one {PATCH}-pixel patch")
        first = sizes[0]
        differ = [(p, s) for p, s in zip(self._paths, sizes) if s != first]
        super().__init__(path, first, resolution, start, end, stride, max_pixels, decode_threads)
        self.mixed_sizes = len(differ)
        if differ and mixed_sizes == "error":
            (p, (w, h)) = differ[0]
            raise SourceError(f"image {p} is {w}x{h} but the first image {self._paths[0]} is {first[0]}x{first[1]}; "
                              "make the sizes equal or use mixed_sizes='resize'")
        if differ:
            warnings.warn(f"{len(differ)} of {len(sizes)} images differ in size from the first ({self._paths[0]}, "
                          f"{first[0]}x{first[1]}); all are resized to {self.size[0]}x{self.size[1]}",
                          stacklevel=3)

    @property
    def num_frames(self) -> int:
        return len(self._paths)

    def files(self) -> list[str]:
        return list(self._paths)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "mixed_sizes": self.mixed_sizes}

    def _frames(self, skip: int) -> Iterator[Frame]:
        yield from ordered_map(self._read, range(skip, len(self._paths)), self.decode_threads,
                               2 * self.decode_threads)

    def _read(self, index: int) -> Frame:
        path, source_index = self._paths[index], self._indices[index]
        try:
            with Image.open(path) as img:
                image = resize_frame(img, self.size)
        except _IMAGE_ERRORS as e:
            raise SourceError(f"cannot read image {path} (input position {source_index}): {_one_line(e)}; replace "
                              f"or remove it, or run again with --end {source_index} to keep the images before it "
                              "(into a new folder)") from None
        return Frame(index, source_index, float(source_index), Path(path).stem, image)


def _decode(container: av.container.InputContainer) -> Iterator[av.VideoFrame]:
    """The first video stream's frames in presentation order, decoded with FFmpeg's threads."""
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    yield from container.decode(stream)


def _frame_time(frame: av.VideoFrame, index: int, rate: Fraction | None) -> Fraction | None:
    """Presentation time in seconds, exact; from the nominal rate when the frame has no pts."""
    if frame.pts is not None and frame.time_base is not None:
        return frame.pts * frame.time_base
    return index / rate if rate else None


def _quarter_turns(rotation: float) -> int:
    """Counter-clockwise quarter turns that make a frame upright (PyAV's display-matrix rotation)."""
    return round(rotation / 90) % 4


def _upright(frame: av.VideoFrame) -> Image.Image:
    image = frame.to_image()
    turns = _quarter_turns(frame.rotation)
    return image.transpose(_ROTATIONS[turns]) if turns else image


def _count_from_duration(container: av.container.InputContainer, stream: av.video.stream.VideoStream,
                         rate: Fraction | None) -> int | None:
    """Frames of a video whose container does not report a count: duration × rate, if both are known."""
    if not rate:
        return None
    if stream.duration and stream.time_base:
        return round(stream.duration * stream.time_base * rate)
    if container.duration:
        return round(Fraction(container.duration, _av().time_base) * rate)
    return None


def _resample(frames: Iterator[tuple[int, Fraction | None, Any]], fps: Fraction,
              path: str) -> Iterator[tuple[int, Fraction | None, Any]]:
    """For each time ``t0 + k/fps`` up to the last frame's time, the decoded frame nearest to it
    (ties: the earlier), each decoded frame at most once; ``frames`` yields ``(index, time, frame)``."""
    prev = None
    last = -1
    k = 0
    t0 = None
    for current in frames:
        time = current[1]
        if time is None:
            raise SourceError(f"video {path} has no frame timestamps, so fps cannot resample it; use stride instead")
        if t0 is None:
            t0 = time
        while t0 + k / fps <= time:
            target = t0 + k / fps
            pick = prev if prev is not None and target - prev[1] <= time - target else current
            if pick[0] > last:
                last = pick[0]
                yield pick
            k += 1
        prev = current


class VideoSource(FrameSource):
    """A video file decoded with PyAV; ``fps`` resamples it by time before ``start/end/stride`` pick frames.

    The frame count is not known before decoding, so ``num_frames`` is an estimate from the container
    (its frame count, else duration × rate) and ``start``/``end`` must be >= 0.
    """

    kind = "video"

    def __init__(self, path: str, *, start: int = 0, end: int | None = None, stride: int = 1,
                 fps: float | None = None, resolution: tuple[int, int] | None = None,
                 max_pixels: int = PIXEL_LIMIT, decode_threads: int | None = None) -> None:
        if start < 0 or (end is not None and end < 0):
            raise SourceError(f"start and end must be >= 0 for a video (got start={start}, end={end}): "
                              "its frame count is not known before decoding")
        self.fps = None if fps is None else Fraction(fps).limit_denominator(1_000_000)
        try:
            with _av().open(path) as container:
                if not container.streams.video:
                    raise SourceError(f"cannot read video {path}: no video stream; is it a video file?")
                stream = container.streams.video[0]
                rate = stream.average_rate or stream.guessed_rate
                reported = stream.frames
                native = reported or _count_from_duration(container, stream, rate)
                first = next(((f.width, f.height, f.rotation) for f in _decode(container)), None)
        except _video_errors() as e:
            raise SourceError(f"cannot read video {path}: {_one_line(e)}; is it a video file?") from None
        if first is not None and self.fps is not None and native and rate:  # resampled: times 0 .. (native-1)/rate
            native = min(native, int((native - 1) / rate * self.fps) + 1)
        self.declared: int | None = reported or None  # the container's frame count, when it states one
        self._estimate = len(range(native)[start:end:stride]) if native is not None else None
        if first is None or (reported and not self._estimate):
            raise SourceError(_no_frames(path, native if first else 0, start, end, stride, fps))
        width, height, self.rotation = first
        self.rate: Fraction | None = rate
        original = (height, width) if _quarter_turns(self.rotation) % 2 else (width, height)
        super().__init__(path, original, resolution, start, end, stride, max_pixels, decode_threads)

    @property
    def num_frames(self) -> int | None:
        return self._estimate

    def files(self) -> list[str]:
        return [self.path]

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "fps": None if self.fps is None else float(self.fps),
                "native_fps": None if self.rate is None else float(self.rate), "rotation": self.rotation}

    def _frames(self, skip: int) -> Iterator[Frame]:
        decoded = 0
        exhausted = False  # the decoder ran to the end of the file (not stopped by ``end``)

        def timed(container: av.container.InputContainer) -> Iterator[tuple[int, Fraction | None, Any]]:
            nonlocal decoded, exhausted
            for i, frame in enumerate(_decode(container)):
                decoded = i + 1
                yield i, _frame_time(frame, i, self.rate), frame
            exhausted = True

        def counted(items: Iterator) -> Iterator:
            nonlocal sampled
            for item in items:
                sampled += 1
                yield item

        index, sampled = skip, 0
        try:
            with _av().open(self.path) as container, contextlib.closing(timed(container)) as frames:
                sequence = counted(frames if self.fps is None else _resample(frames, self.fps, self.path))
                picked = itertools.islice(sequence, self.start + skip * self.stride, self.end, self.stride)
                for i, time, image in ordered_map(self._convert, picked, self.decode_threads, 2 * self.decode_threads):
                    yield Frame(index, i, float(i if time is None else time), f"frame_{i:06d}", image)
                    index += 1
        except _video_errors() as e:
            if decoded:
                raise SourceError(self._cut_short(decoded, sampled, _one_line(e))) from None
            raise SourceError(f"cannot read video {self.path}: {_one_line(e)}; is it a video file?") from None
        if exhausted and self.declared and self.declared - decoded > max(2, self.declared // 100):
            raise SourceError(self._cut_short(decoded, sampled, f"{self.declared} frames declared"))
        if index == 0:
            raise SourceError(_no_frames(self.path, decoded, self.start, self.end, self.stride, self.fps))

    def _cut_short(self, decoded: int, sampled: int, reason: str) -> str:
        """The message for a video that stops before its end: the last good frame and how to keep the rest."""
        return (f"video {self.path} stops after {decoded} readable frames ({reason}): it is cut short or damaged "
                f"after frame {decoded - 1}; to reconstruct what is readable run again with --end {sampled} "
                "(into a new folder)")

    def _convert(self, item: tuple[int, Fraction | None, Any]) -> tuple[int, Fraction | None, np.ndarray]:
        i, time, frame = item
        return i, time, resize_frame(_upright(frame), self.size)


# ----------------------------------------------------------------------------- opening
def _resolve(path: str) -> tuple[str, list[str]]:
    """``(kind, image paths)`` of one path: a folder, a glob, an image file, or a video (no paths)."""
    if os.path.isdir(path):
        names = sorted((n for n in os.listdir(path) if _is_image_file(os.path.join(path, n))), key=natural_key)
        if not names:
            raise SourceError(f"no .png/.jpg/.jpeg images in {path}")
        return "folder", [os.path.join(path, n) for n in names]
    if os.path.isfile(path):
        if path.lower().endswith(IMAGE_EXTENSIONS):
            return "list", [path]
        return "video", []  # a known video extension, or an unknown one that PyAV gets to try
    if _GLOB_CHARS.search(path):
        matches = sorted((p for p in glob.glob(path, recursive=True) if _is_image_file(p)), key=natural_key)
        if not matches:
            raise SourceError(f"no .png/.jpg/.jpeg images match {path}")
        return "glob", matches
    raise SourceError(f"no such file or folder: {path}")


def open_source(inputs: str | os.PathLike | Sequence[str | os.PathLike], *, start: int = 0, end: int | None = None,
                stride: int = 1, fps: float | None = None, resolution: str | tuple[int, int] | None = None,
                max_pixels: int = PIXEL_LIMIT, mixed_sizes: str = "resize",
                decode_threads: int | None = None) -> FrameSource:
    """Open a video file, an image folder, a glob pattern or a list of image paths (kept in order).

    ``[start:end:stride]`` picks frames as Python slicing does (for a video: of the decoded
    sequence, after ``fps`` resampling; videos need start/end >= 0). ``fps`` (videos only) keeps,
    for each time ``t0 + k/fps`` up to the last frame, the decoded frame nearest to it, never the
    same frame twice: above the native rate every frame comes once. ``resolution`` ("WxH" or
    ``(W, H)``, multiples of 14) replaces the demo's automatic size, which ``max_pixels`` tunes.
    ``mixed_sizes``: images sized unlike the first are resized anyway with a warning ("resize")
    or refused ("error"). ``decode_threads``: threads decoding ahead (default: half the cores, 1 to 8).
    """
    if stride < 1:
        raise SourceError(f"stride must be >= 1, got {stride}")
    if fps is not None and fps <= 0:
        raise SourceError(f"fps must be > 0, got {fps}")
    if mixed_sizes not in MIXED_SIZES:
        raise SourceError(f"mixed_sizes must be 'resize' or 'error', got {mixed_sizes!r}")
    if max_pixels < PATCH * PATCH:
        raise SourceError(f"max_pixels must be at least {PATCH * PATCH} (one {PATCH}x{PATCH} patch), got {max_pixels}")
    try:
        size = None if resolution is None else parse_resolution(resolution)
    except ValueError as e:
        raise SourceError(str(e)) from None
    if isinstance(inputs, (str, os.PathLike)):
        label: str | list[str] = os.fspath(inputs)
        kind, paths = _resolve(label)
    else:
        kind, paths = "list", [os.fspath(p) for p in inputs]
        if not paths:
            raise SourceError("no input frames: the list of image paths is empty")
        for p in paths:
            if not os.path.isfile(p):
                raise SourceError(f"no such file or folder: {p}")
        label = paths
    if kind == "video":
        return VideoSource(label, start=start, end=end, stride=stride, fps=fps, resolution=size, max_pixels=max_pixels,
                           decode_threads=decode_threads)
    if fps is not None:
        raise SourceError("--fps applies to videos; use --stride for image folders")
    return ImageSource(paths, kind=kind, path=label, start=start, end=end, stride=stride, resolution=size,
                       max_pixels=max_pixels, mixed_sizes=mixed_sizes, decode_threads=decode_threads)
