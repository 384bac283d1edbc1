"""Frame-to-frame rotation error of a model on held-out worlds: inside chunks against across chunk boundaries.

The first 300 frames of three of heldout_ate.py's worlds (seeds 1e9+701, 702, 704), window 10, overlap 2,
SE(3) chaining, fp32 on the CPU. For each step (k, k+1): the angle between the predicted and the true relative
rotation, and the true turn. A step crosses a boundary when frame k is the last that one chunk keeps and k+1
the first of the next. Run from the repository root:

    PYTHONPATH=src python benchmarks/results/train_rot3_2026-12-02/cpu_checks/step_rotation.py MODEL
"""
import sys

import numpy as np
import torch

sys.path.insert(0, "benchmarks")
from heldout_worlds import held_out_sequence  # noqa: E402

from loger3d import load_model  # noqa: E402
from loger3d.model.windows import plan_windows  # noqa: E402
from loger3d.train.synthetic import HELD_OUT_SEED_OFFSET  # noqa: E402

FRAMES = 300


def step_angles(rotations: np.ndarray) -> np.ndarray:
    """Degrees of each relative rotation ``[K, 3, 3]``."""
    return np.degrees(np.arccos(np.clip((np.trace(rotations, axis1=1, axis2=2) - 1) / 2, -1, 1)))


def relative(poses: np.ndarray) -> np.ndarray:
    return np.transpose(poses[:-1, :3, :3], (0, 2, 1)) @ poses[1:, :3, :3]


model = load_model(sys.argv[1]).float().eval()
boundary = np.zeros(FRAMES - 1, bool)
for window in plan_windows(FRAMES, 10, 2)[1:]:
    boundary[window.start - 1] = True
for family, kind, offset in (("street", "walk", 701), ("terrain", "walk", 702), ("street", "drive", 704)):
    images, gt, _ = held_out_sequence(family, kind, HELD_OUT_SEED_OFFSET + offset, FRAMES, 126, 224, "cpu")
    with torch.no_grad():
        est = model(images, window_size=10, overlap_size=2, align="se3").camera_poses[0].double().numpy()
    error = step_angles(np.transpose(relative(est), (0, 2, 1)) @ relative(gt))
    print(f"{family}-{kind}: true turn {step_angles(relative(gt)).mean():.2f} deg a step; rotation error "
          f"{error[~boundary].mean():.2f} deg a step inside chunks, {error[boundary].mean():.2f} across "
          f"{boundary.sum()} boundaries")
