"""loger3d: long-video 3D reconstruction with LoGeR (hybrid TTT + sliding-window memory).

    import loger3d
    model = loger3d.load_model("loger", device="cuda")
    pred = model(images, window_size=32, overlap_size=3)   # images [N,3,H,W] in [0, 1]
    pred.points, pred.conf, pred.camera_poses

The names below are imported on first use, so that the command line starts (and answers Ctrl-C,
``--help`` or a bad option) before PyTorch is loaded. This module itself imports nothing that the
interpreter has not loaded already: ``python -m loger3d`` runs it before ``__main__`` can catch Ctrl-C,
so the time it takes is a window in which Ctrl-C would print a traceback.
"""

import importlib

TYPE_CHECKING = False

__version__ = "0.1.0"

__all__ = ["ModelConfig", "PRESETS", "get_config", "LoGeR", "ChunkMemory", "ChunkPrediction", "Prediction",
           "LogerError", "build_model", "load_model", "__version__"]

_LAZY = {"LogerError": ".errors", "ModelConfig": ".config", "PRESETS": ".config", "get_config": ".config",
         "LoGeR": ".model", "ChunkMemory": ".model", "ChunkPrediction": ".model", "Prediction": ".model"}

if TYPE_CHECKING:
    from typing import Any

    import torch

    from .config import PRESETS, ModelConfig, get_config
    from .errors import LogerError
    from .model import ChunkMemory, ChunkPrediction, LoGeR, Prediction


def __getattr__(name: str) -> "Any":
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_model(preset: "str | ModelConfig" = "loger", device: "torch.device | str | None" = None) -> "LoGeR":
    """A network of the given preset with freshly initialised (not pretrained) weights, in eval mode.

    ``device="meta"`` builds it without allocating memory (to inspect shapes or to load into).
    """
    import torch

    from .model import LoGeR

    with torch.device(device or "cpu"):
        return LoGeR(preset).eval()


def load_model(source: str, device: "torch.device | str | None" = None, dtype: "torch.dtype | str | None" = None,
               preset: str | None = None) -> "LoGeR":
    """Pretrained weights from an alias (``loger``, ``loger_star``, ``pi3``; ``tiny_synthetic``, shipped in the
    package), a ``.pt`` or a ``.safetensors``.

    See ``loger3d.weights.load_model``.
    """
    from .weights import load_model as _load

    return _load(source, device=device, dtype=dtype, preset=preset)
