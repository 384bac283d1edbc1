"""Pinhole intrinsics recovered from the model's camera-frame point maps.

The model predicts no K; its local points imply one. For pixel (row r, col c) we use the OpenCV
convention that the pixel's centre is at u = c, v = r (integers at pixel centres; exporters whose
convention puts the first pixel's centre at 0.5, like COLMAP and nerfstudio, add 0.5 to cx, cy).
With x̂ = X/Z and ŷ = Y/Z, the fit is u = fx·x̂ + cx and v = fy·ŷ + cy, by weighted least squares.
"""

from __future__ import annotations

import numpy as np

__all__ = ["camera_arrays", "estimate_intrinsics", "estimate_shared_intrinsics", "shared_intrinsics"]


def estimate_intrinsics(local_points: np.ndarray, conf: np.ndarray | None = None, step: int = 1) -> np.ndarray:
    """Per-frame K ``[n, 3, 3]`` float64 from local points ``[n, H, W, 3]`` (Z is depth).

    Pixels count when Z > 0 and all of X, Y, Z are finite, weighted by ``conf`` ``[n, H, W]`` if
    given. A frame with fewer than two distinct weighted columns or rows gets NaN focal lengths
    and centres. ``step`` fits on every step-th row and column only (a line fit needs few pixels).
    """
    pts = np.asarray(local_points)
    if pts.ndim != 4 or pts.shape[-1] != 3:
        raise ValueError(f"local_points have shape {pts.shape}, expected [n, H, W, 3]")
    n, h, w, _ = pts.shape
    if conf is not None and np.shape(conf) != (n, h, w):
        raise ValueError(f"conf has shape {np.shape(conf)}, expected {(n, h, w)} to match local_points")
    pts = pts[:, ::step, ::step].astype(np.float64)
    conf = None if conf is None else np.asarray(conf)[:, ::step, ::step]
    rows, cols = np.meshgrid(np.arange(0, h, step, dtype=np.float64), np.arange(0, w, step, dtype=np.float64),
                             indexing="ij")
    h, w = rows.shape
    z = pts[..., 2]
    valid = np.isfinite(pts).all(axis=-1) & (z > 0)
    weight = valid.astype(np.float64)
    if conf is not None:
        weight *= np.where(valid, conf.astype(np.float64), 0.0)
    safe_z = np.where(valid, z, 1.0)
    x_hat = np.where(valid, pts[..., 0] / safe_z, 0.0)
    y_hat = np.where(valid, pts[..., 1] / safe_z, 0.0)
    fx, cx = _weighted_line(x_hat, np.broadcast_to(cols, x_hat.shape), weight)
    fy, cy = _weighted_line(y_hat, np.broadcast_to(rows, y_hat.shape), weight)
    k = np.zeros((n, 3, 3))
    k[:, 0, 0], k[:, 0, 2], k[:, 1, 1], k[:, 1, 2], k[:, 2, 2] = fx, cx, fy, cy, 1.0
    return k


def shared_intrinsics(intrinsics: np.ndarray) -> np.ndarray:
    """One K ``[3, 3]`` for a run from per-frame K ``[n, 3, 3]``: the median of each of fx, fy, cx, cy.

    A video comes from one camera, so one K is the right model; the median ignores frames whose
    fit failed (NaN) or was thrown off.
    """
    k = np.asarray(intrinsics, dtype=np.float64)
    params = k[:, [0, 1, 0, 1], [0, 1, 2, 2]]  # fx, fy, cx, cy
    if not np.isfinite(params).all(axis=1).any():
        raise ValueError("no frame has finite intrinsics: the point maps hold no valid pixels")
    fx, fy, cx, cy = np.nanmedian(params, axis=0)
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def estimate_shared_intrinsics(local_points: np.ndarray, conf: np.ndarray | None = None) -> np.ndarray:
    """One K ``[3, 3]`` for all frames of ``local_points`` ``[n, H, W, 3]`` (see :func:`shared_intrinsics`)."""
    return shared_intrinsics(estimate_intrinsics(local_points, conf))


def _weighted_line(x: np.ndarray, u: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Slope and intercept ``[n]`` of u ≈ slope·x + intercept per frame, weights ``w``, centred for accuracy."""
    axes = (1, 2)
    total = w.sum(axis=axes)
    with np.errstate(divide="ignore", invalid="ignore"):
        mx = (w * x).sum(axis=axes) / total
        mu = (w * u).sum(axis=axes) / total
        dx = x - mx[:, None, None]
        var = (w * dx * dx).sum(axis=axes)
        cov = (w * dx * (u - mu[:, None, None])).sum(axis=axes)
        slope = np.where(var > 0, cov / var, np.nan)
    return slope, mu - slope * mx


def camera_arrays(names: list[str], poses_c2w: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Checked ``poses_c2w`` ``[n, 4, 4]`` float64 and ``K``: ``[3, 3]`` when shared (also when ``[n, 3, 3]``
    holds one camera n times), else ``[n, 3, 3]``. For the exporters, which write one camera or one per frame."""
    poses = np.asarray(poses_c2w, dtype=np.float64)
    n = len(names)
    if poses.shape != (n, 4, 4):
        raise ValueError(f"poses_c2w have shape {poses.shape}, expected ({n}, 4, 4): one per name")
    K = np.asarray(K, dtype=np.float64)
    if K.shape not in ((3, 3), (n, 3, 3)):
        raise ValueError(f"K has shape {K.shape}, expected (3, 3) shared or ({n}, 3, 3) per frame")
    if K.ndim == 3 and n and (K == K[0]).all():
        K = K[0]
    return poses, K
