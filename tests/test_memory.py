"""ChunkMemory and forward_chunk: streaming equals the whole-sequence forward; reset, detach,
device moves, save/load; batch elements never interact; bad input is refused."""

from dataclasses import replace

import pytest
import torch

from loger3d.model.align import ChunkAligner
from loger3d.model.loger import LoGeR
from loger3d.model.memory import ChunkMemory
from loger3d.model.windows import frame_roles, plan_windows

from .conftest import random_images


def stream(model, images, window, overlap, align="none", reset_every=0, memory_roundtrip=None):
    """Drive forward_chunk by hand over plan_windows (independently of the Reconstructor)."""
    windows = plan_windows(images.shape[1], window, overlap)
    aligner = ChunkAligner(align, reset_every, overlap if len(windows) > 1 else 0)
    memory, parts = None, []
    for w in windows:
        if reset_every and w.index and w.index % reset_every == 0:
            memory = memory.reset_fast_weights()
        pred, memory = model.forward_chunk(images[:, w.start:w.end], memory, frame_roles(w.size, window, overlap))
        if memory_roundtrip is not None:
            memory = memory_roundtrip(memory)
        if len(windows) > 1:
            pred, _ = aligner(w.index, pred)
        parts.append(pred.frames(0, w.keep_end - w.start))
    return {k: torch.cat([getattr(p, k) for p in parts], dim=1) for k in ("points", "local_points", "conf",
                                                                         "camera_poses")}


@pytest.mark.parametrize("align,reset_every", [("none", 0), ("se3", 0), ("sim3", 2), ("none", 2)])
def test_streaming_equals_forward(tiny_model, align, reset_every):
    images = random_images(11, batch=1)
    with torch.no_grad():
        whole = tiny_model(images, window_size=4, overlap_size=1, align=align, reset_every=reset_every)
        streamed = stream(tiny_model, images, 4, 1, align, reset_every)
    for key, value in streamed.items():
        assert torch.equal(value, whole[key]), key
    assert whole.points.shape == (1, 11, 42, 56, 3)


def test_memory_save_load_roundtrip(tiny_model, tmp_path):
    images = random_images(9, batch=1)

    def roundtrip(memory):
        path = tmp_path / "memory.safetensors"
        memory.save(path)
        return ChunkMemory.load(path)

    with torch.no_grad():
        plain = stream(tiny_model, images, 4, 1)
        resumed = stream(tiny_model, images, 4, 1, memory_roundtrip=roundtrip)
    for key in plain:
        assert torch.equal(plain[key], resumed[key]), key
    assert not list(tmp_path.glob("*.tmp"))


