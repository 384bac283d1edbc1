"""Where a model's 1,000-frame ATE comes from, on one held-out world of benchmarks/heldout_ate.py (seeds from
1e9+700): RPE rotation over 8, 64 and 256 frames, total turning, heading error at the end, and the spread of
10-frame step lengths (std of log(pred / truth), after the median ratio): scale and translation consistency.
``ALIGN`` (se3 by default, or sim3) chains the chunks. One JSON line per model.

    python traj_diag.py 1 tiny_synthetic runs/balanced_eval/model.safetensors
"""

import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, "benchmarks")
from heldout_worlds import ate, held_out_sequence, test_worlds, total_turn  # noqa: E402

from loger3d import load_model  # noqa: E402
from loger3d.eval.trajectory_metrics import rotation_angle, rpe_errors  # noqa: E402
from loger3d.train.synthetic import HELD_OUT_SEED_OFFSET  # noqa: E402


def diagnose(model_path: str, index: int, align: str) -> dict:
    family, kind, seed = test_worlds(9, HELD_OUT_SEED_OFFSET + 700)[index]
    images, gt, path = held_out_sequence(family, kind, seed, 1000, 126, 224, "cpu")
    model = load_model(model_path).eval().float()
    with torch.no_grad():
        est = model(images, window_size=10, overlap_size=2, align=align).camera_poses[0].double().numpy()
    row = {"align": align, "model": model_path, "world": f"{family}-{kind}", "ate_pct": 100 * ate(est, gt) / path}
    for delta in (8, 64, 256):
        row[f"rpe_rot_deg_{delta}"] = float(np.mean(rpe_errors(gt, est, delta, "f")[1]))
    row["gt_turn_total_deg"], row["pred_turn_total_deg"] = total_turn(gt), total_turn(est)
    end = (np.linalg.inv(gt[0]) @ gt[-1])[:3, :3].T @ (np.linalg.inv(est[0]) @ est[-1])[:3, :3]
    row["end_heading_error_deg"] = float(np.degrees(rotation_angle(end[None]))[0])
    step_gt = np.linalg.norm(gt[10::10, :3, 3] - gt[:-10:10, :3, 3], axis=1)
    step_est = np.linalg.norm(est[10::10, :3, 3] - est[:-10:10, :3, 3], axis=1)
    ratio = step_est[step_gt > 1e-3] / step_gt[step_gt > 1e-3]
    row["segment_scale_spread"] = float(np.std(np.log(ratio / np.median(ratio))))
    return row


for model_path in sys.argv[2:]:
    print(json.dumps(diagnose(model_path, int(sys.argv[1]), os.environ.get("ALIGN", "se3"))), flush=True)
