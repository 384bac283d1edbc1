"""Similarity transforms Sim(3) in NumPy float64: the drift between two chunks' worlds, and the corrections.

A Sim(3) maps ``x ↦ scale · R · x + t``. Its 7-vector is ``[rotation vector (axis · angle, radians),
translation, log scale]``: the chart in which the pose graph measures and perturbs transforms. The
array functions (``so3_exp``, ``so3_log``, ``compose_arrays``, ...) take any leading batch shape, so
the graph solver evaluates thousands of edges per NumPy call; ``Sim3`` wraps one transform for
everyone else.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError

__all__ = [
    "ROBUST_FIT_FACTOR",
    "Sim3",
    "Sim3Arrays",
    "compose_arrays",
    "fit_sim3",
    "from_vectors",
    "inverse_arrays",
    "robust_fit_sim3",
    "so3_exp",
    "so3_log",
    "to_vectors",
]

#: A batch of transforms: rotation ``[..., 3, 3]``, translation ``[..., 3]``, scale ``[...]``.
Sim3Arrays = tuple[np.ndarray, np.ndarray, np.ndarray]

#: ``robust_fit_sim3``'s default Cauchy scale, in medians of the current fit's residual distances. With Gaussian
#: noise the median distance is ~1.5 σ, so this is ~3 σ: inliers keep weight > 0.5, gross outliers fall to ~0.
ROBUST_FIT_FACTOR = 2.0


def _hat(vectors: np.ndarray) -> np.ndarray:
    """Skew-symmetric cross-product matrices ``[..., 3, 3]`` of vectors ``[..., 3]``."""
    x, y, z = vectors[..., 0], vectors[..., 1], vectors[..., 2]
    zero = np.zeros_like(x)
    return np.stack([zero, -z, y, z, zero, -x, -y, x, zero], axis=-1).reshape(*vectors.shape[:-1], 3, 3)


def so3_exp(rotvec: np.ndarray) -> np.ndarray:
    """Rotation matrices ``[..., 3, 3]`` from rotation vectors ``[..., 3]`` (Rodrigues).

    ``sin θ / θ`` and ``(1 − cos θ) / θ² = ½ sinc²(θ/2)`` come from ``np.sinc``, exact at and near 0
    with no branch and no cancellation.
    """
    rotvec = np.asarray(rotvec, dtype=np.float64)
    angle = np.linalg.norm(rotvec, axis=-1)[..., None, None]
    k = _hat(rotvec)
    a = np.sinc(angle / np.pi)
    b = 0.5 * np.sinc(angle / (2 * np.pi)) ** 2
    return np.eye(3) + a * k + b * (k @ k)


def so3_log(rotation: np.ndarray) -> np.ndarray:
    """Rotation vectors ``[..., 3]`` (angle in [0, π]) of rotation matrices ``[..., 3, 3]``.

    The angle is ``atan2(sin, cos)``, accurate over the whole range. Below 90° the axis comes from the
    skew part (``2 sin θ · axis``); above, where ``sin θ`` vanishes towards π, from the symmetric part
    (``(1 − cos θ) · axis axisᵀ``), with the sign the skew part still gives.
    """
    r = np.asarray(rotation, dtype=np.float64)
    skew = np.stack([r[..., 2, 1] - r[..., 1, 2], r[..., 0, 2] - r[..., 2, 0], r[..., 1, 0] - r[..., 0, 1]], axis=-1)
    cos = np.clip((np.trace(r, axis1=-2, axis2=-1) - 1.0) / 2.0, -1.0, 1.0)
    angle = np.arctan2(np.linalg.norm(skew, axis=-1) / 2.0, cos)
    out = skew / (2.0 * np.sinc(angle / np.pi))[..., None]
    wide = cos < 0.0
    if np.any(wide):
        rw, cw, sw = r[wide], cos[wide], skew[wide]
        sym = 0.5 * (rw + rw.swapaxes(-1, -2)) - cw[:, None, None] * np.eye(3)
        diag = np.diagonal(sym, axis1=-2, axis2=-1)
        rows = np.arange(len(rw))
        pivot = np.argmax(diag, axis=-1)  # the axis' largest component: well conditioned
        axis = sym[rows, :, pivot] / np.sqrt(diag[rows, pivot] * (1.0 - cw))[:, None]
        sign = np.where(np.sum(axis * sw, axis=-1) < 0.0, -1.0, 1.0)
        out[wide] = axis * (sign * angle[wide])[:, None]
    return out


def compose_arrays(first: Sim3Arrays, second: Sim3Arrays) -> Sim3Arrays:
    """``first ∘ second`` (``second`` applied first), batch shapes broadcast."""
    r1, t1, s1 = first
    r2, t2, s2 = second
    return r1 @ r2, s1[..., None] * (r1 @ t2[..., None])[..., 0] + t1, s1 * s2


def inverse_arrays(transform: Sim3Arrays) -> Sim3Arrays:
    """The inverse transforms: ``x ↦ Rᵀ(x − t) / s``."""
    r, t, s = transform
    rt = r.swapaxes(-1, -2)
    return rt, -(rt @ t[..., None])[..., 0] / s[..., None], 1.0 / s


def to_vectors(transform: Sim3Arrays) -> np.ndarray:
    """7-vectors ``[..., 7]``: rotation vector, translation, log scale."""
    r, t, s = transform
    return np.concatenate([so3_log(r), t, np.log(s)[..., None]], axis=-1)


def from_vectors(vectors: np.ndarray) -> Sim3Arrays:
    """Transforms from 7-vectors ``[..., 7]`` (inverse of ``to_vectors`` for angles below π)."""
    v = np.asarray(vectors, dtype=np.float64)
    return so3_exp(v[..., :3]), v[..., 3:6].copy(), np.exp(v[..., 6])


@dataclass(frozen=True, eq=False)  # eq=False: arrays have no truth value, so compare transforms numerically
class Sim3:
    """One similarity ``x ↦ scale · rotation @ x + translation``; rotation ``[3, 3]``, translation ``[3]``.

    The arrays are float64 copies made read-only, so a transform cannot change after it is made.
    """

    rotation: np.ndarray
    translation: np.ndarray
    scale: float = 1.0

    def __post_init__(self) -> None:
        rotation = np.array(self.rotation, dtype=np.float64)
        translation = np.array(self.translation, dtype=np.float64)
        if rotation.shape != (3, 3) or translation.shape != (3,):
            raise ValueError(f"Sim3 needs rotation [3, 3] and translation [3], got {rotation.shape}, "
                             f"{translation.shape}")
        scale = float(self.scale)
        if not (np.isfinite(scale) and scale > 0.0):
            raise ValueError(f"Sim3 scale must be positive and finite, got {scale}")
        rotation.setflags(write=False)
        translation.setflags(write=False)
        object.__setattr__(self, "rotation", rotation)
        object.__setattr__(self, "translation", translation)
        object.__setattr__(self, "scale", scale)

    @classmethod
    def identity(cls) -> Sim3:
        return cls(np.eye(3), np.zeros(3), 1.0)

    @classmethod
    def from_arrays(cls, transform: Sim3Arrays) -> Sim3:
        """One transform from unbatched arrays (rotation ``[3, 3]``, translation ``[3]``, scale ``[]``)."""
        r, t, s = transform
        return cls(r, t, float(s))

    def arrays(self) -> Sim3Arrays:
        """This transform as unbatched arrays, for the array functions."""
        return self.rotation, self.translation, np.asarray(self.scale)

    @classmethod
    def from_vector(cls, vector: np.ndarray) -> Sim3:
        """From a 7-vector ``[rotation vector, translation, log scale]``."""
        vector = np.asarray(vector, dtype=np.float64)
        if vector.shape != (7,):
            raise ValueError(f"a Sim3 vector has 7 entries, got shape {vector.shape}")
        return cls.from_arrays(from_vectors(vector))

    def to_vector(self) -> np.ndarray:
        """The 7-vector ``[rotation vector, translation, log scale]``; rotation angle in [0, π]."""
        return to_vectors(self.arrays())

    def compose(self, other: Sim3) -> Sim3:
        """``self ∘ other``: ``other`` applied first."""
        return Sim3.from_arrays(compose_arrays(self.arrays(), other.arrays()))

    def inverse(self) -> Sim3:
        return Sim3.from_arrays(inverse_arrays(self.arrays()))

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Points ``[..., 3]`` mapped, ``[..., 3]``."""
        points = np.asarray(points, dtype=np.float64)
        return self.scale * points @ self.rotation.T + self.translation

    def matrix(self) -> np.ndarray:
        """Homogeneous ``[4, 4]`` matrix ``[s·R | t]``."""
        out = np.eye(4)
        out[:3, :3] = self.scale * self.rotation
        out[:3, 3] = self.translation
        return out

    @classmethod
    def from_matrix(cls, matrix: np.ndarray) -> Sim3:
        """From a ``[4, 4]`` matrix ``[s·R | t]``; ``s = det^(1/3)``, ``R`` the nearest rotation to the block / s."""
        matrix = np.asarray(matrix, dtype=np.float64)
        if matrix.shape != (4, 4):
            raise ValueError(f"a Sim3 matrix is [4, 4], got {matrix.shape}")
        det = np.linalg.det(matrix[:3, :3])
        if not det > 0.0:
            raise InputError(f"the 3x3 block of the matrix has determinant {det:.3g}: not a similarity (needs > 0)")
        scale = float(np.cbrt(det))
        u, _, vt = np.linalg.svd(matrix[:3, :3] / scale)
        return cls(u @ vt, matrix[:3, 3], scale)

    def apply_to_poses(self, poses: np.ndarray) -> np.ndarray:
        """Camera-to-world poses ``[..., 4, 4]`` of cameras whose world points this transform maps.

        The new pose is ``[R·R_c | s·R·t_c + t]``: rotations stay orthonormal, so a camera's local
        points scale by ``scale`` too (``apply(R_c x + t_c) = new_pose(scale · x)``); scale depth
        maps and local point maps by ``scale`` to keep them consistent with the new poses.
        """
        poses = np.asarray(poses, dtype=np.float64)
        out = np.array(poses, copy=True)
        out[..., :3, :3] = self.rotation @ poses[..., :3, :3]
        out[..., :3, 3] = self.apply(poses[..., :3, 3])
        return out

    @property
    def angle_deg(self) -> float:
        """Rotation angle in degrees, in [0, 180]."""
        return float(np.degrees(np.linalg.norm(so3_log(self.rotation))))

    def __repr__(self) -> str:
        v = self.to_vector()
        return (f"Sim3(angle={self.angle_deg:.4g}°, axis·angle={np.round(v[:3], 6).tolist()}, "
                f"translation={np.round(self.translation, 6).tolist()}, scale={self.scale:.6g})")


