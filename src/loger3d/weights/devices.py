"""Devices and precisions as users name them (``--device``, ``--dtype``), resolved and checked in one place."""

from __future__ import annotations

import torch

from ..errors import WeightsError

__all__ = ["auto_dtype", "resolve_device", "resolve_dtype"]


_DTYPES: dict[str, torch.dtype] = {
    "fp32": torch.float32, "float32": torch.float32, "float": torch.float32,
    "fp16": torch.float16, "float16": torch.float16, "half": torch.float16,
    "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
}


_DTYPE_NAMES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}


def resolve_dtype(dtype: torch.dtype | str | None) -> torch.dtype:
    """The torch dtype a ``--dtype`` value (fp32, bf16, fp16 and their long names) or a dtype names; ``None``: fp32."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype) and dtype in _DTYPE_NAMES:
        return dtype
    if isinstance(dtype, str) and dtype.lower().removeprefix("torch.") in _DTYPES:
        return _DTYPES[dtype.lower().removeprefix("torch.")]
    raise WeightsError(f"unknown dtype {dtype!r}; use fp32, bf16 or fp16")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def _device_choices() -> str:
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    choices = ["auto", "cpu"]
    if count:
        choices += ["cuda", "cuda:0" if count == 1 else f"cuda:N with N < {count}"]
    if _mps_available():
        choices.append("mps")
    return ", ".join(choices)


def _no_cuda() -> str:
    if torch.version.cuda is None and getattr(torch.version, "hip", None) is None:
        return f"this PyTorch ({torch.__version__}) is built without CUDA"
    return "PyTorch sees no CUDA device (driver, CUDA_VISIBLE_DEVICES?)"


def resolve_device(spec: torch.device | str | None = "auto") -> torch.device:
    """The device a ``--device`` value names, checked to exist here; :class:`WeightsError` (one line) if not.

    ``auto`` (or ``None``): CUDA when PyTorch sees a GPU, else the CPU. Accepted are ``cpu``,
    ``cuda``, ``cuda:N`` with N below the number of visible GPUs, and ``mps`` where available.
    Nothing is allocated, so a command can check its options before it loads anything.
    """
    if spec is None or (isinstance(spec, str) and spec.strip().lower() == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(spec, (str, torch.device)):
        raise WeightsError(f"device must be a string or torch.device, not {type(spec).__name__}; "
                           f"choose {_device_choices()}")
    try:
        device = spec if isinstance(spec, torch.device) else torch.device(spec.strip().lower())
    except (RuntimeError, ValueError, TypeError):
        raise WeightsError(f"unknown device {str(spec)!r} (not a PyTorch device); choose {_device_choices()}") from None
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise WeightsError(f"device {str(spec)!r} is not usable: {_no_cuda()}; choose {_device_choices()}")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            seen = "cuda:0" if count == 1 else f"cuda:0 to cuda:{count - 1}"
            raise WeightsError(f"device {str(spec)!r} does not exist: PyTorch sees {count} CUDA device"
                               f"{'s' if count > 1 else ''} ({seen}); choose {_device_choices()}")
        return device
    if device.type == "mps":
        if not _mps_available():
            raise WeightsError(f"device {str(spec)!r} is not usable: MPS (Apple GPU) is not available here; "
                               f"choose {_device_choices()}")
        return device
    raise WeightsError(f"device {str(spec)!r} is not supported by loger3d (CPU, CUDA or MPS only); "
                       f"choose {_device_choices()}")


def auto_dtype(device: torch.device) -> str:
    """``--dtype auto``: bf16 on CUDA (the official demo's autocast), fp32 elsewhere."""
    return "bf16" if device.type == "cuda" else "fp32"
