"""One video on several GPUs: the layer pipeline against one GPU, in one process.

Builds a preset with seeded weights (no download) in bf16, measures each unit's GPU time on the
first device (encoder, each decoder block with its memory layer, heads), then streams N synthetic
frames through one GPU and through the layer pipeline over ``--devices`` (stages balanced by the
measured unit times unless ``--split`` is given), and reports frames/s, the speed-up, the peak
memory of every GPU, the stage plan and its predicted balance, and whether the two runs' outputs
are equal bit for bit on a shorter verification stream (with a fast-weight reset in it).

    python benchmarks/pipeline.py --devices cuda:0,cuda:1 --frames 1024 --width 504 --height 280 \\
        --reset-every 5 --fast --out results/
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
from throughput import synthetic_frames, to_tensor

import loger3d
from loger3d.inference.pipeline import parse_devices, plan_stages, unit_costs
from loger3d.inference.reconstructor import Reconstructor
from loger3d.model.windows import frame_roles
from loger3d.seeded import fill_seeded_

KEYS = ("points", "local_points", "conf", "camera_poses")


def stream_frames(model, args, frames: int, devices=None, split=None, keep: bool = False):
    """Push ``frames`` synthetic frames chunk by chunk (uint8, from pinned memory); seconds and outputs."""
    stream = Reconstructor(model, args.window, args.overlap, args.align, args.reset_every, devices=devices,
                           split=split)
    first = model.image_mean.device
    parts, pending, finished = [], [], 0
    for d in range(torch.cuda.device_count()):
        torch.cuda.synchronize(d)
    t0 = time.perf_counter()
    with torch.no_grad():
        for frame in synthetic_frames(frames, args.width, args.height):
            pending.append(frame)
            if len(pending) == stream.frames_until_chunk:
                done = stream.push(to_tensor(pending).pin_memory().to(first, non_blocking=True))
                pending = []
                finished += sum(p.prediction.num_frames for p in done)
                parts += done if keep else []
        if pending:
            done = stream.push(to_tensor(pending).pin_memory().to(first, non_blocking=True))
            finished += sum(p.prediction.num_frames for p in done)
            parts += done if keep else []
        done = stream.finish()
    finished += sum(p.prediction.num_frames for p in done)
    parts += done if keep else []
    seconds = time.perf_counter() - t0
    assert finished == frames
    outputs = {k: torch.cat([getattr(p.prediction, k) for p in parts], 1) for k in KEYS} if keep else None
    return seconds, outputs, stream


def unit_times(model, args) -> list[float]:
    """Milliseconds of each unit for a chunk with memory (the second chunk of a stream), on one GPU."""
    device = model.image_mean.device
    images = to_tensor(list(synthetic_frames(2 * args.window, args.width, args.height))).to(device)
    roles = frame_roles(args.window, args.window, args.overlap)
    with torch.no_grad():
        _, memory = model.forward_chunk(images[:args.window], None, roles)
        acts = model.begin_chunk(images[args.window:], roles)
        times = []
        for _ in range(2):  # the first pass compiles what the second measures
            times, state, mem = [], acts, memory
            for unit in range(model.num_units):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                state, mem = model.run_units(state, mem, range(unit, unit + 1))
                end.record()
                times.append((start, end))
            torch.cuda.synchronize(device)
    return [round(s.elapsed_time(e), 3) for s, e in times]


def peaks(devices) -> dict[str, float]:
    return {str(d): round(torch.cuda.max_memory_allocated(d) / 2**30, 2) for d in devices}


def reset_peaks(devices) -> None:
    for d in devices:
        torch.cuda.reset_peak_memory_stats(d)


def compare(a: dict, b: dict) -> dict:
    return {k: {"equal": bool(torch.equal(a[k], b[k])), "max_abs_diff": float((a[k] - b[k]).abs().max())}
            for k in KEYS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", default="all")
    parser.add_argument("--preset", default="loger")
    parser.add_argument("--frames", type=int, default=1024)
    parser.add_argument("--verify-frames", type=int, default=200, help="frames of the equality check (0: none)")
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument("--overlap", type=int, default=3)
    parser.add_argument("--align", default="none")
    parser.add_argument("--reset-every", type=int, default=5)
    parser.add_argument("--width", type=int, default=504)
    parser.add_argument("--height", type=int, default=280)
    parser.add_argument("--fast", action="store_true", help="the fast path (cuDNN attention, compiled layers)")
    parser.add_argument("--split", help="first unit of each stage after the first, e.g. 20 (default: balanced by "
                        "the measured unit times)")
    parser.add_argument("--skip-single", action="store_true", help="no one-GPU run (its figures come from elsewhere)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    devices = parse_devices(args.devices)
    model = fill_seeded_(loger3d.build_model(args.preset, device="meta"), 0, device=devices[0]).eval()
    model.set_precision(torch.bfloat16)
    if args.fast:
        model.set_fast_path()
    warm = 2 * args.window - args.overlap + 1  # a first chunk, one with memory, a shorter last one
    result: dict = {}

    t0 = time.perf_counter()
    stream_frames(model, args, warm)
    result["single_warmup_s"] = round(time.perf_counter() - t0, 1)
    times = unit_times(model, args)
    flop_costs = unit_costs(model, args.height, args.width, args.window)
    measured_plan = plan_stages(times, len(devices))
    flop_plan = plan_stages(flop_costs, len(devices))
    split = [int(s) for s in args.split.split(",")] if args.split else [s.start for s in measured_plan[1:]]
    bounds = [0, *split, model.num_units]
    result["units"] = {"ms": times, "total_ms": round(sum(times), 2),
                       "measured_plan_split": [s.start for s in measured_plan[1:]],
                       "flop_plan_split": [s.start for s in flop_plan[1:]], "split_used": split,
                       "stage_ms": [round(sum(times[a:b]), 2) for a, b in zip(bounds[:-1], bounds[1:])]}
    print(f"unit times (ms): encoder {times[0]}, decoder {sum(times[1:-1]):.1f}, heads {times[-1]}; "
          f"split {split} (measured plan {result['units']['measured_plan_split']}, FLOP plan "
          f"{result['units']['flop_plan_split']}), stages {result['units']['stage_ms']} ms")

    reference = None
    if not args.skip_single:
        reset_peaks(devices)
        seconds, _, _ = stream_frames(model, args, args.frames)
        result["single"] = {"frames_per_second": round(args.frames / seconds, 2), "seconds": round(seconds, 2),
                            "gpu_peak_gib": peaks(devices[:1])}
        print(f"one GPU: {args.frames / seconds:.1f} frames/s, peak {result['single']['gpu_peak_gib']}")
        if args.verify_frames:
            _, reference, _ = stream_frames(model, args, args.verify_frames, keep=True)

    t0 = time.perf_counter()
    stream_frames(model, args, warm, devices=devices, split=split)
    result["pipeline_warmup_s"] = round(time.perf_counter() - t0, 1)
    reset_peaks(devices)
    seconds, _, _ = stream_frames(model, args, args.frames, devices=devices, split=split)
    result["pipeline"] = {"devices": [str(d) for d in devices], "frames_per_second": round(args.frames / seconds, 2),
                          "seconds": round(seconds, 2), "gpu_peak_gib": peaks(devices)}
    print(f"pipeline over {len(devices)} GPUs: {args.frames / seconds:.1f} frames/s, peaks "
          f"{result['pipeline']['gpu_peak_gib']}")
    if "single" in result:
        result["speedup"] = round(result["pipeline"]["frames_per_second"] / result["single"]["frames_per_second"], 3)
        print(f"speed-up {result['speedup']}x")
    if reference is not None:
        _, staged, _ = stream_frames(model, args, args.verify_frames, devices=devices, split=split, keep=True)
        result["outputs_vs_one_gpu"] = compare(reference, staged)
        print("outputs equal to one GPU:", {k: v["equal"] for k, v in result["outputs_vs_one_gpu"].items()})

    report = {"device": torch.cuda.get_device_name(), "gpus": torch.cuda.device_count(), "torch": torch.__version__,
              "python": platform.python_version(), "date": time.strftime("%Y-%m-%d"),
              "settings": vars(args) | {"out": None}, "result": result}
    name = f"pipeline_{args.preset}_{len(devices)}gpu_{args.width}x{args.height}_w{args.window}" \
           f"{'_fast' if args.fast else ''}.json"
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / name).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
