"""2D rotary position embedding (RoPE2D) and the token position grid of the decoder.

Per attention head, the first half of the channels is rotated by the token's row (y) and the
second half by its column (x); within each half the pairing is rotate-half (not interleaved).
Patch (r, c) sits at position (r + 1, c + 1); the special tokens sit at (0, 0), where the
rotation is the identity.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["RoPE2D", "token_positions"]


def token_positions(h: int, w: int, num_special: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Integer positions ``[num_special + h*w, 2]`` as (y, x): specials at 0, patch (r, c) at (r+1, c+1)."""
    ys = torch.arange(h, device=device)
    xs = torch.arange(w, device=device)
    grid = torch.cartesian_prod(ys, xs) + 1  # row-major, like the patch flattening
    special = torch.zeros(num_special, 2, dtype=grid.dtype, device=device)
    return torch.cat([special, grid], dim=0)


class RoPE2D(nn.Module):
    """Rotates queries or keys ``[B, heads, L, D]`` by positions ``[L, 2]`` (shared by the batch)."""

    def __init__(self, freq: float = 100.0) -> None:
        super().__init__()
        self.freq = freq
        self._tables: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def _cos_sin(self, dim: int, length: int, device: torch.device, dtype: torch.dtype):
        key = (dim, length, device, dtype)
        if key not in self._tables:
            inv_freq = 1.0 / (self.freq ** (torch.arange(0, dim, 2, device=device).float() / dim))
            t = torch.arange(length, device=device, dtype=inv_freq.dtype)
            # The angle is rounded to the token dtype before cos/sin, as the reference does.
            angles = (t[:, None] * inv_freq[None, :]).to(dtype)
            angles = torch.cat([angles, angles], dim=-1)
            self._tables[key] = (angles.cos(), angles.sin())
        return self._tables[key]

    @staticmethod
    def _rotate_half(x: torch.Tensor) -> torch.Tensor:
        a, b = x.chunk(2, dim=-1)
        return torch.cat([-b, a], dim=-1)

    def _rotate_1d(self, x: torch.Tensor, pos: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        return x * cos[pos] + self._rotate_half(x) * sin[pos]

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        half = tokens.shape[-1] // 2
        cos, sin = self._cos_sin(half, int(positions.max()) + 1, tokens.device, tokens.dtype)
        y, x = tokens.chunk(2, dim=-1)
        y = self._rotate_1d(y, positions[:, 0], cos, sin)
        x = self._rotate_1d(x, positions[:, 1], cos, sin)
        return torch.cat([y, x], dim=-1)
