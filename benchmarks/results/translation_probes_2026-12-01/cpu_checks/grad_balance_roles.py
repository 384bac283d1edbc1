"""Gradient norm of each loss term on the decoder (with the memory layers), on 8 held-out clips of 8 frames in one
chunk with overlap 2 (roles 0,0,1,1,1,1,2,2), train mode, each term at weight 1; and the cosine between the
translation term's gradient and the others'. Then the translation weight that would level the translation
gradient with the rotation term's at weight 100 and with the local term's at weight 1. Run from the repository
root with PYTHONPATH=src:benchmarks/results/train_balanced_2026-12-01/cpu_checks:

    python grad_balance_roles.py init runs/balanced/checkpoint.pt
"""

import sys

import torch
from _common import held_out_clips, load

from loger3d.train.losses import LossConfig
from loger3d.train.recurrent import SequenceObjective

OFF = dict(local_weight=0, conf_weight=0, global_weight=0, trans_weight=0, rot_weight=0, pose_weight=1)
TERMS = {"local": dict(OFF, local_weight=1), "global": dict(OFF, global_weight=1), "rot": dict(OFF, rot_weight=1),
         "trans": dict(OFF, trans_weight=1), "trans_delta0.01": dict(OFF, trans_weight=1, huber_delta=0.01)}
DECODER = ("decoder.", "ttt_", "swa_")

clip = held_out_clips(0, 8)
for path in sys.argv[1:]:
    model = load(path).train()
    grads = {}
    for term, weights in TERMS.items():
        model.zero_grad()
        loss, _ = SequenceObjective(model, LossConfig(**weights))(clip.images, clip.local_points, clip.poses,
                                                                 clip.valid, 8, 2)
        loss.backward()
        grads[term] = torch.cat([p.grad.flatten() for n, p in model.named_parameters()
                                 if n.startswith(DECODER) and p.grad is not None])
    norms = {t: float(g.norm()) for t, g in grads.items()}
    print(path)
    print("  decoder gradient norm at weight 1: " + "  ".join(f"{t} {v:.2e}" for t, v in norms.items()))
    for t in ("trans", "trans_delta0.01"):
        cos = {o: float(torch.nn.functional.cosine_similarity(grads[t], grads[o], dim=0))
               for o in ("local", "global", "rot")}
        print(f"  {t}: cosine with " + "  ".join(f"{o} {c:+.3f}" for o, c in cos.items())
              + f" | weight to level with rot x100: {100 * norms['rot'] / norms[t]:.3g}, with local x1: "
              f"{norms['local'] / norms[t]:.3g}")
