"""Which preset a state dict fits: exact key and shape manifests, and a message saying what differs and why."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping

import torch
from torch import nn

from ..config import PRESETS, ModelConfig
from ..errors import WeightsError
from ..model import LoGeR

__all__ = ["Manifest", "check_compatible", "infer_preset"]


# Keys the memory adds to Pi3: a Pi3 checkpoint lacks exactly these.
_MEMORY_PREFIXES = ("pe_token_", "ttt_layers.", "ttt_gate_projs.", "swa_layers.", "swa_gate_projs.")


_PRE_NORM = re.compile(r"^ttt_layers\.\d+\.pre_norm\.")


_CHECKPOINT_NAMES = {"loger": "LoGeR", "loger_star": "LoGeR_star", "pi3": "Pi3", "tiny": "tiny"}


Manifest = dict[str, tuple[int, ...]]


@functools.cache
def _preset_manifest(preset: str) -> Manifest:
    """``{key: shape}`` of a preset, from a model built on the meta device (no memory)."""
    with torch.device("meta"):
        model = LoGeR(preset)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _preset_name(preset: str | ModelConfig) -> str:
    name = preset.name if isinstance(preset, ModelConfig) else preset
    if name not in PRESETS:
        raise WeightsError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return name


def _diff(manifest: Manifest, state_dict: Mapping[str, torch.Tensor]):
    missing = [k for k in manifest if k not in state_dict]
    unexpected = [k for k in state_dict if k not in manifest]
    shapes = [(k, tuple(state_dict[k].shape), manifest[k]) for k in manifest
              if k in state_dict and tuple(state_dict[k].shape) != manifest[k]]
    return missing, unexpected, shapes


def _exact_presets(state_dict: Mapping[str, torch.Tensor]) -> list[str]:
    return [p for p in PRESETS if not any(_diff(_preset_manifest(p), state_dict))]


def _group(keys: list[str], limit: int = 6) -> str:
    """Key patterns, numbers as ``*``: whole keys when they are few, else their first one or two components."""
    def star(text: str) -> str:
        return re.sub(r"\d+", "*", text)

    full = list(dict.fromkeys(star(k) for k in keys))
    if len(full) > 3:
        coarse = []
        for key in keys:
            parts = key.split(".")
            head = parts[:1] if len(parts) < 2 or parts[1].isdigit() else parts[:2]
            coarse.append(star(".".join(head)) + (".*" if len(parts) > len(head) else ""))
        full = list(dict.fromkeys(coarse))
    shown = ", ".join(full[:limit])
    return shown + (f", +{len(full) - limit} more patterns" if len(full) > limit else "")


def _hint(target: str, state_dict: Mapping[str, torch.Tensor], missing: list[str], unexpected: list[str],
          shapes: list) -> str:
    exact = [p for p in _exact_presets(state_dict) if p != target]
    if exact:
        return f"this looks like a {_CHECKPOINT_NAMES.get(exact[0], exact[0])} checkpoint, use the {exact[0]} preset"
    if not shapes and not unexpected and missing:
        if all(_PRE_NORM.match(k) for k in missing):
            return "this looks like a LoGeR_star checkpoint (no TTT pre-norm), use the loger_star preset"
        if not any(k.startswith(_MEMORY_PREFIXES) for k in state_dict):
            return "this looks like a Pi3 checkpoint (no memory layers), use the pi3 preset"
    if not shapes and not missing and unexpected and all(_PRE_NORM.match(k) for k in unexpected):
        return "this looks like a LoGeR checkpoint (TTT pre-norm), use the loger preset"
    if unexpected and not missing and not shapes and all(k.startswith(_MEMORY_PREFIXES) for k in unexpected):
        return "it has memory layers, so it is a LoGeR checkpoint: use the loger or loger_star preset"
    return f"it is not a LoGeR/Pi3 checkpoint of any known preset ({', '.join(PRESETS)})"


def _mismatch_message(target: str, state_dict: Mapping[str, torch.Tensor], manifest: Manifest | None = None,
                      label: str | None = None) -> str | None:
    missing, unexpected, shapes = _diff(manifest or _preset_manifest(target), state_dict)
    if not (missing or unexpected or shapes):
        return None
    parts = []
    if missing:
        parts.append(f"missing {len(missing)} keys ({_group(missing)})")
    if unexpected:
        parts.append(f"unexpected {len(unexpected)} keys ({_group(unexpected)})")
    if shapes:
        key, got, want = shapes[0]
        parts.append(f"{len(shapes)} shape mismatches (e.g. {key}: checkpoint {list(got)} vs model {list(want)})")
    hint = _hint(target, state_dict, missing, unexpected, shapes)
    return f"state dict does not fit {label or f'preset {target!r}'}: {', '.join(parts)}; {hint}"


def infer_preset(state_dict: Mapping[str, torch.Tensor]) -> str:
    """The preset whose keys and shapes equal the state dict's exactly.

    With no exact match, raises the mismatch against the closest preset, which says what differs.
    """
    exact = _exact_presets(state_dict)
    if exact:
        return exact[0]

    def distance(p: str) -> int:
        return sum(len(x) for x in _diff(_preset_manifest(p), state_dict))

    closest = min(PRESETS, key=distance)
    raise WeightsError(_mismatch_message(closest, state_dict))


def check_compatible(model_or_preset: nn.Module | str | ModelConfig, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Raise :class:`WeightsError` saying what differs (and which preset would fit) unless keys and shapes match."""
    manifest = label = None
    if isinstance(model_or_preset, LoGeR):
        target = model_or_preset.config.name
        if target not in PRESETS or model_or_preset.config != PRESETS[target]:  # a custom config
            manifest = {k: tuple(v.shape) for k, v in model_or_preset.state_dict().items()}
            label = f"this model (custom config {target!r})"
    elif isinstance(model_or_preset, nn.Module):
        raise WeightsError(f"check_compatible expects a LoGeR model or a preset, not {type(model_or_preset).__name__}")
    else:
        target = _preset_name(model_or_preset)
    message = _mismatch_message(target, state_dict, manifest, label)
    if message:
        raise WeightsError(message)
