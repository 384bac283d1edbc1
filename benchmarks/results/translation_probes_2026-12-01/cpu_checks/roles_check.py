"""Does a model take the direction of motion from the frame roles (pe tokens)? On 32 held-out clips of 8 frames in
one chunk (eval mode): the cosine between predicted and true relative translations over all ordered pairs, and
how much of the true translations the prediction explains at its best non-negative scale per clip, with the
roles of every frame interior (as in a chunk with overlap 0), the first and last two marked as overlap frames (as
in inference, overlap 2), those reversed, and only the first two marked; and the mean absolute components of the
unit translation directions, predicted (all interior) and true. Run from the repository root with
PYTHONPATH=src:benchmarks/results/train_balanced_2026-12-01/cpu_checks:

    python roles_check.py shipped runs/balanced/checkpoint.pt
"""
import sys

import torch
from _common import held_out_clips, load

from loger3d import load_model
from loger3d.train.losses import rigid_inverse

clip = held_out_clips(0, 32)
G = clip.poses.float()
pairs = ~torch.eye(8, dtype=torch.bool)
rg = (rigid_inverse(G)[:, :, None] @ G[:, None])[:, pairs][..., :3, 3]
ROLES = {"interior": [1] * 8, "start/end 2": [0, 0, 1, 1, 1, 1, 2, 2], "reversed": [2, 2, 1, 1, 1, 1, 0, 0],
         "start only": [0, 0, 1, 1, 1, 1, 1, 1]}
truth = torch.nn.functional.normalize(rg, dim=-1).abs().mean((0, 1))
print("true directions, mean |x|, |y|, |z|:", truth.numpy().round(2))
for name in sys.argv[1:]:
    model = (load_model("tiny_synthetic") if name == "shipped" else load(name)).float().eval()
    for label, roles in ROLES.items():
        with torch.no_grad():
            pred, _ = model.forward_chunk(clip.images, None, roles)
        P = pred.camera_poses.float()
        rp = (rigid_inverse(P)[:, :, None] @ P[:, None])[:, pairs][..., :3, 3]
        cos = torch.nn.functional.cosine_similarity(rp, rg, dim=-1)
        a = (rp * rg).sum((1, 2)) / (rp * rp).sum((1, 2)).clamp_min(1e-12)
        res = ((a[:, None, None].clamp_min(0) * rp - rg) ** 2).sum((1, 2)) / (rg ** 2).sum((1, 2))
        print(f"{name:28s} {label:12s} cos mean {cos.mean():+.3f} median {cos.median():+.3f} | "
              f"best non-negative scale: residual/zero {res.mean():.3f}", flush=True)
        if label == "interior":
            print("  predicted directions, mean |x|, |y|, |z|:",
                  torch.nn.functional.normalize(rp, dim=-1).abs().mean((0, 1)).numpy().round(2))
