"""The fast path (``LoGeR.set_fast_path``: compiled blocks and TTT layers, attention backend choice)
against the eager path on the CPU, and the uint8 input route.

The fast path is a different summation order, so it is compared within a tolerance; what
follows a chunk through the TTT memory is compared given the same memory, because with the
release's numerics the memory's bf16 Newton–Schulz step turns any rounding difference into a
bf16-sized step (benchmarks/results/fast_path/ measures the whole sequence on the GPU).
"""

import pytest
import torch

from .conftest import random_images, seeded_model


def rel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return ((a - b).abs() / (b.abs() + 1e-3)).flatten()


def assert_close_outputs(out, ref, p99: float, worst: float) -> None:
    for key in ("points", "local_points", "conf", "camera_poses"):
        r = rel(getattr(out, key), getattr(ref, key))
        assert torch.isfinite(r).all(), key
        assert torch.quantile(r, 0.99) < p99, (key, torch.quantile(r, 0.99).item())
        assert r.max() < worst, (key, r.max().item())


@pytest.fixture(scope="module")
def chunks():
    """Eager outputs of three chunks (8, 5 and 3 frames) and the memory before each."""
    model = seeded_model("tiny", 0)
    images = [random_images(n, 56, 84, seed=n, batch=1) for n in (8, 5, 3)]
    memories, outputs, memory = [], [], None
    with torch.no_grad():
        for x in images:
            memories.append(memory)
            pred, memory = model.forward_chunk(x, memory)
            outputs.append(pred)
    return model, images, memories, outputs


def test_compiled_chunks_match_eager_given_the_same_memory(chunks):
    model, images, memories, outputs = chunks
    counters = torch._dynamo.utils.counters["stats"]
    try:
        model.set_fast_path(attention="flash", sync_free=False)  # the camera head's rotations: test_camera_rotation
        with torch.no_grad():
            for x, memory, ref in zip(images[:2], memories, outputs):
                pred, _ = model.forward_chunk(x, memory)
                assert_close_outputs(pred, ref, p99=1e-4, worst=2e-2)
            graphs = counters["unique_graphs"]
            # A shorter chunk with memory reuses the compiled graphs (token counts are symbolic).
            pred, _ = model.forward_chunk(images[2], memories[2])
            assert counters["unique_graphs"] == graphs
            assert_close_outputs(pred, outputs[2], p99=1e-4, worst=2e-2)
    finally:
        model.set_fast_path(False)


def test_turning_the_fast_path_off_restores_the_eager_bits(chunks):
    model, images, memories, outputs = chunks
    model.set_fast_path(compile=False)  # attention backends only; on the CPU the math kernel still serves
    model.set_fast_path(False)
    assert not any(getattr(m, "compiled", False) for m in model.modules())
    with torch.no_grad():
        pred, _ = model.forward_chunk(images[1], memories[1])
    for key in ("points", "conf", "camera_poses"):
        assert torch.equal(getattr(pred, key), getattr(outputs[1], key)), key


def test_fast_path_rejects_unknown_attention(tiny_model):
    with pytest.raises(ValueError, match="attention must be"):
        tiny_model.set_fast_path(attention="xformers")


def test_cuda_graphs_are_an_option_of_the_compiled_layers_only(tiny_model):
    """``cuda_graphs`` reaches every compiled layer (blocks, TTT, the gating) and nothing when compiling is off;
    the graph-replaying code is compiled apart from the plain compiled code (compilation itself is lazy)."""
    from loger3d.model.compiled import compiled
    from loger3d.model.ttt import apply_fast_weights

    def flags(model):
        return {m.cuda_graphs for m in model.modules() if hasattr(m, "cuda_graphs")}

    assert flags(tiny_model.set_fast_path(cuda_graphs=True)) == {True}
    assert flags(tiny_model.set_fast_path(compile=False, cuda_graphs=True)) == {False}
    assert flags(tiny_model.set_fast_path(False)) == {False}
    assert compiled(apply_fast_weights, cuda_graphs=True) is not compiled(apply_fast_weights)
    assert compiled(apply_fast_weights) is compiled(apply_fast_weights)


def test_uint8_frames_equal_float_frames(tiny_model):
    frames = torch.randint(0, 256, (1, 4, 3, 42, 56), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a, _ = tiny_model.forward_chunk(frames)
        b, _ = tiny_model.forward_chunk(frames.float() / 255)
    for key in ("points", "conf", "camera_poses"):
        assert torch.equal(getattr(a, key), getattr(b, key)), key
    with pytest.raises(ValueError, match="uint8"):
        tiny_model.forward_chunk(frames.to(torch.int32))


@pytest.mark.parametrize("layer", ["block", "ttt"])
def test_activation_checkpointing_recomputes_through_the_compiled_layer(layer, monkeypatch):
    """Checkpointing keeps the fast path: the forward and the backward's recomputation both run the compiled
    function (so large micro-batches can train compiled), with the gradients of the compiled layer alone."""
    from loger3d.model import blocks, ttt

    calls = []
    module = blocks if layer == "block" else ttt
    real = module.compiled

    def counting(fn, **options):
        compiled_fn = real(fn, **options)
        return lambda *args, **kwargs: calls.append(fn) or compiled_fn(*args, **kwargs)

    monkeypatch.setattr(module, "compiled", counting)
    torch.manual_seed(0)
    if layer == "block":
        net = blocks.Block(32, 2, qk_norm=True, layer_scale=0.1)
        x = torch.randn(3, 10, 32)
    else:
        net = ttt.FastWeightMemory(32, 16, 2, pre_norm=True)
        x = torch.randn(1, 3, 10, 32)
    net.train().compiled = True

    def grads(checkpointing: bool) -> list[torch.Tensor]:
        net.zero_grad()
        net.activation_checkpointing = checkpointing
        out = net(x) if layer == "block" else net(x, None)[0]
        out.square().sum().backward()
        return [p.grad.clone() for p in net.parameters() if p.grad is not None]

    plain = grads(False)
    assert len(calls) == 1
    checkpointed = grads(True)
    assert len(calls) == 3  # its forward and its recomputation in the backward
    for a, b in zip(plain, checkpointed, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
