"""Frames grouped as the stream takes them, stacked into one tensor ahead of the model.

Stacking a chunk of frames (tens of megabytes at KITTI size) and pinning it for an asynchronous
copy are host work that would otherwise sit between two chunks on the GPU's critical path; done
here, in the prefetch thread, the model's thread only queues the copy.

    chunks = Prefetcher(group_frames(source.frames(), first=32, step=29, pushed=0, pin=True), depth=2)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

from .preprocess import frames_to_tensor
from .readers import Frame

__all__ = ["FrameChunk", "group_frames"]


@dataclass
class FrameChunk:
    """One push into the stream.

    ``frames``: every frame of the group, for its metadata (names, timestamps, images for the
    sinks); ``images``: uint8 ``[n, 3, H, W]`` of the frames not yet in the stream (pinned when
    asked), ``None`` when every frame of the group is already there (a resumed buffer).
    """

    frames: list[Frame]
    images: torch.Tensor | None


def group_frames(frames: Iterator[Frame], first: int, step: int, pushed: int = 0,
                 pin: bool = False) -> Iterator[FrameChunk]:
    """Groups of ``first``, then ``step``, ``step``, ... frames to push (the last group may be shorter).

    Frames with ``index < pushed`` are already in the stream (restored from a checkpoint): they
    ride along in the first group's ``frames`` without being pushed again.
    """
    if first < 1 or step < 1:
        raise ValueError(f"group sizes must be >= 1, got first={first}, step={step}")
    size, group, to_push = first, [], []
    for frame in frames:
        group.append(frame)
        if frame.index < pushed:
            continue
        to_push.append(frame)
        if len(to_push) == size:
            yield FrameChunk(group, _stack(to_push, pin))
            size, group, to_push = step, [], []
    if group:
        yield FrameChunk(group, _stack(to_push, pin) if to_push else None)


def _stack(frames: list[Frame], pin: bool) -> torch.Tensor:
    images = frames_to_tensor(np.stack([f.image for f in frames]), scaled=False)
    return images.pin_memory() if pin else images
