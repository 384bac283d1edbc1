"""Placing objects without blocking the cameras' paths, and drawing colours, shared by the scene families.

A family adds structure (walls, buildings, the ground) straight to its ``SceneBuilder`` and then offers
objects (lists of parts) to a ``Placer``. The placer keeps an object only if every part stays the required
distance from each kept-clear path segment whose cameras' height band (metres above the local ground) the
part reaches into. That rule is what makes the navigation graphs' clearances true.
"""

from __future__ import annotations

import colorsys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .nav import segment_rect_distance
from .scene import Part, SceneBuilder

__all__ = ["Placer", "hsv", "random_tilt"]


@dataclass(frozen=True)
class _Clear:
    """A kept-clear set of segments ``[S, 2]`` and their bounding boxes grown by ``distance`` (``low``, ``high``)."""

    starts: np.ndarray
    ends: np.ndarray
    distance: float
    band: tuple[float, float]
    low: np.ndarray
    high: np.ndarray


class Placer:
    """Adds objects to ``builder`` unless they come too close to a kept-clear path at camera height."""

    def __init__(self, builder: SceneBuilder, ground: Callable[[np.ndarray], np.ndarray] | None = None):
        self.builder = builder
        self.ground = ground
        self._clear: list[_Clear] = []

    def keep_clear(self, starts: np.ndarray, ends: np.ndarray, distance: float, band: tuple[float, float]) -> None:
        """Keep objects that reach into heights ``band`` ``distance`` metres from segments ``starts``→``ends``
        ``[S, 2]``."""
        starts, ends = np.asarray(starts, dtype=np.float64).reshape(-1, 2), np.asarray(ends).reshape(-1, 2)
        reach = np.minimum(starts, ends) - distance, np.maximum(starts, ends) + distance
        self._clear.append(_Clear(starts, ends, float(distance), band, *reach))

    def fits(self, parts: list[Part]) -> bool:
        """Whether ``parts`` leave every kept-clear segment its distance."""
        centres = np.array([p.centre for p in parts], dtype=np.float64)
        extents = np.array([p.extent() for p in parts])
        base = self.ground(centres[:, :2]) if self.ground is not None else np.zeros(len(parts))
        low, high = centres[:, 2] - extents[:, 2] - base, centres[:, 2] + extents[:, 2] - base
        for clear in self._clear:
            reach = (high > clear.band[0]) & (low < clear.band[1])
            if not reach.any():
                continue
            lo, hi = centres[reach, :2] - extents[reach, :2], centres[reach, :2] + extents[reach, :2]
            # only segments whose box, grown by the distance, overlaps a part's box can be that close
            near = ((lo.min(0) <= clear.high) & (hi.max(0) >= clear.low)).all(1)
            if near.any() and (segment_rect_distance(clear.starts[near], clear.ends[near], centres[reach, :2],
                                                     extents[reach, :2]) < clear.distance).any():
                return False
        return True

    def add(self, parts: list[Part]) -> bool:
        """Add the object if it ``fits``; returns whether it was added."""
        if not self.fits(parts):
            return False
        self.builder.add(*parts)
        return True


def hsv(rng: np.random.Generator, hue: tuple[float, float], sat: tuple[float, float],
        val: tuple[float, float]) -> tuple[float, float, float]:
    """An RGB colour with hue, saturation and value drawn uniformly from the ranges (hue wraps around 1)."""
    r, g, b = colorsys.hsv_to_rgb(rng.uniform(*hue) % 1.0, rng.uniform(*sat), rng.uniform(*val))
    return (float(r), float(g), float(b))


def random_tilt(rng: np.random.Generator, most: float) -> np.ndarray:
    """A rotation ``[3, 3]`` tilting by up to ``most`` radians about each horizontal axis."""
    a, b = rng.uniform(-most, most, 2)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    return rx @ ry
