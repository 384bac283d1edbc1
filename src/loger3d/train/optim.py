"""AdamW parameter groups and the learning-rate schedule.

Groups: the DINOv2 encoder (its own rate, or frozen at 0), the new memory layers (TTT, SWA, their gates; their
own rate, as fine-tuning from Pi3 wants them faster than the pretrained backbone), and everything else; each
split into decayed matrices and undecayed biases, norms, tokens and layer scales. ``to_qkv_stack`` of the TTT
layers is never used by the forward pass (it exists for checkpoint compatibility) and is frozen.
"""

from __future__ import annotations

import math

import torch

from .config import ConfigError, OptimSection
from .init import MEMORY_PREFIXES

__all__ = ["parameter_groups", "lr_factor", "build_optimizer"]

_UNUSED = ".to_qkv_stack."


def _no_decay(name: str, param: torch.Tensor) -> bool:
    return param.ndim < 2 or name.endswith(("token", "tokens", "pos_embed")) or name.startswith("pe_token_")


def parameter_groups(model: torch.nn.Module, cfg: OptimSection) -> list[dict]:
    """AdamW groups with a ``base_lr`` each; freezes what gets no updates (``requires_grad`` off)."""
    rates = {"encoder": cfg.lr if cfg.encoder_lr is None else cfg.encoder_lr,
             "memory": cfg.lr if cfg.memory_lr is None else cfg.memory_lr, "backbone": cfg.lr}
    groups: dict[tuple[str, bool], list[torch.nn.Parameter]] = {}
    for name, param in model.named_parameters():
        part = "encoder" if name.startswith("encoder.") else "memory" if name.startswith(MEMORY_PREFIXES) \
            else "backbone"
        if _UNUSED in name or rates[part] == 0:
            param.requires_grad_(False)
            continue
        param.requires_grad_(True)
        groups.setdefault((part, _no_decay(name, param)), []).append(param)
    return [{"params": params, "name": f"{part}{'/no_decay' if nd else ''}", "base_lr": rates[part],
             "lr": rates[part], "weight_decay": 0.0 if nd else cfg.weight_decay}
            for (part, nd), params in sorted(groups.items())]


def lr_factor(step: int, total_steps: int, cfg: OptimSection) -> float:
    """Linear warm-up to 1 over ``warmup_steps``, then cosine to ``min_lr_ratio`` at ``total_steps - 1``."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    span = max(total_steps - 1 - cfg.warmup_steps, 1)
    progress = min((step - cfg.warmup_steps) / span, 1.0)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def build_optimizer(model: torch.nn.Module, cfg: OptimSection, fused: bool | None = None) -> torch.optim.AdamW:
    """AdamW over ``parameter_groups``. ``fused`` (default: when the model trains on a GPU) updates every
    parameter in one kernel instead of a few per tensor: the tiny model's step spent 17-27 ms in AdamW on an
    H200 (benchmarks/results/train_throughput). On the CPU the per-tensor update stays, as before. A GPU model
    may keep a few parameters on the host (the fast path parks the TTT layers' unused ``to_qkv_stack``); they
    get no gradients, so the fused update never touches them."""
    groups = parameter_groups(model, cfg)
    if not groups:
        raise ConfigError("every parameter is frozen (all learning rates are 0); nothing to train")
    if fused is None:
        fused = any(p.is_cuda for g in groups for p in g["params"])
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay,
                             fused=fused or None)
