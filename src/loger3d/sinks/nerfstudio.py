"""nerfstudio's ``transforms.json`` for a run, so its NeRF and splatting methods train on our cameras.

nerfstudio wants camera-to-world matrices with OpenGL axes (x right, y up, z back): ours have
OpenCV axes, so each pose is multiplied on the right by diag(1, -1, -1, 1) (the camera's y and z
flip; the world frame is unchanged). Like COLMAP, nerfstudio puts the first pixel's centre at 0.5,
so cx and cy gain 0.5 over our K (see :mod:`loger3d.sinks.intrinsics`). Image paths are relative to
the JSON file, which therefore belongs in the output folder beside ``images/``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import numpy as np

from loger3d.sinks.images import image_relpath

from ..util.atomic import atomic_open
from .intrinsics import camera_arrays

__all__ = ["OPENCV_TO_OPENGL", "write_transforms_json"]

OPENCV_TO_OPENGL = np.diag([1.0, -1.0, -1.0, 1.0])
"""Right-multiplied onto an OpenCV camera-to-world pose, gives the OpenGL camera-to-world pose."""


def write_transforms_json(
    path: str | os.PathLike,
    names: Sequence[str],
    poses_c2w: np.ndarray,
    K: np.ndarray,
    width: int,
    height: int,
    ply_file_path: str | None = None,
) -> None:
    """Write ``transforms.json`` (camera_model OPENCV, no distortion) for frames ``names``.

    ``poses_c2w`` ``[n, 4, 4]`` OpenCV camera-to-world; ``K`` ``[3, 3]`` shared, or ``[n, 3, 3]``
    (per-frame fl_x, fl_y, cx, cy unless all are equal). ``ply_file_path`` (relative to the JSON
    file) names a point cloud nerfstudio's splatting can start from.
    """
    poses, K = camera_arrays(names, poses_c2w, K)
    doc: dict = {"camera_model": "OPENCV"}
    if K.ndim == 2:
        doc.update(_intrinsics(K, width, height))
    doc.update({"k1": 0.0, "k2": 0.0, "p1": 0.0, "p2": 0.0})
    gl = poses @ OPENCV_TO_OPENGL
    doc["frames"] = [
        {
            "file_path": image_relpath(name),
            "transform_matrix": gl[i].tolist(),
            **(_intrinsics(K[i], width, height) if K.ndim == 3 else {}),
        }
        for i, name in enumerate(names)
    ]
    if ply_file_path is not None:
        doc["ply_file_path"] = str(ply_file_path)
    with atomic_open(path, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")


def _intrinsics(K: np.ndarray, width: int, height: int) -> dict:
    return {
        "fl_x": float(K[0, 0]),
        "fl_y": float(K[1, 1]),
        "cx": float(K[0, 2]) + 0.5,
        "cy": float(K[1, 2]) + 0.5,
        "w": int(width),
        "h": int(height),
    }
