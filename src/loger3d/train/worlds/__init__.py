"""Synthetic long worlds: procedural scenes, camera paths through them, and an exact ray caster in PyTorch.

Three scene families (``indoor`` rooms and corridors, ``street`` city blocks, open ``terrain``), three
trajectories (handheld ``walk``, ``drive`` with turns and loops, ``orbit``), any length from a few frames to
tens of thousands, deterministic per seed, on CPU or GPU. Frames come with RGB, exact z-depth, intrinsics
and camera-to-world poses that agree: a pixel's depth, unprojected with its K and pose and projected into
another frame, lands on that frame's depth where it is visible.

    from loger3d.train.worlds import SyntheticWorld
    world = SyntheticWorld(family="street", trajectory="drive", seed=7, length=20_000)
    seq = world.sample(start=5_000, count=32, device="cuda")  # seq.images, .depth, .valid, .intrinsics, .poses

Modules: ``scene`` (primitive tables), ``families`` (``indoor``, ``street``, ``terrain``), ``nav`` and
``layout`` (free paths and keeping them free), ``paths`` and ``trajectories`` (camera motion), ``render``,
``intersect`` and ``textures`` (the ray caster), ``clearance`` (camera-to-surface distances), ``world``.
"""

from .camera import intrinsics
from .clearance import clearance
from .families import FAMILIES, make_scene
from .render import RenderOutput, cast, render
from .scene import Scene
from .trajectories import drive, orbit, trajectory, walk
from .world import MIN_CLEARANCE, SyntheticWorld, WorldConfig, WorldSequence, make_sequence

__all__ = ["FAMILIES", "MIN_CLEARANCE", "RenderOutput", "Scene", "SyntheticWorld", "WorldConfig", "WorldSequence",
           "cast", "clearance", "drive", "intrinsics", "make_scene", "make_sequence", "orbit", "render",
           "trajectory", "walk"]
