"""Does a training run replayed as CUDA graphs train as the eager run does? (issue 18; needs a CUDA GPU)

Three short runs of the same config on the GPU: eager, eager again, and with ``train.cuda_graphs``: the
``small_config`` of tests/test_train.py at 56×42, two micro-steps a step, 3 steps of 8-frame sequences in 3
chunks then 3 in 4 chunks, fp32, the camera head's sync-free rotations in all three (graphs need them). Prints
each run's logged total loss and balanced translation weight per step, and the largest parameter difference
from the first eager run: the graphed run should differ from it no more than the second eager run does (the
GPU's backward adds with atomics, so no two runs are bit for bit the same). Three settings: without loss
balancing, with it (every second step), and with it under ``torch.use_deterministic_algorithms`` (warn only).

    PYTHONPATH=src:. python benchmarks/graphed_parity.py > parity.txt
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS's deterministic mode, before CUDA starts

import torch  # noqa: E402
from tests.test_train import small_config  # noqa: E402

from loger3d.train.config import config_from_dict  # noqa: E402
from loger3d.train.trainer import Trainer  # noqa: E402


def run(folder: Path, graphs: bool, balance: bool) -> tuple[Trainer, list[dict]]:
    stages = [{"steps": 3, "frames": 8, "chunks": chunks, "overlap": 1} for chunks in (3, 4)]
    raw = small_config(curriculum=stages, loss={"balance_every": 2} if balance else {},
                       train={"device": "cuda", "precision": "fp32", "cuda_graphs": graphs, "batch_size": 4,
                              "micro_batch": 2})
    trainer = Trainer(config_from_dict(raw), folder, progress=False)
    trainer.model.camera_head.sync_free = True
    trainer.run()
    return trainer, [json.loads(line) for line in open(folder / "metrics.jsonl")]


def main() -> None:
    for deterministic, balance in ((False, False), (False, True), (True, True)):
        torch.use_deterministic_algorithms(deterministic, warn_only=True)
        with tempfile.TemporaryDirectory() as scratch:
            runs = {name: run(Path(scratch) / name, graphs, balance)
                    for name, graphs in (("eager", False), ("eager2", False), ("graphed", True))}
        print("deterministic", deterministic, "balance", balance)
        for name, (_, log) in runs.items():
            print(f"  {name:8s}", [f"{r['total']:.9g}" for r in log], [f"{r.get('trans_weight', 0):.6g}" for r in log])
        first = list(runs["eager"][0].model.parameters())
        for name in ("eager2", "graphed"):
            diff = max((a - b).abs().max().item() for a, b in zip(first, runs[name][0].model.parameters()))
            print(f"  max |param diff| eager vs {name}: {diff:.3g}")


if __name__ == "__main__":
    main()
