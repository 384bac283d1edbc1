"""Trajectory metrics: alignment, ATE, RPE and the KITTI / VBR segment errors.

Poses are camera-to-world ``[N, 4, 4]`` float64 arrays; ``gt[i]`` and ``est[i]`` are the same
instant (association happens before, see ``loger3d.eval.traj``). Definitions follow evo
(alignment, ATE, RPE, pair selection) and the KITTI odometry devkit (segment errors), so that
our numbers can be compared with theirs; ``docs/evaluation.md`` gives every formula.

Alignment moves the ESTIMATE onto the ground truth: ``est'_i = [R·R_i, s·R·t_i + t]`` (the scale
acts on positions only, rotations stay orthonormal), as evo's ``align``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..errors import InputError

__all__ = [
    "ALIGNMENTS",
    "KITTI_LENGTHS",
    "VBR_FRACTIONS",
    "Alignment",
    "SegmentErrors",
    "Similarity",
    "align_trajectory",
    "ate_errors",
    "error_stats",
    "kitti_segment_metric",
    "path_distances",
    "relative_errors",
    "rotation_angle",
    "rpe_errors",
    "rpe_pairs",
    "segment_errors",
    "umeyama",
    "vbr_segment_metric",
]

Alignment = Literal["sim3", "se3", "origin", "none"]
ALIGNMENTS: tuple[str, ...] = ("sim3", "se3", "origin", "none")

#: Segment lengths of the KITTI odometry devkit, metres of ground-truth path.
KITTI_LENGTHS: tuple[float, ...] = (100.0, 200.0, 300.0, 400.0, 500.0, 600.0, 700.0, 800.0)
#: Segment lengths of the VBR benchmark, as fractions of the ground truth's total path length.
VBR_FRACTIONS: tuple[float, ...] = (0.01, 0.02, 0.03, 0.05, 0.08, 0.13, 0.21, 0.34, 0.55)


@dataclass(frozen=True)
class Similarity:
    """``x ↦ scale · rotation @ x + translation``; rotation ``[3, 3]``, translation ``[3]``."""

    rotation: np.ndarray
    translation: np.ndarray
    scale: float = 1.0

    def apply(self, poses: np.ndarray) -> np.ndarray:
        """Camera-to-world poses ``[N, 4, 4]`` moved by this transform (scale on positions only)."""
        out = np.array(poses, dtype=np.float64, copy=True)
        out[:, :3, :3] = self.rotation @ out[:, :3, :3]
        out[:, :3, 3] = self.scale * out[:, :3, 3] @ self.rotation.T + self.translation
        return out


def umeyama(source: np.ndarray, target: np.ndarray, with_scale: bool) -> Similarity:
    """Least-squares ``(s, R, t)`` minimising ``Σ‖target_i − (s·R·source_i + t)‖²`` for points ``[N, 3]``.

    Umeyama (PAMI 1991), computed as evo's ``geometry.umeyama_alignment`` computes it (the same
    sums in the same order, so the same numbers); ``s = 1`` unless ``with_scale``. As evo, the fit
    needs at least two singular values of the covariance above machine epsilon. Positions on a
    straight line give a rank-1 covariance in exact arithmetic; evo (so this) scores them when
    rounding leaves a second singular value above epsilon (a line in a general direction, some
    metres long) and refuses them when it does not (an exact line along a coordinate axis, a path of
    nanometres, all points the same). When scored, the rotation about the line is fixed by rounding
    but no metric depends on it: it keeps the length of every ATE residual, and RPE and segment
    errors are relative.
    """
    source = np.ascontiguousarray(source, dtype=np.float64)  # evo's positions_xyz layout, so its sums
    target = np.ascontiguousarray(target, dtype=np.float64)
    if source.shape != target.shape or source.ndim != 2 or source.shape[1] != 3:
        raise InputError(f"point sets have shapes {source.shape} and {target.shape}: expected two equal [N, 3]")
    n = len(source)
    if n == 0:
        raise InputError("no points to align: the trajectories have no poses in common")
    x, y = source.T, target.T  # evo's layout: [3, N]
    mean_x, mean_y = x.mean(axis=1), y.mean(axis=1)
    centred_x, centred_y = x - mean_x[:, None], y - mean_y[:, None]
    sigma_x = 1.0 / n * np.linalg.norm(centred_x) ** 2
    # evo adds the outer products one by one; a cumulative sum adds them in the same order.
    outer = centred_y.T[:, :, None] * centred_x.T[:, None, :]
    covariance = np.multiply(1.0 / n, np.cumsum(outer, axis=0)[-1])
    u, d, vt = np.linalg.svd(covariance)
    if np.count_nonzero(d > np.finfo(d.dtype).eps) < 2:
        raise InputError(_degenerate_message(source, target))
    s = np.eye(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0.0:
        s[2, 2] = -1.0  # a proper rotation (Kabsch)
    rotation = u.dot(s).dot(vt)
    scale = float(1 / sigma_x * np.trace(np.diag(d).dot(s))) if with_scale else 1.0
    return Similarity(rotation, mean_y - np.multiply(scale, rotation.dot(mean_x)), scale)


def _degenerate_message(source: np.ndarray, target: np.ndarray) -> str:
    """Why the Umeyama fit of ``source`` (estimate) onto ``target`` (ground truth) is refused, in one line."""
    fix = "use align 'origin' or 'none'"
    if len(source) == 1:
        return f"only one pose to align, which fixes no rotation: align on more poses (--n-align) or {fix}"
    for name, points in (("estimated", source), ("ground-truth", target)):
        if np.all(points == points[0]):
            return (
                f"all {len(points)} {name} positions to align are the same point (zero variance), so no rotation "
                f"or scale can be fitted: {fix}"
            )
    return (
        "the positions to align are collinear within machine precision (their covariance has fewer than two "
        "singular values above epsilon, as for an exact line along a coordinate axis, where evo's Umeyama "
        f"alignment refuses too), so the rotation about the line is undetermined: {fix}"
    )


def align_trajectory(
    gt: np.ndarray, est: np.ndarray, method: Alignment = "sim3", n_align: int | None = None
) -> tuple[np.ndarray, Similarity]:
    """The estimate ``[N, 4, 4]`` aligned to ``gt``, and the transform used.

    ``sim3`` / ``se3``: Umeyama on the positions (of the first ``n_align`` poses when given, as evo's
    ``n_to_align``); ``origin``: the estimate's first pose moved onto the ground truth's first pose
    (evo's ``align_origin``); ``none``: unchanged.
    """
    gt, est = _check_pair(gt, est)
    if method in ("sim3", "se3"):
        count = len(gt) if n_align is None else n_align
        if not 1 <= count <= len(gt):
            raise InputError(f"n_align is {n_align} but there are {len(gt)} poses: use 1..{len(gt)} or leave it unset")
        transform = umeyama(est[:count, :3, 3], gt[:count, :3, 3], with_scale=method == "sim3")
    elif method == "origin":
        to_origin = gt[0] @ _rigid_inverse(est[:1])[0]
        transform = Similarity(to_origin[:3, :3], to_origin[:3, 3])
    elif method == "none":
        transform = Similarity(np.eye(3), np.zeros(3))
    else:
        raise InputError(f"unknown alignment {method!r}: use one of {', '.join(ALIGNMENTS)}")
    return transform.apply(est), transform


def error_stats(errors: np.ndarray) -> dict[str, float]:
    """rmse, mean, median, std (population), min and max of a non-empty error vector, as evo reports them."""
    errors = np.asarray(errors, dtype=np.float64)
    if errors.size == 0:
        raise InputError("no errors to summarise: the trajectories have no poses or pairs in common")
    return {
        "rmse": float(np.sqrt(np.mean(errors**2))),
        "mean": float(np.mean(errors)),
        "median": float(np.median(errors)),
        "std": float(np.std(errors)),
        "min": float(np.min(errors)),
        "max": float(np.max(errors)),
    }


def ate_errors(gt: np.ndarray, est: np.ndarray) -> np.ndarray:
    """Absolute translation errors ``[N]``: ``‖t_gt,i − t_est,i‖`` (apply the alignment first)."""
    gt, est = _check_pair(gt, est)
    return np.linalg.norm(gt[:, :3, 3] - est[:, :3, 3], axis=1)


def rotation_angle(rotations: np.ndarray) -> np.ndarray:
    """Angles in radians ``[...]`` (0 to π) of rotation matrices ``[..., 3, 3]``.

    ``atan2(sin, cos)`` with both parts read off the matrix: the same angle as
    ``acos((tr R − 1) / 2)`` (the devkit's formula) without its loss of precision near zero.
    """
    r = np.asarray(rotations, dtype=np.float64)
    cos = (np.trace(r, axis1=-2, axis2=-1) - 1.0) / 2.0
    skew = np.stack([r[..., 2, 1] - r[..., 1, 2], r[..., 0, 2] - r[..., 2, 0], r[..., 1, 0] - r[..., 0, 1]], -1)
    return np.arctan2(np.linalg.norm(skew, axis=-1) / 2.0, cos)


def path_distances(poses: np.ndarray) -> np.ndarray:
    """Travelled distance ``[N]`` from the first pose to each pose (0 first), along the positions."""
    return _travelled(np.asarray(poses, dtype=np.float64)[:, :3, 3])


def rpe_pairs(
    poses: np.ndarray, delta: float, unit: Literal["f", "m"] = "f", all_pairs: bool = False, rel_tol: float = 0.1
) -> np.ndarray:
    """Index pairs ``[M, 2]`` (i, j) of the RPE, chosen on ``poses`` exactly as evo's ``id_pairs_from_delta``.

    ``f``: j = i + delta frames; consecutive pairs (0, Δ), (Δ, 2Δ), ... unless ``all_pairs``.
    ``m``: consecutive pairs restart the travelled distance at each pair's end and close a pair at
    the first pose where it reaches ``delta`` metres; ``all_pairs`` pairs every i with the j whose
    distance from i is nearest ``delta``, kept when within ``rel_tol · delta``.
    """
    n = len(poses)
    if unit == "f":
        if delta != int(delta) or delta < 1:
            raise InputError(f"RPE delta is {delta} frames: use a whole number of frames, 1 or more")
        step = int(delta)
        starts = np.arange(n - step) if all_pairs else np.arange(0, n, step)[:-1]
        pairs = np.stack([starts, starts + step], axis=1)
    elif unit == "m":
        if not delta > 0:
            raise InputError(f"RPE delta is {delta} m: use a positive distance")
        pairs = _pairs_by_path(np.asarray(poses, dtype=np.float64)[:, :3, 3], float(delta), all_pairs, rel_tol)
    else:
        raise InputError(f"unknown RPE delta unit {unit!r}: use 'f' (frames) or 'm' (metres)")
    if len(pairs) == 0:
        raise InputError(f"RPE delta {delta} ({unit}) gives no pose pairs on {n} poses: use a smaller delta")
    return pairs.reshape(-1, 2).astype(np.int64)


def _pairs_by_path(positions: np.ndarray, delta: float, all_pairs: bool, rel_tol: float) -> np.ndarray:
    if all_pairs:
        distances = _travelled(positions)
        pairs = []
        for i in range(len(distances) - 1):
            offsets = np.abs(distances[i + 1 :] - distances[i] - delta)
            k = int(np.argmin(offsets))
            if offsets[k] <= delta * rel_tol:
                pairs.append((i, i + 1 + k))
        return np.asarray(pairs, dtype=np.int64)
    # A running sum restarted at each pair (as evo), so the ">= delta" test sees the same floating-point sums.
    ends, travelled = [0], 0.0
    for i in range(1, len(positions)):
        travelled += float(np.linalg.norm(positions[i] - positions[i - 1]))
        if travelled >= delta:
            ends.append(i)
            travelled = 0.0
    return np.stack([ends[:-1], ends[1:]], axis=1) if len(ends) > 1 else np.zeros((0, 2), dtype=np.int64)


def _travelled(positions: np.ndarray) -> np.ndarray:
    """Travelled distance ``[N]`` along positions ``[N, 3]`` (0 first)."""
    return np.concatenate([[0.0], np.cumsum(np.linalg.norm(positions[1:] - positions[:-1], axis=1))])


def relative_errors(gt: np.ndarray, est: np.ndarray, pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Translation norms ``[M]`` and rotation angles ``[M]`` (radians) of ``E = ΔT_gt⁻¹ ΔT_est`` per pair.

    ``ΔT = T_i⁻¹ T_j`` for each pair (i, j) of ``pairs [M, 2]``; E's inverse (the devkit's order)
    has the same translation norm and angle.
    """
    gt, est = _check_pair(gt, est)
    i, j = pairs[:, 0], pairs[:, 1]
    delta_gt = _rigid_inverse(gt[i]) @ gt[j]
    delta_est = _rigid_inverse(est[i]) @ est[j]
    error = _rigid_inverse(delta_gt) @ delta_est
    return np.linalg.norm(error[:, :3, 3], axis=1), rotation_angle(error[:, :3, :3])


def rpe_errors(
    gt: np.ndarray,
    est: np.ndarray,
    delta: float = 1,
    unit: Literal["f", "m"] = "f",
    all_pairs: bool = False,
    pairs_from: Literal["gt", "est"] = "gt",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RPE translation errors ``[M]`` (m), rotation errors ``[M]`` (degrees) and the pairs ``[M, 2]``.

    Pairs are chosen on ``gt`` or ``est`` (evo's default is the estimate, its
    ``pairs_from_reference`` is ``gt``); with a delta in frames both give the same pairs.
    """
    if pairs_from not in ("gt", "est"):
        raise InputError(f"pairs_from is {pairs_from!r}: use 'gt' or 'est'")
    pairs = rpe_pairs(gt if pairs_from == "gt" else est, delta, unit, all_pairs)
    trans, angle = relative_errors(gt, est, pairs)
    return trans, np.degrees(angle), pairs


@dataclass(frozen=True)
class SegmentErrors:
    """Per-segment relative errors; all arrays ``[S]``.

    ``t_err`` is ‖t(E)‖ / length (a ratio), ``r_err`` the angle of R(E) / length (radians per metre).
    """

    first: np.ndarray
    last: np.ndarray
    length: np.ndarray
    t_err: np.ndarray
    r_err: np.ndarray


def segment_errors(gt: np.ndarray, est: np.ndarray, lengths: tuple[float, ...], step: int) -> SegmentErrors:
    """Relative errors over segments of the given ground-truth path ``lengths`` (metres).

    A segment starts at every ``step``-th frame i and ends at the first frame j whose travelled
    distance exceeds ``dist[i] + length``; starts with no such frame are skipped (the devkit's
    ``lastFrameFromSegmentLength``).
    """
    gt, est = _check_pair(gt, est)
    if step < 1:
        raise InputError(f"segment step is {step}: use 1 or more frames")
    dist = path_distances(gt)
    starts = np.arange(0, len(gt), step)
    firsts, lasts, seg_lengths = [], [], []
    for length in lengths:
        ends = np.searchsorted(dist, dist[starts] + length, side="right")
        found = ends < len(gt)
        firsts.append(starts[found])
        lasts.append(ends[found])
        seg_lengths.append(np.full(int(found.sum()), float(length)))
    first, last, length = (np.concatenate(a) for a in (firsts, lasts, seg_lengths))
    order = np.argsort(first, kind="stable")  # the devkit's order: by start frame, then by length
    pairs = np.stack([first[order], last[order]], axis=1).astype(np.int64)
    length = length[order]
    trans, angle = relative_errors(gt, est, pairs) if len(pairs) else (np.zeros(0), np.zeros(0))
    return SegmentErrors(pairs[:, 0], pairs[:, 1], length, trans / length, angle / length)


def kitti_segment_metric(
    gt: np.ndarray, est: np.ndarray, step: int = 10, lengths: tuple[float, ...] = KITTI_LENGTHS
) -> dict[str, float] | None:
    """The KITTI devkit's averages over all segments of 100..800 m starting every 10th frame.

    ``t_err`` in %, ``r_err`` in degrees per 100 m, ``segments`` their count; ``None`` when no
    segment fits (less than 100 m of ground-truth path after the start frame). The devkit does no
    alignment: pass the estimate already aligned as intended (Sim(3) for monocular methods).
    """
    errors = segment_errors(gt, est, lengths, step)
    if len(errors.first) == 0:
        return None
    return {
        "t_err": float(np.mean(errors.t_err) * 100.0),
        "r_err": float(np.degrees(np.mean(errors.r_err)) * 100.0),
        "segments": len(errors.first),
    }


def vbr_segment_metric(
    gt: np.ndarray, est: np.ndarray, step: int = 1, fractions: tuple[float, ...] = VBR_FRACTIONS
) -> dict[str, float] | None:
    """The VBR benchmark's averages over segments of 1..55 % of the total ground-truth path, every frame a start.

    ``t_err`` in %, ``r_err`` in degrees per metre (the VBR script's unit), ``segments`` their count;
    ``None`` when no segment fits (a path of zero length).
    """
    total = path_distances(gt)[-1]
    if total <= 0:
        return None
    errors = segment_errors(gt, est, tuple(total * f for f in fractions), step)
    if len(errors.first) == 0:
        return None
    return {
        "t_err": float(np.mean(errors.t_err) * 100.0),
        "r_err": float(np.degrees(np.mean(errors.r_err))),
        "segments": len(errors.first),
    }


def _rigid_inverse(poses: np.ndarray) -> np.ndarray:
    """Inverse of rigid transforms ``[N, 4, 4]``."""
    out = np.zeros_like(poses)
    rot_t = np.swapaxes(poses[:, :3, :3], 1, 2)
    out[:, :3, :3] = rot_t
    out[:, :3, 3] = -np.einsum("nij,nj->ni", rot_t, poses[:, :3, 3])
    out[:, 3, 3] = 1.0
    return out


def _check_pair(gt: np.ndarray, est: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    gt = np.asarray(gt, dtype=np.float64)
    est = np.asarray(est, dtype=np.float64)
    if gt.ndim != 3 or gt.shape[1:] != (4, 4) or gt.shape != est.shape:
        raise InputError(f"poses have shapes {gt.shape} and {est.shape}: expected two equal [N, 4, 4] arrays")
    if len(gt) == 0:
        raise InputError("the trajectories have no poses in common: check the association (timestamps or lines)")
    if not (np.isfinite(gt).all() and np.isfinite(est).all()):
        raise InputError("a pose holds NaN or inf: drop or repair the failed poses before scoring")
    return gt, est
