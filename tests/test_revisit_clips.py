"""Training clips that come back to where they were (``SyntheticSource(revisit=...)``): what loop closure needs
the model to learn."""

import numpy as np
import pytest

from loger3d.train.config import ConfigError
from loger3d.train.synthetic import ClipPlan, SyntheticSource, revisit_frames


def _circle(frames: int, laps: float, radius: float = 5.0) -> np.ndarray:
    """Cameras going round a circle, looking along it: ``[frames, 4, 4]``."""
    angle = np.linspace(0, 2 * np.pi * laps, frames)
    poses = np.tile(np.eye(4), (frames, 1, 1))
    poses[:, 0, 3], poses[:, 1, 3] = radius * np.cos(angle), radius * np.sin(angle)
    forward = np.stack([-np.sin(angle), np.cos(angle), np.zeros(frames)], 1)
    up = np.array([0.0, 0.0, 1.0])
    right = np.cross(forward, up)
    poses[:, :3, 0], poses[:, :3, 1], poses[:, :3, 2] = right, -up, forward
    return poses


@pytest.mark.parametrize("start", [10, 200])  # the other visit comes later, or earlier
def test_the_other_half_comes_back_to_the_planned_halfs_place_at_least_the_gap_away(start):
    poses = _circle(300, laps=3)  # 100 frames a lap
    for seed in range(5):
        frames = revisit_frames(poses, ClipPlan(0, start, 2), 16, np.random.default_rng(seed), gap=50, distance=1.0)
        planned = start + 2 * np.arange(8)
        first, second = frames[:8], frames[8:]
        assert np.array_equal(first if start == 10 else second, planned)
        assert np.all(np.diff(first) == 2) and np.all(np.diff(second) == 2) and second[0] >= first[-1] + 50
        gap = np.linalg.norm(poses[first[4], :3, 3] - poses[second[4], :3, 3])
        assert gap < 1.0, gap


def test_a_world_that_never_comes_back_gives_none():
    line = np.tile(np.eye(4), (300, 1, 1))
    line[:, 0, 3] = np.arange(300) * 0.5
    assert revisit_frames(line, ClipPlan(0, 0, 1), 16, np.random.default_rng(0), gap=50, distance=2.0) is None


def test_an_orbit_world_gives_revisit_clips_and_they_are_a_function_of_the_generator():
    source = SyntheticSource(height=14, width=28, families=("terrain",), trajectories=("orbit",), num_worlds=1,
                             world_length=800, revisit=1.0, revisit_gap=60, revisit_distance=2.0)
    a = source.sample(np.random.default_rng([0, 1]), 12)
    b = source.sample(np.random.default_rng([0, 1]), 12)
    assert "+" in a.source and a.source == b.source and len(a) == 12
    np.testing.assert_array_equal(a.poses.numpy(), b.poses.numpy())
    assert np.linalg.norm(a.poses[3, :3, 3] - a.poses[9, :3, 3]) < 2.0  # the two halves' middle cameras
    plain = SyntheticSource(height=14, width=28, families=("terrain",), trajectories=("orbit",), num_worlds=1,
                            world_length=800)
    assert "+" not in plain.sample(np.random.default_rng([0, 1]), 12).source


def test_revisit_options_are_checked():
    with pytest.raises(ConfigError, match="revisit"):
        SyntheticSource(height=14, width=28, revisit=1.5)
