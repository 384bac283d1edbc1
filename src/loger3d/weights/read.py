"""Reading a checkpoint file into a state dict: safetensors, or ``.pt`` without running anything in it."""

from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch

from ..errors import WeightsError, one_line
from .hub import _SUFFIXES, SAFETENSORS_SUFFIXES, _names
from .unpickle import Opaque, unpickle_checkpoint

__all__ = ["read_state_dict"]

_WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DistributedDataParallel, torch.compile


def _read_safetensors(path: str) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(path, device="cpu")
    except SafetensorError as e:
        raise WeightsError(f"cannot read {path!r} as safetensors (corrupt or truncated?): {one_line(e, 120)}; "
                           "download or convert it again") from None


def _read_pt(path: str) -> Mapping:
    """The state dict of a ``torch.save`` file, read by ``unpickle``: nothing in the file runs, and a file built
    to run code is refused as unsafe even though its code did not run."""
    try:
        loaded = unpickle_checkpoint(path)
    except (pickle.UnpicklingError, EOFError, ValueError, KeyError, IndexError, TypeError, AttributeError,
            RuntimeError, zipfile.BadZipFile) as e:
        raise WeightsError(f"cannot read {path!r} as a PyTorch checkpoint (corrupt, truncated, or not written by "
                           f"torch.save): {one_line(e, 100) or type(e).__name__}; download or save it again") from None
    code = list(dict.fromkeys(loaded.code_globals))
    if code:
        shown = ", ".join(code[:3]) + (f" and {len(code) - 3} more" if len(code) > 3 else "")
        raise WeightsError(f"{path!r} is unsafe: it would call {shown} when unpickled, which runs code; nothing in it "
                           "was run, and it is refused. Use weights from a source you trust (or their .safetensors)")
    return _unwrap(loaded.obj, path)


def _is_tensor_dict(obj: object) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def _unwrap(obj: object, path: str) -> Mapping:
    """The state dict inside a checkpoint: the official layouts and the common training wrappers."""
    if isinstance(obj, Opaque):
        raise WeightsError(f"{path!r} holds a pickled {obj.qualified_name} object, not a state dict; in the "
                           "environment that made it, save model.state_dict() instead")
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{path!r} holds a {type(obj).__name__}, not a state dict; save model.state_dict()")
    if isinstance(obj.get("model_state_dict"), Mapping):
        return obj["model_state_dict"]
    for key in ("state_dict", "model", "ema", "model_ema"):
        if _is_tensor_dict(obj.get(key)):
            return obj[key]
    if obj and all(isinstance(k, str) and not isinstance(v, Mapping) for k, v in obj.items()):
        return obj
    keys = ", ".join(map(str, list(obj)[:6])) + (", ..." if len(obj) > 6 else "")
    if isinstance(obj.get("model"), Opaque):
        raise WeightsError(f"{path!r} holds a pickled {obj['model'].qualified_name} object under 'model', not its "
                           "state dict; in the environment that made it, save model.state_dict() instead")
    raise WeightsError(f"{path!r} holds no state dict (top-level keys: {keys}); expected tensors, or a dict "
                       "of them under 'model_state_dict', 'state_dict' or 'model'")


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The state dict of a ``.safetensors`` or ``.pt/.pth/.bin`` file, on the CPU, with the ``module.`` (DDP) and
    ``_orig_mod.`` (torch.compile) prefixes stripped.

    ``.pt`` files may carry anything a training script saves beside the weights (arguments, numpy
    values, optimizer state): it is read as inert placeholders and ignored; nothing in the file runs
    (``weights.unpickle``). They are memory-mapped, so a 5 GB checkpoint is not copied first.
    """
    path = str(Path(path).expanduser())
    suffix = Path(path).suffix.lower()
    if suffix not in _SUFFIXES:
        raise WeightsError(f"{path!r} has an unknown extension {suffix!r}; accepted are {', '.join(_SUFFIXES)}")
    try:
        raw = _read_safetensors(path) if suffix in SAFETENSORS_SUFFIXES else _read_pt(path)
    except FileNotFoundError:
        raise WeightsError(f"no such file {path!r}; give an alias ({_names()}) or a path") from None
    except IsADirectoryError:
        raise WeightsError(f"{path!r} is a directory; give the checkpoint file inside it") from None
    except PermissionError:
        raise WeightsError(f"cannot read {path!r}: permission denied; fix its permissions or copy it") from None
    state: dict[str, torch.Tensor] = {}
    for key, value in raw.items():
        if not isinstance(value, torch.Tensor):
            raise WeightsError(f"{path!r}: entry {key!r} is a {type(value).__name__}, not a tensor; "
                               "a state dict must hold only tensors")
        name = str(key)
        while name.startswith(_WRAPPER_PREFIXES):
            name = name.split(".", 1)[1]
        if name in state:
            raise WeightsError(f"{path!r}: key {name!r} occurs both with and without a 'module.' or '_orig_mod.' "
                               "prefix; keep one copy of the weights")
        state[name] = value
    if not state:
        raise WeightsError(f"{path!r} holds an empty state dict; save model.state_dict()")
    return state
