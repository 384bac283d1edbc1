"""``loger3d eval traj``: score an estimated trajectory file against its ground truth.

Reading (TUM or KITTI text files, see ``loger3d.sinks.trajectory``), association (TUM by
timestamp as evo's ``associate_trajectories``, KITTI by line), one alignment of the estimate,
then ATE, RPE and, when the ground-truth path is long enough, the KITTI devkit segment errors;
the report is a table or one JSON line (the last line of standard output).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from typing import Literal

import numpy as np

from loger3d.errors import InputError
from loger3d.sinks.trajectory import read_kitti, read_tum, trajectory_lines

from .datasets.association import nearest_matches
from .trajectory_metrics import (
    Alignment,
    align_trajectory,
    ate_errors,
    error_stats,
    kitti_segment_metric,
    path_distances,
    rpe_errors,
)

__all__ = [
    "TrajectoryScore",
    "associate_timestamps",
    "detect_format",
    "format_report",
    "load_trajectory_pair",
    "plot_top_view",
    "run_traj",
    "score_trajectory",
]

TrajectoryFormat = Literal["auto", "tum", "kitti"]
_STATS = ("rmse", "mean", "median", "std", "min", "max")


def detect_format(path: str | os.PathLike) -> Literal["tum", "kitti"]:
    """``tum`` (8 numbers a line) or ``kitti`` (12), from the first line that is not blank or a '#' comment."""
    for _, line in trajectory_lines(path):
        count = len(line.replace(",", " ").split())
        if count in (8, 12):
            return "tum" if count == 8 else "kitti"
        raise InputError(f"{path}: {count} numbers a line, neither TUM (8) nor KITTI (12): pass a trajectory")
    raise InputError(f"{path} holds no poses: pass a TUM or KITTI trajectory file")


def associate_timestamps(
    gt_stamps: np.ndarray, est_stamps: np.ndarray, max_diff: float = 0.01
) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(gt_idx [M], est_idx [M])`` of matched poses, evo's nearest-timestamp association.

    Every pose of the trajectory with fewer poses (the estimate when equal) is matched to the
    nearest timestamp of the other, kept when at most ``max_diff`` seconds away; a pose of the
    longer one may be matched twice. As evo's ``matching_time_indices``: a binary search when the
    longer one's timestamps are sorted (an exact tie goes to the earlier timestamp), otherwise the
    first minimum of a linear scan.
    """
    gt_stamps = np.asarray(gt_stamps, dtype=np.float64)
    est_stamps = np.asarray(est_stamps, dtype=np.float64)
    est_is_short = len(est_stamps) <= len(gt_stamps)
    short, long = (est_stamps, gt_stamps) if est_is_short else (gt_stamps, est_stamps)
    short_idx, long_idx = _match_nearest(short, long, max_diff)
    if len(short_idx) == 0:
        raise InputError(
            f"no timestamps match within {max_diff} s: check that both files use the same clock (or use --max-diff)"
        )
    return (long_idx, short_idx) if est_is_short else (short_idx, long_idx)


def _match_nearest(short: np.ndarray, long: np.ndarray, max_diff: float) -> tuple[np.ndarray, np.ndarray]:
    if len(long) == 0 or len(short) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    if not np.all(np.diff(long) >= 0):
        pairs = []
        for i, stamp in enumerate(short):
            diffs = np.abs(long - stamp)
            j = int(np.argmin(diffs))
            if diffs[j] <= max_diff:
                pairs.append((i, j))
        found = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        return found[:, 0], found[:, 1]
    return nearest_matches(short, long, max_diff)


