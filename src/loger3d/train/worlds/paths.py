"""From a graph of free paths to a timed, smooth camera path: route, fillet, time, sample.

1. ``random_route`` walks the graph (no immediate U-turns unless at a dead end; optional bias to go straight
   and to drive loops around blocks).
2. ``fillet`` rounds each corner with a circular arc whose tangent length stays within the free disc of the
   corner's node (so the smoothed path never leaves free space), or turns on the spot (a pivot) when the turn
   is too sharp for an arc. The result is a dense polyline with its heading (unwrapped radians).
3. ``timing`` gives the time at each sample under a top speed, a lateral acceleration and a yaw-rate limit
   in curves, and an acceleration limit along the path (a forward and a backward pass, vectorised with
   cumulative minima), so speed changes smoothly and the camera slows before turns.
4. ``sample`` reads positions, headings or anything else given per sample at frame times.

All in float64 numpy; lengths in metres, times in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .nav import NavGraph

__all__ = ["DensePath", "fillet", "random_route", "sample", "timing"]


@dataclass(frozen=True)
class DensePath:
    """Samples ``xy`` ``[S, 2]`` at most a spacing apart, ``heading`` ``[S]`` (unwrapped); a pivot repeats a
    position with a new heading."""

    xy: np.ndarray
    heading: np.ndarray


def random_route(nav: NavGraph, rng: np.random.Generator, length: float, straight_bias: float = 0.0,
                 loop_prob: float = 0.0) -> np.ndarray:
    """Node indices ``[V]`` of a random walk on ``nav`` at least ``length`` metres long.

    At a node the next edge is drawn with weight ``exp(straight_bias · cos(turn))``; with probability
    ``loop_prob`` the walk starts a loop instead: four turns the same way (around a block, where there is one).
    """
    adj = nav.neighbours()
    nodes = nav.nodes
    current = int(rng.integers(len(nodes)))
    route, previous, total = [current], -1, 0.0
    loop_turns, loop_side = 0, 1.0
    while total < length:
        options = [n for n in adj[current] if n != previous] or adj[current]
        if not options:
            raise ValueError("the navigation graph has an isolated node; cannot route from it")
        if previous < 0:
            pick = options[int(rng.integers(len(options)))]
        else:
            turns = np.array([_turn(nodes[previous], nodes[current], nodes[n]) for n in options])
            if loop_turns == 0 and rng.random() < loop_prob:
                loop_turns, loop_side = 4, float(rng.choice([-1.0, 1.0]))
            if loop_turns > 0:
                pick = options[int(np.argmin(np.abs(turns - loop_side * np.pi / 2)))]
                loop_turns -= 1
            else:
                weights = np.exp(straight_bias * np.cos(turns))
                pick = options[int(rng.choice(len(options), p=weights / weights.sum()))]
        total += float(np.linalg.norm(nodes[pick] - nodes[current]))
        previous, current = current, pick
        route.append(current)
    return np.array(route)


def _turn(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> float:
    """Signed turn angle at ``b`` going a → b → c (left positive)."""
    h1 = np.arctan2(*(b - a)[::-1])
    h2 = np.arctan2(*(c - b)[::-1])
    return float((h2 - h1 + np.pi) % (2 * np.pi) - np.pi)


def fillet(points: np.ndarray, free: np.ndarray, radius: float, pivot_angle: float,
           spacing: float) -> DensePath:
    """Dense path through ``points`` ``[V, 2]`` with corners rounded by arcs of radius at most ``radius``.

    ``free`` ``[V]`` bounds each corner's tangent length (the arc then stays within that distance of the
    corner). Turns sharper than ``pivot_angle`` radians, or whose arc would be tighter than 5 cm, pivot.
    """
    keep = np.r_[True, np.linalg.norm(np.diff(points, axis=0), axis=1) > 1e-9]
    points, free = points[keep], np.asarray(free, dtype=np.float64)[keep]
    if len(points) < 2:
        raise ValueError("a path needs two distinct points")
    seg = np.diff(points, axis=0)
    seg_len = np.linalg.norm(seg, axis=1)
    unit = seg / seg_len[:, None]
    heading = np.arctan2(unit[:, 1], unit[:, 0])
    turn = np.zeros(len(points))
    turn[1:-1] = (np.diff(heading) + np.pi) % (2 * np.pi) - np.pi
    turn[np.abs(turn) < 1e-9] = 0.0
    tangent = np.zeros(len(points))
    arc_radius = np.zeros(len(points))
    for i in range(1, len(points) - 1):
        half = abs(turn[i]) / 2
        if turn[i] == 0.0 or abs(turn[i]) > pivot_angle:
            continue
        ell = min(radius * np.tan(half), 0.5 * seg_len[i - 1], 0.5 * seg_len[i], free[i])
        if ell / np.tan(half) >= 0.05:
            tangent[i], arc_radius[i] = ell, ell / np.tan(half)

    xy, head = [], []
    psi = heading[0]
    for i in range(len(seg)):
        start = points[i] + unit[i] * tangent[i]
        stop = points[i + 1] - unit[i] * tangent[i + 1]
        run = max(float(np.dot(stop - start, unit[i])), 0.0)
        n = max(1, int(np.ceil(run / spacing)))
        xy.append(start + np.outer(np.arange(n) / n * run, unit[i]))
        head.append(np.full(n, psi))
        if i + 1 == len(seg):
            xy.append(points[-1:])
            head.append(np.array([psi]))
        elif arc_radius[i + 1] > 0:
            phi, rho = turn[i + 1], arc_radius[i + 1]
            side = np.sign(phi)
            centre = stop + rho * side * np.array([-unit[i, 1], unit[i, 0]])
            m = max(2, int(np.ceil(rho * abs(phi) / spacing)))
            angles = psi + phi * np.arange(m) / m
            xy.append(centre + rho * side * np.stack([np.sin(angles), -np.cos(angles)], -1))
            head.append(angles)
            psi += phi
        elif turn[i + 1] != 0.0:  # pivot: the same position twice, before and after the turn
            xy.append(points[i + 1: i + 2])
            head.append(np.array([psi]))
            psi += turn[i + 1]
    return DensePath(xy=np.concatenate(xy), heading=np.concatenate(head))


def timing(path: DensePath, speed: float, accel: float, lateral_accel: float, yaw_rate: float) -> np.ndarray:
    """Time ``[S]`` (seconds from 0) at each sample of ``path``, under the speed and turning limits."""
    ds = np.linalg.norm(np.diff(path.xy, axis=0), axis=1)
    dpsi = np.abs(np.diff(path.heading))
    curvature = dpsi / np.maximum(ds, 1e-9)
    with np.errstate(divide="ignore"):
        cap = np.minimum(speed, np.minimum(np.sqrt(lateral_accel / curvature), yaw_rate / curvature))
    cap = np.where(ds < 1e-9, 0.0, cap)  # pivots stop the camera
    cap = np.minimum(np.r_[cap, speed], np.r_[speed, cap])  # per sample: the tighter of its two steps
    s = np.r_[0.0, np.cumsum(ds)]
    forward = 2 * accel * s + np.minimum.accumulate(cap**2 - 2 * accel * s)
    backward = -2 * accel * s + np.minimum.accumulate((cap**2 + 2 * accel * s)[::-1])[::-1]
    v = np.sqrt(np.clip(np.minimum(np.minimum(forward, backward), cap**2), 0.0, None))
    dt = np.maximum(2 * ds / np.maximum(v[:-1] + v[1:], 1e-6), dpsi / yaw_rate)
    return np.r_[0.0, np.cumsum(dt)]


def sample(times: np.ndarray, at: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per-sample ``values`` ``[S, ...]`` linearly interpolated at times ``at`` ``[N]`` (within ``times`` ``[S]``)."""
    i = np.clip(np.searchsorted(times, at, side="right") - 1, 0, len(times) - 2)
    span = times[i + 1] - times[i]
    w = np.where(span > 0, (at - times[i]) / np.maximum(span, 1e-12), 0.0)
    w = w.reshape(-1, *([1] * (values.ndim - 1)))
    return values[i] + w * (values[i + 1] - values[i])
