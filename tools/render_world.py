"""Render one synthetic world as a folder of PNGs with its ground truth, to check a model through the command line.

    PYTHONPATH=src python3 tools/render_world.py indoor walk 1000001000 world/ [--frames 1000]
    loger3d reconstruct world/images -o world/out --model tiny_synthetic
    loger3d eval traj --gt world/gt_kitti.txt --est world/out/trajectory_kitti.txt

Seeds from 1,000,000,000 are held out: no training source draws them. Writes ``images/00000.png`` ...
(8-bit RGB), ``gt_kitti.txt`` (camera-to-world poses, OpenCV axes, one line a frame) and ``intrinsics.txt``
(fx fy cx cy in pixels). The frames are those of ``benchmarks/heldout_ate.py`` rounded to 8 bits.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from loger3d.sinks.trajectory import write_kitti
from loger3d.train.synthetic import TRAJECTORIES
from loger3d.train.worlds import FAMILIES, SyntheticWorld, WorldConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("family", choices=sorted(FAMILIES))
    parser.add_argument("trajectory", choices=list(TRAJECTORIES))
    parser.add_argument("seed", type=int, help="world seed (held out from 1000000000)")
    parser.add_argument("out", type=Path)
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--width", type=int, default=224)
    parser.add_argument("--height", type=int, default=126)
    args = parser.parse_args()
    if (args.out / "images").exists():
        parser.error(f"{args.out / 'images'} exists: choose another OUT or remove it")

    world = SyntheticWorld(WorldConfig(family=args.family, trajectory=args.trajectory, seed=args.seed,
                                       length=args.frames, height=args.height, width=args.width))
    sample = world.sample(0, args.frames)
    images = (sample.images.permute(0, 2, 3, 1).clamp(0, 1).numpy() * 255).round().astype(np.uint8)
    (args.out / "images").mkdir(parents=True)
    for i, image in enumerate(images):
        Image.fromarray(image).save(args.out / "images" / f"{i:05d}.png")
    write_kitti(args.out / "gt_kitti.txt", sample.poses.double().numpy())
    K = sample.intrinsics[0].double().numpy()
    (args.out / "intrinsics.txt").write_text(f"{K[0, 0]:.6f} {K[1, 1]:.6f} {K[0, 2]:.6f} {K[1, 2]:.6f}\n")
    print(f"{args.frames} frames of {args.family}-{args.trajectory} seed {args.seed} in {args.out}")


if __name__ == "__main__":
    main()
