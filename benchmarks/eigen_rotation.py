"""How close the camera head's sync-free rotation (``rotation_from_9d_eigen``) comes to the SVD's, in fp32.

Both are measured against the SVD in fp64 (the reference), on raw 9-D head outputs of two kinds: anything
(standard normal entries, about half with a negative determinant) and near a rotation (a random rotation plus
0.05 or 0.001 of noise, where the SVD's gradient degrades). Values: the largest entry error of each 3×3 result;
gradients: the relative error of the gradient of a random linear loss. ``--squarings`` also times the number of
squarings the eigen method takes (``EIGEN_SQUARINGS``) against fewer and more.

    python benchmarks/eigen_rotation.py --json eigen_rotation.json
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from datetime import datetime, timezone

import torch

from loger3d.model.heads import EIGEN_SQUARINGS, rotation_from_9d, rotation_from_9d_eigen


def spread(err: torch.Tensor) -> dict:
    return {"median": err.median().item(), "p99.9": err.quantile(0.999).item(), "max": err.max().item(),
            "finite": bool(torch.isfinite(err).all())}


def cases(n: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    rotations = rotation_from_9d(torch.randn(n, 3, 3, generator=g, dtype=torch.float64)).float()
    return {"anything": torch.randn(n, 3, 3, generator=g),
            "near a rotation (0.05)": rotations + 0.05 * torch.randn(n, 3, 3, generator=g),
            "near a rotation (0.001)": rotations + 0.001 * torch.randn(n, 3, 3, generator=g)}


def value_error(fn, m: torch.Tensor, ref: torch.Tensor) -> dict:
    return spread((fn(m).double() - ref).abs().amax((1, 2)))


def gradient_error(fn, m: torch.Tensor, ref: torch.Tensor, weights: torch.Tensor) -> dict:
    m = m.clone().requires_grad_(True)
    (fn(m) * weights.to(m.dtype)).sum().backward()
    return spread((m.grad.double() - ref).norm(dim=(1, 2)) / ref.norm(dim=(1, 2)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--squarings", type=int, nargs="*", default=[8, 12, 16, 20])
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    rows = []
    weights = torch.randn(args.samples, 3, 3, generator=torch.Generator().manual_seed(1))
    for name, m in cases(args.samples).items():
        m64 = m.double().requires_grad_(True)
        ref = rotation_from_9d(m64)
        (ref * weights.double()).sum().backward()
        ref, ref_grad = ref.detach(), m64.grad
        methods = {"svd fp32": rotation_from_9d}
        for k in args.squarings:
            methods[f"eigen fp32, {k} squarings"] = functools.partial(rotation_from_9d_eigen, squarings=k)
        for label, fn in methods.items():
            row = {"inputs": name, "method": label, "value_error": value_error(fn, m, ref),
                   "gradient_error": gradient_error(fn, m, ref_grad, weights)}
            rows.append(row)
            print(f"{name:24s} {label:26s} value: median {row['value_error']['median']:.1e} max "
                  f"{row['value_error']['max']:.1e}; gradient: median {row['gradient_error']['median']:.1e} max "
                  f"{row['gradient_error']['max']:.1e}", flush=True)
    if args.json:
        result = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "command": " ".join(sys.argv),
                  "torch": torch.__version__, "samples": args.samples, "default_squarings": EIGEN_SQUARINGS,
                  "rows": rows}
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
