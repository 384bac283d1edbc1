"""Where a training step makes the host wait for the GPU: every synchronising CUDA call of a few steps of
``loger3d train``, counted by the line of loger3d code that made it.

A step that never waits lets the host queue the next work while the GPU runs, and it is what a CUDA graph of
the whole step needs. The audit builds the trainer from a config (``--set`` overrides as ``loger3d train``
takes them), runs ``--warmup`` steps, then ``--steps`` steps under ``torch.cuda.set_sync_debug_mode("warn")``
(PyTorch warns at each synchronising call: ``.item()``, a copy to the host, a blocking copy from it, an SVD's
convergence check, ...). Each warning is attributed to the innermost frame in loger3d's source and to the
loger3d frames above it. Needs a CUDA device.

    python benchmarks/sync_audit.py --set train.batch_size=8 --set train.micro_batch=8 --json sync_audit.json
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import sys
import tempfile
import traceback
import warnings
from datetime import datetime, timezone

import torch

import loger3d
from loger3d.train.config import load_train_config
from loger3d.train.trainer import Trainer

PACKAGE = os.path.dirname(loger3d.__file__)


def where(stack: list[traceback.FrameSummary]) -> tuple[str, list[str]]:
    """The innermost loger3d frame of ``stack`` (``file:line function``) and the loger3d frames above it."""
    ours = [f"{os.path.relpath(f.filename, PACKAGE)}:{f.lineno} {f.name}" for f in stack
            if f.filename.startswith(PACKAGE)]
    return (ours[-1], ours[-4:-1]) if ours else ("(outside loger3d)", [])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", nargs="?", default="tiny_synthetic", help="a built-in config or a YAML file")
    parser.add_argument("--set", action="append", default=[], help="a config override, KEY=VALUE")
    parser.add_argument("--warmup", type=int, default=3, help="steps before the audit")
    parser.add_argument("--steps", type=int, default=2, help="audited steps")
    parser.add_argument("--json", help="write the counts here")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("sync_audit needs a CUDA device")
    config = load_train_config(args.config, args.set)
    counts: collections.Counter = collections.Counter()
    callers: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        trainer = Trainer(config, os.path.join(scratch, "run"), progress=False)
        for _ in range(args.warmup):
            trainer.train_step()
        torch.cuda.synchronize()

        def record(message, category, filename, lineno, file=None, line=None) -> None:
            if "synchroniz" not in str(message):
                return
            site, above = where(traceback.extract_stack()[:-1])
            counts[site] += 1
            callers.setdefault(site, above)

        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = record
            torch.cuda.set_sync_debug_mode("warn")
            try:
                for _ in range(args.steps):
                    trainer.train_step()
            finally:
                torch.cuda.set_sync_debug_mode("default")
        trainer.loader.close()
    rows = [{"site": site, "per_step": n / args.steps, "called_from": callers[site]}
            for site, n in counts.most_common()]
    for row in rows:
        print(f"{row['per_step']:7.1f}  {row['site']}   <- {' <- '.join(reversed(row['called_from']))}")
    print(f"{sum(counts.values()) / args.steps:.1f} synchronising calls a step")
    if args.json:
        result = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  "device": torch.cuda.get_device_name(), "torch": torch.__version__,
                  "python": platform.python_version(), "config": args.config,
                  "overrides": args.set, "warmup": args.warmup, "steps": args.steps,
                  "per_step": sum(counts.values()) / args.steps, "sites": rows}
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
