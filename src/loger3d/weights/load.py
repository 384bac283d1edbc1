"""A :class:`LoGeR` from what a user names: an alias, a shipped model, a file, or seeded weights."""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch

from ..config import PRESETS, ModelConfig
from ..errors import WeightsError
from ..model import LoGeR
from .devices import _DTYPE_NAMES, _DTYPES, auto_dtype, resolve_device, resolve_dtype
from .hub import resolve_source
from .presets import _preset_name, check_compatible, infer_preset
from .read import read_state_dict
from .registry import ModelCard, card_for

__all__ = ["fit_architecture", "load_model", "model_from_spec"]


def _pick_preset(state_dict: Mapping[str, torch.Tensor], preset: str | None, alias_preset: str | None) -> str:
    name = _preset_name(preset) if preset is not None else alias_preset or infer_preset(state_dict)
    check_compatible(name, state_dict)
    return name


def fit_architecture(state_dict: Mapping[str, torch.Tensor], preset: str | None, alias_preset: str | None,
                     card: ModelCard | None) -> tuple[str, ModelConfig]:
    """The preset name and the architecture that ``state_dict`` loads into: the variant a card with ``options``
    describes (a trained ablation variant) unless ``preset`` is forced, else the preset named or inferred."""
    if card is not None and card.options and preset is None:
        config = card.model_config()
        with torch.device("meta"):
            check_compatible(LoGeR(config), state_dict)
        return card.preset, config
    name = _pick_preset(state_dict, preset, alias_preset)
    return name, PRESETS[name]


def load_model(source: str | os.PathLike, device: torch.device | str | None = None,
               dtype: torch.dtype | str | None = None, preset: str | None = None) -> LoGeR:
    """A pretrained :class:`LoGeR` in eval mode from an alias, a ``.pt`` or a ``.safetensors``.

    The preset is ``preset`` if given, else the model card's (a name, or a file that carries one: with the
    card's ``options``, the variant it trained), else inferred from the keys and shapes;
    the model is built on the meta device and takes the checkpoint's tensors (no second copy).
    ``dtype`` ``bf16``/``fp16`` goes through ``LoGeR.set_precision``; the default keeps fp32.
    """
    target = resolve_dtype(dtype)
    path, alias_preset = resolve_source(source)
    card = card_for(source)
    state = read_state_dict(path)
    alias_preset = alias_preset or (card.preset if card is not None else None)
    name, config = fit_architecture(state, preset, alias_preset, card)
    with torch.device("meta"):
        model = LoGeR(config)
    state = {k: v.float() if v.is_floating_point() and v.dtype != torch.float32 else v for k, v in state.items()}
    model.load_state_dict(state, strict=True, assign=True)
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise WeightsError(f"{len(left)} tensors of preset {name!r} were not filled by the checkpoint "
                           f"(e.g. {left[0]}); this is a loger3d bug, please report it")
    model = model.to(device or "cpu").eval()
    if target != torch.float32:
        if not hasattr(model, "set_precision"):
            raise WeightsError(f"dtype {_DTYPE_NAMES[target]} needs LoGeR.set_precision, which this version of "
                               "loger3d lacks; load in fp32")
        model.set_precision(target)
    return model


def model_from_spec(spec: str, device: torch.device | str = "auto", dtype: str = "auto") -> tuple[LoGeR, str]:
    """The model a command line names, on ``device``, and the precision chosen.

    ``spec``: an alias or a checkpoint path (see :func:`load_model`), or ``seeded:PRESET[:SEED]``
    for the seeded weights of the equivalence reference (no download; tests and benchmarks).
    ``device="auto"``: CUDA when available; ``dtype="auto"``: bf16 on CUDA (the official demo's
    autocast), fp32 on the CPU.
    """
    from ..seeded import fill_seeded_

    device = resolve_device(device)
    if dtype == "auto":
        dtype = auto_dtype(device)
    if not spec.startswith("seeded:"):
        return load_model(spec, device=device, dtype=dtype), dtype
    _, preset, *seed = spec.split(":")
    if preset not in PRESETS:
        raise WeightsError(f"unknown preset {preset!r} in {spec!r}; use seeded:{'|'.join(PRESETS)}[:SEED]")
    if seed and not seed[0].isdigit():
        raise WeightsError(f"seed {seed[0]!r} in {spec!r} is not a whole number; use seeded:{preset}[:SEED]")
    with torch.device("meta"):
        model = LoGeR(preset)
    model = fill_seeded_(model, int(seed[0]) if seed else 0, device=device).eval()
    if _DTYPES.get(dtype, torch.float32) != torch.float32:
        model.set_precision(_DTYPES[dtype])
    return model, dtype
