"""Training throughput end to end: frames per second of ``loger3d train`` itself, data included.

Runs ``python -m loger3d train CONFIG`` for ``--minutes`` in a scratch folder with ``--set`` overrides (and
``train.log_every=1``), then reads its ``metrics.jsonl``: the median and mean of the steps' ``frames_per_s``
after the first ``--skip`` steps (compiling, first worlds), the share of the time spent waiting for data, the
peak GPU memory. The subprocess imports whatever ``loger3d`` the environment gives, so the same script times an older
checkout (``PYTHONPATH=old/src``) and this one in one lease. Each run appends one row to ``--out``;
``--summarise METRICS`` makes the row of a kept ``metrics.jsonl`` instead of training.

``--processes N`` trains through ``torchrun`` with N processes on this machine's GPUs (more processes than
GPUs share them, ``trainer.process_placement``); ``--mps`` runs the CUDA MPS daemon for the run's length, so that
processes sharing a GPU run their kernels side by side. The frames/s are the whole run's (every process).

    python benchmarks/train_end_to_end.py tiny_synthetic --label shipped --minutes 2 --out e2e.json
    python benchmarks/train_end_to_end.py tiny_synthetic --label mb64 --set train.batch_size=64 \\
        --set train.micro_batch=64 --set train.fast_path=true --minutes 5 --skip 40 --out e2e.json
    python benchmarks/train_end_to_end.py tiny_synthetic --label "4 processes, MPS" --processes 4 --mps \\
        --minutes 3 --out e2e.json
    python benchmarks/train_end_to_end.py tiny_synthetic --label "12 chunks, checkpointing" --stage 3 \
        --set train.activation_checkpointing=true --set train.micro_batch=8 --minutes 3 --out e2e.json
    python benchmarks/train_end_to_end.py tiny_synthetic --label "12 chunks, CUDA graphs" --stage 3 \
        --set train.batch_size=64 --set train.micro_batch=64 --set train.activation_checkpointing=true \
        --set train.cuda_graphs=true --set train.fast_path=true --minutes 3.6 --skip 3 --out e2e.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from gpu_sharing import child_processes, mps_daemon


def run(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "run"
        launcher = [sys.executable, "-m", "loger3d"] if args.processes == 1 else [
            sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.processes}",
            "-m", "loger3d"]
        command = [*launcher, "train", args.config, "-o", str(out), "--quiet",
                   "--max-minutes", str(args.minutes), "--set", "train.log_every=1"]
        for assignment in stage_override(args) + args.set:
            command += ["--set", assignment]
        with mps_daemon() if args.mps else contextlib.nullcontext(None) as env:
            started = time.perf_counter()
            returncode, stderr = train(command, env)
            wall = time.perf_counter() - started
        if args.stderr:
            Path(args.stderr).write_text(stderr)
        if returncode != 0:
            sys.exit(f"loger3d train failed ({returncode}):\n{stderr[-3000:]}")
        metrics = (out / "metrics.jsonl").read_text()
        if args.metrics:
            Path(args.metrics).write_text(metrics)
    return summarise(args, [json.loads(line) for line in metrics.splitlines() if line.strip()], wall)


def stage_override(args: argparse.Namespace) -> list[str]:
    """``--stage N``: the ``--set`` that makes the config's curriculum stage N the whole run (long enough for
    any ``--minutes``), so that its shape is timed without training through the stages before it."""
    if args.stage is None:
        return []
    from loger3d.train.config import load_train_config

    curriculum = load_train_config(args.config).to_dict()["curriculum"]
    if not 1 <= args.stage <= len(curriculum):
        sys.exit(f"--stage {args.stage}: {args.config} has stages 1 to {len(curriculum)}")
    stage = {**curriculum[args.stage - 1], "steps": 1_000_000}
    return [f"curriculum=[{json.dumps(stage)}]"]


def train(command: list[str], env: dict[str, str] | None) -> tuple[int, str]:
    """Run the training command, stopped with this script (``child_processes``): ``(return code, standard error)``."""
    with child_processes() as start:
        child = start(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
        _, stderr = child.communicate()
    return child.returncode, stderr


def summarise(args: argparse.Namespace, records: list[dict], wall: float | None) -> dict:
    """The row of a run from its metrics records, one per step (``log_every=1``): ``frames_per_s`` and
    ``interval_s`` (the rate and the time since the previous record: the GPU's time included, because the
    trainer waits for it when it logs) and ``data_time`` (the host's wait for the loader)."""
    steady = records[args.skip:]
    if not steady:
        sys.exit(f"only {len(records)} steps ran; lower --skip or raise --minutes")
    if any("interval_s" not in r for r in records):
        sys.exit("these metrics have no interval_s (written before 2026-12-02); the figures would be the host's")
    seconds = sum(r["interval_s"] for r in steady)
    return {
        "label": args.label, "config": args.config, "stage": args.stage, "overrides": args.set, "minutes": args.minutes,
        "processes": args.processes, "mps": args.mps,
        "steps": len(records), "skipped": args.skip, "wall_s": wall,
        "frames_per_s_median": statistics.median(r["frames_per_s"] for r in steady),
        "frames_per_s_mean": sum(r["frames_per_s"] * r["interval_s"] for r in steady) / seconds,
        "data_wait_share": sum(r["data_time"] for r in steady) / seconds,
        "first_steps_s": sum(r["interval_s"] for r in records[:args.skip]),
        "gpu_peak_gib": max((r.get("gpu_peak_gib", 0.0) for r in records), default=0.0),
        "last_loss": records[-1]["total"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="a training config (YAML path or shipped name)")
    parser.add_argument("--label", required=True, help="the row's name in the results")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("--stage", type=int,
                        help="time only this curriculum stage's shape (1 = the first; a micro_batch of its own stays)")
    parser.add_argument("--minutes", type=float, default=2.0)
    parser.add_argument("--skip", type=int, default=10, help="first steps left out of the figures")
    parser.add_argument("--out", required=True, help="JSON file the row is appended to")
    parser.add_argument("--stderr", help="also keep the run's whole standard error here")
    parser.add_argument("--metrics", help="also keep the run's metrics.jsonl here")
    parser.add_argument("--processes", type=int, default=1,
                        help="training processes (torchrun); more than the GPUs share them")
    parser.add_argument("--mps", action="store_true", help="run the CUDA MPS daemon for the run (shared GPUs)")
    parser.add_argument("--summarise", metavar="METRICS", help="do not train: summarise this kept metrics.jsonl")
    args = parser.parse_args()
    if args.summarise:
        records = [json.loads(line) for line in Path(args.summarise).read_text().splitlines() if line.strip()]
        row = {**summarise(args, records, None), "summarised_from": args.summarise}
    else:
        row = run(args)
        import torch

        row["device"] = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
        row["torch"] = torch.__version__
        row["cpu_count"] = os.cpu_count()
        row["date"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    rows = json.loads(Path(args.out).read_text()) if Path(args.out).exists() else []
    Path(args.out).write_text(json.dumps(rows + [row], indent=2) + "\n")
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
