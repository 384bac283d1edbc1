"""RoPE2D against the closed form: rotate-half pairs, y on the first half, x on the second."""

import math

import torch

from loger3d.model.rope import RoPE2D, token_positions


def closed_form(tokens, positions, base=100.0):
    out = tokens.clone().double()
    d = tokens.shape[-1] // 2  # channels per axis
    half = d // 2
    for axis in range(2):
        for j in range(half):
            theta = positions[:, axis].double() * base ** (-j / half)
            a = tokens[..., axis * d + j].double()
            b = tokens[..., axis * d + half + j].double()
            out[..., axis * d + j] = a * torch.cos(theta) - b * torch.sin(theta)
            out[..., axis * d + half + j] = b * torch.cos(theta) + a * torch.sin(theta)
    return out


def test_positions_grid():
    pos = token_positions(2, 3, 6)
    assert pos.shape == (12, 2)
    assert pos[:6].abs().sum() == 0
    assert pos[6:].tolist() == [[1, 1], [1, 2], [1, 3], [2, 1], [2, 2], [2, 3]]


def test_rope_matches_closed_form():
    tokens = torch.randn(2, 3, 15, 64)
    pos = token_positions(3, 4, 3)
    got = RoPE2D(100.0)(tokens, pos)
    torch.testing.assert_close(got.double(), closed_form(tokens, pos), rtol=1e-5, atol=1e-5)
    # Special tokens sit at (0, 0): identity.
    assert torch.equal(got[:, :, :3], tokens[:, :, :3])


def test_rope_scores_depend_on_relative_position_only():
    rope = RoPE2D(100.0)
    q, k = torch.randn(1, 1, 1, 32).double(), torch.randn(1, 1, 1, 32).double()

    def score(pq, pk):
        return (rope(q, torch.tensor([pq])) * rope(k, torch.tensor([pk]))).sum()

    assert math.isclose(score((3, 5), (1, 2)), score((7, 9), (5, 6)), rel_tol=1e-5)  # fp32 angle table
    assert not math.isclose(score((3, 5), (1, 2)), score((3, 5), (2, 2)), rel_tol=1e-3)
