"""Tensor ops of one training step, per chunk, by the line of loger3d code that issues them.

Where many small chunks make the step launch-bound (benchmarks/results/train_throughput), every op a chunk
saves is a kernel launch saved. This counts the ops the dispatcher sees in the trainer's objective
(``SequenceObjective``, forward, then backward) on one synthetic clip, leaving out views and allocations
(which launch no kernel on a GPU). It runs on the CPU in fp32 without autocast, so a GPU step has these plus
its bf16 casts, and the CPU's math attention stands for one fused attention kernel there: compare counts
of one machine and setting before and after a change, not with GPU launch counts.

    python benchmarks/chunk_ops.py --frames 48 --chunks 4 --json ops.json
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from loger3d.train.clip import Clip, stack_clips
from loger3d.train.config import TrainConfig, load_train_config
from loger3d.train.curriculum import window_for_chunks
from loger3d.train.recurrent import SequenceObjective
from loger3d.train.trainer import build_training_model
from loger3d.train.worlds import SyntheticWorld, WorldConfig

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sync_audit import where  # noqa: E402  (the innermost loger3d frame of a stack; benchmarks is no package)

# Ops that make no kernel of their own: views, metadata and allocations.
NO_KERNEL = {"view", "as_strided", "_unsafe_view", "_reshape_alias", "expand", "permute", "transpose", "t",
             "unsqueeze", "squeeze", "slice", "select", "split", "split_with_sizes", "unbind", "chunk", "narrow",
             "detach", "alias", "reshape", "unflatten", "flatten", "diagonal", "view_as", "empty", "empty_strided",
             "empty_like", "new_empty", "new_empty_strided", "lift_fresh", "resolve_conj", "resolve_neg",
             "is_same_size", "sym_size", "sym_stride", "sym_numel", "sym_storage_offset"}


class OpCounter(TorchDispatchMode):
    """Counts every op that makes a kernel, by name and by the innermost loger3d source line above it."""

    def __init__(self) -> None:
        super().__init__()
        self.by_op: collections.Counter = collections.Counter()
        self.by_site: collections.Counter = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name not in NO_KERNEL:
            self.by_op[name] += 1
            self.by_site[where(traceback.extract_stack())[0]] += 1
        return func(*args, **(kwargs or {}))


def street_clip(config: TrainConfig, frames: int) -> Clip:
    """One training clip of ``frames`` frames at the config's size (a street drive, world seed 0), batch of one."""
    world = SyntheticWorld(WorldConfig(family="street", trajectory="drive", seed=0, length=frames,
                                       height=config.data.height, width=config.data.width))
    seq = world.sample(0, frames)
    return stack_clips([Clip(seq.images, seq.depth, seq.valid, seq.intrinsics, seq.poses)])


@dataclass
class StageSequence:
    """One sequence of a curriculum stage, ready to run: the config's model (scratch weights, seeded, in training
    mode), its objective, the stage's largest-chunk-count window, and a street clip of the stage's length."""

    objective: SequenceObjective
    clip: Clip
    window: int
    overlap: int
    frames: int

    @property
    def model(self) -> torch.nn.Module:
        return self.objective.model

    def __call__(self):
        c = self.clip
        return self.objective(c.images, c.local_points, c.poses, c.valid, self.window, self.overlap)


def stage_sequence(config_name: str, number: int) -> StageSequence:
    """Curriculum stage ``number`` (from 1) of the training config ``config_name``, as a ``StageSequence``."""
    torch.manual_seed(0)
    config = load_train_config(config_name)
    stage = config.curriculum[number - 1]
    model = build_training_model(config).train()
    window = stage.window or window_for_chunks(stage.frames, stage.chunk_range[1], stage.overlap)
    return StageSequence(SequenceObjective(model, config.loss, config.train.recurrent),
                         street_clip(config, stage.frames), window, stage.overlap, stage.frames)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="tiny_synthetic", help="training config (its model and loss)")
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--chunks", type=int, default=4)
    parser.add_argument("--overlap", type=int, default=2)
    parser.add_argument("--checkpointing", action="store_true",
                        help="activation checkpointing on (the backward then recomputes each block's forward)")
    parser.add_argument("--top", type=int, default=15, help="source lines listed")
    parser.add_argument("--json", help="write the counts here")
    args = parser.parse_args()
    torch.manual_seed(0)
    config = load_train_config(args.config)
    model = build_training_model(config).train().set_activation_checkpointing(args.checkpointing)
    objective = SequenceObjective(model, config.loss, config.train.recurrent)
    clip = street_clip(config, args.frames)
    window = window_for_chunks(args.frames, args.chunks, args.overlap)
    forward, backward = OpCounter(), OpCounter()
    with forward:
        loss, stats = objective(clip.images, clip.local_points, clip.poses, clip.valid, window, args.overlap)
    with backward:
        loss.backward()
    chunks = int(stats["chunks"])
    result = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "command": " ".join(sys.argv),
              "torch": torch.__version__, "config": args.config, "checkpointing": args.checkpointing,
              "frames": args.frames, "chunks": chunks,
              "window": window, "forward_ops": sum(forward.by_op.values()),
              "backward_ops": sum(backward.by_op.values())}
    result["ops_per_chunk"] = (result["forward_ops"] + result["backward_ops"]) / chunks
    result.update(forward_by_op=dict(forward.by_op.most_common()), backward_by_op=dict(backward.by_op.most_common()),
                  forward_by_site=dict(forward.by_site.most_common()))
    print(f"{chunks} chunks of window {window}: forward {result['forward_ops']} ops, backward "
          f"{result['backward_ops']}, {result['ops_per_chunk']:.0f} a chunk")
    for site, n in forward.by_site.most_common(args.top):
        print(f"{n:7d}  {site}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
