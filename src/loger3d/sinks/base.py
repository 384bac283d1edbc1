"""What flows into the sinks, and what every sink does with it.

A frame is finished once no later chunk can change its prediction (each overlap frame is taken
from the later chunk). The run loop hands finished frames to the sinks as :class:`FrameBatch`es,
NumPy on the host, frames in order, all on one writer thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

__all__ = ["FrameBatch", "Sink", "SinkState"]

SinkState = dict[str, np.ndarray]
"""What a sink needs, beyond the files it has written, to continue after a resume (saved with the run's checkpoint)."""


@dataclass
class FrameBatch:
    """``n`` finished frames of one run, all of size ``H×W``.

    index        [n] int64    position in the processed sequence (0, 1, 2, ... without gaps)
    source_index [n] int64    frame number in the input (video frame or file position)
    timestamp    [n] float64  seconds from the start of the input (video time; for images the
                              frame number divided by the nominal rate, or the index)
    name         [n] str      a stable name for the frame (file stem, or ``frame_000123``)
    image        [n,H,W,3] uint8   the RGB frame as the model saw it (after resizing)
    local_points [n,H,W,3] float32 camera-frame points (x·z, y·z, z); depth is [..., 2]
    conf         [n,H,W]   float32 confidence in [0, 1] (sigmoid of the model's logits)
    camera_poses [n,4,4]   float64 camera-to-world, OpenCV axes
    """

    index: np.ndarray
    source_index: np.ndarray
    timestamp: np.ndarray
    name: list[str]
    image: np.ndarray
    local_points: np.ndarray
    conf: np.ndarray
    camera_poses: np.ndarray

    def __len__(self) -> int:
        return len(self.index)

    @property
    def depth(self) -> np.ndarray:
        return self.local_points[..., 2]


class Sink(Protocol):
    """One kind of output of a run. The run calls, on its writer thread:

    - ``write(batch)`` for each batch of finished frames, in order;
    - ``state()`` at a checkpoint: arrays saved with the run's resume state (``{}`` when the
      files written so far are all a resume needs);
    - ``verify(state, frames)`` when a run resumes, before any sink restores: raise
      ``DamagedFileError`` if what the checkpoint covers is damaged beyond ``restore``'s repair
      (changing nothing);
    - ``restore(state, frames)`` then: go back to the checkpoint that covered the first ``frames``
      finished frames and saved ``state`` (drop what was written after it, rebuild what it can);
    - ``finish()`` once after the last batch.
    """

    def write(self, batch: FrameBatch) -> None: ...

    def state(self) -> SinkState: ...

    def verify(self, state: SinkState, frames: int) -> None: ...

    def restore(self, state: SinkState, frames: int) -> None: ...

    def finish(self) -> None: ...
