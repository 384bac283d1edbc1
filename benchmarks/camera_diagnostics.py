"""Does a model see camera rotation? Per held-out clip: how far the truth and the prediction turn, how much
the camera head's pooled feature varies between frames, and the depth error.

One chunk (``--frames`` frames, window = frames) per held-out world (``ablation.test_worlds`` from seed
``HELD_OUT_SEED_OFFSET + --first``), fp32, no memory involved. Printed per clip and written to ``--json``:
- ``gt_turn_deg`` / ``pred_turn_deg``: the largest rotation of any frame relative to the first;
- ``rot_error_deg``: the mean angle between predicted and true relative rotations to the first frame;
- ``feature_spread``: mean distance of each frame's pooled camera feature (the input of the rotation and
  translation layers) from the clip's mean feature, over the mean feature norm: near 0, every frame gets the
  same pose;
- ``depth_abs_rel``: mean |s·z − z_gt| / z_gt over valid pixels (depth ≤ 80 m), s the median ratio.

    python benchmarks/camera_diagnostics.py --model tiny_synthetic --json diag.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from heldout_worlds import test_worlds  # noqa: E402  (the benchmarks folder is not a package)

from loger3d import load_model  # noqa: E402
from loger3d.train.losses import rotation_angle, rotation_magnitude  # noqa: E402
from loger3d.train.synthetic import HELD_OUT_SEED_OFFSET  # noqa: E402
from loger3d.train.worlds import SyntheticWorld, WorldConfig  # noqa: E402


def turn_from_first(poses: torch.Tensor) -> torch.Tensor:
    """``[N, 3, 3]`` rotations of each camera relative to the first, from camera-to-world ``[N, 4, 4]``."""
    return poses[:1, :3, :3].transpose(-1, -2) @ poses[:, :3, :3]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tiny_synthetic", help="an alias or a weights file")
    parser.add_argument("--worlds", type=int, default=9)
    parser.add_argument("--first", type=int, default=700, help="first world seed, above HELD_OUT_SEED_OFFSET")
    parser.add_argument("--frames", type=int, default=14)
    parser.add_argument("--stride", type=int, default=2)
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args()

    model = load_model(args.model).eval().float()
    features: list[torch.Tensor] = []
    model.camera_head.more_mlps.register_forward_hook(lambda module, inputs, output: features.append(output))
    rows = []
    for family, kind, seed in test_worlds(args.worlds, HELD_OUT_SEED_OFFSET + args.first):
        span = (args.frames - 1) * args.stride + 1
        world = SyntheticWorld(WorldConfig(family=family, trajectory=kind, seed=seed, length=span, height=126,
                                           width=224))
        seq = world.sample(0, args.frames, stride=args.stride)
        features.clear()
        with torch.no_grad():
            pred = model(seq.images, window_size=args.frames, overlap_size=0, align="none")
        feat = features[-1]
        gt_turn, pred_turn = turn_from_first(seq.poses.double()), turn_from_first(pred.camera_poses[0].double())
        z, z_gt = pred.local_points[0, ..., 2], seq.depth
        valid = seq.valid & (z_gt <= 80)
        s = torch.median(z_gt[valid] / z[valid])
        rows.append({
            "world": f"{family}-{kind}", "world_seed": seed,
            "gt_turn_deg": float(rotation_magnitude(gt_turn).max().rad2deg()),
            "pred_turn_deg": float(rotation_magnitude(pred_turn).max().rad2deg()),
            "rot_error_deg": float(rotation_angle(pred_turn, gt_turn).mean().rad2deg()),
            "feature_spread": float((feat - feat.mean(0)).norm(dim=-1).mean() / feat.norm(dim=-1).mean()),
            "depth_abs_rel": float(((s * z[valid] - z_gt[valid]).abs() / z_gt[valid]).mean()),
        })
        print(json.dumps(rows[-1]), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model": args.model, "command": " ".join(sys.argv), "frames": args.frames,
                       "stride": args.stride, "torch": torch.__version__, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
