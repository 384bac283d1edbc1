"""Transformer building blocks shared by the encoder, the decoder, the SWA layers and the heads.

Tensors: tokens ``[B, L, C]``; per-head queries/keys/values ``[B, heads, L, C/heads]``;
positions ``[L, 2]`` integers or their prepared ``RotaryTable`` (see rope.py).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.checkpoint import checkpoint

from .compiled import compiled, mark_dynamic
from .rope import RoPE2D, RotaryTable

__all__ = ["Mlp", "LayerScale", "Attention", "Block", "attend", "pinned_attention", "resolve_backends"]

_LOW_PRECISION = (torch.bfloat16, torch.float16)


def resolve_backends(dtype: torch.dtype, backends: tuple[SDPBackend, ...] | None
                     ) -> tuple[tuple[SDPBackend, ...], bool]:
    """The SDPA backends ``attend`` allows for queries of ``dtype``, and whether their order is a priority."""
    if backends is None:
        return ((SDPBackend.FLASH_ATTENTION,) if dtype in _LOW_PRECISION else
                (SDPBackend.MATH, SDPBackend.EFFICIENT_ATTENTION)), False
    return tuple(backends), True


# PyTorch's backend choice is process-wide state; a context per call is safe on one thread only.
# While a layer pipeline runs stages on several threads it fixes the choice once (pinned_attention).
_PINNED: tuple[tuple[SDPBackend, ...], bool] | None = None


@contextlib.contextmanager
def pinned_attention(backends: tuple[SDPBackend, ...], priority: bool) -> Iterator[None]:
    """Fix the SDPA backends for the whole process while inside; ``attend`` calls that would ask for
    exactly these then run without touching the process-wide choice (safe from several threads)."""
    global _PINNED
    with sdpa_kernel(list(backends), set_priority=priority):
        _PINNED = (tuple(backends), priority)
        try:
            yield
        finally:
            _PINNED = None


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
           backends: tuple[SDPBackend, ...] | None = None) -> torch.Tensor:
    """Softmax attention; by default with the SDPA backends the official release restricts itself to.

    bf16 goes to flash attention; anything else to {math, memory-efficient}, which on a CPU
    means the math kernel, the one that reproduces the reference bit for bit. ``backends``
    overrides the choice (the fast path puts cuDNN first).
    """
    choice = resolve_backends(q.dtype, backends)
    if _PINNED == choice:
        return F.scaled_dot_product_attention(q, k, v)
    allowed, priority = choice
    # without priority: PyTorch's own order among them (memory-efficient before math on CUDA)
    with sdpa_kernel(list(allowed), set_priority=priority):
        return F.scaled_dot_product_attention(q, k, v)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class LayerScale(nn.Module):
    def __init__(self, dim: int, init: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Attention(nn.Module):
    """Multi-head self-attention with optional per-head q/k LayerNorm and 2D RoPE.

    ``prefix`` (keys, values ``[B, heads, L', D]``) is prepended to this call's keys and values:
    the sliding-window memory attends to the previous chunk this way.
    """

    def __init__(self, dim: int, heads: int, qk_norm: bool = False, rope: RoPE2D | None = None) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        head_dim = dim // heads
        self.q_norm = nn.LayerNorm(head_dim, eps=1e-5) if qk_norm else None
        self.k_norm = nn.LayerNorm(head_dim, eps=1e-5) if qk_norm else None
        self.rope = rope
        self.backends: tuple[SDPBackend, ...] | None = None  # None: the official choice (see attend)

    def project(self, x: torch.Tensor, pos: torch.Tensor | RotaryTable | None):
        """Queries, keys and values ``[B, heads, L, D]`` of ``x``, normalised and rotated."""
        B, L, C = x.shape
        qkv = self.qkv(x).reshape(B, L, 3, self.heads, C // self.heads).transpose(1, 3)
        q, k, v = qkv.unbind(2)  # the same views as indexing; its backward is one stack, not three scatters
        if self.q_norm is not None:
            q, k = self.q_norm(q).to(v.dtype), self.k_norm(k).to(v.dtype)
        if self.rope is not None:
            q, k = self.rope(q, pos), self.rope(k, pos)
        return q, k, v

    def forward(
        self,
        x: torch.Tensor,
        pos: torch.Tensor | RotaryTable | None = None,
        prefix: tuple[torch.Tensor, torch.Tensor] | None = None,
        return_kv: bool = False,
    ):
        B, L, C = x.shape
        q, k, v = self.project(x, pos)
        if prefix is not None:
            k_all, v_all = torch.cat([prefix[0], k], dim=2), torch.cat([prefix[1], v], dim=2)
        else:
            k_all, v_all = k, v
        out = attend(q, k_all, v_all, self.backends).transpose(1, 2).reshape(B, L, C)
        out = self.proj(out)
        if return_kv:
            return out, (k.contiguous(), v.contiguous())
        return out


class Block(nn.Module):
    """Pre-norm transformer block: ``x + γ1·Attn(LN1(x))``, then ``+ γ2·MLP(LN2(x))``.

    Layer scale and q/k norm are optional so that one class serves the DINOv2 encoder,
    the decoder, the SWA layers and the head decoders with the official key names.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        mlp_ratio: float = 4.0,
        *,
        norm_eps: float = 1e-6,
        qk_norm: bool = False,
        layer_scale: float | None = None,
        rope: RoPE2D | None = None,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, heads, qk_norm=qk_norm, rope=rope)
        self.ls1 = LayerScale(dim, layer_scale) if layer_scale is not None else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.ls2 = LayerScale(dim, layer_scale) if layer_scale is not None else nn.Identity()
        self.activation_checkpointing = False
        self.compiled = False  # run through torch.compile (the fast path; see compiled.py)
        self.cuda_graphs = False  # ... and replay the compiled code as CUDA graphs (LoGeR.set_fast_path)

    def forward(
        self,
        x: torch.Tensor,
        pos: torch.Tensor | RotaryTable | None = None,
        prefix: tuple[torch.Tensor, torch.Tensor] | None = None,
        return_kv: bool = False,
    ):
        run = self._forward
        if self.compiled:
            # Token counts vary (frame vs chunk attention, a shorter last chunk): keep them symbolic.
            mark_dynamic(x, 0, 1)
            if isinstance(pos, RotaryTable):
                mark_dynamic(pos.cos, 0)
                mark_dynamic(pos.sin, 0)
            if prefix is not None:
                mark_dynamic(prefix[0], 2)
                mark_dynamic(prefix[1], 2)
            run = functools.partial(compiled(Block._forward, cuda_graphs=self.cuda_graphs), self)
        if self.activation_checkpointing and self.training and torch.is_grad_enabled():
            # Keep only the block's input; recompute its activations (compiled or not) during the backward pass.
            return checkpoint(run, x, pos, prefix, return_kv, use_reentrant=False,
                              preserve_rng_state=False)  # draws no random numbers; a CUDA graph may record it
        return run(x, pos, prefix, return_kv)

    def _forward(self, x, pos, prefix, return_kv):
        attn = self.attn(self.norm1(x), pos, prefix=prefix, return_kv=return_kv)
        if return_kv:
            attn, kv = attn
        x = x + self.ls1(attn)
        x = x + self.ls2(self.mlp(self.norm2(x)))
        return (x, kv) if return_kv else x
