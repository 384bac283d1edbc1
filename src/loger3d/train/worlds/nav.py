"""Free space for cameras: graphs of paths and closed loops that a scene family keeps clear of obstacles.

A family lays out its structure (walls, blocks, trails), derives these paths from it, and places obstacles
only where they stay ``clearance`` metres away from every path at camera height. Trajectories then move
along the paths with lateral excursions smaller than the clearance, which makes them collision-free by
construction (``clearance.py`` checks the result). Coordinates are world x, y in metres (float64).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["CAMERA_MARGIN", "NavGraph", "Orbit", "segment_distance", "segment_rect_distance"]

CAMERA_MARGIN = 0.3
"""Metres that a camera centre keeps from every surface, on top of its planned excursions from a path."""


@dataclass(frozen=True)
class NavGraph:
    """Nodes ``[V, 2]``, undirected edges ``[E, 2]`` (node indices), free ``clearance`` about every edge and
    ``node_clearance`` ``[V]`` (≥ clearance) about each node: the room a corner has for rounding."""

    nodes: np.ndarray
    edges: np.ndarray
    clearance: float
    node_clearance: np.ndarray

    def neighbours(self) -> list[list[int]]:
        """Adjacency lists, each sorted (deterministic routing)."""
        adj: list[list[int]] = [[] for _ in range(len(self.nodes))]
        for a, b in self.edges:
            adj[int(a)].append(int(b))
            adj[int(b)].append(int(a))
        return [sorted(set(n)) for n in adj]


@dataclass(frozen=True)
class Orbit:
    """A closed loop ``ring`` ``[M, 2]``, free for ``clearance`` metres about it, around ``target`` (x, y, z)
    that an orbiting camera looks at; camera heights above the ground stay within ``heights`` (low, high)."""

    ring: np.ndarray
    target: tuple[float, float, float]
    heights: tuple[float, float]
    clearance: float


def segment_distance(points: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Distances ``[M, S]`` from points ``[M, 2]`` to segments ``starts``/``ends`` ``[S, 2]``."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 1, 2)
    a, b = np.asarray(starts, dtype=np.float64)[None], np.asarray(ends, dtype=np.float64)[None]
    ab = b - a
    length2 = np.maximum((ab * ab).sum(-1), 1e-12)
    s = np.clip(((p - a) * ab).sum(-1) / length2, 0.0, 1.0)
    return np.linalg.norm(p - (a + s[..., None] * ab), axis=-1)


def segment_rect_distance(starts: np.ndarray, ends: np.ndarray, centres: np.ndarray, half: np.ndarray) -> np.ndarray:
    """Distances ``[M, S]`` between segments ``starts``/``ends`` ``[S, 2]`` and axis-aligned rectangles
    ``centres`` ± ``half`` ``[M, 2]``: 0 where they meet, otherwise the smallest of the rectangles' corners to
    the segments and the segments' ends to the rectangles (exact for disjoint convex shapes)."""
    a, b = np.asarray(starts, dtype=np.float64), np.asarray(ends, dtype=np.float64)
    c, h = np.asarray(centres, dtype=np.float64), np.asarray(half, dtype=np.float64)
    corners = c[:, None, :] + h[:, None, :] * np.array([[-1, -1], [-1, 1], [1, -1], [1, 1]])[None]
    to_corners = segment_distance(corners.reshape(-1, 2), a, b).reshape(len(c), 4, len(a)).min(axis=1)
    to_ends = np.minimum(_rect_distance(a, c, h), _rect_distance(b, c, h))
    # slab test: does the segment a + s (b - a), s in [0, 1], enter the rectangle?
    d = (b - a)[None]
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = (c[:, None] - h[:, None] - a[None]) / d
        t2 = (c[:, None] + h[:, None] - a[None]) / d
    lo = np.nan_to_num(np.minimum(t1, t2), nan=-np.inf).max(-1)
    hi = np.nan_to_num(np.maximum(t1, t2), nan=np.inf).min(-1)
    meets = (lo <= hi) & (hi >= 0) & (lo <= 1)
    return np.where(meets, 0.0, np.minimum(to_corners, to_ends))


def _rect_distance(points: np.ndarray, centres: np.ndarray, half: np.ndarray) -> np.ndarray:
    """Distances ``[M, S]`` from points ``[S, 2]`` to rectangles ``[M]``."""
    gap = np.clip(np.abs(points[None] - centres[:, None]) - half[:, None], 0.0, None)
    return np.linalg.norm(gap, axis=-1)
