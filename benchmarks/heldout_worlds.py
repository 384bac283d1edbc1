"""Held-out synthetic worlds and what is measured on them, shared by the benchmarks that score models
(``ablation.py``, ``heldout_ate.py``, ``camera_diagnostics.py``).

World ``i`` of ``test_worlds`` is family × trajectory in turn with seed ``first_seed + i``; the default range
starts at ``HELD_OUT_SEED_OFFSET + 600``, which no training source draws. Poses are camera-to-world ``[N, 4, 4]``
float64 numpy arrays (OpenCV axes); errors are in metres, angles in degrees.
"""

from __future__ import annotations

import numpy as np
import torch

from loger3d.eval.trajectory_metrics import align_trajectory, ate_errors, path_distances, rotation_angle, rpe_errors
from loger3d.train.synthetic import HELD_OUT_SEED_OFFSET, TRAJECTORIES
from loger3d.train.worlds import FAMILIES, SyntheticWorld, WorldConfig

FIRST_WORLD_SEED = HELD_OUT_SEED_OFFSET + 600


def ate(est: np.ndarray, gt: np.ndarray) -> float:
    """RMSE of the positions after a Sim(3) alignment of ``est`` onto ``gt``, in metres."""
    aligned, _ = align_trajectory(gt, est, "sim3")
    return float(np.sqrt((ate_errors(gt, aligned) ** 2).mean()))


def test_worlds(count: int, first_seed: int = FIRST_WORLD_SEED) -> list[tuple[str, str, int]]:
    """``count`` held-out worlds: every family × trajectory in turn, then again with the next seeds."""
    kinds = [(f, t) for t in TRAJECTORIES for f in sorted(FAMILIES)]
    return [(*kinds[i % len(kinds)], first_seed + i) for i in range(count)]


def held_out_sequence(family: str, kind: str, seed: int, frames: int, height: int, width: int,
                      device: str) -> tuple[torch.Tensor, np.ndarray, float]:
    """A held-out world's images ``[1, N, 3, H, W]`` on ``device``, its GT poses ``[N, 4, 4]`` (float64) and its
    path length in metres."""
    world = SyntheticWorld(WorldConfig(family=family, trajectory=kind, seed=seed, length=frames, height=height,
                                       width=width))
    seq = world.sample(0, frames, device=device)
    gt = seq.poses.double().cpu().numpy()
    return seq.images, gt, float(path_distances(gt)[-1])


def total_turn(poses: np.ndarray) -> float:
    """Degrees turned frame to frame, summed, along camera-to-world poses ``[N, 4, 4]``."""
    steps = np.transpose(poses[:-1, :3, :3], (0, 2, 1)) @ poses[1:, :3, :3]
    return float(np.degrees(rotation_angle(steps)).sum())


def rotation_drift(est: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """Where rotation errors stand: mean RPE rotation (degrees) over 8 and 64 frames, and the predicted
    share of the truth's total turning (0: a model that never turns)."""
    return {"rpe_rot_deg_8": float(np.mean(rpe_errors(gt, est, 8, "f")[1])),
            "rpe_rot_deg_64": float(np.mean(rpe_errors(gt, est, 64, "f")[1])),
            "turn_ratio": total_turn(est) / max(total_turn(gt), 1e-9)}


def straight_line(gt: np.ndarray) -> np.ndarray:
    """The baseline every row is compared with: a camera that never turns and moves along its optical axis at
    the truth's mean speed, ``[N, 4, 4]``. A sideways wiggle of a thousandth of a step keeps Umeyama from
    refusing collinear positions (every rotation about a line scores the same)."""
    n = len(gt)
    speed = np.linalg.norm(np.diff(gt[:, :3, 3], axis=0), axis=1).mean()
    poses = np.tile(np.eye(4), (n, 1, 1))
    poses[:, 2, 3] = np.arange(n) * speed
    poses[:, 0, 3] = 1e-3 * speed * np.sin(np.arange(n))
    return poses
