"""Place recognition: which earlier keyframe looks like this one, from the model's own frame descriptors.

The descriptors (``ChunkPrediction.descriptors``: each frame's unit-norm mean encoder token) share
a large common component, so raw cosines are high between any two frames of one video. The index
standardises them by the running mean and standard deviation of every descriptor it has seen and
compares the standardised vectors by cosine. Descriptors wider than ``dims`` (the full model's 1,024)
first go through a fixed random projection to ``dims`` (128), which preserves cosines approximately
and makes a query over 50,000 keyframes a few milliseconds: a 100,000-frame video with a keyframe
every 2 frames holds 25 MB. ``tiny``'s 128-wide descriptors are kept as they are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["PlaceCandidate", "PlaceIndex"]

_PROJECTION_SEED = 20261201  # the projection is a function of the width alone, so a resumed run rebuilds it


@dataclass(frozen=True)
class PlaceCandidate:
    """Keyframe ``query`` looks like the earlier keyframe ``match`` with standardised cosine ``score``."""

    match: int
    query: int
    score: float


class PlaceIndex:
    """Keyframe descriptors of a run, searched for earlier places like a new keyframe.

    ``min_gap``: frames between a query and the keyframes it may match (shorter gaps are the same
    place seen moments ago, not a loop). ``spacing``: matches closer than this to a better one are
    suppressed (one candidate per revisited place). ``dims``: the width descriptors are kept at.
    """

    def __init__(self, min_gap: int, spacing: int, dims: int = 128) -> None:
        self.min_gap = int(min_gap)
        self.spacing = max(int(spacing), 1)
        self.dims = int(dims)
        self._clear()

    def _clear(self) -> None:
        self.count = 0
        self._frames = np.zeros(0, np.int64)
        self._vectors: np.ndarray | None = None  # [capacity, D] float32, rows [0, count) used
        self._projection: np.ndarray | None = None  # [C, D], or None when C <= dims
        self._sum: np.ndarray | None = None  # running sums for the standardisation, float64
        self._sum_sq: np.ndarray | None = None

    def add(self, frame: int, descriptor: np.ndarray) -> None:
        """Keep keyframe ``frame`` with its descriptor ``[C]``."""
        vector = self._reduce(descriptor)
        if self._vectors is None:
            self._vectors = np.zeros((64, vector.size), np.float32)
            self._frames = np.zeros(64, np.int64)
            self._sum = np.zeros(vector.size)
            self._sum_sq = np.zeros(vector.size)
        if self.count == len(self._frames):  # double: amortised constant time per keyframe
            self._vectors = np.concatenate([self._vectors, np.zeros_like(self._vectors)])
            self._frames = np.concatenate([self._frames, np.zeros_like(self._frames)])
        self._vectors[self.count] = vector
        self._frames[self.count] = frame
        self._sum += vector
        self._sum_sq += vector.astype(np.float64) ** 2
        self.count += 1

    def query(self, frame: int, descriptor: np.ndarray, similarity: float, limit: int = 1) -> list[PlaceCandidate]:
        """Up to ``limit`` earlier keyframes (at least ``min_gap`` before ``frame``) whose standardised cosine
        with ``descriptor`` is at least ``similarity``, best first, ``spacing`` apart."""
        if self.count < 2:
            return []
        frames = self._frames[:self.count]
        eligible = np.flatnonzero(frames <= frame - self.min_gap)
        if not len(eligible):
            return []
        mean = self._sum / self.count
        std = np.sqrt(np.maximum(self._sum_sq / self.count - mean * mean, 0.0)) + 1e-6
        past = (self._vectors[eligible] - mean.astype(np.float32)) / std.astype(np.float32)
        query = ((self._reduce(descriptor) - mean) / std).astype(np.float32)
        scores = past @ query / (np.linalg.norm(past, axis=1) * np.linalg.norm(query) + 1e-12)
        found: list[PlaceCandidate] = []
        for i in np.argsort(-scores, kind="stable"):
            if scores[i] < similarity or len(found) == limit:
                break
            match = int(frames[eligible[i]])
            if all(abs(match - c.match) >= self.spacing for c in found):
                found.append(PlaceCandidate(match, int(frame), float(scores[i])))
        return found

    def _reduce(self, descriptor: np.ndarray) -> np.ndarray:
        """``descriptor`` at the index's width, float32."""
        vector = np.asarray(descriptor, np.float32).reshape(-1)
        if vector.size <= self.dims:
            return vector
        if self._projection is None or self._projection.shape[0] != vector.size:
            rng = np.random.default_rng([_PROJECTION_SEED, vector.size])
            self._projection = (rng.standard_normal((vector.size, self.dims)) / np.sqrt(self.dims)).astype(np.float32)
        return vector @ self._projection

    def state_dict(self) -> dict[str, np.ndarray]:
        if self._vectors is None:
            return {}
        return {"frames": self._frames[:self.count].copy(), "vectors": self._vectors[:self.count].copy(),
                "sum": self._sum.copy(), "sum_sq": self._sum_sq.copy()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self._clear()
        if not state:
            return
        self.count = len(state["frames"])
        self._frames = np.asarray(state["frames"], np.int64).copy()
        self._vectors = np.asarray(state["vectors"], np.float32).copy()
        self._sum = np.asarray(state["sum"], np.float64).copy()
        self._sum_sq = np.asarray(state["sum_sq"], np.float64).copy()
