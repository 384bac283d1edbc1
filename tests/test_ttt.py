"""TTT fast weights: the hand-written update against autograd, Newton-Schulz, apply-then-update."""

import pytest
import torch

from loger3d.model.memory import FastWeights
from loger3d.model.ttt import (
    FastWeightMemory,
    apply_fast_weights,
    fast_weight_gradients,
    newton_schulz5,
    newton_schulz5_together,
    update_fast_weights,
)

from .conftest import seeded_model


def random_problem(n=2, L=9, d=8, dh=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = FastWeights(*(torch.randn(n, *s, generator=g, dtype=torch.float64) / s[0] ** 0.5
                      for s in ((d, dh), (dh, d), (d, dh))))
    k = torch.nn.functional.normalize(torch.randn(n, L, d, generator=g, dtype=torch.float64), dim=-1)
    v = torch.randn(n, L, d, generator=g, dtype=torch.float64)
    lrs = [torch.rand(n, L, 1, generator=g, dtype=torch.float64) * 0.1 for _ in range(3)]
    return w, k, v, lrs


def test_gradients_equal_autograd_of_the_objective():
    w, k, v, (lr0, lr1, lr2) = random_problem()
    got = fast_weight_gradients(w, k, v, lr0, lr1, lr2)
    for index, lr in enumerate((lr0, lr1, lr2)):
        params = [t.clone().requires_grad_(True) for t in (w.w0, w.w1, w.w2)]
        out = apply_fast_weights(FastWeights(*params), k)
        objective = (lr * (out * v).sum(-1, keepdim=True)).sum()  # Σ_t η_t <f_W(k_t), v_t>
        objective.backward()
        torch.testing.assert_close(got[index], params[index].grad, rtol=1e-10, atol=1e-12)


def test_newton_schulz_orthogonalises():
    g = torch.randn(3, 64, 16, generator=torch.Generator().manual_seed(1))
    x = newton_schulz5(g, 5)
    assert x.dtype == torch.bfloat16 and x.shape == g.shape
    s = torch.linalg.svdvals(x.float())
    assert s.min() > 0.5 and s.max() < 1.5  # singular values pushed towards one
    # Same direction of ascent: positive inner product with the raw gradient.
    assert ((x.float() * g).sum(dim=(1, 2)) > 0).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(6, 64, 256), (2, 16, 64), (3, 32, 32)])
def test_newton_schulz_together_equals_each_alone(dtype, shape):
    """W0's and W2's steps (wide, one shape) share one iteration, for fewer kernel launches; each result must
    be its own bit for bit."""
    g = torch.Generator().manual_seed(4)
    first, second = torch.randn(*shape, generator=g), torch.randn(*shape, generator=g)
    together = newton_schulz5_together([first, second], 5, dtype)
    assert all(torch.equal(a, newton_schulz5(b, 5, dtype)) for a, b in zip(together, (first, second)))


def test_update_keeps_column_norms_and_ascends():
    w, k, v, lrs = random_problem(n=1, L=64, d=16, dh=32, seed=2)
    w = w.map(lambda t: t.float())
    k, v, lrs = k.float(), v.float(), [t.float() for t in lrs]
    new = update_fast_weights(w, k, v, *lrs, ns_steps=5)
    for before, after in zip((w.w0, w.w1, w.w2), (new.w0, new.w1, new.w2)):
        torch.testing.assert_close(after.norm(dim=1), before.norm(dim=1), rtol=1e-4, atol=1e-5)
        assert not torch.allclose(after, before)

    def objective(fw):
        return ((apply_fast_weights(fw, k) * v).sum(-1) * lrs[1][..., 0]).sum()

    assert objective(new) > objective(w)


def test_layer_applies_before_updating():
    torch.manual_seed(0)
    layer = FastWeightMemory(dim=32, head_dim=16, inter_multi=2, pre_norm=True)
    x = torch.randn(1, 2, 5, 32)
    out_fresh, state = layer(x, None)
    # The output uses the incoming weights: feeding the initial weights explicitly gives the same output.
    out_explicit, _ = layer(x, layer.initial_state(1))
    assert torch.equal(out_fresh, out_explicit)
    # The emitted state differs from the parameters, and changes the next output.
    assert not torch.allclose(state.w0, layer.initial_state(1).w0)
    out_next, _ = layer(x, state)
    assert not torch.allclose(out_next, out_fresh)
    assert state.w0.shape == (2, 16, 32) and state.w1.shape == (2, 32, 16)


def test_layer_without_update_gives_the_same_output_and_keeps_the_state():
    """Where nothing carries the fast weights on (``carry_fast_weights`` off), the update is skipped: the output
    is unchanged and the incoming state comes back as it was, ``None`` included."""
    torch.manual_seed(0)
    layer = FastWeightMemory(dim=32, head_dim=16, inter_multi=2, pre_norm=True)
    x = torch.randn(1, 2, 5, 32)
    out, state = layer(x, None)
    kept_out, kept = layer(x, None, update=False)
    assert torch.equal(kept_out, out) and kept is None
    out_next, _ = layer(x, state)
    kept_out, kept = layer(x, state, update=False)
    assert torch.equal(kept_out, out_next) and kept is state


def test_batch_elements_are_independent_problems():
    torch.manual_seed(0)
    layer = FastWeightMemory(dim=32, head_dim=16, inter_multi=2, pre_norm=False)
    x = torch.randn(2, 2, 5, 32)
    out, state = layer(x, None)
    out1, state1 = layer(x[1:], None)
    torch.testing.assert_close(out[1:], out1, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(state.w0[2:], state1.w0, rtol=1e-4, atol=1e-5)


def test_newton_schulz_runs_in_its_dtype_under_autocast():
    g = torch.randn(2, 32, 48, generator=torch.Generator().manual_seed(3))
    plain = newton_schulz5(g, 5, torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = newton_schulz5(g, 5, torch.float32)
    assert under_autocast.dtype == torch.float32
    assert torch.equal(under_autocast, plain)


def test_set_newton_schulz_dtype_round_trips():
    tiny_model = seeded_model("tiny", 0, newton_schulz=torch.bfloat16)
    images = torch.rand(5, 3, 28, 42, generator=torch.Generator().manual_seed(4))

    def run():
        with torch.no_grad():
            return tiny_model(images, window_size=3, overlap_size=1).points

    assert tiny_model.newton_schulz_dtype == torch.bfloat16  # the release's numerics by default
    release = run()
    assert tiny_model.set_newton_schulz_dtype(torch.float32) is tiny_model
    assert all(layer.ns_dtype == torch.float32 for layer in tiny_model.ttt_layers)
    fp32 = run()
    assert not torch.equal(fp32, release)
    tiny_model.set_newton_schulz_dtype(torch.bfloat16)
    assert torch.equal(run(), release)
    with pytest.raises(ValueError, match="Newton–Schulz dtype"):
        tiny_model.set_newton_schulz_dtype(torch.int8)
