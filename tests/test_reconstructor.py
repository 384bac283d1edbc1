"""The streaming Reconstructor: same results as the whole-sequence forward whatever the push
sizes, bounded state, and a save/resume after any chunk that changes nothing."""

import pytest
import torch

from loger3d.inference.reconstructor import Reconstructor

from .conftest import random_images

KEYS = ("points", "local_points", "conf", "camera_poses")


def collect(parts):
    parts = sorted(parts, key=lambda p: p.start)
    for a, b in zip(parts, parts[1:]):
        assert b.start == a.stop  # finished frames come out in order, without gaps or repeats
    return {k: torch.cat([getattr(p.prediction, k) for p in parts], dim=1) for k in KEYS}


@pytest.mark.parametrize("n,window,overlap,align,reset_every,pushes", [
    (13, 5, 2, "none", 0, [1] * 13),
    (13, 5, 2, "sim3", 2, [13]),
    (11, 4, 1, "se3", 0, [3, 5, 3]),
    (8, 4, 1, "none", 3, [2, 6]),       # ends exactly on a chunk boundary
    (12, 4, 0, "se3", 0, [7, 5]),       # no overlap
    (9, 4, 1, "none", 2, [9]),          # reset without explicit alignment: SE(3) per reset block
])
def test_stream_equals_forward(tiny_model, n, window, overlap, align, reset_every, pushes):
    images = random_images(n, batch=1)
    with torch.no_grad():
        whole = tiny_model(images, window_size=window, overlap_size=overlap, align=align, reset_every=reset_every)
        stream = Reconstructor(tiny_model, window, overlap, align, reset_every)
        parts, pos = [], 0
        for size in pushes:
            parts += stream.push(images[:, pos:pos + size])
            pos += size
            assert stream.frames_finished == sum(p.prediction.num_frames for p in parts)
        parts += stream.finish()
    out = collect(parts)
    for key in KEYS:
        assert torch.equal(out[key], whole[key]), key
    assert out["points"].shape[1] == n


def test_state_stays_bounded(tiny_model):
    stream = Reconstructor(tiny_model, 4, 1)
    sizes = []
    with torch.no_grad():
        for i in range(8):
            stream.push(random_images(3, batch=1, seed=i))
            stream.flush()
            sizes.append(sum(v.numel() for v in stream.state_dict().values()))
    assert max(sizes[2:]) == min(sizes[2:])  # nothing accumulates with the stream's length


@pytest.mark.parametrize("stop_after", [1, 2, 3])
def test_resume_after_any_chunk_equals_uninterrupted(tiny_model, tmp_path, stop_after):
    n, window, overlap = 14, 5, 2
    images = random_images(n, batch=1)
    with torch.no_grad():
        plain = Reconstructor(tiny_model, window, overlap, "sim3", 2)
        reference = collect(plain.push(images) + plain.finish())

        first = Reconstructor(tiny_model, window, overlap, "sim3", 2)
        parts, pos = [], 0
        while first.chunks_run < stop_after:
            parts += first.push(images[:, pos:pos + 1])
            pos += 1
        parts += first.flush()
        first.save(tmp_path / "state.safetensors")
        del first  # the process dies here

        resumed = Reconstructor(tiny_model, window, overlap, "sim3", 2)
        resumed.load(tmp_path / "state.safetensors")
        assert resumed.frames_pushed == pos
        parts += resumed.push(images[:, pos:]) + resumed.finish()
    out = collect(parts)
    for key in KEYS:
        assert torch.equal(out[key], reference[key]), key


def test_resume_refuses_other_settings(tiny_model, tmp_path):
    stream = Reconstructor(tiny_model, 4, 1, "se3")
    with torch.no_grad():
        stream.push(random_images(5, batch=1))
        with pytest.raises(RuntimeError, match="flush"):
            stream.state_dict()
        stream.flush()
    stream.save(tmp_path / "s.safetensors")
    with pytest.raises(ValueError, match="same settings"):
        Reconstructor(tiny_model, 4, 2, "se3").load(tmp_path / "s.safetensors")


def test_bad_arguments(tiny_model):
    with pytest.raises(ValueError, match="window"):
        Reconstructor(tiny_model, 0, 0)
    with pytest.raises(ValueError, match="overlap"):
        Reconstructor(tiny_model, 4, 4)
    with pytest.raises(ValueError, match="align"):
        Reconstructor(tiny_model, 4, 1, "rigid")
    stream = Reconstructor(tiny_model, 4, 1)
    with torch.no_grad():
        stream.push(random_images(2, batch=1))
        with pytest.raises(ValueError, match="do not match"):
            stream.push(random_images(2, h=56, batch=1))


def test_a_chunk_is_finalised_when_the_next_is_launched_or_flushed(tiny_model):
    stream = Reconstructor(tiny_model, 4, 1)
    with torch.no_grad():
        assert stream.push(random_images(4, batch=1)) == []  # launched, in flight
        assert stream.frames_finished == 0
        first = stream.push(random_images(3, batch=1, seed=1))  # the next chunk launches: the first is final
        assert [(p.start, p.stop) for p in first] == [(0, 3)]
        flushed = stream.flush()
        assert [(p.start, p.stop) for p in flushed] == [(3, 6)] and stream.frames_finished == 6
        assert stream.flush() == []
        assert [(p.start, p.stop) for p in stream.finish()] == [(6, 7)]
