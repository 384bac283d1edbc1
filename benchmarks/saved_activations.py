"""Activation memory of a training sequence, per curriculum stage, with and without activation checkpointing.

What bounds the micro-batch, and so how many micro-steps a step of the launch-bound stages issues, is the memory
autograd keeps for the backward pass. This measures it for one sequence of each stage of a training config: the
bytes of the distinct storages the forward pass saves for backward (``torch.autograd.graph.saved_tensors_hooks``),
the sequence's clip rendered at the config's size, on the CPU in fp32 (a GPU step in bf16 autocast keeps fewer
bytes; compare the two settings, and scale by a measured GPU peak). No weights or data are downloaded.

    python benchmarks/saved_activations.py tiny_synthetic --json saved.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timezone

import torch
from chunk_ops import StageSequence, stage_sequence

from loger3d.train.config import load_train_config


def saved_bytes(sequence: StageSequence) -> int:
    """Bytes of the distinct storages that the sequence's forward pass saves for its backward."""
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        sequence()
    return sum(storages.values())


def measure_stage(config_name: str, number: int) -> dict:
    """The row of curriculum stage ``number`` (from 1): saved GiB a sequence without and with checkpointing."""
    sequence = stage_sequence(config_name, number)
    row = {"stage": number, "frames": sequence.frames, "window": sequence.window, "overlap": sequence.overlap}
    for checkpointing in (True, False):
        sequence.model.set_activation_checkpointing(checkpointing)
        key = "checkpointing_gib" if checkpointing else "plain_gib"
        row[key] = saved_bytes(sequence) / 2**30
    row["ratio"] = row["plain_gib"] / row["checkpointing_gib"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", nargs="?", default="tiny_synthetic", help="a training config (YAML or shipped name)")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    config = load_train_config(args.config)
    rows = []
    for number in range(1, len(config.curriculum) + 1):
        # A fresh process a stage: the host allocator keeps what an earlier, smaller stage freed.
        with ProcessPoolExecutor(1, multiprocessing.get_context("spawn")) as pool:
            row = pool.submit(measure_stage, args.config, number).result()
        rows.append(row)
        print(f"stage {number}: {row['frames']} frames, window {row['window']}: {row['plain_gib']:.3f} GiB a "
              f"sequence, {row['checkpointing_gib']:.3f} with checkpointing ({row['ratio']:.1f}x less)", flush=True)
    if args.json:
        result = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "command": " ".join(sys.argv),
                  "torch": torch.__version__, "config": args.config, "size": [config.data.width, config.data.height],
                  "dtype": "float32", "device": "cpu", "stages": rows}
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
