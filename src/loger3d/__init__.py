"""loger3d: long-video 3D reconstruction with LoGeR (hybrid TTT + sliding-window memory).

    import loger3d
    model = loger3d.load_model("loger", device="cuda")
    pred = model(images, window_size=32, overlap_size=3)   # images [N,3,H,W] in [0, 1]
    pred.points, pred.conf, pred.camera_poses
"""

from __future__ import annotations

import torch

from .config import PRESETS, ModelConfig, get_config
from .model import ChunkMemory, ChunkPrediction, LoGeR, Prediction

__version__ = "0.1.0"

__all__ = ["ModelConfig", "PRESETS", "get_config", "LoGeR", "ChunkMemory", "ChunkPrediction", "Prediction",
           "build_model", "load_model", "__version__"]


def build_model(preset: str | ModelConfig = "loger", device: torch.device | str | None = None) -> LoGeR:
    """A network of the given preset with freshly initialised (not pretrained) weights, in eval mode.

    ``device="meta"`` builds it without allocating memory (to inspect shapes or to load into).
    """
    with torch.device(device or "cpu"):
        return LoGeR(preset).eval()


def load_model(source: str, device: torch.device | str | None = None, dtype: torch.dtype | str | None = None,
               preset: str | None = None) -> LoGeR:
    """Pretrained weights from an alias (``loger``, ``loger_star``, ``pi3``; ``tiny_synthetic``, shipped in the
    package), a ``.pt`` or a ``.safetensors``.

    See ``loger3d.weights.load_model``.
    """
    from .weights import load_model as _load

    return _load(source, device=device, dtype=dtype, preset=preset)
