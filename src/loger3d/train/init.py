"""Initial weights for training: from scratch, or from Pi3 the way LoGeR is initialised.

From Pi3 (the paper's recipe): the encoder, the decoder and the heads take Pi3's weights; each SWA layer starts
as a copy of the global-attention block that follows its insertion point; the TTT layers keep their fresh
initialisation; every memory gate starts at zero, so the network begins as exactly Pi3.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from ..model.loger import LoGeR
from ..weights import WeightsError, read_state_dict

__all__ = ["init_from_scratch_", "init_from_pi3_", "MEMORY_PREFIXES"]

MEMORY_PREFIXES = ("ttt_layers.", "ttt_gate_projs.", "swa_layers.", "swa_gate_projs.")
_LEARNED_TOKENS = ("register_token", "pe_token_0", "pe_token_1", "pe_token_2", "encoder.cls_token",
                   "encoder.register_tokens", "encoder.pos_embed")


@torch.no_grad()
def init_from_scratch_(model: LoGeR, seed: int = 0) -> LoGeR:
    """ViT-style initialisation (truncated normal σ = 0.02 for linear weights, zero biases), seeded.

    The TTT fast-weight parameters, layer scales, norms and the zero memory gates keep their constructor values.
    The rotation output starts at the identity: projecting a near-zero 3×3 matrix onto SO(3) has ill-conditioned
    SVD gradients (they scale with 1 / (σᵢ − σⱼ)), which at a zero start are thousands of times too large.
    """
    generator = torch.Generator().manual_seed(seed)
    gates = {id(m) for m in (*model.ttt_gate_projs, *model.swa_gate_projs)}
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)) and id(module) not in gates:
            w = torch.empty(module.weight.shape).normal_(0.0, 0.02, generator=generator).clamp_(-0.04, 0.04)
            module.weight.copy_(w)
            if module.bias is not None:
                module.bias.zero_()
    for name, param in model.named_parameters():
        if name.startswith("ttt_layers.") and name.split(".")[-1] in ("w0", "w1", "w2"):
            fan_in = param.shape[1]
            param.copy_(torch.randn(param.shape, generator=generator) * (2.0 / fan_in) ** 0.5)
        elif name in _LEARNED_TOKENS:
            param.copy_(torch.randn(param.shape, generator=generator) * 0.02)
    model.camera_head.fc_rot.bias.copy_(torch.eye(3).flatten())
    return model


@torch.no_grad()
def init_from_pi3_(model: LoGeR, pi3_weights: str | os.PathLike) -> LoGeR:
    """Load a Pi3 checkpoint into ``model`` (a LoGeR preset of the same size) as the paper initialises LoGeR."""
    state = read_state_dict(pi3_weights)
    own = model.state_dict()
    unexpected = sorted(k for k in state if k not in own)
    missing = sorted(k for k in own if k not in state and not k.startswith(MEMORY_PREFIXES))
    if unexpected or missing:
        raise WeightsError(f"{pi3_weights} is not a Pi3 checkpoint for preset {model.config.name!r}: "
                           f"{len(missing)} missing keys (e.g. {missing[:2]}), {len(unexpected)} unexpected "
                           f"(e.g. {unexpected[:2]}); pass the official Pi3 model.safetensors")
    wrong = [k for k in state if state[k].shape != own[k].shape]
    if wrong:
        raise WeightsError(f"{pi3_weights}: shapes differ from preset {model.config.name!r} at {wrong[:3]}; "
                           "Pi3 initialisation needs the full-size preset (loger or loger_star)")
    model.load_state_dict(state, strict=False)
    for j, after in enumerate(model.config.swa_insert_after):
        source = model.decoder[after + 1 if after % 2 == 0 else after]  # the next global-attention block
        target = model.swa_layers[j]
        src_state, dst_state = source.state_dict(), target.state_dict()
        if any(src_state[k].shape != v.shape for k, v in dst_state.items()):
            raise WeightsError(f"SWA layer {j} and decoder block {after + 1} differ in shape in preset "
                               f"{model.config.name!r}; Pi3 initialisation needs swa mlp ratio = decoder mlp ratio")
        target.load_state_dict(src_state)
    for gate in (*model.ttt_gate_projs, *model.swa_gate_projs):
        gate.weight.zero_()
        gate.bias.zero_()
    return model
