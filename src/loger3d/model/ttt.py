"""Test-time-training (TTT) fast-weight memory: a per-layer SwiGLU MLP whose weights are
updated from each chunk's tokens (LaCT style), apply first, then update.

The fast MLP is ``f_W(x) = (silu(x·W0) ⊙ (x·W2))·W1``. One update is a gradient *ascent* step on
``Σ_t η_t ⟨f_W(k_t), v_t⟩`` over all tokens of the chunk, each weight's step orthogonalised by
five Newton–Schulz iterations (in bf16 as in the official release, or in the dtype chosen by
``LoGeR.set_newton_schulz_dtype``), followed by restoring each weight's column norms.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .compiled import compiled, mark_dynamic
from .memory import FastWeights

__all__ = ["FastWeightMemory", "newton_schulz5", "newton_schulz5_together", "fast_weight_gradients",
           "apply_fast_weights", "update_fast_weights"]

_NS_COEFFS = (3.4445, -4.7750, 2.0315)


def newton_schulz5(g: torch.Tensor, steps: int = 5, dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    """Approximate orthogonalisation of a batch of matrices ``[n, r, c]``, computed and returned in ``dtype``.

    The official release uses bf16 (the default). bf16 products are computed by different kernels
    on different hardware and the iteration amplifies their last-bit differences, so fp32 serves
    checks that must hold on every machine. Autocast is off inside: ``dtype`` is what runs.
    """
    return newton_schulz5_together([g], steps, dtype)[0]


def newton_schulz5_together(gs: Sequence[torch.Tensor], steps: int = 5,
                            dtype: torch.dtype = torch.bfloat16) -> list[torch.Tensor]:
    """``newton_schulz5`` of several batches ``[n_i, r, c]`` (tall ones turned wide, as ``newton_schulz5`` does)
    in one iteration over all their matrices: one set of kernel launches instead of one per batch. Each
    matrix's norm is taken before the batches are joined, in its input's own memory layout, because a
    reduction's order follows the layout. Joined wide batches give each its own ``newton_schulz5`` bit for bit
    (tested); a tall one is copied turned when joined, and some CPUs' bf16 products then round differently, so
    ``update_fast_weights`` joins only the steps of W0 and W2, which are wide, and keeps W1's (tall) apart."""
    a, b, c = _NS_COEFFS
    with torch.autocast(device_type=gs[0].device.type, enabled=False):
        wide, tall = [], []
        for g in gs:
            x = g.to(dtype)
            tall.append(g.size(1) > g.size(2))
            if tall[-1]:
                x = x.transpose(1, 2)
            wide.append(x / (x.norm(dim=(1, 2), keepdim=True) + 1e-7))
        x = torch.cat(wide) if len(wide) > 1 else wide[0]
        for _ in range(steps):
            gram = x @ x.transpose(1, 2)
            poly = b * gram + c * gram @ gram
            x = a * x + poly @ x
        parts = x.split([g.size(0) for g in gs]) if len(gs) > 1 else [x]
    return [part.transpose(1, 2) if t else part for part, t in zip(parts, tall)]


def apply_fast_weights(w: FastWeights, q: torch.Tensor) -> torch.Tensor:
    """``f_W(q)`` for queries ``[n, L, d]`` → ``[n, L, d]``."""
    return (F.silu(q @ w.w0) * (q @ w.w2)) @ w.w1


def fast_weight_gradients(w: FastWeights, k: torch.Tensor, v: torch.Tensor, lr0: torch.Tensor,
                          lr1: torch.Tensor, lr2: torch.Tensor):
    """Gradients of ``Σ_t η_t ⟨f_W(k_t), v_t⟩`` w.r.t. (W0, W1, W2), each with its own η ``[n, L, 1]``.

    Written out by hand (no autograd) exactly as the official release computes them.
    """
    gate = k @ w.w0
    value = k @ w.w2
    hidden = F.silu(gate) * value
    d_hidden = v @ w.w1.transpose(-1, -2)
    d_value = d_hidden * F.silu(gate)
    d_silu = d_hidden * value
    sig = torch.sigmoid(gate)
    d_gate = d_silu * sig * (1 + gate * (1 - sig))
    g1 = (hidden * lr1).transpose(-1, -2) @ v
    g0 = (k * lr0).transpose(-1, -2) @ d_gate
    g2 = (k * lr2).transpose(-1, -2) @ d_value
    return g0, g1, g2


def update_fast_weights(w: FastWeights, k: torch.Tensor, v: torch.Tensor, lr0: torch.Tensor,
                        lr1: torch.Tensor, lr2: torch.Tensor, ns_steps: int,
                        ns_dtype: torch.dtype = torch.bfloat16) -> FastWeights:
    """One orthogonalised ascent step over all tokens (Newton–Schulz in ``ns_dtype``), then column norms restored."""
    norms = [t.detach().norm(dim=1, keepdim=True) for t in (w.w0, w.w1, w.w2)]
    g0, g1, g2 = fast_weight_gradients(w, k, v, lr0, lr1, lr2)
    w1 = w.w1 + newton_schulz5(g1, ns_steps, ns_dtype)
    s0, s2 = newton_schulz5_together([g0, g2], ns_steps, ns_dtype)
    w0, w2 = w.w0 + s0, w.w2 + s2
    w0, w1, w2 = (t / (t.norm(dim=1, keepdim=True) + 1e-5) * n for t, n in zip((w0, w1, w2), norms))
    return FastWeights(w0, w1, w2)


