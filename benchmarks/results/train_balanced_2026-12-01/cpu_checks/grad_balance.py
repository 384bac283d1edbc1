"""Gradient norm of each loss term, as weighted in the run's config, on the encoder, the decoder (with the
memory layers) and the camera branch, on 8 held-out clips of 8 frames in one chunk (train mode).

    python grad_balance.py init
    python grad_balance.py runs/balanced/checkpoint.pt
"""

import sys

import torch
from _common import CONFIG, held_out_clips, load

from loger3d.train.losses import LossConfig
from loger3d.train.recurrent import SequenceObjective

w = CONFIG.loss
OFF = dict(local_weight=0, conf_weight=0, global_weight=0, trans_weight=0, rot_weight=0, pose_weight=w.pose_weight)
TERMS = {"local": dict(OFF, local_weight=w.local_weight), "conf": dict(OFF, conf_weight=w.conf_weight),
         "global": dict(OFF, global_weight=w.global_weight), "trans": dict(OFF, trans_weight=w.trans_weight),
         "rot": dict(OFF, rot_weight=w.rot_weight)}
PARTS = {"encoder": ("encoder.",), "decoder": ("decoder.", "ttt_", "swa_"), "camera": ("camera_",)}

model = load(sys.argv[1]).train()
clip = held_out_clips(0, 8)
norms = {}
for term, weights in TERMS.items():
    model.zero_grad()
    loss, _ = SequenceObjective(model, LossConfig(**weights))(clip.images, clip.local_points, clip.poses, clip.valid,
                                                             8, 0)
    loss.backward()
    for part, prefixes in PARTS.items():
        grads = [p.grad.flatten() for n, p in model.named_parameters() if n.startswith(prefixes) and p.grad is not None]
        norms[term, part] = float(torch.cat(grads).norm()) if grads else 0.0
print(sys.argv[1])
for part in PARTS:
    print(f"  {part:8s} " + "  ".join(f"{term} {norms[term, part]:.2e}" for term in TERMS))
