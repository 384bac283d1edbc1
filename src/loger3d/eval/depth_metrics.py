"""Video-depth metrics: AbsRel, SqRel, RMSE, log-RMSE and δ thresholds after a scale (and shift) fit.

The video-depth protocol of the feed-forward line of work (CUT3R, TTT3R, LoGeR) fits ONE
alignment per sequence, so errors that vary over time are not hidden, and pools every valid
pixel of the sequence; mono-depth protocols fit one per frame instead (``per_frame=True``).
Depth maps are ``[F, H, W]`` (or any shape, pixels are flattened) in metres; a pixel is valid
where the ground truth is finite, > 0 and below ``max_depth``, and the prediction is finite.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from ..errors import InputError

__all__ = [
    "DEPTH_ALIGNMENTS",
    "DepthAlignment",
    "combine_depth_metrics",
    "depth_errors",
    "fit_depth_alignment",
    "l1_scale",
    "l1_scale_shift",
    "video_depth_metrics",
]

DepthAlignment = Literal["scale", "scale_shift", "median", "none"]
DEPTH_ALIGNMENTS: tuple[str, ...] = ("scale", "scale_shift", "median", "none")

#: Floor of the prediction before logarithms and ratios (the official scripts' clamp).
_MIN_DEPTH = 1e-5


def l1_scale(pred: np.ndarray, gt: np.ndarray) -> float:
    """The scale s minimising ``Σ|s·pred − gt|`` over depths ``[M]``.

    Exact: ``Σ |pred_i|·|s − gt_i/pred_i|`` is minimised by the median of the ratios weighted by
    ``|pred_i|`` (the point the official scripts' Weiszfeld iterations approach).
    """
    pred, gt = _flat_pair(pred, gt)
    keep = pred != 0
    if not keep.any():
        raise InputError("all predicted depths are zero, so no scale fits: check the prediction")
    ratios, weights = gt[keep] / pred[keep], np.abs(pred[keep])
    order = np.argsort(ratios)
    cumulative = np.cumsum(weights[order])
    return float(ratios[order][np.searchsorted(cumulative, 0.5 * cumulative[-1])])


def l1_scale_shift(pred: np.ndarray, gt: np.ndarray, tol: float = 1e-12) -> tuple[float, float]:
    """``(s, t)`` minimising ``Σ|s·pred + t − gt|`` (least absolute deviations), to ``tol`` relative in s.

    For a fixed s the best t is median(gt − s·pred), and the remaining cost of s is convex with
    subgradient ``Σ pred_i·sign(s·pred_i + t − gt_i)``; bisection on its sign, from a bracket
    around the least-squares slope, reaches the exact minimiser (reweighted least squares creeps
    towards it far more slowly on millions of pixels).
    """
    pred, gt = _flat_pair(pred, gt)

    def slope(scale: float) -> float:
        residual = scale * pred - gt
        return float(np.dot(pred, np.sign(residual - np.median(residual))))

    if np.ptp(pred) == 0:
        raise InputError("all predicted depths are equal, so no scale and shift fit: check the prediction")
    start = float(np.polyfit(pred, gt, 1)[0])
    width = max(abs(start), 1e-12)
    low, high = start, start
    if slope(start) > 0:
        while slope(low) > 0 and width < 1e300:
            low, width = start - width, 2 * width
    else:
        while slope(high) < 0 and width < 1e300:
            high, width = start + width, 2 * width
    while high - low > tol * max(abs(low), abs(high), 1e-300):
        middle = 0.5 * (low + high)
        if middle in (low, high):
            break
        low, high = (low, middle) if slope(middle) > 0 else (middle, high)
    scale = 0.5 * (low + high)
    return scale, float(np.median(gt - scale * pred))


def fit_depth_alignment(pred: np.ndarray, gt: np.ndarray, method: DepthAlignment) -> tuple[float, float]:
    """``(scale, shift)`` mapping valid predicted depths ``[M]`` onto ground truth ``[M]``.

    ``scale``: L1 scale (:func:`l1_scale`); ``scale_shift``: L1 scale and shift
    (:func:`l1_scale_shift`); ``median``: median(gt) / median(pred); ``none``: (1, 0) for metric depth.
    """
    if method == "scale":
        return l1_scale(pred, gt), 0.0
    if method == "scale_shift":
        return l1_scale_shift(pred, gt)
    if method == "median":
        return float(np.median(gt) / np.median(pred)), 0.0
    if method == "none":
        return 1.0, 0.0
    raise InputError(f"unknown depth alignment {method!r}: use one of {', '.join(DEPTH_ALIGNMENTS)}")


def depth_errors(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """The standard depth metrics of aligned valid depths ``[M]`` (ground truth > 0).

    ``abs_rel`` = mean |d̂−d|/d, ``sq_rel`` = mean (d̂−d)²/d, ``rmse``, ``log_rmse`` (natural log),
    ``delta1..3`` = fraction with max(d̂/d, d/d̂) < 1.25, 1.25², 1.25³. The prediction is floored at
    1e-5 before logs and ratios, as the official scripts do.
    """
    pred, gt = _flat_pair(pred, gt)
    diff = pred - gt
    floored = np.maximum(pred, _MIN_DEPTH)
    ratio = np.maximum(floored / gt, gt / floored)
    return {
        "abs_rel": float(np.mean(np.abs(diff) / gt)),
        "sq_rel": float(np.mean(diff**2 / gt)),
        "rmse": float(np.sqrt(np.mean(diff**2))),
        "log_rmse": float(np.sqrt(np.mean((np.log(floored) - np.log(gt)) ** 2))),
        "delta1": float(np.mean(ratio < 1.25)),
        "delta2": float(np.mean(ratio < 1.25**2)),
        "delta3": float(np.mean(ratio < 1.25**3)),
    }


def video_depth_metrics(
    pred: np.ndarray,
    gt: np.ndarray,
    align: DepthAlignment = "scale",
    max_depth: float | None = None,
    per_frame: bool = False,
) -> dict[str, float]:
    """Metrics of one sequence: predicted and ground-truth depth ``[F, H, W]`` of equal shape.

    One alignment over all valid pixels of the sequence, or one per frame with ``per_frame`` (the
    metrics are then the mean over frames with valid pixels). With ``max_depth`` the mask keeps
    ground truth below it and the aligned prediction is clipped to it (the official Sintel and
    Bonn settings, 70 m). Adds ``valid_pixels`` (the weight of :func:`combine_depth_metrics`) and,
    for a sequence-wide fit, ``scale`` and ``shift``.
    """
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if pred.shape != gt.shape:
        raise InputError(f"predicted depth has shape {pred.shape}, ground truth {gt.shape}: resize the prediction")
    valid = np.isfinite(gt) & (gt > 0) & np.isfinite(pred)
    if max_depth is not None:
        valid &= gt < max_depth
    if not valid.any():
        raise InputError("no valid ground-truth depth (finite, > 0, below max_depth): check the inputs and max_depth")
    if not per_frame:
        scale, shift = fit_depth_alignment(pred[valid], gt[valid], align)
        result = depth_errors(_clip(scale * pred[valid] + shift, max_depth), gt[valid])
        return {**result, "scale": scale, "shift": shift, "valid_pixels": int(valid.sum())}
    frames = []
    for frame_pred, frame_gt, frame_valid in zip(pred, gt, valid):
        if frame_valid.any():
            scale, shift = fit_depth_alignment(frame_pred[frame_valid], frame_gt[frame_valid], align)
            aligned = _clip(scale * frame_pred[frame_valid] + shift, max_depth)
            frames.append(depth_errors(aligned, frame_gt[frame_valid]))
    return {**{key: float(np.mean([f[key] for f in frames])) for key in frames[0]}, "valid_pixels": int(valid.sum())}


def combine_depth_metrics(results: Sequence[dict[str, float]]) -> dict[str, float]:
    """Average of per-sequence metrics weighted by their ``valid_pixels`` (the official cross-sequence mean)."""
    if not results:
        raise InputError("no sequence results to combine: evaluate at least one sequence")
    weights = np.array([r["valid_pixels"] for r in results], dtype=np.float64)
    keys = [k for k in results[0] if k not in ("valid_pixels", "scale", "shift")]
    combined = {k: float(np.average([r[k] for r in results], weights=weights)) for k in keys}
    return {**combined, "valid_pixels": int(weights.sum())}


def _clip(depth: np.ndarray, max_depth: float | None) -> np.ndarray:
    return depth if max_depth is None else np.minimum(depth, max_depth)


def _flat_pair(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred, dtype=np.float64).ravel()
    gt = np.asarray(gt, dtype=np.float64).ravel()
    if pred.shape != gt.shape or pred.size == 0:
        raise InputError(f"depth vectors have {pred.size} and {gt.size} values: expected equal, non-empty")
    return pred, gt
