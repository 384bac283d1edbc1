"""Where a training step's GPU time goes: the model's stream against the data loader's renderer, side by side.

The trainer's own log gives host times only (``step_time``, ``data_time``): when a step waits for data it does not
tell whether the renderer's thread is held up by its own launches and host syncs or by the GPU it shares with the
model. This runs ``loger3d train``'s steps in-process (``Trainer.train_step``) for one curriculum stage of CONFIG:
``--warmup`` steps first (compiling, recording graphs, the first worlds), ``--timed`` steps timed plainly, then
``--steps`` steps under ``torch.profiler``. It reports per CUDA stream: kernels, kernel time and busy time (the
union of its kernels' intervals), the GPU's busy time over all streams and how much of it the streams overlap, the
wall time and the host's wait for data, with the ten costliest kernels of each stream; and per host thread (the
trainer's, the loader's) its operators' busy time (the trainer's only: the profiler records no other thread's),
its host time in each of ``PHASES`` (clocked during the timed steps), its costliest outermost
operators and its CUDA runtime calls (launches, synchronisations, copies), which tell a thread held up by its own
launches and syncs from one waiting for the GPU. The loader renders on its own stream; the model's micro-steps
(graph replays included) run on the default one.

    python benchmarks/train_profile.py tiny_synthetic --stage 1 --timed 30 --json stage1.json --trace stage1.json.gz
    python benchmarks/train_profile.py tiny_synthetic --stage 4 --steps 3 --set train.log_every=1 --json p4.json
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import tempfile
import threading
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
    threads = {}
    for tid, events in _by_thread(trace).items():
        ops = [e for e in events if e.get("cat") == "cpu_op"]
        runtime = [e for e in events if e.get("cat") == "cuda_runtime"]
        if not ops and not runtime:
            continue
        threads[tid] = {"cpu_op_busy_ms": busy_time([(e["ts"], e["ts"] + e["dur"]) for e in ops]) / 1e3,
                        "top_level_ops_ms": _top(_outermost(ops), top),
                        "cuda_runtime_ms": _top(runtime, top),
                        "cuda_runtime_calls": {k: v for k, v in sorted(_counts(runtime).items(),
                                                                       key=lambda kv: -kv[1])[:top]}}
    every = [(e["ts"], e["ts"] + e["dur"]) for e in kernels]
    gpu_busy = busy_time(every) / 1e3
    span = (max(e for _, e in every) - min(s for s, _ in every)) / 1e3 if every else 0.0
    return {"streams": streams, "gpu_busy_ms": gpu_busy, "kernel_span_ms": span,
            "overlap_ms": sum(s["busy_ms"] for s in streams.values()) - gpu_busy, "host_threads": threads}


def _by_thread(trace: dict) -> dict[int, list[dict]]:
    threads: dict[int, list[dict]] = defaultdict(list)
    for e in trace.get("traceEvents", []):
        if e.get("ph") == "X" and "dur" in e and isinstance(e.get("tid"), int):
            threads[e["tid"]].append(e)
    return threads


def _outermost(events: list[dict]) -> list[dict]:
    """The events of one thread not nested in another (what the thread's Python code called)."""
    kept, reach = [], float("-inf")
    for e in sorted(events, key=lambda e: (e["ts"], -e["dur"])):
        if e["ts"] >= reach:
            kept.append(e)
            reach = e["ts"] + e["dur"]
    return kept


def _top(events: list[dict], top: int) -> dict[str, float]:
    total: dict[str, float] = defaultdict(float)
    for e in events:
        total[e["name"][:120]] += e["dur"] / 1e3
    return dict(sorted(total.items(), key=lambda kv: -kv[1])[:top])


def _counts(events: list[dict]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for e in events:
        counts[e["name"][:120]] += 1
    return counts


PHASES = [("loger3d.train.loader", "stack_clips"), ("loger3d.train.synthetic", "render_worlds"),
          ("loger3d.train.synthetic", "SyntheticSource._draw"), ("loger3d.train.synthetic", "SyntheticSource.world"),
          ("loger3d.train.depth_filter", "DepthFilter.__call__"), ("loger3d.train.worlds.render", "SceneStack.of"),
          ("loger3d.train.worlds.render", "trace"), ("loger3d.train.worlds.render", "shade_compiled"),
          ("loger3d.train.worlds.render", "_cull")]
"""Functions whose host time is clocked per thread during the timed steps (``PhaseClock``): the profiler records
operators on the thread that started it only, so the loader's own Python work (planning clips, unpickling
built worlds, assembling scene tables, launching the renderer's kernels) is timed this way."""


class PhaseClock:
    """Wraps each of ``PHASES`` (in this process only) to add its wall time to ``seconds[(thread, phase)]``;
    nested phases count in their callers too."""

    def __init__(self) -> None:
        import functools
        import importlib
        import inspect

        self.seconds: dict[tuple[str, str], float] = defaultdict(float)
        for module_name, qualified in PHASES:
            *owners, name = qualified.split(".")
            target = importlib.import_module(module_name)
            for owner in owners:
                target = getattr(target, owner)
            raw = inspect.getattr_static(target, name)
            function = raw.__func__ if isinstance(raw, classmethod) else raw

            def clocked(*a, _function=function, _phase=qualified, **k):
                return self._clocked(_function, _phase, *a, **k)

            clocked = functools.wraps(function)(clocked)
            setattr(target, name, classmethod(clocked) if isinstance(raw, classmethod) else clocked)

    def _clocked(self, function, phase: str, *args, **kwargs):
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            self.seconds[threading.current_thread().name, phase] += time.perf_counter() - start

    def reset(self) -> None:
        self.seconds.clear()

    def report(self) -> dict[str, dict[str, float]]:
        """``{thread: {phase: seconds}}``, costliest first."""
        threads: dict[str, dict[str, float]] = defaultdict(dict)
        for (thread, phase), seconds in sorted(self.seconds.items(), key=lambda kv: -kv[1]):
            threads[thread][phase] = seconds
        return dict(threads)


def run_steps(trainer, steps: int, sync) -> dict:
    """``steps`` training steps, timed to the GPU's end: ``{"steps", "wall_s", "frames", "frames_per_s",
    "data_wait_s", "step_s"}``."""
    wait, frames = 0.0, 0
    started = time.perf_counter()
    for _ in range(steps):
        record = trainer.train_step()
        wait += record["data_time"]
        frames += trainer.config.train.batch_size * record["frames"]
    sync()
    wall = time.perf_counter() - started
    return {"steps": steps, "wall_s": wall, "frames": frames, "frames_per_s": frames / wall, "data_wait_s": wait,
            "step_s": wall / steps}


def time_steps(trainer, steps: int, sync, clock: PhaseClock) -> dict:
    """``run_steps`` without the profiler (whose own overhead slows a launch-bound thread), with the host time of
    each of ``PHASES`` per thread."""
    clock.reset()
    return {**run_steps(trainer, steps, sync), "host_phases_s": clock.report()}


def profile(args: argparse.Namespace) -> dict:
    from loger3d.train.config import load_train_config
    from loger3d.train.trainer import Trainer

    clock = PhaseClock()
    overrides = stage_override(args) + args.set
    config = load_train_config(args.config, overrides)
    with tempfile.TemporaryDirectory() as scratch:
        trainer = Trainer(config, Path(scratch) / "run", progress=False)
        try:
            for _ in range(args.warmup):
                trainer.train_step()
            sync = torch.cuda.synchronize if trainer.device.type == "cuda" else (lambda: None)
            sync()
            timed = time_steps(trainer, args.timed, sync, clock) if args.timed else None
            activities = [torch.profiler.ProfilerActivity.CPU]
            if trainer.device.type == "cuda":
                activities.append(torch.profiler.ProfilerActivity.CUDA)
            with torch.profiler.profile(activities=activities) as prof:
                profiled = run_steps(trainer, args.steps, sync)
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
        "warmup_steps": args.warmup, "timed_unprofiled": timed, **profiled, **summarise_trace(trace),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="a training config (YAML path or shipped name)")
    parser.add_argument("--stage", type=int, help="profile this curriculum stage (1-based) as the whole run")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("--warmup", type=int, default=20, help="steps run before profiling")
    parser.add_argument("--timed", type=int, default=0, help="steps timed without the profiler, after the warm-up")
    parser.add_argument("--steps", type=int, default=10, help="steps profiled")
    parser.add_argument("--json", required=True, help="write the summary here")
    parser.add_argument("--trace", help="also keep the whole trace here (gzipped Chrome JSON)")
    args = parser.parse_args()
    result = profile(args)
    Path(args.json).write_text(json.dumps(result, indent=1))
    if result["timed_unprofiled"]:
        t = result["timed_unprofiled"]
        print(f"unprofiled: {t['frames_per_s']:.0f} frames/s over {t['steps']} steps ({t['step_s']:.3f} s a step, "
              f"waiting for data {t['data_wait_s']:.2f} s of {t['wall_s']:.2f} s)")
        for thread, phases in t["host_phases_s"].items():
            print(f"  {thread}: " + ", ".join(f"{k} {v:.2f} s" for k, v in phases.items()))
    print(f"{result['frames_per_s']:.0f} frames/s over {args.steps} steps ({result['wall_s']:.2f} s, waiting for "
          f"data {result['data_wait_s']:.2f} s); GPU busy {result['gpu_busy_ms']:.0f} ms, streams overlapping "
          f"{result['overlap_ms']:.0f} ms")
    for stream, s in result["streams"].items():
        print(f"  stream {stream}: {s['kernels']} kernels, {s['kernel_ms']:.0f} ms of kernels, "
              f"busy {s['busy_ms']:.0f} ms")
    for tid, t in result["host_threads"].items():
        print(f"  host thread {tid}: operators busy {t['cpu_op_busy_ms']:.0f} ms; runtime "
              + ", ".join(f"{k} {v:.0f} ms" for k, v in list(t["cuda_runtime_ms"].items())[:4]))


if __name__ == "__main__":
    main()
