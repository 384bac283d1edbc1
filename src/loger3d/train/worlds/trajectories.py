"""Camera trajectories through a scene's free space: handheld ``walk``, ``drive`` with turns and loops, ``orbit``.

Each returns camera-to-world poses ``[N, 4, 4]`` float32 (OpenCV axes, z-up world) for N frames at ``fps``,
any N from 1 to tens of thousands (a 20,000-frame drive takes well under a second). Positions follow the
scene's navigation graphs or orbit loops (``paths.py``): rounded corners, speed limited in curves, turns on
the spot where a corner is too tight, so motion is smooth with no teleports. Lateral excursions (sway, lane
offset) stay below the paths' clearance minus ``CAMERA_MARGIN``, which keeps cameras out of every primitive.
Heights follow the ground (hills, pavements), smoothed along the path. Orientation noise is a sum of a few
sinusoids of random frequency and phase: smooth, bounded, and defined for any length.

Options come from the dataclasses below, overridden by the scene family's ``scene.motion[kind]`` and then by
the caller's keyword arguments. Everything is drawn from ``numpy.random.default_rng([seed, stream])``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch

from .camera import pose_matrices, rotation_ypr
from .nav import CAMERA_MARGIN, NavGraph
from .paths import DensePath, fillet, random_route, sample, timing
from .scene import Scene

__all__ = ["DriveOptions", "OrbitOptions", "WalkOptions", "drive", "orbit", "trajectory", "walk"]

_SPACING = 0.1  # metres between dense path samples


@dataclass(frozen=True)
class WalkOptions:
    """A person holding a camera: ``speed`` m/s (± ``speed_jitter`` fraction per world), eye height range, how
    many seconds ahead the gaze anticipates turns, look-around, pitch, roll and shake amplitudes in degrees,
    sideways sway and vertical bob in metres."""

    speed: float = 1.3
    speed_jitter: float = 0.2
    eye_height: tuple[float, float] = (1.45, 1.75)
    accel: float = 0.8
    lateral_accel: float = 0.8
    yaw_rate: float = 1.2
    corner_radius: float = 2.0
    pivot_deg: float = 130.0
    look_ahead: float = 1.0
    look_deg: float = 12.0
    pitch_deg: float = -5.0
    pitch_noise_deg: float = 3.0
    roll_deg: float = 1.5
    shake_deg: float = 0.3
    sway: float = 0.05
    bob: float = 0.025
    step_hz: float = 1.9


@dataclass(frozen=True)
class DriveOptions:
    """A camera on a vehicle: cruise ``speed`` m/s, mount ``height`` range, ``lateral`` offset to the right of
    the path (a lane), turning limits, route choice (``straight_bias``, ``loop_prob``), vibration."""

    speed: float = 9.0
    speed_jitter: float = 0.15
    height: tuple[float, float] = (1.5, 1.8)
    lateral: float = 0.0
    accel: float = 2.0
    lateral_accel: float = 2.5
    yaw_rate: float = 0.6
    corner_radius: float = 9.0
    pivot_deg: float = 160.0
    straight_bias: float = 1.0
    loop_prob: float = 0.15
    vibration_deg: float = 0.25
    bounce: float = 0.01
    ground_window: float = 6.0


@dataclass(frozen=True)
class OrbitOptions:
    """Circling one of the scene's orbit loops while looking at its target: ``speed`` m/s along the loop,
    camera height swept over the loop's height range once per ``height_period`` seconds, handheld noise."""

    speed: float = 1.0
    speed_jitter: float = 0.2
    accel: float = 0.5
    lateral_accel: float = 0.8
    yaw_rate: float = 0.8
    corner_radius: float = 4.0
    height_period: float = 30.0
    look_deg: float = 3.0
    shake_deg: float = 0.3


