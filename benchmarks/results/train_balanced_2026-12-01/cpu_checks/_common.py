"""What the CPU checks share: the run's config, a model from a checkpoint (or the scratch initialisation),
and held-out clips from benchmarks/rotation_probe.py's pool (``--build --pools /tmp/rp/pools.pkl``)."""

import pickle

import numpy as np
import torch

from loger3d.model.loger import LoGeR
from loger3d.train.clip import Clip, stack_clips
from loger3d.train.config import load_train_config
from loger3d.train.trainer import build_training_model, model_config

CONFIG = load_train_config("benchmarks/results/train_balanced_2026-12-01/config.yaml")


def load(path: str) -> LoGeR:
    """``init``: the seeded scratch model the run starts from; otherwise a trainer checkpoint's weights."""
    if path == "init":
        torch.manual_seed(0)
        return build_training_model(CONFIG)
    model = LoGeR(model_config(CONFIG))
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["model"])
    return model


def held_out_clips(first: int, count: int, frames: int = 8, pools: str = "/tmp/rp/pools.pkl") -> Clip:
    """Clips ``first … first + count − 1`` (as rotation_probe.py draws its held-out clips), one chunk each."""
    with open(pools, "rb") as f:
        test = pickle.load(f)["test"]
    rngs = [np.random.default_rng([7, k]) for k in range(first, first + count)]
    return stack_clips(test.sample_many(rngs, frames, torch.device("cpu")))
