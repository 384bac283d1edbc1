"""Equivalence with the official release: seeded weights, golden outputs, CPU fp32 eager.

Tolerance (EQUIVALENCE.md): relative error |a-b|/(|b|+1e-3) below 1e-4 at the 99th percentile
and 1e-3 at the maximum for every output.

Two kinds of golden case:

- ``golden_ns_fp32/`` (always run, about 30 s each on two cores): the official code with only the
  TTT update's Newton–Schulz step moved to fp32. On a CPU whose fp32 kernels match the machine
  that made them (AVX2) our model matches them bit for bit. Elsewhere fp32 products still round
  differently in their last bit (MKL and oneDNN pick other kernels for AVX-512 / AMX), which the
  36 random-weight blocks amplify: on an Intel Xeon with AMX the first chunk, where the
  Newton–Schulz step plays no part, already differs, and the cases match at p99 7e-5 to 9e-5,
  with the largest relative errors (up to 0.06) at coordinates within 1e-4 of zero, where the
  1e-3 floor of the relative error makes the maximum a bit-exactness test. So the test demands
  the stated p99, and bounds the maximum against each output's scale: max |a-b| / rms(b) < 1e-3
  (measured there: at most 4.7e-4). ``LOGER3D_GOLDEN_EXACT=1`` demands the stated maximum as
  well, for a CPU of the reference's kind.
- The release's own numerics (Newton–Schulz in bf16). bf16 matrix products are computed by
  different kernels on different CPUs (native bf16 / AMX on recent Intel, an emulation about 50×
  slower on AVX2-only CPUs) and the iteration amplifies their last-bit differences, so these cases
  reproduce only where the bf16 kernels match the machine that made them (an Intel CPU with
  AVX512-BF16 / AMX), and take about 40 minutes each on an AVX2-only CPU. They are opt-in: run them
  with ``LOGER3D_GOLDEN_BF16=1 python -m pytest tests/test_golden.py`` on such a CPU, for example
  after touching the model's op order.
"""

import gc
import os
from pathlib import Path

import pytest
import torch

from loger3d.model.windows import plan_windows

from .conftest import random_images, seeded_model

DATA = Path(__file__).parent / "data"
NS_FP32_CASES = ["loger_w3o1_none_ns32", "loger_star_w4o2_se3_ns32"]
BF16_CASES = ["loger_w3o1_none", "loger_star_w4o2_se3", "loger_w3o1_sim3_reset2"]

bf16_golden = pytest.mark.skipif(
    os.environ.get("LOGER3D_GOLDEN_BF16") != "1",
    reason="release-numerics (bf16 Newton–Schulz) golden cases are opt-in: LOGER3D_GOLDEN_BF16=1, "
           "on a CPU with native bf16 (see this module's docstring)")


def relative_error(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return ((a.double() - b.double()).abs() / (b.double().abs() + 1e-3)).flatten()


def run_case(golden: dict, ns_dtype: torch.dtype):
    c = golden["case"]
    model = seeded_model(c["preset"], c["weight_seed"], newton_schulz=ns_dtype)
    with torch.no_grad():
        out = model(golden["images"], window_size=c["window"], overlap_size=c["overlap"], align=c["align"],
                    reset_every=c["reset_every"])
    del model
    gc.collect()
    return out


def assert_matches(out, golden: dict, scaled_max: bool = False) -> None:
    """EQUIVALENCE.md's tolerance; ``scaled_max`` bounds the maximum by the output's RMS instead (see above)."""
    c = golden["case"]
    for key, ref in golden["outputs"].items():
        got = out[key][0]
        assert got.shape == ref.shape, key
        rel = relative_error(got, ref)
        assert torch.quantile(rel, 0.99) < 1e-4, key
        if scaled_max:
            assert (got.double() - ref.double()).abs().max() / ref.double().pow(2).mean().sqrt() < 1e-3, key
        else:
            assert rel.max() < 1e-3, key
    if c["align"] != "none" or c["reset_every"]:
        chunks = len(plan_windows(c["n"], c["window"], c["overlap"]))
        assert out.chunk_transforms.shape == (1, chunks, 4, 4)
        assert out.alignment_mode == ("sim3" if c["align"] == "sim3" else "se3")


@pytest.mark.parametrize("case", NS_FP32_CASES)
def test_golden_case_newton_schulz_fp32(case):
    golden = torch.load(DATA / "golden_ns_fp32" / f"{case}.pt")
    c = golden["case"]
    assert c["ns_dtype"] == "fp32"
    # The stored images are the documented draw, so the case can be rebuilt from its parameters alone.
    assert torch.equal(golden["images"], random_images(c["n"], c["height"], c["width"], seed=c["image_seed"]))
    assert_matches(run_case(golden, torch.float32), golden, scaled_max=os.environ.get("LOGER3D_GOLDEN_EXACT") != "1")


@bf16_golden
@pytest.mark.parametrize("case", BF16_CASES)
def test_golden_case_release_numerics(case):
    golden = torch.load(DATA / f"{case}.pt")
    assert_matches(run_case(golden, torch.bfloat16), golden)


@bf16_golden
def test_newton_schulz_dtype_round_trip_restores_release_bits():
    """Switching to fp32 and back to bf16 gives the release's bits again on a bf16 golden case."""
    golden = torch.load(DATA / "loger_w3o1_none.pt")
    c = golden["case"]
    model = seeded_model(c["preset"], c["weight_seed"], newton_schulz=torch.float32)
    model.set_newton_schulz_dtype(torch.bfloat16)
    with torch.no_grad():
        out = model(golden["images"], window_size=c["window"], overlap_size=c["overlap"], align=c["align"])
    assert_matches(out, golden)
