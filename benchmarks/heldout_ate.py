"""Held-out accuracy of one model: Sim(3)-aligned ATE, as a share of the path, on long synthetic worlds.

World ``i`` is family × trajectory in turn (``benchmarks/heldout_worlds.py``'s ``test_worlds``) with seed
``HELD_OUT_SEED_OFFSET + --first + i``; no training source draws seeds that high. The ablation scores from
``--first 600``; pick another range to validate a training config without tuning on the ablation's worlds
(the range 700-708 validated the runs of benchmarks/results/train_batch64_2026-12-01). Inference in fp32, with
each ``--windows`` value and each ``--aligns`` mode. Each row also says how rotation fares: the mean RPE
rotation over 8 and 64 frames and the share of the truth's total turning that the prediction turns, and what a
straight line at constant speed scores on the same world (``straight_line``): a model that has not learnt
camera motion scores about that.

    python benchmarks/heldout_ate.py --model tiny_synthetic --worlds 9 --first 700 --json val.json
    python benchmarks/heldout_ate.py --model runs/tiny/model.safetensors --windows 10 20 --aligns se3 none
    python benchmarks/heldout_ate.py --only street-walk terrain-walk --frames 10000 --aligns none   # seeds 701, 702
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from heldout_worlds import ate, held_out_sequence, rotation_drift, straight_line, test_worlds  # noqa: E402

from loger3d import load_model  # noqa: E402
from loger3d.train.synthetic import HELD_OUT_SEED_OFFSET  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tiny_synthetic", help="an alias or a weights file")
    parser.add_argument("--worlds", type=int, default=9)
    parser.add_argument("--first", type=int, default=700, help="first world seed, above HELD_OUT_SEED_OFFSET")
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--height", type=int, default=126)
    parser.add_argument("--width", type=int, default=224)
    parser.add_argument("--windows", type=int, nargs="+", default=[10])
    parser.add_argument("--overlap", type=int, default=2)
    parser.add_argument("--aligns", nargs="+", default=["se3"], choices=["none", "se3", "sim3"])
    parser.add_argument("--only", nargs="+", metavar="FAMILY-TRAJECTORY",
                        help="score only these of the --worlds worlds (each keeps its seed), e.g. street-walk")
    parser.add_argument("--json", help="write the rows and means here")
    args = parser.parse_args()
    worlds = test_worlds(args.worlds, HELD_OUT_SEED_OFFSET + args.first)
    if args.only:
        names = {f"{family}-{kind}" for family, kind, _ in worlds}
        if unknown := sorted(set(args.only) - names):
            parser.error(f"--only {' '.join(unknown)}: not among the {args.worlds} worlds ({', '.join(sorted(names))})")
        worlds = [w for w in worlds if f"{w[0]}-{w[1]}" in args.only]

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = load_model(args.model).to(device).eval().float()
    rows = []
    for family, kind, seed in worlds:
        images, gt, path = held_out_sequence(family, kind, seed, args.frames, args.height, args.width, device)
        straight = 100 * ate(straight_line(gt), gt) / path
        for window in args.windows:
            for align in args.aligns:
                started = time.perf_counter()
                with torch.no_grad():
                    pred = model(images, window_size=window, overlap_size=args.overlap, align=align)
                est = pred.camera_poses[0].double().cpu().numpy()
                value = ate(est, gt)
                rows.append({"world": f"{family}-{kind}", "world_seed": seed, "window": window, "align": align,
                             "ate_m": value, "ate_pct_path": 100 * value / path, "path_m": path,
                             "straight_line_pct_path": straight, **rotation_drift(est, gt),
                             "seconds": time.perf_counter() - started})
                row = rows[-1]
                print(f"{family}-{kind} {seed} window {window} {align}: {row['ate_pct_path']:.2f} % of {path:.0f} m "
                      f"(a straight line: {straight:.2f} %); RPE rotation {row['rpe_rot_deg_8']:.1f} deg / 8 frames, "
                      f"turns {row['turn_ratio']:.2f} of the truth", flush=True)
    means = {}
    for row in rows:
        means.setdefault(f"window {row['window']}, {row['align']}", []).append(row["ate_pct_path"])
    means = {k: float(np.mean(v)) for k, v in means.items()}
    means["a straight line"] = float(np.mean([r["straight_line_pct_path"] for r in rows]))
    for key, value in means.items():
        print(f"{key}: mean ATE {value:.2f} % of the path over {len(worlds)} worlds")
    if args.json:
        report = {"benchmark": "held-out ATE", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  "device": torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu",
                  "torch": torch.__version__, "command": " ".join(sys.argv), "model": args.model,
                  "size": f"{args.width}x{args.height}", "frames": args.frames, "rows": rows, "means": means}
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
