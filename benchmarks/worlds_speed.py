"""Frames per second of the synthetic-world renderer, per scene family, on CPU or GPU.

For each family, builds one world (scene plus a long camera path) and renders ``--frames`` frames of it in
batches of ``--batch``, after one warm-up batch; reports rendered frames per second, and how long building
the world took (scene generation, all poses, the collision check). On CUDA the timer synchronises.

Render cost is rays × shapes per image tile that survive culling (bounding cone, then a frustum–box test),
not the scene's size: a frame costs about the same in a 200-shape room as in a 5,000-shape city.

    python benchmarks/worlds_speed.py --device cpu --width 224 --height 126
    python benchmarks/worlds_speed.py --device cuda --batch 64 --frames 512 --json results/worlds_speed_h100.json

``--step-clips N`` times what a training step asks for instead: N clips of ``--clip-frames`` frames, one from
each of N training worlds (families and trajectories as ``SyntheticSource`` draws them, built beforehand), once
rendered one clip per call and once all together (``render_worlds``), with the peak GPU memory of each.

    python benchmarks/worlds_speed.py --device cuda --step-clips 64 --clip-frames 48 --json step_h200.json
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


def measure_step(args: argparse.Namespace, device: torch.device) -> dict:
    """One training step's clips rendered clip by clip, then all at once; frames/s of each."""
    from loger3d.train.synthetic import SyntheticSource
    from loger3d.train.worlds.world import render_worlds

    source = SyntheticSource(height=args.height, width=args.width, world_length=600, seed_offset=args.seed)
    start = time.perf_counter()
    worlds = [source.world(i) for i in range(args.step_clips)]
    build = time.perf_counter() - start
    requests = [(w, torch.arange(i % 7, i % 7 + 2 * args.clip_frames, 2)) for i, w in enumerate(worlds)]
    row = {"clips": args.step_clips, "clip_frames": args.clip_frames, "build_seconds_per_world": build / len(worlds)}
    variants = [("one_call_per_clip", lambda: [render_worlds([r], device) for r in requests]),
                ("one_batch", lambda: render_worlds(requests, device))]
    if args.compiled:
        variants.append(("one_batch_compiled_shading", lambda: render_worlds(requests, device, compiled=True)))
    for name, draw in variants:
        start = time.perf_counter()
        draw()  # warm-up: scenes moved to the device, shading compiled
        sync(device)
        row[f"{name}_first_call_s"] = time.perf_counter() - start
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        for _ in range(args.repeats):
            draw()
        sync(device)
        seconds = (time.perf_counter() - start) / args.repeats
        row[name] = {"seconds": seconds, "fps": args.step_clips * args.clip_frames / seconds,
                     "peak_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None}
    if args.compiled:  # the eager path is the oracle: how far the compiled shading's colours are from it
        eager, fused = render_worlds(requests, device), render_worlds(requests, device, compiled=True)
        diff = torch.cat([(a.images - b.images).abs().flatten() for a, b in zip(eager, fused)])
        rel = torch.cat([((a.depth - b.depth).abs() / a.depth)[a.valid] for a, b in zip(eager, fused)])
        row["compiled_vs_eager"] = {"rgb_max_abs": float(diff.max()), "rgb_mean_abs": float(diff.mean()),
                                    "depth_equal": all(torch.equal(a.depth, b.depth) for a, b in zip(eager, fused)),
                                    "depth_max_rel": float(rel.max()) if rel.numel() else 0.0,
                                    "valid_equal": all(torch.equal(a.valid, b.valid) for a, b in zip(eager, fused))}
    if args.profile and device.type == "cuda":
        row["profile_one_batch"] = profile(lambda: render_worlds(requests, device, compiled=args.compiled), device)
    return row


def profile(draw, device: torch.device) -> dict:
    """One draw under torch.profiler: kernel time against wall time, kernel launches, the top kernels."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as run_profiler

    sync(device)
    with run_profiler(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        start = time.perf_counter()
        draw()
        sync(device)
        wall = time.perf_counter() - start
    kernels = [e for e in prof.key_averages() if e.device_type.name == "CUDA"]
    kernel_s = sum(e.self_device_time_total for e in kernels) / 1e6
    ops = [e for e in prof.key_averages() if e.device_type.name == "CPU" and e.key.startswith("aten::")]
    top = sorted(kernels, key=lambda e: e.self_device_time_total, reverse=True)[:12]
    top_ops = sorted(ops, key=lambda e: e.self_cpu_time_total, reverse=True)[:12]
    return {"wall_s": wall, "kernel_s": kernel_s, "gpu_busy": kernel_s / wall,
            "kernel_launches": sum(e.count for e in kernels), "aten_ops": sum(e.count for e in ops),
            "top_kernels": [{"name": e.key[:100], "ms": e.self_device_time_total / 1e3, "count": e.count} for e in top],
            "top_ops_cpu": [{"name": e.key, "ms": e.self_cpu_time_total / 1e3, "count": e.count} for e in top_ops]}


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
    parser.add_argument("--step-clips", type=int, default=0, help="time a training step's clips instead (see above)")
    parser.add_argument("--clip-frames", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="with --step-clips on CUDA: profile one batched draw")
    parser.add_argument("--compiled", action="store_true", help="with --step-clips: also time compiled shading")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    if args.step_clips:
        row = {"device": str(device), "device_name": name, "width": args.width, "height": args.height,
               **measure_step(args, device)}
        print(json.dumps(row))
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(row, indent=2))
        return
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
