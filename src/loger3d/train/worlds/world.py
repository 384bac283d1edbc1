"""Synthetic long worlds: a scene, a camera path through it, and frames rendered on demand.

``SyntheticWorld`` builds the scene and all camera poses up front (cheap: a 20,000-frame drive in well
under a second) and renders only the frames a caller asks for, so a world of any length costs the memory of
the frames in hand. Everything derives from ``WorldConfig.seed``: the scene, the route, the camera's field
of view; the same config gives the same tensors (on another device, the same up to float rounding).

On CPU, rendering is memory-bound tensor code: give each data-loader worker one torch thread
(``torch.set_num_threads(1)``); OpenMP threads that compete for busy cores slow it down many times over.

Conventions (those of the project): images ``[n, 3, H, W]`` float in [0, 1]; depth ``[n, H, W]`` z-depth
in metres, 0 where the pixel sees sky or nothing within the scene's far distance (``valid`` marks the
rest); intrinsics ``[n, 3, 3]`` with pixel (row r, col c) centred at u = c, v = r; camera-to-world poses
``[n, 4, 4]`` with OpenCV axes in a z-up world frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from .camera import intrinsics
from .clearance import clearance
from .families import make_scene
from .render import render_many
from .scene import Scene, moved_to
from .trajectories import trajectory

__all__ = ["WorldConfig", "WorldSequence", "SyntheticWorld", "make_sequence", "render_worlds", "MIN_CLEARANCE"]

MIN_CLEARANCE = 0.25
"""Metres every camera centre keeps from every surface; a world whose path breaks this is refused."""


@dataclass(frozen=True)
class WorldConfig:
    """Everything that defines a world.

    ``family``: ``"indoor"``, ``"street"`` or ``"terrain"``; ``trajectory``: ``"walk"``, ``"drive"`` or
    ``"orbit"``; ``length`` frames at ``fps``; images ``height`` × ``width`` (multiples of 14 for the model);
    horizontal field of view ``fov_deg`` ± ``fov_jitter_deg`` and a principal point off centre by up to
    ``principal_jitter`` pixels, drawn per world; ``scene_options`` and ``trajectory_options`` go to the
    family's generator and the trajectory (see their options dataclasses); ``frames_per_batch`` bounds the
    frames rendered at once.
    """

    family: str = "indoor"
    trajectory: str = "walk"
    seed: int = 0
    length: int = 256
    height: int = 168
    width: int = 224
    fov_deg: float = 65.0
    fov_jitter_deg: float = 10.0
    principal_jitter: float = 0.0
    fps: float = 10.0
    scene_options: dict = field(default_factory=dict)
    trajectory_options: dict = field(default_factory=dict)
    frames_per_batch: int = 8


@dataclass
class WorldSequence:
    """Frames ``frames`` ``[n]`` of a world: ``images`` ``[n, 3, H, W]``, ``depth`` and ``valid`` ``[n, H, W]``,
    ``intrinsics`` ``[n, 3, 3]``, ``poses`` ``[n, 4, 4]`` camera-to-world (all float32 but ``valid``, bool)."""

    images: torch.Tensor
    depth: torch.Tensor
    valid: torch.Tensor
    intrinsics: torch.Tensor
    poses: torch.Tensor
    frames: torch.Tensor

    def __len__(self) -> int:
        return self.images.shape[0]


class SyntheticWorld:
    """A world of ``config.length`` frames; ``sample`` renders any window of it.

    ``SyntheticWorld(WorldConfig(family="street", trajectory="drive", seed=3, length=20_000))`` or, for short,
    ``SyntheticWorld(family="street", trajectory="drive", seed=3, length=20_000)``.
    """

    def __init__(self, config: WorldConfig | None = None, **overrides):
        self.config = replace(config or WorldConfig(), **overrides)
        cfg = self.config
        if cfg.length < 1 or cfg.height < 1 or cfg.width < 1:
            raise ValueError(f"length, height and width must be positive, got {cfg.length}, {cfg.height}, {cfg.width}")
        self.scene: Scene = make_scene(cfg.family, cfg.seed, **cfg.scene_options)
        self.poses = trajectory(cfg.trajectory, self.scene, cfg.length, cfg.fps, cfg.seed, **cfg.trajectory_options)
        rng = np.random.default_rng([cfg.seed, 4])
        fov = cfg.fov_deg + rng.uniform(-cfg.fov_jitter_deg, cfg.fov_jitter_deg)
        shift = tuple(float(s) for s in rng.uniform(-cfg.principal_jitter, cfg.principal_jitter, 2))
        self.intrinsics = intrinsics(cfg.width, cfg.height, fov, shift)
        closest = clearance(self.scene, self.poses[:, :3, 3].numpy(), cap=1.0)
        if closest.min() < MIN_CLEARANCE:
            frame = int(closest.argmin())
            raise RuntimeError(f"{cfg.family}/{cfg.trajectory} seed {cfg.seed}: camera {frame} passes "
                               f"{closest[frame]:.3f} m from a surface (< {MIN_CLEARANCE} m); this is a generator bug")
        self._scenes: dict[torch.device, Scene] = {self.scene.device: self.scene}

    def __len__(self) -> int:
        return self.config.length

    def sample(self, start: int = 0, count: int | None = None, stride: int = 1,
               device: torch.device | str | None = None) -> WorldSequence:
        """Render frames ``start, start + stride, ...`` (``count`` of them; default: to the end) on ``device``."""
        frames = torch.arange(start, self.config.length, stride)[:count]
        if start < 0 or frames.numel() == 0:
            raise ValueError(f"no frames from start {start} (stride {stride}) in a world of {self.config.length}")
        return self.sample_frames(frames, device)

    def sample_frames(self, frames: torch.Tensor, device: torch.device | str | None = None) -> WorldSequence:
        """Render the frames ``frames`` ``[n]`` (any order, indices in ``[0, length)``) on ``device``."""
        return render_worlds([(self, frames)], device, self.config.frames_per_batch)[0]

    def scene_on(self, device: torch.device) -> Scene:
        """The scene's tables on ``device`` (moved once, then kept)."""
        if device not in self._scenes:
            self._scenes[device] = self.scene.to(device)
        return self._scenes[device]


