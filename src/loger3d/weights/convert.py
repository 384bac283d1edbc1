"""Writing a checkpoint as ``.safetensors`` in the precision asked for, with its preset recorded."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch

from ..errors import WeightsError
from ..util.atomic import stream_safetensors
from .devices import resolve_dtype
from .hub import resolve_source
from .load import fit_architecture
from .read import read_state_dict
from .registry import card_for

__all__ = ["convert"]


# Buffers that normalise the input image; they stay fp32 whatever the weights' precision.
_FP32_KEYS = ("image_mean", "image_std")


def _cast(state_dict: Mapping[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for key, tensor in state_dict.items():
        keep = key.rsplit(".", 1)[-1] in _FP32_KEYS
        if tensor.is_floating_point():
            tensor = tensor.float() if keep else tensor.to(dtype)
        tensor = tensor.contiguous()
        ptr = tensor.untyped_storage().data_ptr()
        if ptr in seen and tensor.numel():  # safetensors refuses tensors that share memory
            tensor = tensor.clone()
        seen.add(ptr)
        out[key] = tensor
    return out


def convert(src: str | os.PathLike, dst: str | os.PathLike, dtype: torch.dtype | str = "fp32", *,
            overwrite: bool = False, preset: str | None = None) -> str:
    """Write a checkpoint (alias or file) as ``.safetensors`` in fp32/fp16/bf16; return its preset.

    Safetensors loads without unpickling and fast; the preset is checked first and recorded in the
    metadata. The output appears atomically (``util.atomic.stream_safetensors``: no copy of the weights in
    memory), so an interrupted run never leaves a half-written ``dst``.
    """
    from .. import __version__

    target = resolve_dtype(dtype)
    out = Path(dst).expanduser()
    if out.suffix.lower() != ".safetensors":
        raise WeightsError(f"output {str(out)!r} must end in .safetensors")
    if out.exists() and not overwrite:
        raise WeightsError(f"output {str(out)!r} already exists; pass --force (overwrite=True) to replace it")
    if out.is_dir():
        raise WeightsError(f"output {str(out)!r} is a directory; give a file name ending in .safetensors")
    if not out.parent.is_dir():
        raise WeightsError(f"directory {str(out.parent)!r} does not exist; create it first")

    path, alias_preset = resolve_source(src)
    state = read_state_dict(path)
    card = card_for(src)
    name, _ = fit_architecture(state, preset, alias_preset, card)
    tensors = _cast(state, target)
    metadata = {"format": "pt", "loger3d_preset": name, "loger3d_version": __version__}
    if card is not None and card.preset == name:  # the model keeps its defaults wherever the file goes
        metadata.update(card.to_metadata())

    stream_safetensors(out, tensors, metadata)
    return name
