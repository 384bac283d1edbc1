"""Loss balancing: the translation and rotation weights follow the terms' gradients.

Why: on the tiny model trained from scratch the rotation term's gradient on the decoder starts about 100 times
below the local point term's and, once rotation is learnt, ends 200 times above it; the translation term's
starts about 3,000 times below (benchmarks/results/translation_probes_2026-12-01). A fixed set of weights fits
one end of training only. With ``loss.balance_every: N`` the trainer measures, every N steps on that step's
first micro-batch, each term's gradient norm on the layers all terms share (the decoder and the memory layers)
and sets the translation and rotation weights so that each term's gradient is ``balance_target`` times the
local point term's (a geometric mean with the previous weights smooths the step-to-step noise).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

import torch

from .losses import LossConfig

__all__ = ["SHARED_PREFIXES", "TERMS", "LossBalance", "term_gradient_norms", "shared_parameters"]

# The layers every loss term reaches: the decoder and the memory layers (the heads belong to single terms).
SHARED_PREFIXES = ("decoder.", "ttt_", "swa_")
# The measured terms, in the order of ``term_gradient_norms``: the local point term (the reference), then the
# balanced ones, each with its weight field.
TERMS = ("local", "trans", "rot")
_BALANCED = {"trans": "trans_weight", "rot": "rot_weight"}
_WEIGHT_RANGE = (1e-3, 1e7)


def shared_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The trainable parameters of the layers every term reaches (``SHARED_PREFIXES``)."""
    return [p for n, p in model.named_parameters() if n.startswith(SHARED_PREFIXES) and p.requires_grad]


def term_gradient_norms(loss_of: Callable[[LossConfig], torch.Tensor], params: Iterable[torch.nn.Parameter],
                        cfg: LossConfig) -> torch.Tensor:
    """``[3]`` gradient norms on ``params`` of the local, translation and rotation terms (``TERMS``), each at
    weight 1.

    ``loss_of(cfg)`` runs the forward pass with those loss settings and returns the loss. The gradients come
    from ``torch.autograd.grad``, so ``.grad`` and any DDP hooks are left alone. Stays on the device (no sync).
    """
    params = list(params)
    off = replace(cfg, local_weight=0.0, conf_weight=0.0, global_weight=0.0, trans_weight=0.0, rot_weight=0.0,
                  pose_weight=1.0, balance_every=0)
    norms = []
    for field in (f"{term}_weight" for term in TERMS):
        grads = torch.autograd.grad(loss_of(replace(off, **{field: 1.0})), params, allow_unused=True)
        norms.append(torch.linalg.vector_norm(torch.stack([g.float().norm() for g in grads if g is not None])))
    return torch.stack(norms)


@dataclass
class LossBalance:
    """The balanced translation and rotation weights in force (``None`` until first measured).

    They are training state: saved in the checkpoint, so that a resumed run weighs its steps as an
    uninterrupted one does.
    """

    trans_weight: float | None = None
    rot_weight: float | None = None

    def update(self, norms: torch.Tensor | Sequence[float], cfg: LossConfig) -> None:
        """New weights from ``norms``, the ``TERMS``' gradient norms at weight 1 (as ``term_gradient_norms``
        gives them; one host sync): each balanced term's gradient
        ``cfg.balance_target`` times the local term's (weighted by ``cfg.local_weight``; rotation's
        ``cfg.balance_rot_target`` when set), clamped to [1e-3, 1e7], then the geometric mean with the
        weights in force."""
        norms = dict(zip(TERMS, norms.tolist() if isinstance(norms, torch.Tensor) else norms))
        targets = {"trans": cfg.balance_target,
                   "rot": cfg.balance_target if cfg.balance_rot_target is None else cfg.balance_rot_target}
        for term, field in _BALANCED.items():
            level = targets[term] * cfg.local_weight * norms["local"] / max(norms[term], 1e-30)
            weight = min(max(level, _WEIGHT_RANGE[0]), _WEIGHT_RANGE[1])
            previous = getattr(self, field)
            setattr(self, field, weight if previous is None else (weight * previous) ** 0.5)

    def apply(self, cfg: LossConfig) -> LossConfig:
        """``cfg`` with the balanced weights (``pose_weight`` folded in as 1); a term ``cfg`` turns off
        (weight 0) stays off, and ``cfg`` is returned as it is until the first measurement."""
        if self.trans_weight is None or self.rot_weight is None:
            return cfg
        weights = {field: getattr(self, field) if cfg.pose_weight * getattr(cfg, field) > 0 else 0.0
                   for field in _BALANCED.values()}
        return replace(cfg, pose_weight=1.0, **weights)

    def state_dict(self) -> dict[str, float | None]:
        return {"trans_weight": self.trans_weight, "rot_weight": self.rot_weight}

    def load_state_dict(self, state: Mapping[str, float | None]) -> None:
        self.trans_weight, self.rot_weight = state["trans_weight"], state["rot_weight"]
