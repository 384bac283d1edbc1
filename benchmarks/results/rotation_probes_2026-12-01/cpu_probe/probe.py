"""Train tiny_synthetic's model (as `loger3d train` initialises it) on random batches of pool.pt; every 100 steps
print rot / rot_identity on the last training batches and on the held-out clips."""

import argparse
import json
import time

import torch

from loger3d.train.config import load_train_config
from loger3d.train.losses import LossConfig
from loger3d.train.optim import build_optimizer
from loger3d.train.recurrent import SequenceObjective
from loger3d.train.trainer import build_training_model

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("name")
parser.add_argument("--steps", type=int, default=600)
parser.add_argument("--lr", type=float, default=1e-3)
parser.add_argument("--batch", type=int, default=8)
parser.add_argument("--threads", type=int, default=1)
parser.add_argument("--loss", default="{}", help="JSON of LossConfig fields")
args = parser.parse_args()
torch.set_num_threads(args.threads)
data = torch.load("pool.pt")
train, test = data["train"], data["test"]
torch.manual_seed(0)
model = build_training_model(load_train_config("tiny_synthetic"))
objective = SequenceObjective(model, LossConfig(**json.loads(args.loss)))
optimizer = build_optimizer(model, load_train_config("tiny_synthetic", [f"optim.lr={args.lr}"]).optim)
draws = torch.Generator().manual_seed(1)


def losses(part: dict, rows) -> dict[str, float]:
    return objective(part["images"][rows], part["points"][rows], part["poses"][rows], part["valid"][rows], 4, 0)


def held_out() -> tuple[float, float]:
    model.eval()
    with torch.no_grad():
        stats = [losses(test, slice(i, i + 64))[1] for i in range(0, len(test["images"]), 64)]
    model.train()
    return tuple(sum(s[k] for s in stats) / len(stats) for k in ("rot", "rot_identity"))


started, recent = time.perf_counter(), []
for step in range(1, args.steps + 1):
    for group in optimizer.param_groups:
        group["lr"] = args.lr * min(1.0, step / 30)
    loss, stats = losses(train, torch.randint(len(train["images"]), (args.batch,), generator=draws))
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    recent = [*recent[-99:], (stats["rot"], stats["rot_identity"])]
    if step % 100 == 0:
        rot, still = (sum(r[i] for r in recent) / len(recent) for i in (0, 1))
        test_rot, test_still = held_out()
        print(f"{args.name} step {step} t {time.perf_counter() - started:.0f}s train rot {rot:.4f}/{still:.4f}  "
              f"test rot {test_rot:.4f}/{test_still:.4f}", flush=True)
