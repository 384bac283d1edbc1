"""Is a model's excess turning a bias or noise? Frame-to-frame rotation vectors against the truth's.

The first 300 frames of three of heldout_ate.py's worlds (seeds 1e9+701, 702, 704), window 10, overlap 2,
SE(3) chaining, fp32 on the CPU, as step_rotation.py. For each step (k, k+1) the relative rotation as an axis
times angle, in frame k's camera axes, predicted (p) and true (t). ``slope`` = sum(p.t) / sum(t.t), the
share of the true rotation the prediction carries along it (1: unbiased, above 1: turns too far);
``residual`` = the RMS of p - slope t, what is left unexplained (noise); both per axis (pitch x, yaw y,
roll z) and together. Run from the repository root:

    PYTHONPATH=src python benchmarks/results/train_rot3_2026-12-02/cpu_checks/rotation_bias.py MODEL
"""
import sys

import numpy as np
import torch

sys.path.insert(0, "benchmarks")
from heldout_worlds import held_out_sequence  # noqa: E402

from loger3d import load_model  # noqa: E402
from loger3d.train.synthetic import HELD_OUT_SEED_OFFSET  # noqa: E402

FRAMES = 300


def rotation_vectors(rotations: np.ndarray) -> np.ndarray:
    """Axis times angle in degrees ``[K, 3]`` of rotations ``[K, 3, 3]`` (angles well below 180 degrees)."""
    angle = np.arccos(np.clip((np.trace(rotations, axis1=1, axis2=2) - 1) / 2, -1, 1))
    skew = rotations - np.transpose(rotations, (0, 2, 1))
    axis = np.stack([skew[:, 2, 1], skew[:, 0, 2], skew[:, 1, 0]], axis=1)
    scale = np.where(angle > 1e-9, angle / np.maximum(2 * np.sin(angle), 1e-12), 0.5)
    return np.degrees(axis * scale[:, None])


def relative(poses: np.ndarray) -> np.ndarray:
    return np.transpose(poses[:-1, :3, :3], (0, 2, 1)) @ poses[1:, :3, :3]


model = load_model(sys.argv[1]).float().eval()
for family, kind, offset in (("street", "walk", 701), ("terrain", "walk", 702), ("street", "drive", 704)):
    images, gt, _ = held_out_sequence(family, kind, HELD_OUT_SEED_OFFSET + offset, FRAMES, 126, 224, "cpu")
    with torch.no_grad():
        est = model(images, window_size=10, overlap_size=2, align="se3").camera_poses[0].double().numpy()
    p, t = rotation_vectors(relative(est)), rotation_vectors(relative(gt))
    slope = (p * t).sum(0) / (t * t).sum(0)
    residual = np.sqrt(((p - slope * t) ** 2).mean(0))
    together = (p * t).sum() / (t * t).sum()
    print(f"{family}-{kind}: true rms (x, y, z) {np.sqrt((t ** 2).mean(0)).round(3)} deg a step; "
          f"slope {slope.round(2)} (all axes {together:.2f}); residual rms {residual.round(3)} deg")