def walk(scene: Scene, length: int, fps: float = 10.0, seed: int = 0, **options) -> torch.Tensor:
    """Handheld walk on ``scene.nav["walk"]``: poses ``[length, 4, 4]``."""
    opt = _options(WalkOptions, scene, "walk", options)
    rng = np.random.default_rng([seed, 1])
    speed = opt.speed * (1 + opt.speed_jitter * rng.uniform(-1, 1))
    t = np.arange(length) / fps
    path, times = _travel(scene.nav["walk"], seed, speed, t[-1], opt, opt.sway, opt.corner_radius,
                          np.deg2rad(opt.pivot_deg))
    xy = sample(times, t, path.xy)
    # people look where they are about to go: the heading averaged over the next ``look_ahead`` seconds
    ahead = np.clip(t[:, None] + np.linspace(0, opt.look_ahead, 5)[None], 0, times[-1])
    heading = sample(times, ahead.reshape(-1), path.heading).reshape(-1, 5).mean(1)
    v = np.linalg.norm(np.gradient(xy, axis=0), axis=1) * fps if length > 1 else np.zeros(1)
    noise = _smooth_noise(rng, t, 4, 0.05, 0.4)
    shake = _smooth_noise(rng, t, 3, 1.0, 4.0)
    right = np.stack([np.sin(heading), -np.cos(heading)], -1)
    xy = xy + opt.sway * noise[:, 3:] * right
    gait = np.clip(v / speed, 0, 1) * np.sin(2 * np.pi * opt.step_hz * t + rng.uniform(0, 2 * np.pi))
    z = _ground(scene, path, times, t, 1.5)[0] + rng.uniform(*opt.eye_height) + opt.bob * gait
    deg = np.deg2rad
    yaw = heading + deg(opt.look_deg) * noise[:, 0] + deg(opt.shake_deg) * shake[:, 0]
    pitch = deg(opt.pitch_deg) + deg(opt.pitch_noise_deg) * noise[:, 1] + deg(opt.shake_deg) * shake[:, 1]
    roll = deg(opt.roll_deg) * noise[:, 2] + deg(opt.shake_deg) * shake[:, 2]
    return pose_matrices(np.c_[xy, z], rotation_ypr(yaw, pitch, roll))


def drive(scene: Scene, length: int, fps: float = 10.0, seed: int = 0, **options) -> torch.Tensor:
    """Vehicle camera on ``scene.nav["drive"]`` (or ``"walk"`` where a family has no roads): poses ``[length, 4, 4]``.

    Routes prefer going straight, turn at junctions, and now and then loop around a block, so long drives
    revisit places from new directions."""
    opt = _options(DriveOptions, scene, "drive", options)
    rng = np.random.default_rng([seed, 2])
    speed = opt.speed * (1 + opt.speed_jitter * rng.uniform(-1, 1))
    t = np.arange(length) / fps
    nav = scene.nav.get("drive", scene.nav["walk"])
    path, times = _travel(nav, seed, speed, t[-1], opt, abs(opt.lateral), opt.corner_radius,
                          np.deg2rad(opt.pivot_deg), opt.straight_bias, opt.loop_prob)
    xy, heading = sample(times, t, path.xy), sample(times, t, path.heading)
    xy = xy + opt.lateral * np.stack([np.sin(heading), -np.cos(heading)], -1)
    ground, slope = _ground(scene, path, times, t, opt.ground_window)
    shake = _smooth_noise(rng, t, 4, 0.5, 3.0)
    deg = np.deg2rad(opt.vibration_deg)
    z = ground + rng.uniform(*opt.height) + opt.bounce * shake[:, 3]
    yaw = heading + deg * shake[:, 0]
    pitch = np.arctan(slope) + deg * shake[:, 1]
    return pose_matrices(np.c_[xy, z], rotation_ypr(yaw, pitch, deg * shake[:, 2]))


def orbit(scene: Scene, length: int, fps: float = 10.0, seed: int = 0, **options) -> torch.Tensor:
    """Circle one of ``scene.orbits`` (chosen by the seed, either direction) looking at its target:
    poses ``[length, 4, 4]``."""
    opt = _options(OrbitOptions, scene, "orbit", options)
    rng = np.random.default_rng([seed, 3])
    spec = scene.orbits[int(rng.integers(len(scene.orbits)))]
    ring = spec.ring[::-1] if rng.random() < 0.5 else spec.ring
    ring = np.roll(ring, -int(rng.integers(len(ring))), axis=0)
    speed = opt.speed * (1 + opt.speed_jitter * rng.uniform(-1, 1))
    t = np.arange(length) / fps
    lap = float(np.linalg.norm(np.diff(np.r_[ring, ring[:1]], axis=0), axis=1).sum())
    laps = int(np.ceil(speed * max(t[-1], 1e-3) / lap * 1.5)) + 1
    points = np.r_[np.tile(ring, (laps, 1)), ring[:1]]
    free = np.full(len(points), spec.clearance - CAMERA_MARGIN)
    path = fillet(points, free, opt.corner_radius, np.deg2rad(150.0), _SPACING)
    times = timing(path, speed, opt.accel, opt.lateral_accel, opt.yaw_rate)
    xy = sample(times, t, path.xy)
    low, high = spec.heights
    sweep = 0.5 - 0.5 * np.cos(2 * np.pi * t / opt.height_period + rng.uniform(0, 2 * np.pi))
    z = _ground(scene, path, times, t, 2.0)[0] + low + (high - low) * sweep
    noise = _smooth_noise(rng, t, 3, 0.05, 0.3)
    shake = _smooth_noise(rng, t, 3, 1.0, 4.0)
    to_target = np.asarray(spec.target) - np.c_[xy, z]
    deg = np.deg2rad
    yaw = np.arctan2(to_target[:, 1], to_target[:, 0])
    yaw = np.unwrap(yaw) + deg(opt.look_deg) * noise[:, 0] + deg(opt.shake_deg) * shake[:, 0]
    pitch = np.arctan2(to_target[:, 2], np.linalg.norm(to_target[:, :2], axis=1))
    pitch = pitch + deg(opt.look_deg) * noise[:, 1] + deg(opt.shake_deg) * shake[:, 1]
    roll = deg(opt.shake_deg) * (noise[:, 2] + shake[:, 2])
    return pose_matrices(np.c_[xy, z], rotation_ypr(yaw, pitch, roll))


