"""``loger3d train``: run a training config (a YAML path or a shipped example), resumable."""

from __future__ import annotations

import argparse
import os
import sys

__all__ = ["add_parser", "run"]

_HELP = """\
Train a LoGeR-family model from a YAML config: synthetic worlds and/or real sequence folders, the
chunk-recurrent curriculum, AdamW with warm-up and cosine decay, checkpoints and logs in OUT.

CONFIG is a YAML file or the name of a shipped example (--list shows them):
  tiny_synthetic   the small model shipped with loger3d, trained on synthetic worlds
  loger_from_pi3   fine-tuning LoGeR from Pi3 weights on real data (paths to fill in)

OUT receives checkpoint.pt, config.yaml, metrics.jsonl, tensorboard/, loss.png and, when the
curriculum is done, model.safetensors (use it with 'loger3d reconstruct --model OUT/model.safetensors').
Stop any time (Ctrl-C, --max-minutes or --stop-at) and continue with the same command plus --resume.
Several GPUs: torchrun --nproc_per_node=N -m loger3d train CONFIG -o OUT (DDP, one process per GPU)."""

_EPILOG = """\
examples:
  loger3d train tiny_synthetic -o runs/tiny --max-minutes 10
  loger3d train tiny_synthetic -o runs/tiny --resume
  loger3d train my.yaml -o runs/a --set optim.lr=1e-4 --set train.batch_size=16
  torchrun --nproc_per_node=4 -m loger3d train my.yaml -o runs/ddp"""


def run(args: argparse.Namespace) -> int:
    from ..train.config import ConfigError, builtin_configs, load_train_config
    from ..train.log import camera_learning, read_metrics
    from ..train.trainer import Trainer

    if args.list:
        for name, path in sorted(builtin_configs().items()):
            print(f"{name:18s} {path}")
        return 0
    if args.config is None:
        raise ConfigError("give a CONFIG (a YAML file or a shipped example; see --list)")
    overrides = list(args.set or [])
    if args.max_minutes is not None:
        overrides.append(f"train.max_minutes={args.max_minutes}")
    if args.stop_at is not None:
        overrides.append(f"train.stop_at={args.stop_at}")
    if args.device is not None:
        overrides.append(f"train.device={args.device}")
    config = load_train_config(args.config, overrides)
    out = args.output or os.path.join("runs", os.path.splitext(os.path.basename(args.config))[0])
    trainer = Trainer(config, out, resume=args.resume, progress=not args.quiet)
    try:
        result = trainer.run()
    except KeyboardInterrupt:
        if trainer.main:
            print(f"loger3d: interrupted at step {trainer.step}; the last completed step is saved in {out}. "
                  f"Continue with: loger3d train {args.config} -o {out} --resume", file=sys.stderr)
        return 130
    if trainer.main and not args.quiet:
        loss = result.last.get("total")
        state = "finished" if result.finished else "paused (continue with --resume)"
        print(f"step {result.step}/{result.total_steps} {state}" + (f", loss {loss:.4f}" if loss is not None else ""))
        print(f"outputs in {out}" + (f"; weights {os.path.join(out, 'model.safetensors')}" if result.finished else ""))
        records = read_metrics(os.path.join(out, "metrics.jsonl"))
        ratios = camera_learning(records)
        if ratios:
            names = {"rot": "rotation", "trans": "translation"}
            print("camera terms over the last logged steps, against a model that never turns or moves (1 = not "
                  "learnt): " + ", ".join(f"{names[k]} {v:.2f}" for k, v in ratios.items()))
        if records and "trans_weight" in records[-1]:
            print(f"balanced loss weights now: translation {records[-1]['trans_weight']:.3g}, "
                  f"rotation {records[-1]['rot_weight']:.3g}")
    return 0


def add_parser(commands) -> None:
    p = commands.add_parser("train", help="train or fine-tune a model from a YAML config (resumable, DDP-ready)",
                            description=_HELP, epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", nargs="?", metavar="CONFIG", help="a YAML config or a shipped example's name")
    p.add_argument("-o", "--output", metavar="OUT", help="run folder (default: runs/CONFIG_NAME)")
    p.add_argument("--resume", action="store_true", help="continue the run in OUT from its checkpoint")
    p.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                   help="override one config value (YAML syntax; repeatable)")
    p.add_argument("--max-minutes", type=float, metavar="M",
                   help="stop after M minutes of training with a checkpoint (continue with --resume); a new "
                        "curriculum stage is not begun when less time is left than the longest step so far")
    p.add_argument("--stop-at", type=int, metavar="STEP",
                   help="stop at step STEP with a checkpoint (continue with --resume); the learning-rate schedule "
                        "stays the whole curriculum's")
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N (default: the config's, auto)")
    p.add_argument("--list", action="store_true", help="list the shipped example configs and exit")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(func=run)
