"""Training clips from synthetic long worlds (``train.worlds``), drawn on the fly on the training device.

A source owns a fixed pool of ``num_worlds`` worlds: world ``i`` is the family, trajectory and scene of seed
``seed_offset + i`` with ``world_length`` frames. A clip picks a world, a frame stride and a start, then renders
just those frames. Built worlds are kept in a small LRU cache: building the scene and path costs a good
fraction of a second on the CPU, rendering a clip on a GPU milliseconds. The cache changes speed only, never
which clip a given random generator yields.

Held-out evaluation should use seeds outside ``[seed_offset, seed_offset + num_worlds)``; the defaults train on
seeds below one million and ``HELD_OUT_SEED_OFFSET`` marks where evaluation worlds start.
"""

from __future__ import annotations

import multiprocessing
import pickle
import warnings
from collections import OrderedDict
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

import numpy as np
import torch

from .clip import Clip
from .config import ConfigError
from .worlds import FAMILIES, SyntheticWorld, WorldConfig
from .worlds.world import render_worlds

__all__ = ["HELD_OUT_SEED_OFFSET", "ClipPlan", "SyntheticSource", "TRAJECTORIES", "revisit_frames"]

TRAJECTORIES = ("walk", "drive", "orbit")
HELD_OUT_SEED_OFFSET = 1_000_000_000
"""World seeds from here on are never drawn by a training source with the default pool."""


@dataclass(frozen=True)
class ClipPlan:
    """Which frames a clip takes: world ``index`` of the pool, frames ``start, start + stride, ...``."""

    index: int
    start: int
    stride: int