def load_trajectory_pair(
    gt_path: str | os.PathLike,
    est_path: str | os.PathLike,
    fmt: TrajectoryFormat = "auto",
    max_diff: float = 0.01,
) -> tuple[np.ndarray, np.ndarray, dict[str, object]]:
    """Matched ground-truth and estimated poses ``[M, 4, 4]`` and facts about the files.

    KITTI files pair by line (equal line counts required); TUM files by timestamp
    (:func:`associate_timestamps`). ``auto`` reads each file's format from its first line.
    """
    formats = {detect_format(p) for p in (gt_path, est_path)} if fmt == "auto" else {fmt}
    if len(formats) > 1:
        raise InputError(
            f"{gt_path} and {est_path} are in different formats (TUM and KITTI): pass both in one format "
            "('loger3d reconstruct' writes trajectory_tum.txt and trajectory_kitti.txt)"
        )
    (kind,) = formats
    if kind == "kitti":
        gt, est = read_kitti(gt_path), read_kitti(est_path)
        _check_not_empty((gt_path, gt), (est_path, est))
        if len(gt) != len(est):
            raise InputError(
                f"ground truth has {len(gt)} poses and the estimate {len(est)}: KITTI files pair by line, so "
                "they need the same length (use TUM files with timestamps for partial trajectories)"
            )
        info = {"format": "kitti", "num_gt": len(gt), "num_est": len(est)}
        return gt, est, info
    if kind != "tum":
        raise InputError(f"unknown trajectory format {kind!r}: use auto, tum or kitti")
    gt_stamps, gt = read_tum(gt_path)
    est_stamps, est = read_tum(est_path)
    _check_not_empty((gt_path, gt), (est_path, est))
    gt_idx, est_idx = associate_timestamps(gt_stamps, est_stamps, max_diff)
    info = {"format": "tum", "num_gt": len(gt), "num_est": len(est)}
    return gt[gt_idx], est[est_idx], info


def _check_not_empty(*files: tuple[str | os.PathLike, np.ndarray]) -> None:
    for path, poses in files:
        if len(poses) == 0:
            raise InputError(f"{os.fspath(path)} holds no poses: pass a TUM or KITTI trajectory file")


@dataclass(frozen=True)
class TrajectoryScore:
    """The metrics (JSON-ready) and what a plot needs: ground truth and aligned estimate ``[M, 4, 4]``, ATE ``[M]``."""

    metrics: dict[str, object]
    gt: np.ndarray
    est_aligned: np.ndarray
    ate: np.ndarray


def score_trajectory(
    gt: np.ndarray,
    est: np.ndarray,
    align: Alignment = "sim3",
    delta: float = 1,
    delta_unit: Literal["f", "m"] = "f",
    all_pairs: bool = False,
    pairs_from: Literal["gt", "est"] = "gt",
    n_align: int | None = None,
) -> TrajectoryScore:
    """ATE, RPE and KITTI segment errors of matched poses ``[M, 4, 4]``, all on the aligned estimate.

    Keys: ``num_poses``, ``align``, ``scale``, ``path_length`` (m of ground truth), ``ate_*`` (m),
    ``rpe_trans_*`` (m), ``rpe_rot_*`` (degrees) for * in rmse, mean, median, std, min, max,
    ``rpe_delta``, ``rpe_delta_unit``, ``rpe_pairs``; and ``kitti_t_err`` (%), ``kitti_r_err``
    (deg/100 m), ``kitti_segments`` only when at least one 100 m segment fits.
    """
    aligned, transform = align_trajectory(gt, est, align, n_align)
    ate = ate_errors(gt, aligned)
    trans, rot, pairs = rpe_errors(gt, aligned, delta, delta_unit, all_pairs, pairs_from)
    metrics: dict[str, object] = {
        "num_poses": len(gt),
        "align": align,
        "scale": transform.scale,
        "path_length": float(path_distances(gt)[-1]),
    }
    for prefix, errors in (("ate", ate), ("rpe_trans", trans), ("rpe_rot", rot)):
        metrics.update({f"{prefix}_{k}": v for k, v in error_stats(errors).items()})
    metrics.update(
        {
            "rpe_delta": int(delta) if delta_unit == "f" else float(delta),
            "rpe_delta_unit": delta_unit,
            "rpe_pairs": len(pairs),
        }
    )
    kitti = kitti_segment_metric(gt, aligned)
    if kitti is not None:
        metrics.update(
            {"kitti_t_err": kitti["t_err"], "kitti_r_err": kitti["r_err"], "kitti_segments": kitti["segments"]}
        )
    return TrajectoryScore(metrics, gt, aligned, ate)