def render_worlds(requests: Sequence[tuple[SyntheticWorld, torch.Tensor]], device: torch.device | str | None = None,
                  frames_per_batch: int | None = None, compiled: bool = False) -> list[WorldSequence]:
    """Frames of several worlds rendered together: ``requests`` are ``(world, frames [n])`` pairs of worlds with one
    image size; returns a ``WorldSequence`` per request. One batch of kernels covers many worlds, which is what a
    GPU needs to render a training step's clips quickly; each frame is what ``world.sample_frames`` gives.
    ``frames_per_batch``: frames (of any worlds) rendered at once; default ``render.RAYS_PER_BATCH`` rays' worth.
    ``compiled``: intersect and shade through ``torch.compile`` (``render.render_many``; for GPUs)."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    sizes = {(w.config.height, w.config.width) for w, _ in requests}
    if len(sizes) != 1:
        raise ValueError(f"worlds rendered together need one image size, got {sorted(sizes)}")
    height, width = sizes.pop()
    wanted = []
    for world, frames in requests:
        frames = torch.as_tensor(frames, dtype=torch.long)
        if frames.numel() == 0 or int(frames.min()) < 0 or int(frames.max()) >= world.config.length:
            raise ValueError(f"frames must be indices in [0, {world.config.length}), got {frames.tolist()[:8]}...")
        wanted.append(frames)
    # Each request's poses, intrinsics and frame indices, all of them moved in one copy to a GPU.
    host = [t for (world, _), frames in zip(requests, wanted) for t in (world.poses[frames], world.intrinsics, frames)]
    moved = moved_to(host, device)
    poses, indices = moved[0::3], moved[2::3]
    ks = [k.expand(len(frames), 3, 3).clone() for k, frames in zip(moved[1::3], wanted)]
    outs = render_many([world.scene_on(device) for world, _ in requests], poses, ks, height, width, device,
                       frames_per_batch, compiled=compiled)
    return [WorldSequence(images=out.rgb, depth=out.depth, valid=out.valid, intrinsics=k, poses=pose, frames=index)
            for out, k, pose, index in zip(outs, ks, poses, indices)]


def make_sequence(family: str = "indoor", seed: int = 0, length: int = 32, trajectory: str = "walk", start: int = 0,
                  count: int | None = None, device: torch.device | str | None = None, **config) -> WorldSequence:
    """Frames ``[start, start + count)`` of the world ``WorldConfig(family, trajectory, seed, length, **config)``."""
    world = SyntheticWorld(WorldConfig(family=family, trajectory=trajectory, seed=seed, length=length, **config))
    return world.sample(start, count, device=device)
