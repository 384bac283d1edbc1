"""Turning decoded pictures into what the model eats, by the official demo's rules.

The official LoGeR demo (ARCHITECTURE.md §2.2 of the reference notes) sizes every frame of a run
from the first one: scale it to about ``max_pixels`` pixels, round each side to a multiple of the
14-pixel patch, shrink the side that overshoots most until the pixel count fits, then resize
every frame to that size with PIL's LANCZOS filter. Frames travel as uint8 ``[H,W,3]`` arrays
(a quarter of the memory of float) and become float ``[n,3,H,W]`` in [0, 1] only for the model.

    size = demo_target_size(640, 480)                 # (574, 434)
    image = resize_frame(to_rgb8(Image.open(path)), size)
    batch = frames_to_tensor(np.stack(images))        # [n,3,H,W] float32
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from ..errors import InputError

if TYPE_CHECKING:
    import torch

__all__ = ["PATCH", "PIXEL_LIMIT", "demo_target_size", "parse_resolution", "to_rgb8", "resize_frame",
           "frames_to_tensor"]

#: side of the model's square patch; both sides of a frame must be multiples of it
PATCH = 14
#: the official demo's pixel budget per frame
PIXEL_LIMIT = 255000

# Single-channel modes of more than 8 bits, and the largest value of each (what maps to 255).
# Pillow opens 16-bit PNG/TIFF as I;16* (older versions as I, hence 16 bits for I too);
# F is taken as [0, 1], the usual range of float images.
_DEEP_MODES = {"I;16": 65535, "I;16L": 65535, "I;16B": 65535, "I;16N": 65535, "I": 65535, "F": 1.0}
_RESOLUTION = re.compile(r"^\s*(\d+)\s*[xX×,]\s*(\d+)\s*$")


def demo_target_size(width: int, height: int, max_pixels: int = PIXEL_LIMIT, patch: int = PATCH) -> tuple[int, int]:
    """``(W, H)``, multiples of ``patch`` with ``W·H <= max_pixels``, that the demo resizes a ``width×height`` run to.

    Upscales small inputs as well as downscaling large ones, exactly like the official demo:
    640×480 → 574×434, 1241×376 → 924×266, 1920×1080 → 672×378.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    if max_pixels < patch * patch:
        raise InputError(f"max_pixels must be at least {patch * patch} (one {patch}x{patch} patch), got {max_pixels}")
    scale = math.sqrt(max_pixels / (width * height))
    target_w, target_h = width * scale, height * scale
    k, m = round(target_w / patch), round(target_h / patch)
    while (k * patch) * (m * patch) > max_pixels:
        if k / m > target_w / target_h:
            k -= 1
        else:
            m -= 1
    return patch * max(1, k), patch * max(1, m)


def parse_resolution(value: str | tuple[int, int]) -> tuple[int, int]:
    """``"504x280"`` or ``(504, 280)`` → ``(504, 280)``, checked to be positive multiples of 14 (the patch)."""
    if isinstance(value, str):
        match = _RESOLUTION.match(value)
        if match is None:
            raise InputError(f"cannot parse resolution {value!r}; write it as WIDTHxHEIGHT, e.g. 504x280")
        width, height = int(match[1]), int(match[2])
    else:
        width, height = (int(v) for v in value)
    if width % PATCH or height % PATCH or width <= 0 or height <= 0:
        low = (max(PATCH, width // PATCH * PATCH), max(PATCH, height // PATCH * PATCH))
        high = (max(PATCH, -(-width // PATCH) * PATCH), max(PATCH, -(-height // PATCH) * PATCH))
        raise InputError(f"resolution {width}x{height} must be positive multiples of {PATCH} on both sides; "
                         f"nearest valid sizes: {low[0]}x{low[1]} or {high[0]}x{high[1]}")
    return width, height


def to_rgb8(img: Image.Image) -> Image.Image:
    """The picture as 8-bit RGB, whatever its mode.

    Alpha (RGBA, LA, PA, transparent palettes) is dropped, not composited: the colour under a
    transparent pixel is kept, as the official demo's ``convert("RGB")`` does. Deep single-channel
    modes are scaled by their own range instead of clipped (PIL's ``convert`` clips them): 16-bit
    (I;16, I;16B, I) maps 65535 → 255 (value/257, rounded); F maps [0, 1] → [0, 255].
    """
    if img.mode == "RGB":
        return img
    if img.mode in _DEEP_MODES:
        values = np.asarray(img, dtype=np.float64) * (255.0 / _DEEP_MODES[img.mode])
        gray = np.rint(np.clip(values, 0, 255)).astype(np.uint8)
        return Image.fromarray(np.repeat(gray[..., None], 3, axis=-1), "RGB")
    try:
        return img.convert("RGB")
    except ValueError as e:  # a mode PIL cannot convert (rare: e.g. exotic raw modes)
        raise InputError(f"cannot convert an image of mode {img.mode} to RGB: {e}") from None


def resize_frame(img: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """``img`` (any mode) resized to ``size = (W, H)`` with LANCZOS → uint8 ``[H,W,3]``."""
    rgb = to_rgb8(img)
    if rgb.size != tuple(size):
        rgb = rgb.resize(tuple(size), Image.Resampling.LANCZOS)
    return np.asarray(rgb, dtype=np.uint8)


def frames_to_tensor(images: np.ndarray, scaled: bool = True) -> torch.Tensor:
    """uint8 ``[n,H,W,3]`` → float32 ``[n,3,H,W]`` in [0, 1], the model's input (add the batch axis yourself).

    ``scaled=False`` keeps uint8 ``[n,3,H,W]``: the model scales it on its device, bit for bit the
    same, after moving a quarter of the bytes.
    """
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [n,H,W,3], got {images.dtype} {list(images.shape)}; "
                         "stack Frame.image arrays with np.stack")
    import torch  # here, so that reading and sizing frames never loads PyTorch

    channels_first = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
    return channels_first.float().div_(255.0) if scaled else channels_first.contiguous()
