"""Does training make the tiny model predict camera rotation? A short run on fresh clips, logging ``rot`` against
``rot_identity`` (what a model that never turns scores on the same pairs) on training and held-out clips.

Clips: ``--frames`` frames in one chunk at 224×126 (``--width``, ``--height`` with ``--build``), stride 1–3,
drawn from a fixed pool of ``--worlds`` synthetic worlds of 200 frames (seeds 0…); held-out clips come from
64 worlds from ``HELD_OUT_SEED_OFFSET``.
The pools are built once (``--build``, all CPU cores) and pickled, so that several probes can share a GPU.
The model is ``tiny_synthetic``'s, initialised as ``loger3d train`` does, optionally re-initialised
(``--linear-init fan_in``: every linear weight N(0, 1/fan_in), clipped at 2σ, the rotation layer ×0.1;
``--decoder-layer-scale``: the decoder's layer scales start there instead of 0.01). The loss is
``tiny_synthetic``'s with ``--loss`` overrides (JSON of ``LossConfig`` fields), after ``--warmup-steps`` steps of
``--warmup-loss`` when asked (default: the rotation term alone); AdamW as the trainer builds it,
50 warm-up steps, constant learning rate after, bf16 autocast on CUDA. ``--balance-every N`` re-sets the
translation and rotation weights every N steps (after any warm-up) so that each term's gradient on the decoder
and memory layers is ``--balance-target`` times the local point term's, as ``loss.balance_every`` does in the
trainer (``loger3d.train.balance``).

Every ``--log`` steps a JSON line: the step, seconds, and the means over those steps of ``rot``,
``rot_identity``, ``trans``, ``trans_zero``, ``local_points`` and ``global_points``; every fifth line adds
``test``, the same on 128 held-out clips; with balancing also ``weights``, the translation and rotation weights
in use.

    python benchmarks/rotation_probe.py --build --pools /tmp/pools.pkl
    python benchmarks/rotation_probe.py --pools /tmp/pools.pkl --out rot_only.jsonl --minutes 6.5 \\
        --loss '{"local_weight": 0, "conf_weight": 0, "global_weight": 0, "trans_weight": 0, "pose_weight": 1}'
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import time

import numpy as np
import torch

from loger3d.model.blocks import LayerScale
from loger3d.train.balance import LossBalance, shared_parameters, term_gradient_norms
from loger3d.train.clip import Clip, stack_clips
from loger3d.train.config import load_train_config
from loger3d.train.losses import LossConfig, read_stats
from loger3d.train.optim import build_optimizer
from loger3d.train.recurrent import SequenceObjective
from loger3d.train.synthetic import HELD_OUT_SEED_OFFSET, ClipPlan, SyntheticSource
from loger3d.train.trainer import build_training_model

WORLD_LENGTH, TEST_WORLDS, TEST_CLIPS = 200, 64, 128
ROTATION_ONLY = {"local_weight": 0, "conf_weight": 0, "global_weight": 0, "trans_weight": 0, "pose_weight": 1}


def build_pools(path: str, worlds: int, width: int = 224, height: int = 126) -> None:
    """Build the training and held-out world pools in all CPU cores and pickle both sources to ``path``."""
    pools = {}
    for name, offset, count in (("train", 0, worlds), ("test", HELD_OUT_SEED_OFFSET, TEST_WORLDS)):
        source = SyntheticSource(height=height, width=width, num_worlds=count, world_length=WORLD_LENGTH,
                                 seed_offset=offset, stride=(1, 3), cache_size=count, workers=os.cpu_count() or 1)
        for index in range(count):
            source.prefetch(ClipPlan(index, 0, 1))
        for index in range(count):
            try:
                source.world(index)
            except RuntimeError:  # a world whose path grazes a surface; sampling skips it the same way
                pass
        source.close()
        pools[name] = source
    with open(path, "wb") as f:
        pickle.dump(pools, f)


def reinitialise_(model: torch.nn.Module, linear_init: str, decoder_layer_scale: float | None) -> None:
    """The probe's optional departures from ``init_from_scratch_`` (see the module docstring)."""
    gates = {id(m) for m in (*model.ttt_gate_projs, *model.swa_gate_projs)}
    with torch.no_grad():
        for name, module in model.named_modules():
            if linear_init == "fan_in" and isinstance(module, torch.nn.Linear) and id(module) not in gates:
                module.weight.copy_(torch.randn(module.weight.shape).clamp_(-2, 2) * module.weight.shape[1] ** -0.5)
            if decoder_layer_scale is not None and isinstance(module, LayerScale) and not name.startswith("encoder"):
                module.gamma.fill_(decoder_layer_scale)
        if linear_init == "fan_in":
            model.camera_head.fc_rot.weight.mul_(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pools", required=True, help="the pickled world pools (made by --build)")
    parser.add_argument("--build", action="store_true", help="build the pools, then exit")
    parser.add_argument("--worlds", type=int, default=600, help="training worlds in the pool (with --build)")
    parser.add_argument("--width", type=int, default=224, help="frame width of the pool (with --build)")
    parser.add_argument("--height", type=int, default=126, help="frame height of the pool (with --build)")
    parser.add_argument("--out", help="JSON lines file of the log")
    parser.add_argument("--minutes", type=float, default=6.5, help="training time")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch", type=int, default=32, help="clips per step")
    parser.add_argument("--frames", type=int, default=8, help="frames per clip (one chunk)")
    parser.add_argument("--overlap", type=int, default=0,
                        help="the chunk's overlap: its first and last OVERLAP frames get the pe tokens of frames "
                             "shared with the previous and next chunk, as in inference (0: every frame interior)")
    parser.add_argument("--loss", default="{}", help="JSON of LossConfig fields to override")
    parser.add_argument("--warmup-steps", type=int, default=0,
                        help="train the first N steps with --warmup-loss, then with --loss")
    parser.add_argument("--warmup-loss", default=json.dumps(ROTATION_ONLY),
                        help="JSON of LossConfig fields for the warm-up steps (default: the rotation term alone)")
    parser.add_argument("--linear-init", choices=("trunc002", "fan_in"), default="trunc002")
    parser.add_argument("--decoder-layer-scale", type=float)
    parser.add_argument("--log", type=int, default=100, help="steps per log line")
    parser.add_argument("--balance-every", type=int, default=0,
                        help="re-set the translation and rotation weights every N steps (0: fixed weights)")
    parser.add_argument("--balance-target", type=float, default=1.0,
                        help="each balanced term's decoder gradient, as a multiple of the local point term's")
    parser.add_argument("--balance-target-rot", type=float,
                        help="the rotation term's own target (default: --balance-target)")
    args = parser.parse_args()
    if args.build:
        started = time.perf_counter()
        build_pools(args.pools, args.worlds, args.width, args.height)
        print(f"built {args.worlds} + {TEST_WORLDS} worlds in {time.perf_counter() - started:.0f} s")
        return

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with open(args.pools, "rb") as f:
        pools = pickle.load(f)
    rngs = [np.random.default_rng([7, k]) for k in range(TEST_CLIPS)]
    held_out = [stack_clips(pools["test"].sample_many(rngs[i:i + 32], args.frames, device))
                for i in range(0, TEST_CLIPS, 32)]
    torch.manual_seed(0)
    config = load_train_config("tiny_synthetic", [f"optim.lr={args.lr}"])
    model = build_training_model(config)
    reinitialise_(model, args.linear_init, args.decoder_layer_scale)
    model.to(device).train()
    main_loss = LossConfig(**json.loads(args.loss), balance_every=args.balance_every,
                           balance_target=args.balance_target, balance_rot_target=args.balance_target_rot)
    balance = LossBalance()
    objective = SequenceObjective(model, LossConfig(**json.loads(args.warmup_loss)) if args.warmup_steps else main_loss)
    optimizer = build_optimizer(model, config.optim)
    keys = ("rot", "rot_identity", "trans", "trans_zero", "local_points", "global_points")

    def losses(batch: Clip) -> tuple[torch.Tensor, dict[str, torch.Tensor | float]]:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
            return objective(batch.images, batch.local_points, batch.poses, batch.valid, args.frames, args.overlap)

    def rebalance(batch: Clip) -> None:
        """Re-set the weights from each term's gradient on ``batch`` (``loger3d.train.balance``)."""

        def loss_of(term_cfg: LossConfig) -> torch.Tensor:
            objective.loss.cfg = term_cfg
            return losses(batch)[0]

        balance.update(term_gradient_norms(loss_of, shared_parameters(model), main_loss), main_loss)
        objective.loss.cfg = balance.apply(main_loss)

    def evaluate() -> dict[str, float]:
        model.eval()
        with torch.no_grad():
            stats = [read_stats(losses(batch)[1]) for batch in held_out]
        model.train()
        return {k: float(np.mean([s[k] for s in stats])) for k in keys}

    out = open(args.out, "w") if args.out else None
    started, step, window = time.perf_counter(), 0, []
    while time.perf_counter() - started < args.minutes * 60:
        step += 1
        if step == args.warmup_steps + 1:
            objective.loss.cfg = main_loss
        for group in optimizer.param_groups:
            group["lr"] = group["base_lr"] * min(1.0, step / 50)
        rngs = [np.random.default_rng([3, step, k]) for k in range(args.batch)]
        batch = stack_clips(pools["train"].sample_many(rngs, args.frames, device))
        if args.balance_every and step > args.warmup_steps and (step - args.warmup_steps - 1) % args.balance_every == 0:
            rebalance(batch)
        loss, stats = losses(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.optim.grad_clip)
        optimizer.step()
        window.append(torch.stack([stats[k] for k in keys]))
        if step % args.log == 0:
            record = {"step": step, "t": round(time.perf_counter() - started),
                      **dict(zip(keys, torch.stack(window).mean(0).tolist()))}
            window = []
            if args.balance_every:
                pose = objective.loss.cfg.pose_weight
                record["weights"] = {"trans": pose * objective.loss.cfg.trans_weight,
                                     "rot": pose * objective.loss.cfg.rot_weight}
            if step % (5 * args.log) == 0:
                record["test"] = evaluate()
            print(json.dumps(record), flush=True)
            if out:
                out.write(json.dumps(record) + "\n")
                out.flush()


if __name__ == "__main__":
    main()