def test_memory_contents_and_reset(tiny_model):
    images = random_images(4, batch=2)
    with torch.no_grad():
        _, memory = tiny_model.forward_chunk(images, None, [0, 1, 1, 2])
    cfg = tiny_model.config
    heads = cfg.dec_dim // cfg.ttt_head_dim
    assert len(memory.fast_weights) == len(cfg.ttt_insert_after)
    assert len(memory.kv_caches) == len(cfg.swa_insert_after)
    assert memory.chunks_seen == 1
    w = memory.fast_weights[0]
    assert w.w0.shape == (2 * heads, cfg.ttt_head_dim, cfg.ttt_head_dim * cfg.ttt_inter_multi)
    tokens = 4 * (cfg.num_special_tokens + 3 * 4)
    assert memory.kv_caches[0].k.shape == (2, cfg.dec_heads, tokens, cfg.dec_dim // cfg.dec_heads)
    reset = memory.reset_fast_weights()
    assert all(s is None for s in reset.fast_weights)  # back to the layers' parameters
    assert all(c is not None for c in reset.kv_caches)  # the sliding window is kept
    assert reset.kv_caches[0].k is memory.kv_caches[0].k and memory.fast_weights[0] is not None
    assert memory.nbytes > reset.nbytes > 0


def test_reset_chunk_equals_fresh_weights_with_kept_cache(tiny_model):
    """After a reset the fast weights are the parameters; the SWA cache still matters."""
    a, b = random_images(4, batch=1, seed=1), random_images(4, batch=1, seed=2)
    with torch.no_grad():
        _, memory = tiny_model.forward_chunk(a)
        after_reset, _ = tiny_model.forward_chunk(b, memory.reset_fast_weights())
        cache_only = ChunkMemory([None] * len(memory.fast_weights), memory.kv_caches, 1)
        same, _ = tiny_model.forward_chunk(b, cache_only)
        fresh, _ = tiny_model.forward_chunk(b)
        carried, _ = tiny_model.forward_chunk(b, memory)
    assert torch.equal(after_reset.points, same.points)
    assert not torch.allclose(after_reset.points, fresh.points)
    assert not torch.allclose(after_reset.points, carried.points)


def cut_copy(model, **carry):
    """``model`` with the same weights and some memory path cut (``carry_fast_weights``, ``carry_kv_caches``)."""
    cut = LoGeR(replace(model.config, **carry)).eval()
    cut.load_state_dict(model.state_dict())
    return cut.set_newton_schulz_dtype(model.newton_schulz_dtype)


def test_cut_memory_paths_equal_their_manual_resets(tiny_model):
    """Ablations cut the memory between chunks: without fast weights carried a chunk runs as after a reset;
    without SWA caches it runs as with none; with both cut it runs as a new sequence. One chunk alone, every
    variant is the same function (so they can share a first stage trained on one-chunk clips)."""
    a, b = random_images(4, batch=1, seed=1), random_images(4, batch=1, seed=2)
    no_ttt = cut_copy(tiny_model, carry_fast_weights=False)
    no_swa = cut_copy(tiny_model, carry_kv_caches=False)
    neither = cut_copy(tiny_model, carry_fast_weights=False, carry_kv_caches=False)
    with torch.no_grad():
        first, memory = tiny_model.forward_chunk(a)
        for cut in (no_ttt, no_swa, neither):
            alone, _ = cut.forward_chunk(a)
            assert torch.equal(alone.points, first.points) and torch.equal(alone.camera_poses, first.camera_poses)
        carried, _ = tiny_model.forward_chunk(b, memory)
        reset, _ = tiny_model.forward_chunk(b, memory.reset_fast_weights())
        no_cache, _ = tiny_model.forward_chunk(b, ChunkMemory(list(memory.fast_weights), [None] * 2, 1))
        fresh, _ = tiny_model.forward_chunk(b)
        for cut, expected in ((no_ttt, reset), (no_swa, no_cache), (neither, fresh)):
            _, cut_memory = cut.forward_chunk(a)
            second, _ = cut.forward_chunk(b, cut_memory)
            assert torch.equal(second.points, expected.points), cut.config
            assert not torch.allclose(second.points, carried.points)
    assert all(w is None for w in cut_memory.fast_weights) and all(c is None for c in cut_memory.kv_caches)
    assert no_ttt.forward_chunk(a)[1].kv_caches[0] is not None


def test_detach_cuts_the_graph(tiny_model):
    images = random_images(3, batch=1)
    _, memory = tiny_model.forward_chunk(images)
    assert memory.fast_weights[0].w0.requires_grad
    detached = memory.detach()
    assert not detached.fast_weights[0].w0.requires_grad and not detached.kv_caches[0].k.requires_grad
    moved = detached.to("cpu")
    assert torch.equal(moved.fast_weights[0].w1, memory.fast_weights[0].w1.detach())


def test_batch_elements_do_not_interact(tiny_model):
    """Changing element 0 of a batch leaves element 1's outputs bit-identical.

    (Comparing against a batch of one is looser: batched BLAS rounds differently, and the bf16
    Newton-Schulz step of the fast weights amplifies that to ~1e-3 relative after a chunk.)
    """
    images = random_images(7, batch=2)
    changed = images.clone()
    changed[0] = random_images(7, seed=5)
    with torch.no_grad():
        a = tiny_model(images, window_size=4, overlap_size=1, align="sim3")
        b = tiny_model(changed, window_size=4, overlap_size=1, align="sim3")
        single = tiny_model(images[1:], window_size=4, overlap_size=1, align="sim3")
    for key in ("points", "local_points", "conf", "camera_poses"):
        assert torch.equal(a[key][1], b[key][1]), key
        assert not torch.allclose(a[key][0], b[key][0]), key
    assert torch.equal(a.chunk_scales[1], b.chunk_scales[1])
    rel = (a.points[1:] - single.points).abs() / (single.points.abs() + 1e-3)
    assert rel.median() < 1e-3


def test_four_d_input_and_key_access(tiny_model):
    images = random_images(5)
    with torch.no_grad():
        out = tiny_model(images, window_size=3, overlap_size=1)
    assert out["camera_poses"].shape == (1, 5, 4, 4)
    assert set(out.keys()) >= {"points", "local_points", "conf", "camera_poses"}
    assert out.conf.shape == (1, 5, 42, 56, 1)
    R = out.camera_poses[0, :, :3, :3]
    torch.testing.assert_close(R @ R.transpose(-1, -2), torch.eye(3).expand(5, 3, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.det(R), torch.ones(5), atol=1e-5, rtol=0)


@pytest.mark.parametrize("images,match", [
    (torch.rand(2, 3, 40, 56), "multiple of 14"),
    (torch.rand(2, 4, 42, 56), r"\[B, N, 3, H, W\]"),
    (torch.randint(0, 9, (2, 3, 42, 56), dtype=torch.int16), "uint8"),
])
def test_bad_images_are_refused(tiny_model, images, match):
    with pytest.raises(ValueError, match=match):
        tiny_model.forward_chunk(images)


def test_bad_frame_roles(tiny_model):
    with pytest.raises(ValueError, match="frame_roles"):
        tiny_model.forward_chunk(random_images(3), None, [0, 1, 3])
