"""Pretrained weights: where they come from (``hub``), how a file is read (``read``), which preset it fits
(``presets``), the card of every model known by name (``registry``), loading (``load``), conversion
(``convert``), and the devices and precisions users name (``devices``).

Checkpoints are untrusted input (they come from the Hub or from anyone's disk): nothing in a file
can run code when it is read. Every failure a user can cause raises :class:`WeightsError` with one
line that names the problem and the fix.

    model = load_model("loger", device="cuda")          # alias: Hugging Face download, cached
    model = load_model("tiny_synthetic")                 # the small model shipped in the package (offline)
    model = load_model("ckpts/LoGeR/latest.pt")          # local file, preset inferred
    convert("loger", "loger_bf16.safetensors", dtype="bf16")
"""

from __future__ import annotations

import importlib
from typing import Any

from ..errors import WeightsError

_EXPORTS = {
    "convert": ".convert", "resolve_device": ".devices", "ALIASES": ".hub", "SHIPPED": ".hub",
    "cached_path": ".hub", "resolve_source": ".hub", "shipped_path": ".hub", "load_model": ".load",
    "model_from_spec": ".load", "check_compatible": ".presets", "infer_preset": ".presets",
    "read_state_dict": ".read", "MODEL_CARDS": ".registry", "ModelCard": ".registry", "card_for": ".registry",
    "preset_card": ".registry",
}

__all__ = ["WeightsError", "ALIASES", "SHIPPED", "shipped_path", "cached_path", "resolve_source", "read_state_dict",
           "infer_preset", "check_compatible", "load_model", "resolve_device", "model_from_spec", "convert",
           "MODEL_CARDS", "ModelCard", "card_for", "preset_card"]


def __getattr__(name: str) -> Any:
    """The public names, imported on first use: the cards (``registry``) and the Hub's rules need no PyTorch,
    so ``--help`` and option checks stay fast."""
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
