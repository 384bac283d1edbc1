"""All evaluation metrics in one namespace: trajectories, video depth and point clouds.

Each family lives in its own module (``trajectory_metrics``, ``depth_metrics``,
``pointcloud_metrics``); this module re-exports them for ``from loger3d.eval.metrics import ...``.
"""

from __future__ import annotations

from .depth_metrics import (
    DEPTH_ALIGNMENTS,
    DepthAlignment,
    combine_depth_metrics,
    depth_errors,
    fit_depth_alignment,
    l1_scale,
    l1_scale_shift,
    video_depth_metrics,
)
from .pointcloud_metrics import estimate_normals, icp_point_to_point, pointcloud_metrics
from .trajectory_metrics import (
    ALIGNMENTS,
    KITTI_LENGTHS,
    VBR_FRACTIONS,
    Alignment,
    SegmentErrors,
    Similarity,
    align_trajectory,
    ate_errors,
    error_stats,
    kitti_segment_metric,
    path_distances,
    relative_errors,
    rotation_angle,
    rpe_errors,
    rpe_pairs,
    segment_errors,
    umeyama,
    vbr_segment_metric,
)

__all__ = [
    "ALIGNMENTS",
    "DEPTH_ALIGNMENTS",
    "KITTI_LENGTHS",
    "VBR_FRACTIONS",
    "Alignment",
    "DepthAlignment",
    "SegmentErrors",
    "Similarity",
    "align_trajectory",
    "ate_errors",
    "combine_depth_metrics",
    "depth_errors",
    "error_stats",
    "estimate_normals",
    "fit_depth_alignment",
    "icp_point_to_point",
    "kitti_segment_metric",
    "l1_scale",
    "l1_scale_shift",
    "path_distances",
    "pointcloud_metrics",
    "relative_errors",
    "rotation_angle",
    "rpe_errors",
    "rpe_pairs",
    "segment_errors",
    "umeyama",
    "vbr_segment_metric",
    "video_depth_metrics",
]
