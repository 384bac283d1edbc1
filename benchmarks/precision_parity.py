"""How far the GPU paths are from the fp32 oracle: fp32 and bf16 on CUDA, full-size seeded weights.

1. The golden cases (official outputs, CPU fp32) rerun on CUDA in fp32 and in bf16.
2. A realistic input (N frames at 280x504, window 32, overlap 3) in bf16 against CUDA fp32.
With --fast, both also run the fast path (bf16, ``set_fast_path``: cuDNN attention, compiled
blocks) and compare it with the CUDA fp32 eager path, the oracle, and with the bf16 eager path.

Writes JSON to --out and prints a table. Needs a CUDA GPU; no download (seeded weights).
    python benchmarks/precision_parity.py --out results.json
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import torch

import loger3d
from loger3d.seeded import fill_seeded_

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ["loger_w3o1_none", "loger_star_w4o2_se3", "loger_w3o1_sim3_reset2"]


def rel_stats(a: torch.Tensor, b: torch.Tensor) -> dict:
    """|a-b|/(|b|+1e-3) at the 50th, 99th percentile and maximum (b is the reference)."""
    rel = ((a.double() - b.double()).abs() / (b.double().abs() + 1e-3)).flatten()
    if rel.numel() > 10_000_000:
        rel = rel[torch.randperm(rel.numel(), generator=torch.Generator().manual_seed(0))[:10_000_000]]
    q = torch.quantile(rel, torch.tensor([0.5, 0.99], dtype=rel.dtype))
    return {"p50": q[0].item(), "p99": q[1].item(), "max": rel.max().item()}


def pose_stats(a: torch.Tensor, b: torch.Tensor) -> dict:
    """Rotation angle between estimates (degrees) and translation error relative to the trajectory extent."""
    ra, rb = a[..., :3, :3].double(), b[..., :3, :3].double()
    cos = ((ra.transpose(-1, -2) @ rb).diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2
    ang = torch.rad2deg(torch.arccos(cos.clamp(-1, 1)))
    ta, tb = a[..., :3, 3].double(), b[..., :3, 3].double()
    extent = (tb - tb.mean(dim=-2, keepdim=True)).norm(dim=-1).max().clamp_min(1e-9)
    terr = (ta - tb).norm(dim=-1) / extent
    return {"rot_deg_p99": torch.quantile(ang.flatten(), 0.99).item(), "rot_deg_max": ang.max().item(),
            "trans_rel_p99": torch.quantile(terr.flatten(), 0.99).item(), "trans_rel_max": terr.max().item()}


def compare(out, ref) -> dict:
    return {
        "points": rel_stats(out["points"], ref["points"]),
        "local_points": rel_stats(out["local_points"], ref["local_points"]),
        "conf_logit": rel_stats(out["conf"], ref["conf"]),
        "conf_sigmoid_abs_max": (torch.sigmoid(out["conf"].double()) - torch.sigmoid(ref["conf"].double()))
        .abs().max().item(),
        "camera_poses": rel_stats(out["camera_poses"], ref["camera_poses"]),
        "poses": pose_stats(out["camera_poses"], ref["camera_poses"]),
    }


def build(preset: str, seed: int, device: str) -> loger3d.LoGeR:
    return fill_seeded_(loger3d.build_model(preset, device="meta"), seed).to(device).eval()


def run(model, images, **kw):
    with torch.no_grad():
        out = model(images, **kw)
    torch.cuda.synchronize()
    return {k: out[k].float() for k in ("points", "local_points", "conf", "camera_poses")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--frames", type=int, default=96)
    parser.add_argument("--fast", action="store_true", help="also measure the fast path")
    args = parser.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False  # the fp32 path is the oracle: no tf32 anywhere
    torch.backends.cudnn.allow_tf32 = False
    device = "cuda"
    report = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "python": platform.python_version(),
              "date": time.strftime("%Y-%m-%d"), "golden": {}, "realistic": {}}

    for case in GOLDEN:
        golden = torch.load(ROOT / "tests" / "data" / f"{case}.pt")
        c = golden["case"]
        ref = {k: v.unsqueeze(0) for k, v in golden["outputs"].items()}
        kw = dict(window_size=c["window"], overlap_size=c["overlap"], align=c["align"], reset_every=c["reset_every"])
        model = build(c["preset"], c["weight_seed"], device)
        fp32 = run(model, golden["images"], **kw)
        model.set_precision(torch.bfloat16)
        bf16 = run(model, golden["images"], **kw)
        report["golden"][case] = {"cuda_fp32_vs_official_cpu": compare(fp32, ref),
                                  "cuda_bf16_vs_official_cpu": compare(bf16, ref)}
        if args.fast:
            model.set_fast_path()
            fast = run(model, golden["images"], **kw)
            report["golden"][case].update(cuda_bf16_vs_cuda_fp32=compare(bf16, fp32),
                                          cuda_fast_vs_cuda_fp32=compare(fast, fp32),
                                          cuda_fast_vs_cuda_bf16=compare(fast, bf16))
        del model
        torch.cuda.empty_cache()

    n, h, w = args.frames, 280, 504
    g = torch.Generator().manual_seed(0)
    low = torch.rand(n, 3, h // 14, w // 14, generator=g)
    images = torch.nn.functional.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)
    images = (images + 0.05 * torch.randn(n, 3, h, w, generator=g)).clamp(0, 1)
    for preset, align in (("loger", "none"), ("loger_star", "se3")):
        model = build(preset, 0, device)
        kw = dict(window_size=32, overlap_size=3, align=align)
        t0 = time.perf_counter()
        fp32 = run(model, images, **kw)
        t_fp32 = time.perf_counter() - t0
        model.set_precision(torch.bfloat16)
        run(model, images[:8], **kw)  # warm-up of the bf16 kernels
        t0 = time.perf_counter()
        bf16 = run(model, images, **kw)
        t_bf16 = time.perf_counter() - t0
        report["realistic"][preset] = {"frames": n, "size": [h, w], "align": align, **kw,
                                       "bf16_vs_cuda_fp32": compare(bf16, fp32),
                                       "seconds_fp32": t_fp32, "seconds_bf16": t_bf16,
                                       "peak_gib": torch.cuda.max_memory_allocated() / 2**30}
        if args.fast:
            model.set_fast_path()
            run(model, images[:64], **kw)  # warm-up: compiles the first chunk, one with memory, a shorter one
            t0 = time.perf_counter()
            fast = run(model, images, **kw)
            report["realistic"][preset].update(fast_vs_cuda_fp32=compare(fast, fp32), fast_vs_bf16=compare(fast, bf16),
                                               seconds_fast=time.perf_counter() - t0)
        del model
        torch.cuda.empty_cache()

    Path(args.out).write_text(json.dumps(report, indent=1))
    print(f"{'case':42s} {'output':14s} {'p99 rel':>10s} {'max rel':>10s}")
    for case, r in report["golden"].items():
        for mode, s in r.items():
            for key in ("points", "conf_logit", "camera_poses"):
                print(f"{case + ' ' + mode:42.42s} {key:14s} {s[key]['p99']:10.2e} {s[key]['max']:10.2e}")
    for preset, r in report["realistic"].items():
        for mode in ("bf16_vs_cuda_fp32", "fast_vs_cuda_fp32", "fast_vs_bf16"):
            if mode not in r:
                continue
            s = r[mode]
            for key in ("points", "conf_logit", "camera_poses"):
                print(f"{preset + ' realistic ' + mode:42.42s} {key:14s} {s[key]['p99']:10.2e} {s[key]['max']:10.2e}")
            print(f"{preset} {mode}: poses {s['poses']}")
        print(f"{preset}: fp32 {r['seconds_fp32']:.1f}s, bf16 {r['seconds_bf16']:.1f}s, "
              f"fast {r.get('seconds_fast', float('nan')):.1f}s")
    finite = [v for r in report["realistic"].values() for v in r["bf16_vs_cuda_fp32"]["points"].values()]
    assert all(math.isfinite(v) for v in finite)


if __name__ == "__main__":
    main()
