"""Where a training sequence's arithmetic goes: matrix FLOPs of one curriculum stage's sequence, by module.

Counted on the CPU with ``torch.utils.flop_counter.FlopCounterMode`` (matrix products and convolutions only; the
elementwise work, norms and the loss are not counted) for one sequence of each stage of a training config, fp32,
the clip rendered at the config's size (``chunk_ops.street_clip``). The forward pass is broken down by the
model's top-level parts; the backward is given as a total only (the counter attributes backward FLOPs to whatever
module hook ran last, so its per-module split is meaningless).

    python benchmarks/step_flops.py tiny_synthetic --json step_flops.json
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone

import torch
from chunk_ops import stage_sequence
from torch.utils.flop_counter import FlopCounterMode

from loger3d.train.config import load_train_config

PARTS = {"encoder": ("encoder",), "decoder blocks": ("decoder",), "TTT layers": ("ttt_layers", "ttt_gate_projs"),
         "SWA layers": ("swa_layers", "swa_gate_projs"),
         "heads": ("point_decoder", "conf_decoder", "camera_decoder", "point_head", "conf_head", "camera_head")}


def measure_stage(config_name: str, number: int) -> dict:
    sequence = stage_sequence(config_name, number)
    forward = FlopCounterMode(display=False, depth=4)
    with forward:
        loss, _ = sequence()
    counts = {k: sum(v.values()) for k, v in forward.get_flop_counts().items()}

    def child(name: str) -> float:
        """The model's child ``name``: its own count, or its items' when it is a list that is never called."""
        own = f"SequenceObjective.model.{name}"
        return counts.get(own, sum(v for k, v in counts.items() if k.rsplit(".", 1)[0] == own))

    parts = {part: sum(child(name) for name in names) for part, names in PARTS.items()}
    total_forward = forward.get_total_flops()
    backward = FlopCounterMode(display=False)
    with backward:
        loss.backward()
    return {"stage": number, "frames": sequence.frames, "window": sequence.window,
            "forward_gflop": total_forward / 1e9, "backward_gflop": backward.get_total_flops() / 1e9,
            "forward_gflop_a_frame": total_forward / 1e9 / sequence.frames,
            "forward_share": {name: value / total_forward for name, value in parts.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", nargs="?", default="tiny_synthetic", help="a training config (YAML or shipped name)")
    parser.add_argument("--stages", type=int, nargs="*", help="stage numbers from 1 (default: all)")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    config = load_train_config(args.config)
    rows = []
    for number in args.stages or range(1, len(config.curriculum) + 1):
        row = measure_stage(args.config, number)
        rows.append(row)
        shares = ", ".join(f"{k} {v:.0%}" for k, v in row["forward_share"].items())
        print(f"stage {number}: {row['frames']} frames, window {row['window']}: forward {row['forward_gflop']:.1f} "
              f"GFLOP ({row['forward_gflop_a_frame']:.2f} a frame; {shares}), backward {row['backward_gflop']:.1f}",
              flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "command": " ".join(sys.argv),
                       "torch": torch.__version__, "config": args.config, "dtype": "float32", "device": "cpu",
                       "counted": "matrix products and convolutions (FlopCounterMode)", "stages": rows}, f, indent=1)


if __name__ == "__main__":
    main()