def format_report(metrics: dict[str, object]) -> str:
    """A readable table of :func:`score_trajectory`'s metrics (plus the file facts when present)."""
    counts = f" (gt {metrics['num_gt']}, est {metrics['num_est']}, {metrics['format']})" if "format" in metrics else ""
    lines = [
        f"matched poses {metrics['num_poses']}{counts}, ground-truth path {metrics['path_length']:.3f} m",
        f"alignment {metrics['align']}, scale {metrics['scale']:.6g}",
        f"{'':22s}" + "".join(f"{name:>12s}" for name in _STATS),
    ]
    unit = "frames" if metrics["rpe_delta_unit"] == "f" else "m"
    rows = (
        ("ATE (m)", "ate"),
        ("RPE trans (m)", "rpe_trans"),
        ("RPE rot (deg)", "rpe_rot"),
    )
    for label, prefix in rows:
        lines.append(f"{label:22s}" + "".join(f"{metrics[f'{prefix}_{name}']:12.6f}" for name in _STATS))
    lines.append(f"RPE over {metrics['rpe_pairs']} pairs, delta {metrics['rpe_delta']} {unit}")
    if "kitti_t_err" in metrics:
        lines.append(
            f"KITTI segments ({metrics['kitti_segments']}): t_err {metrics['kitti_t_err']:.4f} %, "
            f"r_err {metrics['kitti_r_err']:.4f} deg/100 m"
        )
    else:
        lines.append("KITTI segments: none (no 100 m stretch of ground-truth path)")
    return "\n".join(lines)


def plot_top_view(path: str | os.PathLike, score: TrajectoryScore) -> None:
    """Save a top view (x right, z up the page; OpenCV's ground plane) of the ground truth and the
    aligned estimate coloured by ATE. Needs matplotlib."""
    try:
        from matplotlib.figure import Figure
    except ImportError as e:
        raise InputError("--plot needs matplotlib: pip install matplotlib (or leave out --plot)") from e
    fig = Figure(figsize=(7, 6), layout="constrained")
    ax = fig.subplots()
    gt, est = score.gt[:, :3, 3], score.est_aligned[:, :3, 3]
    ax.plot(gt[:, 0], gt[:, 2], color="0.5", linewidth=1.0, label="ground truth")
    points = ax.scatter(est[:, 0], est[:, 2], c=score.ate, s=4, cmap="viridis", label="estimate (aligned)")
    fig.colorbar(points, ax=ax, label="ATE (m)")
    ax.set_xlabel("x (m)")
    ax.set_ylabel("z (m)")
    ax.set_aspect("equal", adjustable="datalim")
    ax.legend(loc="best")
    ax.set_title(f"ATE RMSE {score.metrics['ate_rmse']:.4f} m, align {score.metrics['align']}")
    fig.savefig(path, dpi=150)


def run_traj(args: argparse.Namespace) -> int:
    """The ``eval traj`` command: read, associate, score, print (a table, or one JSON line with ``--json``)."""
    gt, est, info = load_trajectory_pair(args.gt, args.est, args.format, args.max_diff)
    score = score_trajectory(
        gt, est, args.align, args.delta, args.delta_unit, args.all_pairs, args.pairs_from, args.n_align
    )
    metrics = {**info, **score.metrics}
    if args.plot:
        plot_top_view(args.plot, score)
        metrics["plot"] = str(args.plot)
    if args.json:
        sys.stdout.write(json.dumps(metrics) + "\n")
    else:
        print(format_report(metrics))
        if args.plot:
            print(f"plot: {args.plot}")
    return 0
