"""Where a training step's GPU time goes: the model's stream against the data loader's renderer, side by side.

The trainer's own log gives host times only (``step_time``, ``data_time``): when a step waits for data it does not
tell whether the renderer's thread is held up by its own launches and host syncs or by the GPU it shares with the
model. This runs ``loger3d train``'s steps in-process (``Trainer.train_step``) for one curriculum stage of CONFIG,
``--warmup`` steps first (compiling, recording graphs, the first worlds), then ``--steps`` steps under
``torch.profiler``, and reports per CUDA stream: kernels, kernel time and busy time (the union of its kernels'
intervals), the GPU's busy time over all streams and how much of it the streams overlap, the wall time and the
host's wait for data, with the ten costliest kernels of each stream. The loader renders on its own stream; the
model's micro-steps (graph replays included) run on the default one.

    python benchmarks/train_profile.py tiny_synthetic --stage 1 --json profile_stage1.json --trace stage1.json.gz
    python benchmarks/train_profile.py tiny_synthetic --stage 4 --steps 3 --set train.log_every=1 --json p4.json
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

import torch
from train_end_to_end import stage_override


def busy_time(intervals: list[tuple[float, float]]) -> float:
    """Length of the union of ``(start, end)`` intervals (the same unit)."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted(intervals):
        if end <= reach:
            continue
        total += end - max(start, reach)
        reach = end
    return total


def summarise_trace(trace: dict, top: int = 10) -> dict:
    """Per-stream kernel figures of a Kineto (Chrome) trace: ``{"streams": {id: {...}}, "gpu_busy_ms", ...}``."""
    kernels = [e for e in trace.get("traceEvents", []) if e.get("cat") == "kernel" and "dur" in e]
    by_stream: dict[int, list[dict]] = defaultdict(list)
    for event in kernels:
        by_stream[int(event.get("args", {}).get("stream", -1))].append(event)
    streams = {}
    for stream, events in sorted(by_stream.items()):
        names: dict[str, float] = defaultdict(float)
        for e in events:
            names[e["name"]] += e["dur"]
        streams[stream] = {
            "kernels": len(events),
            "kernel_ms": sum(e["dur"] for e in events) / 1e3,
            "busy_ms": busy_time([(e["ts"], e["ts"] + e["dur"]) for e in events]) / 1e3,
            "top_kernels_ms": {k[:120]: v / 1e3 for k, v in sorted(names.items(), key=lambda kv: -kv[1])[:top]},
        }
    every = [(e["ts"], e["ts"] + e["dur"]) for e in kernels]
    gpu_busy = busy_time(every) / 1e3
    span = (max(e for _, e in every) - min(s for s, _ in every)) / 1e3 if every else 0.0
    return {"streams": streams, "gpu_busy_ms": gpu_busy, "kernel_span_ms": span,
            "overlap_ms": sum(s["busy_ms"] for s in streams.values()) - gpu_busy}


def profile(args: argparse.Namespace) -> dict:
    from loger3d.train.config import load_train_config
    from loger3d.train.trainer import Trainer

    overrides = stage_override(args) + args.set
    config = load_train_config(args.config, overrides)
    with tempfile.TemporaryDirectory() as scratch:
        trainer = Trainer(config, Path(scratch) / "run", progress=False)
        try:
            for _ in range(args.warmup):
                trainer.train_step()
            sync = torch.cuda.synchronize if trainer.device.type == "cuda" else (lambda: None)
            sync()
            activities = [torch.profiler.ProfilerActivity.CPU]
            if trainer.device.type == "cuda":
                activities.append(torch.profiler.ProfilerActivity.CUDA)
            waits, frames = [], 0
            with torch.profiler.profile(activities=activities) as prof:
                started = time.perf_counter()
                for _ in range(args.steps):
                    record = trainer.train_step()
                    waits.append(record["data_time"])
                    frames += config.train.batch_size * record["frames"]
                sync()
                wall = time.perf_counter() - started
        finally:
            trainer.loader.close()
        trace_path = Path(scratch) / "trace.json"
        prof.export_chrome_trace(str(trace_path))
        trace = json.loads(trace_path.read_text())
    if args.trace:
        with gzip.open(args.trace, "wt") as f:
            json.dump(trace, f)
    return {
        "benchmark": "train_profile", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu", "torch": torch.__version__,
        "command": " ".join(sys.argv), "config": args.config, "stage": args.stage, "overrides": args.set,
        "warmup_steps": args.warmup, "steps": args.steps, "wall_s": wall, "frames": frames,
        "frames_per_s": frames / wall, "data_wait_s": sum(waits), **summarise_trace(trace),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="a training config (YAML path or shipped name)")
    parser.add_argument("--stage", type=int, help="profile this curriculum stage (1-based) as the whole run")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("--warmup", type=int, default=20, help="steps run before profiling")
    parser.add_argument("--steps", type=int, default=10, help="steps profiled")
    parser.add_argument("--json", required=True, help="write the summary here")
    parser.add_argument("--trace", help="also keep the whole trace here (gzipped Chrome JSON)")
    args = parser.parse_args()
    result = profile(args)
    Path(args.json).write_text(json.dumps(result, indent=1))
    print(f"{result['frames_per_s']:.0f} frames/s over {args.steps} steps ({result['wall_s']:.2f} s, waiting for "
          f"data {result['data_wait_s']:.2f} s); GPU busy {result['gpu_busy_ms']:.0f} ms, streams overlapping "
          f"{result['overlap_ms']:.0f} ms")
    for stream, s in result["streams"].items():
        print(f"  stream {stream}: {s['kernels']} kernels, {s['kernel_ms']:.0f} ms of kernels, "
              f"busy {s['busy_ms']:.0f} ms")


if __name__ == "__main__":
    main()