def _point_pairs(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None) -> tuple[np.ndarray, ...]:
    """Checked float64 ``src``, ``dst`` ``[M, 3]`` and weights ``[M]``; one-line ``InputError`` otherwise."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 3:
        raise InputError(f"point sets have shapes {src.shape} and {dst.shape}: expected two equal [M, 3]")
    w = np.ones(len(src)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (len(src),):
        raise InputError(f"weights have shape {w.shape}: expected [{len(src)}], one per point")
    if not (np.all(np.isfinite(src)) and np.all(np.isfinite(dst)) and np.all(np.isfinite(w))):
        raise InputError("points or weights are not finite (NaN or inf): drop those points before fitting")
    if np.any(w < 0.0):
        raise InputError("weights must be non-negative")
    if np.count_nonzero(w > 0.0) < 3:
        raise InputError(f"a Sim3 fit needs at least 3 points with positive weight, got {np.count_nonzero(w > 0.0)}")
    return src, dst, w


def fit_sim3(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None, with_scale: bool = True) -> Sim3:
    """The ``Sim3`` mapping ``src`` onto ``dst`` (both ``[M, 3]``) in weighted least squares.

    Umeyama (PAMI 1991) with weights ``[M]`` (``None``: all 1): minimises ``Σ wᵢ ‖dstᵢ − (s·R·srcᵢ + t)‖²``;
    the sign fix keeps ``R`` a rotation when the best orthogonal fit would be a reflection. ``scale`` is
    1 unless ``with_scale``. Raises ``InputError`` for fewer than 3 weighted points or point sets with no
    spread (all the same point).
    """
    src, dst, w = _point_pairs(src, dst, weights)
    w = w / w.sum()
    mean_src, mean_dst = w @ src, w @ dst
    centred_src, centred_dst = src - mean_src, dst - mean_dst
    var_src = float(w @ np.sum(centred_src**2, axis=1))
    var_dst = float(w @ np.sum(centred_dst**2, axis=1))
    for name, var, mean in (("source", var_src, mean_src), ("target", var_dst, mean_dst)):
        if var <= (1e-12 * (1.0 + np.abs(mean).max())) ** 2:
            raise InputError(f"the weighted {name} points are all the same point: a Sim3 fit needs spread points")
    covariance = (centred_dst * w[:, None]).T @ centred_src  # Σ wᵢ dstᵢ srcᵢᵀ, centred
    u, singular, vt = np.linalg.svd(covariance)
    flip = np.ones(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0.0:
        flip[2] = -1.0
    rotation = (u * flip) @ vt
    scale = float(singular @ flip / var_src) if with_scale else 1.0
    if not scale > 0.0:
        raise InputError(f"the fitted scale is {scale:.3g}: the points do not correspond (no positive-scale fit)")
    return Sim3(rotation, mean_dst - scale * rotation @ mean_src, scale)


def robust_fit_sim3(
    src: np.ndarray,
    dst: np.ndarray,
    weights: np.ndarray | None = None,
    robust_scale: float | None = None,
    iterations: int = 10,
    with_scale: bool = True,
) -> tuple[Sim3, np.ndarray]:
    """``fit_sim3`` made robust to outlier pairs: iteratively reweighted least squares, Cauchy kernel.

    Each round refits with ``weights · ρ``, ``ρᵢ = 1 / (1 + (dᵢ / c)²)`` from the residual distances
    ``dᵢ = ‖fit(srcᵢ) − dstᵢ‖`` of the previous fit. ``c`` is ``robust_scale`` (distance units of ``dst``)
    when given; by default ``ROBUST_FIT_FACTOR`` × the median residual of the plain first fit, then of each
    new fit, floored at 1e-9 × the spread of ``dst`` so exact data does not give ``c = 0``. The scale follows
    the fit down because a first fit with 30 % gross outliers is off by degrees: a ``c`` frozen there keeps
    the outliers' pull (several degrees of error left) where the shrinking one removes it (exact inliers are
    recovered to rounding). Stops after ``iterations`` refits or once no ``ρᵢ`` moves by more than 1e-4.
    Returns the fit and ``ρ`` ``[M]`` in [0, 1] at that fit (the robust factor alone, not times ``weights``).
    """
    src, dst, w = _point_pairs(src, dst, weights)
    if robust_scale is not None and not robust_scale > 0.0:
        raise InputError(f"robust_scale must be positive, got {robust_scale}")
    spread = float(np.sqrt(np.mean(np.sum((dst - dst.mean(axis=0)) ** 2, axis=1))))

    def cauchy(fit: Sim3) -> np.ndarray:
        distances = np.linalg.norm(fit.apply(src) - dst, axis=1)
        scale = robust_scale or max(ROBUST_FIT_FACTOR * float(np.median(distances[w > 0.0])), 1e-9 * spread)
        return 1.0 / (1.0 + (distances / scale) ** 2)

    fit = fit_sim3(src, dst, w, with_scale)
    robust = cauchy(fit)
    for _ in range(iterations):
        fit = fit_sim3(src, dst, w * robust, with_scale)
        updated = cauchy(fit)
        change = np.max(np.abs(updated - robust))
        robust = updated
        if change < 1e-4:
            break
    return fit, robust
