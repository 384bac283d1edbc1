"""Gradient norm of each loss term (as weighted in tiny_synthetic's loss) on the encoder, the decoder (with the
memory layers) and the camera branch, at initialisation, on the first 16 clips of pool.pt; the cosine
between the rotation term's gradient and the point-map terms'; and the mean norm of the camera head's pooled
feature before and after its last two layers (``more_mlps``). ``fan_in``: after probe re-initialisation
``--linear-init fan_in`` of benchmarks/rotation_probe.py. Run from this folder with ``PYTHONPATH=<repo>/src``."""

import importlib.util
import os
import sys

import torch
import torch.nn.functional as F

from loger3d.train.config import load_train_config
from loger3d.train.losses import LossConfig
from loger3d.train.recurrent import SequenceObjective
from loger3d.train.trainer import build_training_model

TERMS = {"local": dict(conf_weight=0, pose_weight=0, global_weight=0),
         "conf": dict(local_weight=0, pose_weight=0, global_weight=0),
         "global": dict(local_weight=0, conf_weight=0, pose_weight=0),
         "trans": dict(local_weight=0, conf_weight=0, global_weight=0, rot_weight=0),
         "rot": dict(local_weight=0, conf_weight=0, global_weight=0, trans_weight=0)}
PARTS = {"encoder": ("encoder.",), "decoder": ("decoder.", "ttt_", "swa_"), "camera": ("camera_",)}

torch.set_num_threads(1)
clips = {k: v[:16] for k, v in torch.load("pool.pt")["train"].items()}
torch.manual_seed(0)
model = build_training_model(load_train_config("tiny_synthetic"))
if "fan_in" in sys.argv:
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "rotation_probe.py")
    spec = importlib.util.spec_from_file_location("rotation_probe", path)
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    probe.reinitialise_(model, "fan_in", None)
sizes: list[tuple[float, float]] = []
model.camera_head.more_mlps.register_forward_hook(
    lambda module, inputs, output: sizes.append((float(inputs[0].detach().norm(dim=-1).mean()),
                                                 float(output.detach().norm(dim=-1).mean()))))
grads = {}
for term, weights in TERMS.items():
    model.zero_grad()
    loss, _ = SequenceObjective(model, LossConfig(**weights))(clips["images"], clips["points"], clips["poses"],
                                                             clips["valid"], 4, 0)
    loss.backward()
    grads[term] = {part: torch.cat([p.grad.flatten() for n, p in model.named_parameters()
                                    if n.startswith(prefixes) and p.grad is not None])
                   for part, prefixes in PARTS.items()}
for part in PARTS:
    norms = "  ".join(f"{term} {grads[term][part].norm():.2e}" for term in TERMS)
    cosines = "  ".join(f"cos(rot, {term}) {F.cosine_similarity(grads['rot'][part], grads[term][part], dim=0):+.3f}"
                        for term in ("local", "global"))
    print(f"{part:8s} {norms}   {cosines}")
print(f"camera head pooled feature: norm {sizes[0][0]:.2e} in, {sizes[0][1]:.2e} out of more_mlps")
