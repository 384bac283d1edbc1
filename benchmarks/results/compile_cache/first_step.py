"""The target timed in README.md: the first compiled training step of the tiny model at a tiny image size."""
import time

import torch

from loger3d.train.config import load_train_config
from loger3d.train.curriculum import window_for_chunks
from loger3d.train.optim import build_optimizer
from loger3d.train.recurrent import SequenceObjective
from loger3d.train.trainer import build_training_model

config = load_train_config("tiny_synthetic")
model = build_training_model(config).train()
for module in model.modules():
    if hasattr(module, "compiled"):  # every layer the fast path compiles
        module.compiled = True
optimizer = build_optimizer(model, config.optim)
objective = SequenceObjective(model, config.loss, config.train.recurrent)
frames, overlap, size = 16, 2, 28
images = torch.rand(1, frames, 3, size, size)
points = torch.rand(1, frames, size, size, 3) + torch.tensor([0, 0, 2.0])
poses = torch.eye(4).repeat(1, frames, 1, 1)
valid = torch.ones(1, frames, size, size, dtype=torch.bool)
started = time.perf_counter()
loss, _ = objective(images, points, poses, valid, window_for_chunks(frames, 2, overlap), overlap)
loss.backward()
optimizer.step()
print(f"first step {time.perf_counter() - started:.1f} s")