def revisit_frames(poses: np.ndarray, plan: ClipPlan, frames: int, rng: np.random.Generator, gap: int,
                   distance: float, angle_deg: float = 45.0) -> np.ndarray | None:
    """A clip that comes back: half of it from ``plan`` (``frames // 2`` frames from its start), the other half
    around another visit of that place, ``gap`` or more frames away before or after, whose camera is within
    ``distance`` metres and ``angle_deg`` of viewing direction of the first half's middle camera (drawn with
    ``rng`` among all such frames). The halves come in time order. ``poses`` are the world's ``[L, 4, 4]``;
    ``None`` when the world never comes back there."""
    planned = plan.start + plan.stride * np.arange(frames // 2)
    other_count = frames - len(planned)
    middle = planned[len(planned) // 2]
    centres, forward = poses[:, :3, 3], poses[:, :3, 2]
    before = plan.stride * (other_count // 2)  # frames of the other half before its centre, times the stride
    starts = np.arange(len(poses)) - before
    ends = starts + plan.stride * (other_count - 1)
    near = np.linalg.norm(centres - centres[middle], axis=1) < distance
    facing = forward @ forward[middle] > np.cos(np.deg2rad(angle_deg))
    apart = (starts >= planned[-1] + gap) | (ends <= planned[0] - gap)
    choices = np.flatnonzero(near & facing & apart & (starts >= 0) & (ends < len(poses)))
    if not len(choices):
        return None
    other = starts[choices[rng.integers(len(choices))]] + plan.stride * np.arange(other_count)
    return np.concatenate([planned, other] if other[0] > planned[-1] else [other, planned])


def _build_world(config: WorldConfig) -> SyntheticWorld:
    return SyntheticWorld(config)


def _build_world_bytes(config: WorldConfig) -> bytes:
    """A world built in a worker, pickled in band. Returned as is, its tensors would travel through shared memory
    (torch's multiprocessing reductions), each kept open as a file for as long as the world is cached: thousands
    of cached worlds exhaust /dev/shm or the open-file limit, and a worker then dies."""
    return pickle.dumps(SyntheticWorld(config), protocol=pickle.HIGHEST_PROTOCOL)


def _worker_init() -> None:
    torch.set_num_threads(1)  # see worlds.world: competing OpenMP threads slow the builders down many times


@dataclass
class SyntheticSource:
    """Clips of ``height × width`` frames from a pool of synthetic worlds (a ``ClipSource``).

    ``families`` and ``trajectories`` are drawn uniformly per world; ``stride`` is the (min, max) frame step of a
    clip, drawn per clip; ``fps`` the worlds' frame rate (with ``stride`` it sets the motion between frames).
    ``workers`` > 0 builds the worlds that ``prefetch`` announces in that many background processes (building a
    world takes ~0.5 s of CPU; a GPU renders a clip in milliseconds), so training does not wait for them.
    ``revisit``: the share of clips that come back to where they were (``revisit_frames``: the second half
    ``revisit_gap`` frames or more after the first, its middle camera within ``revisit_distance`` metres of the
    first half's), so that the model learns to relate two visits of a place (what loop closure asks of it); a
    world that never comes back gives a plain clip. ``compiled_shading``: on a GPU, intersect and shade through
    ``torch.compile`` (``worlds.render.render_many``: the same images up to float rounding, in fused
    kernels; the first step compiles).
    """

    height: int
    width: int
    families: tuple[str, ...] = tuple(FAMILIES)
    trajectories: tuple[str, ...] = TRAJECTORIES
    num_worlds: int = 100_000
    world_length: int = 1000
    seed_offset: int = 0
    stride: tuple[int, int] = (1, 2)
    fps: float = 10.0
    cache_size: int = 256
    workers: int = 0
    revisit: float = 0.0
    revisit_gap: int = 100
    revisit_distance: float = 2.0
    compiled_shading: bool = False
    name: str = "synthetic"

    def __post_init__(self) -> None:
        self.families = tuple(self.families)
        self.trajectories = tuple(self.trajectories)
        unknown = [f for f in self.families if f not in FAMILIES]
        if unknown or not self.families:
            raise ConfigError(f"unknown scene families {unknown}; choose from {sorted(FAMILIES)}")
        unknown = [t for t in self.trajectories if t not in TRAJECTORIES]
        if unknown or not self.trajectories:
            raise ConfigError(f"unknown trajectories {unknown}; choose from {list(TRAJECTORIES)}")
        try:
            low, high = (int(s) for s in self.stride)
        except (TypeError, ValueError):  # not two whole numbers
            low = high = 0
        if not 1 <= low <= high:
            raise ConfigError(f"stride must be [min, max] with 1 <= min <= max, got {self.stride!r}")
        self.stride = (low, high)
        if self.num_worlds < 1 or self.world_length < 1:
            raise ConfigError("num_worlds and world_length must be positive")
        if not 0.0 <= self.revisit <= 1.0 or self.revisit_gap < 1 or self.revisit_distance <= 0:
            raise ConfigError(f"revisit must be a share in [0, 1] with revisit_gap >= 1 and revisit_distance > 0, got "
                              f"{self.revisit}, {self.revisit_gap}, {self.revisit_distance}")
        if self.height < 1 or self.width < 1:
            raise ConfigError(f"height and width must be positive, got {self.height} and {self.width}")
        self._cache: OrderedDict[int, SyntheticWorld] = OrderedDict()
        self._pending: dict[int, Future] = {}
        self._pool: ProcessPoolExecutor | None = None

    def world_config(self, index: int) -> WorldConfig:
        seed = self.seed_offset + index
        rng = np.random.default_rng([seed, 17])
        return WorldConfig(family=self.families[rng.integers(len(self.families))],
                           trajectory=self.trajectories[rng.integers(len(self.trajectories))], seed=seed,
                           length=self.world_length, height=self.height, width=self.width, fps=self.fps,
                           frames_per_batch=64)

    def world(self, index: int) -> SyntheticWorld:
        """World ``index`` of the pool (built once, then cached)."""
        if index in self._cache:
            self._cache.move_to_end(index)
            return self._cache[index]
        pending = self._pending.pop(index, None)
        world = None
        if pending is not None:
            try:
                world = pickle.loads(pending.result())
            except BrokenProcessPool:  # a worker was killed (e.g. out of memory): not the world's fault
                self.close()
        if world is None:  # built here: the same world, so the clips do not change
            world = _build_world(self.world_config(index))
        self._cache[index] = world
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return world

    def plan(self, rng: np.random.Generator, frames: int) -> ClipPlan:
        """Draw a clip's world, stride and start (everything ``sample`` draws, nothing rendered)."""
        stride = int(rng.integers(self.stride[0], self.stride[1] + 1))
        span = (frames - 1) * stride + 1
        if span > self.world_length:
            raise ConfigError(f"a clip of {frames} frames at stride {stride} needs worlds of {span} frames; "
                              f"raise world_length (now {self.world_length})")
        index = int(rng.integers(self.num_worlds))
        return ClipPlan(index, int(rng.integers(self.world_length - span + 1)), stride)

    def prefetch(self, plan: ClipPlan) -> None:
        """Start building ``plan``'s world in the background (no-op without workers or when built)."""
        if self.workers <= 0 or plan.index in self._cache or plan.index in self._pending:
            return
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers, multiprocessing.get_context("spawn"),
                                             initializer=_worker_init)
        self._pending[plan.index] = self._pool.submit(_build_world_bytes, self.world_config(plan.index))

    def sample(self, rng: np.random.Generator, frames: int, device: torch.device | str = "cpu") -> Clip:
        return self.sample_many([rng], frames, device)[0]

    def sample_many(self, rngs: list[np.random.Generator], frames: int,
                    device: torch.device | str = "cpu") -> list[Clip]:
        """One clip per generator, all rendered in one batch (``worlds.render_worlds``); clip ``i`` is exactly what
        ``sample(rngs[i], ...)`` gives."""
        draws = [self._draw(rng, frames) for rng in rngs]
        compiled = self.compiled_shading and torch.device(device).type == "cuda"
        seqs = render_worlds([(world, chosen) for world, chosen, _ in draws], device, compiled=compiled)
        return [Clip(seq.images, seq.depth, seq.valid, seq.intrinsics, seq.poses, source=where)
                for seq, (_, _, where) in zip(seqs, draws)]

    def _draw(self, rng: np.random.Generator, frames: int) -> tuple[SyntheticWorld, torch.Tensor, str]:
        """Everything a clip draws from ``rng``: its world, its frame indices and a name saying where it is from."""
        plan = self.plan(rng, frames)
        comes_back = self.revisit > 0 and rng.random() < self.revisit  # drawn only when asked: old runs unchanged
        for attempt in range(self.num_worlds):
            candidate = (plan.index + attempt) % self.num_worlds
            try:
                world = self.world(candidate)
                break
            except RuntimeError as e:  # a world whose path grazes a surface: skip it, deterministically
                warnings.warn(f"skipping synthetic world {self.seed_offset + candidate}: {e}", stacklevel=3)
        else:
            raise ConfigError(f"none of the {self.num_worlds} worlds of source {self.name!r} could be built; "
                              "raise num_worlds or change families, trajectories or world_length")
        cfg = world.config
        where = f"{self.name}/{cfg.family}-{cfg.trajectory}-{cfg.seed}@{plan.start}x{plan.stride}"
        chosen = revisit_frames(world.poses.numpy(), plan, frames, rng, self.revisit_gap, self.revisit_distance) \
            if comes_back else None
        if chosen is None:
            return world, plan.start + plan.stride * torch.arange(frames), where
        where += f"+{int(chosen[0]) if chosen[0] != plan.start else int(chosen[frames // 2])}"
        return world, torch.from_numpy(chosen), where

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None
            self._pending.clear()
