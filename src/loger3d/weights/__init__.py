"""Pretrained weights: where they come from (``hub``), how a file is read (``read``), which preset it fits
(``presets``), loading (``load``), conversion (``convert``), and the devices and precisions users name
(``devices``).

Checkpoints are untrusted input (they come from the Hub or from anyone's disk): nothing in a file
can run code when it is read. Every failure a user can cause raises :class:`WeightsError` with one
line that names the problem and the fix.

    model = load_model("loger", device="cuda")          # alias: Hugging Face download, cached
    model = load_model("tiny_synthetic")                 # the small model shipped in the package (offline)
    model = load_model("ckpts/LoGeR/latest.pt")          # local file, preset inferred
    convert("loger", "loger_bf16.safetensors", dtype="bf16")
"""

from ..errors import WeightsError
from .convert import convert
from .devices import resolve_device
from .hub import ALIASES, SHIPPED, cached_path, resolve_source, shipped_path
from .load import load_model, model_from_spec
from .presets import check_compatible, infer_preset
from .read import read_state_dict

__all__ = ["WeightsError", "ALIASES", "SHIPPED", "shipped_path", "cached_path", "resolve_source", "read_state_dict",
           "infer_preset", "check_compatible", "load_model", "resolve_device", "model_from_spec", "convert"]