def trajectory(kind: str, scene: Scene, length: int, fps: float = 10.0, seed: int = 0, **options) -> torch.Tensor:
    """Dispatch by name: ``"walk"``, ``"drive"`` or ``"orbit"``."""
    makers = {"walk": walk, "drive": drive, "orbit": orbit}
    if kind not in makers:
        raise ValueError(f"unknown trajectory {kind!r}; choose one of {sorted(makers)}")
    if length < 1:
        raise ValueError(f"length must be at least 1 frame, got {length}")
    return makers[kind](scene, length, fps, seed, **options)


def _options(cls, scene: Scene, kind: str, overrides: dict):
    names = {f.name for f in fields(cls)}
    unknown = set(overrides) - names
    if unknown:
        raise TypeError(f"unknown {kind} options {sorted(unknown)}; valid: {sorted(names)}")
    return cls(**{**{k: v for k, v in scene.motion.get(kind, {}).items() if k in names}, **overrides})


def _travel(nav: NavGraph, seed: int, speed: float, duration: float, opt, sideways: float, radius: float,
            pivot: float, straight_bias: float = 0.0, loop_prob: float = 0.0) -> tuple[DensePath, np.ndarray]:
    """A dense path on ``nav`` and its sample times, long enough for ``duration`` seconds.

    ``sideways`` is the largest lateral excursion from the path; with ``CAMERA_MARGIN`` it must fit in the
    edges' clearance, and it shrinks the room for rounding each corner."""
    if sideways + CAMERA_MARGIN > nav.clearance:
        raise ValueError(f"lateral excursion {sideways:.2f} m plus margin {CAMERA_MARGIN} m exceeds the paths' "
                         f"clearance {nav.clearance:.2f} m; reduce the sway or lane offset")
    length = speed * duration * 1.3 + 20.0
    while True:
        route = random_route(nav, np.random.default_rng([seed, 0]), length, straight_bias, loop_prob)
        free = nav.node_clearance[route] - CAMERA_MARGIN - sideways
        path = fillet(nav.nodes[route], free, radius, pivot, _SPACING)
        times = timing(path, speed, opt.accel, opt.lateral_accel, opt.yaw_rate)
        if times[-1] >= duration:
            return path, times
        length *= 2


def _ground(scene: Scene, path: DensePath, times: np.ndarray, t: np.ndarray,
            window: float) -> tuple[np.ndarray, np.ndarray]:
    """Ground height and its slope along the path ``[N]`` at the frames, smoothed over ``window`` metres of
    path (steps become ramps)."""
    heights = _moving_average(scene.ground.height(path.xy), max(1, int(round(window / _SPACING))))
    arc = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(path.xy, axis=0), axis=1))]
    slope = np.gradient(heights) / np.maximum(np.gradient(arc), 1e-6) if len(arc) > 1 else np.zeros(1)
    return sample(times, t, heights), sample(times, t, slope)


def _moving_average(x: np.ndarray, width: int) -> np.ndarray:
    """Centred moving average of ``x`` ``[S]`` over ``width`` samples, edges padded with the end values."""
    half = width // 2
    padded = np.r_[np.full(half, x[0]), x, np.full(half, x[-1])]
    c = np.cumsum(np.r_[0.0, padded])
    return (c[2 * half + 1:] - c[: len(x)]) / (2 * half + 1)


def _smooth_noise(rng: np.random.Generator, t: np.ndarray, channels: int, low_hz: float,
                  high_hz: float, terms: int = 5) -> np.ndarray:
    """Smooth zero-mean noise ``[N, channels]`` of unit RMS at times ``t``: sums of sinusoids with frequencies
    log-uniform in [low_hz, high_hz], amplitudes falling as 1 / frequency."""
    freq = np.exp(rng.uniform(np.log(low_hz), np.log(high_hz), (channels, terms)))
    phase = rng.uniform(0, 2 * np.pi, (channels, terms))
    amp = 1.0 / freq
    amp = amp / np.sqrt((amp**2).sum(1, keepdims=True) / 2)
    return (amp[None] * np.sin(2 * np.pi * freq[None] * t[:, None, None] + phase[None])).sum(-1)