def _split_heads(x: torch.Tensor, groups: int, heads: int) -> torch.Tensor:
    """``[B, L, groups*heads*d]`` → ``[groups, B*heads, L, d]`` (batch-major problems)."""
    B, L, _ = x.shape
    return x.reshape(B, L, groups, heads, -1).permute(2, 0, 3, 1, 4).reshape(groups, B * heads, L, -1)


class FastWeightMemory(nn.Module):
    """One TTT layer (keys ``ttt_layers.i.*`` of the official checkpoints).

    In: tokens ``[B, N, T, C]`` of one chunk and the incoming fast weights (``None``: parameters).
    Out: the layer's output ``[B, N, T, C]`` (before the gate) and the updated fast weights; with
    ``update=False`` (nothing carries them to a next chunk) the update is not computed and the incoming
    fast weights come back as they were.
    """

    def __init__(self, dim: int, head_dim: int, inter_multi: int, pre_norm: bool,
                 base_lr: float = 0.01, ns_steps: int = 5) -> None:
        super().__init__()
        self.heads = dim // head_dim
        self.ns_steps = ns_steps
        self.ns_dtype = torch.bfloat16  # the release's; LoGeR.set_newton_schulz_dtype changes it
        hidden = head_dim * inter_multi
        self.w0 = nn.Parameter(torch.randn(self.heads, head_dim, hidden) * math.sqrt(2.0 / head_dim))
        self.w1 = nn.Parameter(torch.randn(self.heads, hidden, head_dim) * math.sqrt(2.0 / hidden))
        self.w2 = nn.Parameter(torch.randn(self.heads, head_dim, hidden) * math.sqrt(2.0 / head_dim))
        self.to_qkv = nn.Linear(dim, 3 * dim, bias=False)
        # Unused by the forward pass; present in the official checkpoints, so kept for strict loading.
        self.to_qkv_stack = nn.Sequential(nn.Linear(dim, 3 * dim, bias=False))
        self.c_proj = nn.Linear(dim, dim, bias=False)
        self.lr_fc = nn.Linear(dim, 3 * self.heads)
        self.base_lr_inv = base_lr + math.log(-math.expm1(-base_lr))  # inverse softplus
        self.pre_norm = nn.RMSNorm(dim, eps=1e-5) if pre_norm else None
        self.o_norm = nn.RMSNorm(head_dim, eps=1e-5)
        self.activation_checkpointing = False
        self.compiled = False  # run through torch.compile (the fast path; see compiled.py)
        self.cuda_graphs = False  # ... and replay the compiled code as CUDA graphs (LoGeR.set_fast_path)

    def initial_state(self, batch: int) -> FastWeights:
        return FastWeights(self.w0.repeat(batch, 1, 1), self.w1.repeat(batch, 1, 1), self.w2.repeat(batch, 1, 1))

    def forward(self, x: torch.Tensor, state: FastWeights | None,
                update: bool = True) -> tuple[torch.Tensor, FastWeights | None]:
        run = self._forward
        if self.compiled:
            mark_dynamic(x, 1, 2)  # frames per chunk and tokens per frame: a shorter last chunk reuses the graph
            run = functools.partial(compiled(FastWeightMemory._forward, cuda_graphs=self.cuda_graphs), self)
        if self.activation_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(run, x, state, update, use_reentrant=False,
                              preserve_rng_state=False)  # draws no random numbers; a CUDA graph may record it
        return run(x, state, update)

    def _forward(self, x: torch.Tensor, state: FastWeights | None,
                 update: bool) -> tuple[torch.Tensor, FastWeights | None]:
        B, N, T, C = x.shape
        if self.pre_norm is not None:
            x = self.pre_norm(x)
        x = x.reshape(B, N * T, C)
        q, k, v = _split_heads(F.silu(self.to_qkv(x)), 3, self.heads)
        q = q / (q.norm(dim=2, keepdim=True) + 1e-5)
        weights = state if state is not None else self.initial_state(B)
        out = apply_fast_weights(weights, q)
        if update:
            k = k / (k.norm(dim=2, keepdim=True) + 1e-5)
            with torch.autocast(device_type=x.device.type, enabled=False):
                lr = F.softplus(self.lr_fc(x.float()) + self.base_lr_inv)
            lr0, lr1, lr2 = _split_heads(lr, 3, self.heads)
            state = update_fast_weights(weights, k, v, lr0, lr1, lr2, self.ns_steps, self.ns_dtype)
        out = self.o_norm(out)
        out = out.reshape(B, self.heads, N * T, -1).permute(0, 2, 1, 3).reshape(B, N * T, C)
        out = self.c_proj(out).reshape(B, N, T, C).to(x.dtype)
        return out, state
