"""Training throughput of one GPU: frames per second of the optimiser step alone, and where its time goes.

The step is the trainer's own (``SequenceObjective`` forward, backward, gradient clipping, AdamW) on a batch
of synthetic clips rendered once on the device and reused, so that the figures measure the model's step, not
the data. Each variant (micro-batch, fast path, fused AdamW, activation checkpointing) runs ``--warmup``
steps, then ``--steps`` timed ones; ``--profile`` adds a torch.profiler summary of one step per variant:
CUDA kernel time against wall time (how launch-bound the step is), kernel launches, and the ten kernels with
the most time.

    python benchmarks/train_throughput.py --out benchmarks/results/train_throughput/h200.json --profile
    python benchmarks/train_throughput.py --variants mb8 mb32 mb32-fast --frames 48 --chunks 4
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone

import torch

from loger3d.train.clip import Clip, stack_clips
from loger3d.train.config import load_train_config
from loger3d.train.curriculum import window_for_chunks
from loger3d.train.optim import build_optimizer
from loger3d.train.recurrent import SequenceObjective
from loger3d.train.trainer import build_training_model
from loger3d.train.worlds import SyntheticWorld, WorldConfig

VARIANTS = {  # name: (micro-batch, fast path, fused AdamW, activation checkpointing, CUDA graphs)
    "mb8": (8, False, False, False, False),  # the shipped model's training setting (before AdamW was fused on GPUs)
    "mb32": (32, False, False, False, False),
    "mb64": (64, False, False, False, False),
    "mb8-fast": (8, True, False, False, False),
    "mb32-fast": (32, True, False, False, False),
    "mb8-fused": (8, False, True, False, False),
    "mb32-fast-fused": (32, True, True, False, False),
    "mb64-fast-fused": (64, True, True, False, False),
    "mb64-fast-fused-ckpt": (64, True, True, True, False),  # checkpointing recomputes through the compiled layers
    "mb128-fast-fused-ckpt": (128, True, True, True, False),
    # The compiled layers replayed as CUDA graphs. Through `loger3d train` at 12 chunks this logged no step in
    # 290 s: inductor re-records a layer that runs again before its backward (results/train_end_to_end).
    "mb32-fast-fused-graphs": (32, True, True, False, True),
    "mb64-fast-fused-graphs": (64, True, True, False, True),
}
FAMILIES = [("indoor", "walk"), ("street", "drive"), ("terrain", "orbit")]


def clips(count: int, frames: int, device: str) -> Clip:
    """``count`` clips of ``frames`` frames at 224x126 from training-range worlds, stacked on ``device``."""
    made = []
    for i in range(count):
        family, kind = FAMILIES[i % len(FAMILIES)]
        world = SyntheticWorld(WorldConfig(family=family, trajectory=kind, seed=i, length=frames, height=126,
                                           width=224, frames_per_batch=64))
        seq = world.sample(0, frames, device=device)
        made.append(Clip(seq.images, seq.depth, seq.valid, seq.intrinsics, seq.poses))
    return stack_clips(made)


def measure(name: str, args, batch: Clip) -> dict:
    micro, fast, fused, checkpointing, graphs = VARIANTS[name]
    config = load_train_config("tiny_synthetic")
    device = torch.device(args.device)
    model = build_training_model(config).to(device).train().set_activation_checkpointing(checkpointing)
    if fast:
        model.set_fast_path(cuda_graphs=graphs)
    optimizer = build_optimizer(model, config.optim, fused=fused)
    objective = SequenceObjective(model, config.loss, config.train.recurrent)
    window = window_for_chunks(args.frames, args.chunks, args.overlap)
    take = slice(0, micro)
    images, points, poses, valid = (batch.images[take], batch.local_points[take], batch.poses[take],
                                    batch.valid[take])
    params = [p for g in optimizer.param_groups for p in g["params"]]

    def step() -> torch.Tensor:
        if graphs:
            torch.compiler.cudagraph_mark_step_begin()  # the previous step's graph outputs may be reused now
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss, _ = objective(images, points, poses, valid, window, args.overlap)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, config.optim.grad_clip)
        optimizer.step()
        return loss.detach()  # not read here: the trainer's step does not wait for the GPU either

    torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    for _ in range(args.warmup):
        step()
    torch.cuda.synchronize(device)
    warmup_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(args.steps):
        last = step()
    torch.cuda.synchronize(device)
    seconds = (time.perf_counter() - t0) / args.steps
    row = {"variant": name, "micro_batch": micro, "fast": fast, "fused_adamw": fused,
           "activation_checkpointing": checkpointing, "cuda_graphs": graphs, "frames": args.frames,
           "chunks": args.chunks, "window": window, "step_s": seconds, "frames_per_s": micro * args.frames / seconds,
           "warmup_s": warmup_s, "peak_gib": torch.cuda.max_memory_allocated(device) / 2**30, "last_loss": float(last)}
    if args.profile:
        row["profile"] = profile(step, device)
    print(json.dumps({k: v for k, v in row.items() if k != "profile"}), flush=True)
    if args.profile:
        print(json.dumps(row["profile"]["summary"]), flush=True)
    return row


def profile(step, device: torch.device) -> dict:
    """One step under torch.profiler: kernel time against wall time, launches, the top kernels."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as run_profiler

    torch.cuda.synchronize(device)
    with run_profiler(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        t0 = time.perf_counter()
        step()
        torch.cuda.synchronize(device)
        wall = time.perf_counter() - t0
    kernels = [e for e in prof.key_averages() if e.device_type.name == "CUDA"]
    kernel_s = sum(e.self_device_time_total for e in kernels) / 1e6
    launches = sum(e.count for e in kernels)
    top = sorted(kernels, key=lambda e: e.self_device_time_total, reverse=True)[:10]
    return {"summary": {"wall_s": wall, "kernel_s": kernel_s, "gpu_busy": kernel_s / wall, "kernel_launches": launches},
            "top_kernels": [{"name": e.key[:120], "ms": e.self_device_time_total / 1e3, "count": e.count}
                            for e in top]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="*", default=["mb8", "mb8-fused", "mb32", "mb64", "mb8-fast", "mb32-fast",
                                                         "mb64-fast-fused"],
                        choices=list(VARIANTS))
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--chunks", type=int, default=4)
    parser.add_argument("--overlap", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--out", required=True, help="JSON file for the results")
    args = parser.parse_args()
    largest = max(VARIANTS[v][0] for v in args.variants)
    t0 = time.perf_counter()
    batch = clips(largest, args.frames, args.device)
    render_s = time.perf_counter() - t0
    report = {"benchmark": "train_throughput", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "device": torch.cuda.get_device_name(), "torch": torch.__version__, "python": platform.python_version(),
              "command": " ".join(sys.argv), "size": "224x126", "render_s": render_s, "rows": []}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    for name in args.variants:
        try:
            report["rows"].append(measure(name, args, batch))
        except (RuntimeError, torch.cuda.OutOfMemoryError) as e:  # report and go on with the next variant
            report["rows"].append({"variant": name, "error": " ".join(str(e).split())[:300]})
            print(json.dumps(report["rows"][-1]), flush=True)
        torch.cuda.empty_cache()
        with open(args.out, "w") as f:  # after every variant: a run cut short keeps what it measured
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
