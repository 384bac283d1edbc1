"""A COLMAP text model (cameras.txt, images.txt, points3D.txt) of a run, and a reader for it.

COLMAP stores world-to-camera poses with w-first quaternions; our poses are camera-to-world, so
they are inverted on the way out and back on the way in. COLMAP puts the first pixel's centre at
(0.5, 0.5) while our K puts it at (0, 0) (see :mod:`loger3d.sinks.intrinsics`): cx and cy gain 0.5
in the file and lose it in :func:`read_colmap_text`. Image names are ``<name>.jpg`` relative to
the ``images/`` folder :class:`~loger3d.sinks.images.ImageWriter` fills (COLMAP's ``--image_path``).
Points carry no tracks (allowed by COLMAP) and an error of -1 (COLMAP's "unknown").
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from loger3d.sinks.images import image_relpath
from loger3d.sinks.trajectory import quaternion_to_rotation, rotation_to_quaternion

from ..errors import InputError
from ..util.atomic import atomic_open, make_folder
from .intrinsics import camera_arrays

__all__ = ["ColmapModel", "read_colmap_text", "write_colmap_text"]


@dataclass
class ColmapModel:
    """A model read back from text files.

    cameras      {camera_id: (width, height, K [3,3])} with K in our convention (first pixel centre at 0)
    image_ids    [n] int64, image_names [n] str, camera_ids [n] int64, sorted by image id
    poses        [n,4,4] float64 camera-to-world, OpenCV axes
    xyz          [M,3] float64, rgb [M,3] uint8
    """

    cameras: dict[int, tuple[int, int, np.ndarray]]
    image_ids: np.ndarray
    image_names: list[str]
    camera_ids: np.ndarray
    poses: np.ndarray
    xyz: np.ndarray
    rgb: np.ndarray


def write_colmap_text(
    folder: str | os.PathLike,
    names: Sequence[str],
    poses_c2w: np.ndarray,
    K: np.ndarray,
    width: int,
    height: int,
    xyz: np.ndarray | None = None,
    rgb: np.ndarray | None = None,
) -> None:
    """Write the three text files into ``folder`` (created if needed).

    ``poses_c2w`` ``[n, 4, 4]``; ``K`` ``[3, 3]`` for one shared PINHOLE camera, or ``[n, 3, 3]``
    (one camera per image, unless all are equal); ``xyz`` ``[M, 3]`` with uint8 ``rgb`` ``[M, 3]``
    become points3D.txt (empty without them).
    """
    poses, K = camera_arrays(names, poses_c2w, K)
    n = len(names)
    per_image = K.ndim == 3
    cams = K if per_image else K[None]
    camera_of = np.arange(1, n + 1) if per_image else np.ones(n, np.int64)
    spaced = [name for name in names if len(name.split()) != 1]
    if spaced:
        raise InputError(f"image name {spaced[0]!r} has whitespace, which COLMAP text files cannot hold: rename frames")
    if (xyz is None) != (rgb is None):
        raise ValueError("pass xyz and rgb together, or neither")
    if xyz is not None:
        xyz, rgb = np.asarray(xyz, dtype=np.float64), np.asarray(rgb)
        if xyz.shape != (len(xyz), 3) or rgb.shape != xyz.shape or rgb.dtype != np.uint8:
            raise ValueError(f"xyz {xyz.shape} and rgb {rgb.shape} {rgb.dtype} must be [M, 3] and uint8 [M, 3]")

    folder = Path(folder)
    make_folder(folder)
    params = np.stack([cams[:, 0, 0], cams[:, 1, 1], cams[:, 0, 2] + 0.5, cams[:, 1, 2] + 0.5], axis=1)
    with atomic_open(folder / "cameras.txt", "w") as f:
        f.write(
            f"# Camera list with one line of data per camera:\n#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]\n"
            f"# Number of cameras: {len(cams)}\n"
        )
        f.writelines(f"{i + 1} PINHOLE {int(width)} {int(height)} {_join(p)}\n" for i, p in enumerate(params.tolist()))

    rot_w2c = poses[:, :3, :3].transpose(0, 2, 1)
    t_w2c = -np.einsum("nij,nj->ni", rot_w2c, poses[:, :3, 3])
    xyzw = rotation_to_quaternion(rot_w2c)
    qt = np.concatenate([xyzw[:, 3:], xyzw[:, :3], t_w2c], axis=1)  # QW QX QY QZ TX TY TZ
    with atomic_open(folder / "images.txt", "w") as f:
        f.write(
            "# Image list with two lines of data per image:\n"
            "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME\n"
            "#   POINTS2D[] as (X, Y, POINT3D_ID)\n"
            f"# Number of images: {n}\n"
        )
        for i, (name, row) in enumerate(zip(names, qt.tolist())):
            file_name = Path(image_relpath(name)).name
            f.write(f"{i + 1} {_join(row)} {camera_of[i]} {file_name}\n\n")

    with atomic_open(folder / "points3D.txt", "w") as f:
        f.write(
            "# 3D point list with one line of data per point:\n"
            "#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)\n"
        )
        if xyz is not None:
            f.write(f"# Number of points: {len(xyz)}\n")
            rows = zip(xyz.tolist(), rgb.tolist())
            f.writelines(f"{i + 1} {_join(p)} {c[0]} {c[1]} {c[2]} -1\n" for i, (p, c) in enumerate(rows))


def read_colmap_text(folder: str | os.PathLike) -> ColmapModel:
    """Read a text model with PINHOLE or SIMPLE_PINHOLE cameras (what :func:`write_colmap_text` writes, and more)."""
    folder = Path(folder)
    cameras = {}
    for words in _data_lines(folder / "cameras.txt"):
        camera_id, model, w, h, *p = words
        if model == "SIMPLE_PINHOLE":
            p = [p[0], *p]
        elif model != "PINHOLE":
            raise InputError(f"camera {camera_id} is {model}: only PINHOLE and SIMPLE_PINHOLE are read")
        fx, fy, cx, cy = map(float, p)
        cameras[int(camera_id)] = (int(w), int(h), np.array([[fx, 0, cx - 0.5], [0, fy, cy - 0.5], [0, 0, 1.0]]))

    with open(folder / "images.txt", encoding="utf-8") as f:
        lines = [line.rstrip("\n") for line in f if not line.startswith("#")]
    records = [line.split() for line in lines[0::2]]  # odd lines hold 2D observations, unused here
    records = sorted((r for r in records if r), key=lambda r: int(r[0]))
    qt = np.array([[float(v) for v in r[1:8]] for r in records]).reshape(-1, 7)
    rot_w2c = quaternion_to_rotation(np.concatenate([qt[:, 1:4], qt[:, :1]], axis=1))
    poses = np.tile(np.eye(4), (len(records), 1, 1))
    poses[:, :3, :3] = rot_w2c.transpose(0, 2, 1)
    poses[:, :3, 3] = -np.einsum("nij,nj->ni", poses[:, :3, :3], qt[:, 4:7])

    points = _data_lines(folder / "points3D.txt")
    xyz = np.array([[float(v) for v in w[1:4]] for w in points]).reshape(-1, 3)
    rgb = np.array([[int(v) for v in w[4:7]] for w in points], dtype=np.uint8).reshape(-1, 3)
    return ColmapModel(
        cameras=cameras,
        image_ids=np.array([int(r[0]) for r in records], dtype=np.int64),
        image_names=[r[9] for r in records],
        camera_ids=np.array([int(r[8]) for r in records], dtype=np.int64),
        poses=poses,
        xyz=xyz,
        rgb=rgb,
    )


def _data_lines(path: Path) -> list[list[str]]:
    with open(path, encoding="utf-8") as f:
        return [line.split() for line in f if line.strip() and not line.startswith("#")]


def _join(values: Sequence[float]) -> str:
    return " ".join(repr(v) for v in values)
