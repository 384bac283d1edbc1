"""Loop closure on held-out synthetic worlds: ATE with and without it, loops found, false loops, time added.

Each world (seeds >= 1e9, which training never draws) is rendered to PNG frames, then reconstructed twice
by the ``reconstruct`` job with the shipped model and its defaults: plainly, and with ``--loop-closure``
(default settings). Scored against the world's ground truth: Sim(3)-aligned ATE RMSE (also as a share of
the path), the loops verified and accepted, how many accepted loops are false (the ground-truth cameras of
the two ends are more than ``--true-distance`` metres apart), and the seconds loop closure added
(``timings.loop_closure_s``) per 1,000 frames. Also reported per world: how many keyframe pairs truly
revisit a place (ends ``--min-gap`` frames or more apart, cameras within ``--true-distance`` metres and 45°).

    python benchmarks/loop_closure.py --json benchmarks/results/loop_closure/loop_closure_h200.json
    python benchmarks/loop_closure.py --device cpu --worlds terrain-orbit --json .../loop_closure_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from loger3d.eval.trajectory_metrics import align_trajectory, ate_errors
from loger3d.loop.closer import LoopOptions
from loger3d.run import RunSettings, reconstruct
from loger3d.run.loops import LOOPS_FILE
from loger3d.sinks.store import FrameStore
from loger3d.train.synthetic import HELD_OUT_SEED_OFFSET
from loger3d.train.worlds import SyntheticWorld, WorldConfig
from loger3d.weights import model_from_spec
from loger3d.weights.registry import card_for

WORLDS = {  # name: (family, trajectory, trajectory options)
    "terrain-orbit": ("terrain", "orbit", {}),
    "street-loops": ("street", "drive", {"loop_prob": 1.0}),
    "indoor-walk": ("indoor", "walk", {}),
    "street-straight": ("street", "drive", {"loop_prob": 0.0, "straight_bias": 4.0}),
}


def render(name: str, seed: int, frames: int, folder: Path, device: str) -> np.ndarray:
    """Write the world's frames as PNGs into ``folder``; its camera-to-world poses ``[n, 4, 4]``."""
    family, kind, options = WORLDS[name]
    world = SyntheticWorld(WorldConfig(family=family, trajectory=kind, seed=seed, length=frames, height=126,
                                       width=224, trajectory_options=options, frames_per_batch=64))
    folder.mkdir(parents=True, exist_ok=True)
    poses = []
    for start in range(0, frames, 100):
        seq = world.sample(start, min(100, frames - start), device=device)
        images = (seq.images.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
        for offset, image in enumerate(images):
            Image.fromarray(image).save(folder / f"{start + offset:06d}.png", compress_level=1)
        poses.append(seq.poses.double().cpu().numpy())
    return np.concatenate(poses)


def true_revisits(gt: np.ndarray, min_gap: int, distance: float, every: int = 2) -> int:
    """Keyframe pairs at least ``min_gap`` apart whose cameras are within ``distance`` metres and 45 degrees."""
    keys = np.arange(0, len(gt), every)
    centres, forward = gt[keys, :3, 3], gt[keys, :3, 2]
    near = np.linalg.norm(centres[:, None] - centres[None], axis=-1) < distance
    facing = forward @ forward.T > np.cos(np.deg2rad(45))
    apart = keys[None, :] - keys[:, None] >= min_gap
    return int((near & facing & apart).sum())


def ate(est: np.ndarray, gt: np.ndarray) -> float:
    aligned, _ = align_trajectory(gt, est, "sim3")
    return float(np.sqrt((ate_errors(gt, aligned) ** 2).mean()))


def run_world(name: str, seed: int, args, model, dtype: str, card) -> dict:
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        t0 = time.perf_counter()
        gt = render(name, seed, args.frames, scratch / "frames", args.render_device)
        render_s = time.perf_counter() - t0
        path_m = float(np.linalg.norm(np.diff(gt[:, :3, 3], axis=0), axis=1).sum())
        row = {"world": name, "seed": seed, "frames": args.frames, "path_m": path_m, "render_s": render_s,
               "true_revisit_pairs": true_revisits(gt, args.min_gap, args.true_distance)}
        for mode in ("plain", "loops"):
            settings = RunSettings(input=[str(scratch / "frames")], model=args.model, window=card.window,
                                   overlap=card.overlap, align=card.align, dtype=dtype, resolution=[224, 126],
                                   edge_rtol=card.edge_rtol,
                                   loop_closure=LoopOptions().to_dict() if mode == "loops" else None)
            out = scratch / mode
            with torch.no_grad():
                record = reconstruct(str(scratch / "frames"), out, model, settings, checkpoint_every=1e9)
            poses = FrameStore(out).read_poses()[2]
            row[f"{mode}_ate_m"] = ate(poses, gt)
            row[f"{mode}_ate_pct_path"] = 100 * row[f"{mode}_ate_m"] / path_m
            row[f"{mode}_total_s"] = record["timings"]["total_s"]
            if mode == "loops":
                report = json.loads((out / LOOPS_FILE).read_text())
                loops = report["loops"]
                accepted = [e for e in loops if e["accepted"]]
                false = [e for e in accepted
                         if np.linalg.norm(gt[e["a"], :3, 3] - gt[e["b"], :3, 3]) > args.true_distance]
                true_candidates = [e for e in loops
                                   if np.linalg.norm(gt[e["a"], :3, 3] - gt[e["b"], :3, 3]) <= args.true_distance]
                row.update({"candidates": report["candidates"], "verified": report["verified"],
                            "true_candidates": len(true_candidates), "accepted": len(accepted),
                            "false_accepted": len(false),
                            "loop_closure_s": record["timings"].get("loop_closure_s", 0.0),
                            "loop_closure_s_per_1000_frames":
                                1000 * record["timings"].get("loop_closure_s", 0.0) / args.frames,
                            "reasons": _count(e["reason"].split(" ")[0] for e in loops),
                            "score_quantiles_true": _quantiles([e["score"] for e in true_candidates]),
                            "score_quantiles_false": _quantiles([e["score"] for e in loops
                                                                 if e not in true_candidates]),
                            "largest_shift_m": report.get("largest_shift_m")})
        print(json.dumps(row), flush=True)
        return row


def _quantiles(values: list[float]) -> list[float] | None:
    """10th, 50th and 90th percentiles (``None`` for no values)."""
    return [round(float(q), 3) for q in np.percentile(values, [10, 50, 90])] if values else None


def _count(words) -> dict[str, int]:
    counts: dict[str, int] = {}
    for word in words:
        counts[word] = counts.get(word, 0) + 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny_synthetic")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--render-device", help="where the worlds are rendered (default: --device)")
    parser.add_argument("--worlds", nargs="*", default=list(WORLDS), choices=list(WORLDS))
    parser.add_argument("--seeds", type=int, default=1, help="worlds per kind (seeds 1e9 + 700 + i)")
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--min-gap", type=int, default=LoopOptions().min_gap)
    parser.add_argument("--true-distance", type=float, default=2.0, help="metres: a loop's ends truly meet")
    parser.add_argument("--json", required=True)
    args = parser.parse_args()
    args.render_device = args.render_device or args.device
    model, dtype = model_from_spec(args.model, args.device, "auto")
    card = card_for(args.model)
    rows = [run_world(name, HELD_OUT_SEED_OFFSET + 700 + i, args, model, dtype, card)
            for name in args.worlds for i in range(args.seeds)]
    looped = [r for r in rows if r["true_revisit_pairs"] > 0]
    summary = {
        "worlds_with_loops": len(looped),
        "mean_ate_pct_plain": float(np.mean([r["plain_ate_pct_path"] for r in looped])) if looped else None,
        "mean_ate_pct_loops": float(np.mean([r["loops_ate_pct_path"] for r in looped])) if looped else None,
        "accepted": sum(r["accepted"] for r in rows), "false_accepted": sum(r["false_accepted"] for r in rows),
        "loop_closure_s_per_1000_frames": float(np.mean([r["loop_closure_s_per_1000_frames"] for r in rows])),
    }
    report = {"benchmark": "loop_closure", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else
              f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)",
              "torch": torch.__version__, "command": " ".join(sys.argv), "model": args.model,
              "options": LoopOptions().to_dict(), "rows": rows, "summary": summary}
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(report, f, indent=1)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
