"""Held-out ``trans`` against ``trans_zero`` and ``rot`` against ``rot_identity``: eval mode, 64 clips of 8
frames in one chunk at 224x126. Run from the repository root with
PYTHONPATH=src:benchmarks/results/train_balanced_2026-12-01/cpu_checks (so for all three scripts here).

    python trans_check.py init runs/balanced/checkpoint.pt runs/next/checkpoint.pt
"""

import sys

import numpy as np
import torch
from _common import CONFIG, held_out_clips, load

from loger3d.train.recurrent import SequenceObjective

KEYS = ("trans", "trans_zero", "rot", "rot_identity")

for path in sys.argv[1:]:
    model = load(path).eval()
    rows = []
    for first in range(0, 64, 16):
        clip = held_out_clips(first, 16)
        with torch.no_grad():
            _, stats = SequenceObjective(model, CONFIG.loss)(clip.images, clip.local_points, clip.poses, clip.valid,
                                                             8, 0)
        rows.append([float(stats[k]) for k in KEYS])
    trans, zero, rot, identity = np.mean(rows, axis=0)
    print(f"{path}: trans {trans:.5f} trans_zero {zero:.5f} ratio {trans / zero:.3f} | "
          f"rot {rot:.4f} rot_identity {identity:.4f} ratio {rot / identity:.3f}")
