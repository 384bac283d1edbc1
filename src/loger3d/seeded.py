"""Seeded weights: deterministic, well-conditioned tensors drawn from each key's name.

The rule of the project's equivalence reference (EQUIVALENCE.md): every tensor has its own
generator seeded by ``seed * 1_000_003 + crc32(key)``, and its scale depends only on the key
and the shape. Any implementation can rebuild the same weights without shipping gigabytes,
which is how our outputs are compared with the official release's, and how benchmarks get a
full-size model with no download.
"""

from __future__ import annotations

import math
import zlib

import torch
from torch import nn

__all__ = ["seeded_tensor", "seeded_state_dict", "fill_seeded_"]

_TOKENS = {"cls_token", "register_tokens", "register_token", "pos_embed", "pe_token_0", "pe_token_1", "pe_token_2"}
_FAST_WEIGHTS = {"w0", "w1", "w2"}
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


def seeded_tensor(key: str, shape: tuple[int, ...] | torch.Size, seed: int) -> torch.Tensor:
    shape = tuple(shape)
    name = key.rsplit(".", 1)[-1]
    if name == "image_mean":
        return torch.tensor(_MEAN).view(shape)
    if name == "image_std":
        return torch.tensor(_STD).view(shape)
    gen = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(key.encode()))
    x = torch.randn(shape, generator=gen, dtype=torch.float32)
    if name in _TOKENS:
        return 0.02 * x
    if name == "gamma":
        return 0.1 + 0.02 * x
    if len(shape) == 1:
        return 0.02 * x if name == "bias" else 1.0 + 0.05 * x
    if name in _FAST_WEIGHTS:
        return x / math.sqrt(shape[1])
    fan_in = math.prod(shape[1:])
    if "gate_projs" in key:
        return 0.1 * x / math.sqrt(fan_in)
    return x / math.sqrt(fan_in)


def seeded_state_dict(shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    """A state dict for ``{key: shape}`` (for example a checkpoint manifest)."""
    return {key: seeded_tensor(key, shape, seed) for key, shape in shapes.items()}


@torch.no_grad()
def fill_seeded_(model: nn.Module, seed: int, device: torch.device | str = "cpu") -> nn.Module:
    """Overwrite every parameter and buffer of ``model`` in place with its seeded value.

    One tensor at a time, so the full-size model needs no second copy in memory. A model on
    the meta device is first materialised on ``device`` (tensors are drawn on the CPU and copied).
    """
    if any(t.is_meta for t in model.state_dict().values()):
        model.to_empty(device=device)
    for key, tensor in model.state_dict().items():
        tensor.copy_(seeded_tensor(key, tensor.shape, seed))
    return model
