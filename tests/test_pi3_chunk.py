"""The pi3 family: no pe tokens, no memory; one window, or chunks chained by SE(3)/Sim(3) (Pi3-Chunk)."""

from dataclasses import replace

import pytest
import torch

import loger3d
from loger3d.seeded import fill_seeded_

from .conftest import random_images

TINY_PI3 = replace(loger3d.PRESETS["tiny"], name="tiny_pi3", use_pe_tokens=False, ttt_insert_after=(),
                   swa_insert_after=(), legacy_svd=True)


@pytest.fixture(scope="module")
def pi3():
    return fill_seeded_(loger3d.build_model(TINY_PI3, device="meta"), 3).eval()


def test_pi3_has_no_memory(pi3):
    assert pi3.config.num_special_tokens == 5
    assert not any(k.startswith(("pe_token", "ttt_", "swa_")) for k in pi3.state_dict())
    memory = pi3.new_memory()
    assert memory.fast_weights == [] and memory.kv_caches == []


def test_chunks_are_independent_without_memory(pi3):
    images = random_images(7, batch=1)
    with torch.no_grad():
        chunked = pi3(images, window_size=4, overlap_size=1, align="none")
        first = pi3(images[:, :4], window_size=0, overlap_size=0)
        second = pi3(images[:, 3:], window_size=0, overlap_size=0)
    # With no memory and no alignment, each chunk is an independent Pi3 pass; overlap frames come
    # from the later chunk.
    torch.testing.assert_close(chunked.points[:, :3], first.points[:, :3], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(chunked.points[:, 3:], second.points, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("align", ["se3", "sim3"])
def test_pi3_chunk_chaining_puts_overlap_frames_on_their_previous_pose(pi3, align):
    images = random_images(7, batch=1)
    with torch.no_grad():
        out = pi3(images, window_size=4, overlap_size=1, align=align)
        first = pi3(images[:, :4], window_size=0, overlap_size=0)
    # Frame 3 is shared: its merged pose (from chunk 2, aligned) equals chunk 1's own pose of it.
    torch.testing.assert_close(out.camera_poses[:, 3], first.camera_poses[:, 3], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out.camera_poses[:, :3], first.camera_poses[:, :3], rtol=1e-4, atol=1e-4)
    assert out.chunk_transforms.shape == (1, 2, 4, 4)
    assert (out.chunk_scales is not None) == (align == "sim3")
