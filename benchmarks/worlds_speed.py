"""Frames per second of the synthetic-world renderer, per scene family, on CPU or GPU.

For each family, builds one world (scene plus a long camera path) and renders ``--frames`` frames of it in
batches of ``--batch``, after one warm-up batch; reports rendered frames per second, and how long building
the world took (scene generation, all poses, the collision check). On CUDA the timer synchronises.

Render cost is rays × shapes per image tile that survive culling (bounding cone, then a frustum–box test),
not the scene's size: a frame costs about the same in a 200-shape room as in a 5,000-shape city.

    python benchmarks/worlds_speed.py --device cpu --width 224 --height 126
    python benchmarks/worlds_speed.py --device cuda --batch 64 --frames 512 --json results/worlds_speed_h100.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from loger3d.train.worlds import SyntheticWorld, WorldConfig

TRAJECTORY = {"indoor": "walk", "street": "drive", "terrain": "walk"}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(family: str, args: argparse.Namespace, device: torch.device) -> dict:
    start = time.perf_counter()
    world = SyntheticWorld(WorldConfig(family=family, trajectory=TRAJECTORY[family], seed=args.seed,
                                       length=args.length, height=args.height, width=args.width,
                                       frames_per_batch=args.batch))
    build = time.perf_counter() - start
    stride = max(1, (args.length - args.batch) // max(1, args.frames))
    world.sample(0, args.batch, stride, device)  # warm-up: moves the scene, fills caches
    sync(device)
    start = time.perf_counter()
    done = 0
    for first in range(args.batch, args.batch + args.frames, args.batch):
        done += len(world.sample(first * stride % (args.length - args.batch), args.batch, stride, device))
    sync(device)
    seconds = time.perf_counter() - start
    return {"family": family, "trajectory": TRAJECTORY[family], "shapes": len(world.scene.shapes),
            "frames": done, "seconds": seconds, "fps": done / seconds, "build_seconds": build}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--width", type=int, default=224)
    parser.add_argument("--height", type=int, default=126)
    parser.add_argument("--frames", type=int, default=64, help="frames timed per family")
    parser.add_argument("--batch", type=int, default=8, help="frames rendered per call")
    parser.add_argument("--length", type=int, default=20_000, help="world length in frames (poses of all are built)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave torch's default)")
    parser.add_argument("--families", nargs="+", default=["indoor", "street", "terrain"])
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    print(f"device {device} ({name}), {torch.get_num_threads()} CPU threads, {args.width}x{args.height}, "
          f"batch {args.batch}")
    rows = [measure(family, args, device) for family in args.families]
    for r in rows:
        print(f"{r['family']:8s} {r['trajectory']:6s} shapes {r['shapes']:5d}  {r['fps']:8.1f} frames/s  "
              f"(world of {args.length} frames built in {r['build_seconds']:.2f} s)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"device": str(device), "device_name": name, "threads": torch.get_num_threads(),
                                         "width": args.width, "height": args.height, "batch": args.batch,
                                         "results": rows}, indent=2))


if __name__ == "__main__":
    main()
