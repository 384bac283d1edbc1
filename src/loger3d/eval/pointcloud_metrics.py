"""Point-cloud accuracy, completeness and normal consistency, as the 7-Scenes / NRGBD protocol defines them.

The protocol of Spann3R, kept by CUT3R, TTT3R and LoGeR: the predicted cloud is optionally
refined onto the ground truth by point-to-point ICP (threshold 0.1 m, identity start), normals
of both clouds are estimated by PCA over 30 nearest neighbours (Open3D's default), and

    acc  = mean over predicted points of the distance to the nearest ground-truth point
    comp = mean over ground-truth points of the distance to the nearest predicted point
    nc_acc / nc_comp = mean |n_pred · n_gt| over the same nearest-neighbour matches
    chamfer = (acc + comp) / 2,  nc = (nc_acc + nc_comp) / 2,  and the medians of each.

Clouds are ``[N, 3]`` float arrays in metres. Nearest neighbours need scipy (``cKDTree``), an
optional dependency imported on first use.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError

__all__ = ["estimate_normals", "icp_point_to_point", "pointcloud_metrics"]

_CHUNK = 65536  # points per batch of the PCA, to bound memory on million-point clouds


def estimate_normals(points: np.ndarray, k: int = 30) -> np.ndarray:
    """Unit normals ``[N, 3]`` (unoriented) from the smallest principal axis of each point's k nearest neighbours.

    The neighbourhood includes the point itself, as Open3D's ``estimate_normals`` does.
    """
    points = _check_cloud(points, "points")
    k = min(k, len(points))
    if k < 3:
        raise InputError(f"normals need at least 3 points per neighbourhood, got {k}: pass a larger cloud")
    tree = _kdtree(points)
    normals = np.empty_like(points)
    for start in range(0, len(points), _CHUNK):
        chunk = points[start : start + _CHUNK]
        _, idx = tree.query(chunk, k=k, workers=-1)
        neighbours = points[idx]
        centred = neighbours - neighbours.mean(axis=1, keepdims=True)
        _, vectors = np.linalg.eigh(np.einsum("nki,nkj->nij", centred, centred))
        normals[start : start + len(chunk)] = vectors[:, :, 0]
    return normals


def icp_point_to_point(
    source: np.ndarray,
    target: np.ndarray,
    threshold: float = 0.1,
    init: np.ndarray | None = None,
    max_iterations: int = 30,
    tolerance: float = 1e-6,
) -> np.ndarray:
    """Rigid ``[4, 4]`` moving ``source [N, 3]`` onto ``target [M, 3]`` by point-to-point ICP.

    Each iteration pairs every source point with its nearest target point closer than
    ``threshold``, solves the rigid least-squares fit of the pairs (Kabsch) and composes it; it
    stops after ``max_iterations`` or when neither the inlier fraction nor the inlier RMSE changes
    by more than ``tolerance`` (Open3D's ``registration_icp`` criteria and defaults).
    """
    source = _check_cloud(source, "source")
    target = _check_cloud(target, "target")
    transform = np.eye(4) if init is None else np.asarray(init, dtype=np.float64).copy()
    tree = _kdtree(target)
    moved = source @ transform[:3, :3].T + transform[:3, 3]
    fitness, rmse, src_idx, tgt_idx = _correspondences(tree, moved, threshold)
    for _ in range(max_iterations):
        if len(src_idx) < 3:
            break
        update = _kabsch(moved[src_idx], target[tgt_idx])
        transform = update @ transform
        moved = moved @ update[:3, :3].T + update[:3, 3]
        previous = (fitness, rmse)
        fitness, rmse, src_idx, tgt_idx = _correspondences(tree, moved, threshold)
        if abs(previous[0] - fitness) < tolerance and abs(previous[1] - rmse) < tolerance:
            break
    return transform


def pointcloud_metrics(
    pred: np.ndarray,
    gt: np.ndarray,
    pred_normals: np.ndarray | None = None,
    gt_normals: np.ndarray | None = None,
    icp_threshold: float | None = None,
    normal_neighbours: int = 30,
) -> dict[str, float]:
    """Accuracy, completeness, Chamfer and normal consistency (means and medians) of ``pred`` against ``gt``.

    ``icp_threshold`` (0.1 m in the protocol; ``None`` skips it) refines ``pred`` by
    :func:`icp_point_to_point` first (call it directly to keep the transform).
    Missing normals are estimated after the refinement with ``normal_neighbours``; given
    ``pred_normals`` are rotated with the cloud.
    """
    pred = _check_cloud(pred, "pred")
    gt = _check_cloud(gt, "gt")
    if icp_threshold is not None:
        transform = icp_point_to_point(pred, gt, icp_threshold)
        pred = pred @ transform[:3, :3].T + transform[:3, 3]
        if pred_normals is not None:
            pred_normals = np.asarray(pred_normals, dtype=np.float64) @ transform[:3, :3].T
    pred_normals = estimate_normals(pred, normal_neighbours) if pred_normals is None else _unit(pred_normals, pred)
    gt_normals = estimate_normals(gt, normal_neighbours) if gt_normals is None else _unit(gt_normals, gt)
    acc_dist, acc_idx = _kdtree(gt).query(pred, workers=-1)
    comp_dist, comp_idx = _kdtree(pred).query(gt, workers=-1)
    nc_acc = np.abs(np.sum(pred_normals * gt_normals[acc_idx], axis=1))
    nc_comp = np.abs(np.sum(gt_normals * pred_normals[comp_idx], axis=1))
    result = {
        "acc": float(np.mean(acc_dist)),
        "acc_median": float(np.median(acc_dist)),
        "comp": float(np.mean(comp_dist)),
        "comp_median": float(np.median(comp_dist)),
        "nc_acc": float(np.mean(nc_acc)),
        "nc_acc_median": float(np.median(nc_acc)),
        "nc_comp": float(np.mean(nc_comp)),
        "nc_comp_median": float(np.median(nc_comp)),
    }
    result["chamfer"] = 0.5 * (result["acc"] + result["comp"])
    result["chamfer_median"] = 0.5 * (result["acc_median"] + result["comp_median"])
    result["nc"] = 0.5 * (result["nc_acc"] + result["nc_comp"])
    result["nc_median"] = 0.5 * (result["nc_acc_median"] + result["nc_comp_median"])
    return result


def _correspondences(tree, points: np.ndarray, threshold: float) -> tuple[float, float, np.ndarray, np.ndarray]:
    """Inlier fraction, inlier RMSE and the (source, target) indices of nearest pairs closer than ``threshold``."""
    dist, idx = tree.query(points, distance_upper_bound=threshold, workers=-1)
    inlier = np.isfinite(dist)
    src_idx = np.flatnonzero(inlier)
    rmse = float(np.sqrt(np.mean(dist[inlier] ** 2))) if len(src_idx) else 0.0
    return len(src_idx) / len(points), rmse, src_idx, idx[inlier]


def _kabsch(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Rigid ``[4, 4]`` minimising ``Σ‖target_i − (R·source_i + t)‖²``."""
    mean_s, mean_t = source.mean(axis=0), target.mean(axis=0)
    u, _, vt = np.linalg.svd((target - mean_t).T @ (source - mean_s))
    sign = np.array([1.0, 1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    out = np.eye(4)
    out[:3, :3] = (u * sign) @ vt
    out[:3, 3] = mean_t - out[:3, :3] @ mean_s
    return out


def _unit(normals: np.ndarray, points: np.ndarray) -> np.ndarray:
    normals = np.asarray(normals, dtype=np.float64)
    if normals.shape != points.shape:
        raise InputError(f"normals have shape {normals.shape}, points {points.shape}: pass one normal per point")
    return normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)


def _check_cloud(points: np.ndarray, name: str) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3 or len(points) == 0:
        raise InputError(f"{name} has shape {points.shape}: expected a non-empty [N, 3] point array")
    if not np.isfinite(points).all():
        raise InputError(f"{name} has non-finite coordinates: drop invalid points (NaN/inf) first")
    return points


def _kdtree(points: np.ndarray):
    try:
        from scipy.spatial import cKDTree
    except ImportError as e:
        raise InputError("point-cloud metrics need scipy for nearest neighbours: pip install scipy") from e
    return cKDTree(points)
