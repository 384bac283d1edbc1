"""The unit that flows from the reconstructor to the sinks: a batch of finished frames.

A frame is finished once no later chunk can change its prediction (ARCHITECTURE.md §9.3: each
overlap frame is taken from the later chunk). Arrays are NumPy on the host, frames in order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["FrameBatch"]


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
    points       [n,H,W,3] float32 world points
    """

    index: np.ndarray
    source_index: np.ndarray
    timestamp: np.ndarray
    name: list[str]
    image: np.ndarray
    local_points: np.ndarray
    conf: np.ndarray
    camera_poses: np.ndarray
    points: np.ndarray

    def __len__(self) -> int:
        return len(self.index)

    @property
    def depth(self) -> np.ndarray:
        return self.local_points[..., 2]
