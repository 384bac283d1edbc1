"""Memory ablation at small scale: hybrid (TTT + SWA), TTT only, SWA only, no memory (Pi3-Chunk + SE(3)).

Every variant starts from the same weights (the shipped ``tiny_synthetic`` model; the layers a variant lacks
are dropped), then gets the same budget: the same optimiser steps on the same clips (48 frames in 12 chunks,
the curriculum stage where the memory has to carry the sequence). Scored on 1,000-frame synthetic sequences from
world seeds that training never draws (>= 1e9): Sim(3)-aligned ATE RMSE, also as a share of the path length.

    python benchmarks/ablation.py train --init src/loger3d/assets/tiny_synthetic.safetensors --out runs/ablation
    python benchmarks/ablation.py eval --out runs/ablation --json benchmarks/results/ablation/ablation.json
    python benchmarks/ablation.py plot   # docs/ablation.png from the JSON

``train`` skips variants that already have weights, so it can be re-run after an interruption.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone

import numpy as np
import torch

from loger3d.eval.trajectory_metrics import align_trajectory, ate_errors
from loger3d.model.loger import LoGeR
from loger3d.train.config import config_from_dict, load_train_config
from loger3d.train.synthetic import HELD_OUT_SEED_OFFSET
from loger3d.train.trainer import Trainer, model_config
from loger3d.train.worlds import SyntheticWorld, WorldConfig
from loger3d.weights import read_state_dict

VARIANTS = {
    "hybrid": {},
    "ttt_only": {"swa_insert_after": []},
    "swa_only": {"ttt_insert_after": []},
    "no_memory": {"ttt_insert_after": [], "swa_insert_after": []},
}
WORLDS = [("indoor", "walk"), ("street", "drive"), ("terrain", "orbit"), ("terrain", "walk")]


def variant_config(name: str, init: str, steps: int) -> dict:
    base = load_train_config("tiny_synthetic").to_dict()
    return {
        "model": {"preset": "tiny", "init": f"weights:{init}", "options": VARIANTS[name]},
        "data": base["data"],
        "curriculum": [{"steps": steps, "frames": 48, "chunks": 12, "overlap": 2}],
        "optim": {**base["optim"], "lr": 3e-4, "warmup_steps": 5, "min_lr_ratio": 0.1},
        "train": {**base["train"], "log_every": 5, "checkpoint_every": 1000},
        "loss": base["loss"],
    }


def train(args: argparse.Namespace) -> None:
    for name in args.variants:
        out = os.path.join(args.out, name)
        if os.path.exists(os.path.join(out, "model.safetensors")):
            print(f"{name}: done already")
            continue
        cfg = config_from_dict(variant_config(name, args.init, args.steps))
        started = time.perf_counter()
        result = Trainer(cfg, out, resume=True, progress=False).run()
        print(f"{name}: {result.step} steps in {time.perf_counter() - started:.0f} s, last loss "
              f"{result.last.get('total', float('nan')):.4f}", flush=True)
        with open(os.path.join(out, "variant.json"), "w") as f:
            json.dump(variant_config(name, args.init, args.steps), f, indent=1)


def load_variant(path: str, options: dict, device: str) -> LoGeR:
    cfg = config_from_dict({"model": {"preset": "tiny", "options": options}})
    model = LoGeR(model_config(cfg))
    model.load_state_dict({k: v.float() for k, v in read_state_dict(path).items()})
    return model.to(device).eval()


def ate(est: np.ndarray, gt: np.ndarray) -> float:
    aligned, _ = align_trajectory(gt, est, "sim3")
    return float(np.sqrt((ate_errors(gt, aligned) ** 2).mean()))


def evaluate(args: argparse.Namespace) -> None:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    models = {"start": (args.init, VARIANTS["hybrid"])}
    models.update({n: (os.path.join(args.out, n, "model.safetensors"), VARIANTS[n]) for n in args.variants})
    aligns = {name: ["se3"] if name == "no_memory" else ["none", "se3"] for name in models}
    rows = []
    for i, (family, kind) in enumerate(WORLDS):
        seed = HELD_OUT_SEED_OFFSET + 500 + i
        world = SyntheticWorld(WorldConfig(family=family, trajectory=kind, seed=seed, length=args.frames,
                                           height=126, width=224))
        seq = world.sample(0, args.frames, device=device)
        gt = seq.poses.double().cpu().numpy()
        path = float(np.linalg.norm(np.diff(gt[:, :3, 3], axis=0), axis=1).sum())
        for name, (weights, options) in models.items():
            model = load_variant(weights, options, device)
            for align in aligns[name]:
                started = time.perf_counter()
                with torch.no_grad():
                    pred = model(seq.images, window_size=args.window, overlap_size=args.overlap, align=align)
                seconds = time.perf_counter() - started
                value = ate(pred.camera_poses[0].double().numpy(), gt)
                rows.append({"world": f"{family}-{kind}", "seed": seed, "variant": name, "align": align,
                             "ate_m": value, "ate_pct_path": 100 * value / path, "path_m": path, "seconds": seconds})
                print(json.dumps(rows[-1]), flush=True)
    summary: dict[str, dict[str, float]] = {}
    for row in rows:
        key = f"{row['variant']}/{row['align']}"
        summary.setdefault(key, []).append(row["ate_pct_path"])
    summary = {k: {"mean_ate_pct_path": float(np.mean(v)), "worlds": len(v)} for k, v in summary.items()}
    report = {
        "benchmark": "ablation", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__, "command": " ".join(sys.argv), "frames": args.frames,
        "window": args.window, "overlap": args.overlap, "size": "224x126", "init": args.init,
        "train": {n: json.load(open(os.path.join(args.out, n, "variant.json"))) for n in args.variants
                  if os.path.exists(os.path.join(args.out, n, "variant.json"))},
        "rows": rows, "summary": summary,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(report, f, indent=1)
    for key, value in summary.items():
        print(f"{key:20s} mean ATE {value['mean_ate_pct_path']:.2f} % of path over {value['worlds']} worlds")


def plot(args: argparse.Namespace) -> None:
    """Bar chart of the ATE (% of path) per world, one bar per variant and chaining, from the JSON."""
    from matplotlib.figure import Figure

    rows = json.load(open(args.json))["rows"]
    worlds = list(dict.fromkeys(r["world"] for r in rows))
    keys = list(dict.fromkeys((r["variant"], r["align"]) for r in rows))
    fig = Figure(figsize=(10, 4), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / len(keys)
    for j, key in enumerate(keys):
        values = [next(r["ate_pct_path"] for r in rows if r["world"] == w and (r["variant"], r["align"]) == key)
                  for w in worlds]
        ax.bar(np.arange(len(worlds)) + j * width, values, width, label=f"{key[0]} ({key[1]})")
    ax.set_xticks(np.arange(len(worlds)) + 0.4 - width / 2, worlds)
    ax.set_ylabel("ATE RMSE, % of path length")
    ax.set_title("memory ablation, tiny model, held-out 1,000-frame synthetic sequences")
    ax.legend(fontsize=7, ncol=3)
    fig.savefig(args.plot, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=("train", "eval", "plot"))
    parser.add_argument("--init", default="src/loger3d/assets/tiny_synthetic.safetensors")
    parser.add_argument("--out", default="runs/ablation")
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--steps", type=int, default=45, help="optimiser steps per variant (same for all)")
    parser.add_argument("--frames", type=int, default=1000, help="frames per held-out sequence")
    parser.add_argument("--window", type=int, default=10)
    parser.add_argument("--overlap", type=int, default=2)
    parser.add_argument("--json", default="benchmarks/results/ablation/ablation.json")
    parser.add_argument("--plot", default="docs/ablation.png", help="where 'plot' writes the chart")
    args = parser.parse_args()
    {"train": train, "eval": evaluate, "plot": plot}[args.stage](args)


if __name__ == "__main__":
    main()
