"""Probe: the camera head's linear layers at PyTorch's default scale (uniform ±1/√fan_in, times argv[1] for the
MLPs and argv[2] for the rotation layer) instead of init_from_scratch_'s σ = 0.02 clamped to ±0.04; the rest
of the command line is passed to loger3d.

    PYTHONPATH=src python camera_init_probe.py 1.0 1.0 train tiny_synthetic -o OUT --device cpu --set ...
"""

import math
import sys

import torch
from torch import nn

import loger3d.train.trainer as trainer
from loger3d.cli import main
from loger3d.train.init import init_from_scratch_


def init_with_default_camera_head(model, seed: int = 0):
    init_from_scratch_(model, seed)
    generator = torch.Generator().manual_seed(seed + 1)
    head = model.camera_head
    with torch.no_grad():
        for module in head.modules():
            if isinstance(module, nn.Linear):
                gain = float(sys.argv[2] if module is head.fc_rot else sys.argv[1])
                bound = gain / math.sqrt(module.in_features)
                module.weight.copy_(torch.empty(module.weight.shape).uniform_(-bound, bound, generator=generator))
    return model


trainer.init_from_scratch_ = init_with_default_camera_head
sys.exit(main(sys.argv[3:]))
