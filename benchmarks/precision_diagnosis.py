"""Where GPU-vs-CPU and bf16-vs-fp32 differences come from (full-size seeded weights).

Hypothesis: the fast-weight update's Newton-Schulz step, which always rounds to bf16, turns any
last-bit difference into a visible one, chunk after chunk. Test: rerun with that step in fp32
("ns_fp32": ``LoGeR.set_newton_schulz_dtype(torch.float32)``, not the official numerics) and with
the TTT gates at zero.

    python benchmarks/precision_diagnosis.py --out diagnosis.json
"""

from __future__ import annotations

import argparse
import json
import time
from contextlib import contextmanager
from pathlib import Path

import torch

import loger3d
from loger3d.seeded import fill_seeded_

ROOT = Path(__file__).resolve().parents[1]
KEYS = ("points", "local_points", "conf", "camera_poses")


@contextmanager
def newton_schulz_in(model, dtype: torch.dtype | None):
    """Run the model's Newton-Schulz step in ``dtype`` (None: the official bf16), then restore bf16."""
    model.set_newton_schulz_dtype(dtype or torch.bfloat16)
    try:
        yield
    finally:
        model.set_newton_schulz_dtype(torch.bfloat16)


def p99_rel(a, b) -> float:
    rel = ((a.double() - b.double()).abs() / (b.double().abs() + 1e-3)).flatten()
    if rel.numel() > 5_000_000:
        rel = rel[torch.randperm(rel.numel(), generator=torch.Generator().manual_seed(0))[:5_000_000]]
    return torch.quantile(rel, 0.99).item()


def run(model, images, device, **kw):
    with torch.no_grad():
        out = model.to(device)(images, **kw)
    return {k: out[k].float().cpu() for k in KEYS}


def summary(a, b) -> dict:
    return {k: p99_rel(a[k], b[k]) for k in KEYS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--frames", type=int, default=64)
    args = parser.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    report = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "date": time.strftime("%Y-%m-%d")}

    # 1. CPU vs CUDA, fp32, on the first golden case: official bf16 NS, then fp32 NS.
    golden = torch.load(ROOT / "tests" / "data" / "loger_w3o1_none.pt")
    c = golden["case"]
    kw = dict(window_size=c["window"], overlap_size=c["overlap"], align=c["align"])
    model = fill_seeded_(loger3d.build_model("loger", device="meta"), c["weight_seed"]).eval()
    cpu_vs_cuda = {}
    for label, ns in (("ns_bf16_official", None), ("ns_fp32", torch.float32)):
        with newton_schulz_in(model, ns):
            cpu = run(model, golden["images"], "cpu", **kw)
            cuda = run(model, golden["images"], "cuda", **kw)
        cpu_vs_cuda[label] = summary(cuda, cpu)
        model.to("cpu")
    report["golden_cpu_vs_cuda_fp32_p99"] = cpu_vs_cuda

    # 2. bf16 vs fp32 on CUDA, realistic input: official, NS in fp32 for both, TTT gates off.
    n, h, w = args.frames, 280, 504
    g = torch.Generator().manual_seed(0)
    low = torch.rand(n, 3, h // 14, w // 14, generator=g)
    images = torch.nn.functional.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)
    images = (images + 0.05 * torch.randn(n, 3, h, w, generator=g)).clamp(0, 1)
    kw = dict(window_size=32, overlap_size=3, align="none")
    seeded = fill_seeded_(loger3d.build_model("loger", device="meta"), 0).eval()
    state = {k: v.clone() for k, v in seeded.state_dict().items()}
    variants = {}
    for label, ns, gates_off in (("official", None, False), ("ns_fp32", torch.float32, False),
                                 ("ttt_gates_off", None, True)):
        seeded.load_state_dict(state)
        if gates_off:
            for gate in seeded.ttt_gate_projs:
                gate.weight.data.zero_()
                gate.bias.data.fill_(-30.0)  # silu(-30) ~ -3e-12: the TTT branch contributes nothing
        seeded.to("cuda")
        with newton_schulz_in(seeded, ns):
            fp32 = run(seeded, images, "cuda", **kw)
            seeded.set_precision(torch.bfloat16)
            bf16 = run(seeded, images, "cuda", **kw)
        seeded.to("cpu").float()
        variants[label] = summary(bf16, fp32)
    report["realistic_bf16_vs_fp32_p99"] = variants
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
