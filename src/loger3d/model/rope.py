"""2D rotary position embedding (RoPE2D) and the token position grid of the decoder.

Per attention head, the first half of the channels is rotated by the token's row (y) and the
second half by its column (x); within each half the pairing is rotate-half (not interleaved).
Patch (r, c) sits at position (r + 1, c + 1); the special tokens sit at (0, 0), where the
rotation is the identity.

A chunk's rotations are gathered once into a ``RotaryTable`` (``RoPE2D.table``) and shared by
every block that sees those tokens; passing raw positions to ``RoPE2D`` builds one on the fly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["RoPE2D", "RotaryTable", "token_positions"]


def token_positions(h: int, w: int, num_special: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Integer positions ``[num_special + h*w, 2]`` as (y, x): specials at 0, patch (r, c) at (r+1, c+1)."""
    ys = torch.arange(h, device=device)
    xs = torch.arange(w, device=device)
    grid = torch.cartesian_prod(ys, xs) + 1  # row-major, like the patch flattening
    special = torch.zeros(num_special, 2, dtype=grid.dtype, device=device)
    return torch.cat([special, grid], dim=0)


def _rotate_halves(t: torch.Tensor) -> torch.Tensor:
    """Rotate-half within each of the two axis halves: ``[a, b | c, d] → [-b, a | -d, c]``."""
    first, second = t.unflatten(-1, (2, 2, -1)).unbind(-2)
    return torch.stack([-second, first], dim=-2).flatten(-3)


@dataclass(frozen=True)
class RotaryTable:
    """Per-token rotations of one head width: ``cos``, ``sin`` ``[L, D]`` in the tokens' dtype.

    Channels ``[:D/2]`` carry the y angles, ``[D/2:]`` the x angles, each half in rotate-half layout.
    """

    cos: torch.Tensor
    sin: torch.Tensor

    def repeat(self, times: int) -> RotaryTable:
        """The table of ``times`` consecutive copies of the tokens (a chunk's frames side by side)."""
        return RotaryTable(self.cos.repeat(times, 1), self.sin.repeat(times, 1))

    def rotate(self, tokens: torch.Tensor) -> torch.Tensor:
        """Rotate queries or keys ``[..., L, D]``."""
        return tokens * self.cos + _rotate_halves(tokens) * self.sin


class RoPE2D(nn.Module):
    """Rotates queries or keys ``[B, heads, L, D]`` by positions ``[L, 2]`` or a prepared ``RotaryTable``."""

    def __init__(self, freq: float = 100.0) -> None:
        super().__init__()
        self.freq = freq

    def table(self, positions: torch.Tensor, head_dim: int, dtype: torch.dtype,
              max_position: int | None = None) -> RotaryTable:
        """Gather the rotations of ``positions`` ``[L, 2]`` for heads of width ``head_dim``.

        ``max_position`` (the largest coordinate, when the caller knows it) spares a device sync.
        """
        if max_position is None:
            max_position = int(positions.max())
        dim = head_dim // 2  # channels per axis
        inv_freq = 1.0 / (self.freq ** (torch.arange(0, dim, 2, device=positions.device).float() / dim))
        t = torch.arange(max_position + 1, device=positions.device, dtype=inv_freq.dtype)
        # The angle is rounded to the token dtype before cos/sin, as the reference does.
        angles = (t[:, None] * inv_freq[None, :]).to(dtype)
        angles = torch.cat([angles, angles], dim=-1)
        cos, sin = angles.cos(), angles.sin()
        y, x = positions[:, 0], positions[:, 1]
        return RotaryTable(torch.cat([cos[y], cos[x]], dim=-1), torch.cat([sin[y], sin[x]], dim=-1))

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor | RotaryTable) -> torch.Tensor:
        if not isinstance(positions, RotaryTable):
            positions = self.table(positions, tokens.shape[-1], tokens.dtype)
        return positions.rotate(tokens)
