"""Point cloud files: binary PLY (read and write) and GLB scenes with camera frustums."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

import numpy as np

from ..errors import InputError
from ..util.atomic import atomic_open

__all__ = ["OPENCV_TO_GLTF", "read_ply", "write_glb", "write_ply"]


_PLY_TYPES = {"float": "<f4", "float32": "<f4", "double": "<f8", "float64": "<f8", "uchar": "u1", "uint8": "u1"}


def write_ply(
    path: str | os.PathLike, xyz: np.ndarray, rgb: np.ndarray, extra: Mapping[str, np.ndarray] | None = None
) -> None:
    """Binary little-endian PLY: float x y z ``[M, 3]``, uchar red green blue ``[M, 3]``, then float ``extra`` ``[M]``.

    ``extra`` adds per-point float properties, e.g. ``{"confidence": conf}``.
    """
    xyz, rgb = np.asarray(xyz), np.asarray(rgb)
    m = len(xyz)
    extra = dict(extra or {})
    if xyz.shape != (m, 3) or rgb.shape != (m, 3) or any(np.shape(v) != (m,) for v in extra.values()):
        raise ValueError(f"xyz {xyz.shape}, rgb {rgb.shape} and extra properties must be [M, 3], [M, 3], [M]")
    if rgb.dtype != np.uint8:
        raise ValueError(f"rgb is {rgb.dtype}: convert colours to uint8 0..255")
    for name in extra:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) or name in ("x", "y", "z", "red", "green", "blue"):
            raise ValueError(f"extra property name {name!r} is not usable: use a new identifier like 'confidence'")
    fields = [(a, "<f4") for a in "xyz"] + [(c, "u1") for c in ("red", "green", "blue")]
    fields += [(name, "<f4") for name in extra]
    vertices = np.empty(m, dtype=fields)
    for i, a in enumerate("xyz"):
        vertices[a] = xyz[:, i]
    for i, c in enumerate(("red", "green", "blue")):
        vertices[c] = rgb[:, i]
    for name, values in extra.items():
        vertices[name] = values
    props = "".join(f"property {'float' if t == '<f4' else 'uchar'} {n}\n" for n, t in fields)
    header = f"ply\nformat binary_little_endian 1.0\nelement vertex {m}\n{props}end_header\n"
    with atomic_open(path, "wb") as f:
        f.write(header.encode("ascii"))
        f.write(vertices.tobytes())


def read_ply(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Positions ``[M, 3]`` float32, colours ``[M, 3]`` uint8 and other vertex properties from a binary LE PLY.

    Reads what :func:`write_ply` writes: one ``vertex`` element of scalar properties.
    """
    with open(path, "rb") as f:
        data = f.read()
    end = data.find(b"end_header\n")
    if not data.startswith(b"ply\n") or end < 0:
        raise InputError(f"{path} is not a PLY file: no 'ply' magic or 'end_header' line")
    fields, count = [], None
    for line in data[:end].decode("ascii").splitlines()[1:]:
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "format" and words[1] != "binary_little_endian":
            raise InputError(f"{path} is PLY {words[1]}: only binary_little_endian is read")
        if words[0] == "element":
            if count is not None or words[1] != "vertex":
                raise InputError(f"{path} has element {words[1]!r}: only a single vertex element is read")
            count = int(words[2])
        if words[0] == "property":
            if words[1] == "list" or words[1] not in _PLY_TYPES:
                raise InputError(f"{path} has property {' '.join(words[1:])!r}: only float, double and uchar are read")
            fields.append((words[2], _PLY_TYPES[words[1]]))
    vertices = np.frombuffer(data, dtype=fields, count=count or 0, offset=end + len(b"end_header\n"))
    xyz = np.stack([vertices[a] for a in "xyz"], axis=1).astype(np.float32)
    rgb = np.stack([vertices[c] for c in ("red", "green", "blue")], axis=1).astype(np.uint8)
    extra = {n: vertices[n].copy() for n, _ in fields if n not in ("x", "y", "z", "red", "green", "blue")}
    return xyz, rgb, extra


OPENCV_TO_GLTF = np.diag([1.0, -1.0, -1.0])
"""World rotation applied in GLB files: our world (the first camera's OpenCV axes, y down, z forward)
turned 180° about x so that glTF viewers (y up, looking down -z) show the scene upright."""


def write_glb(path: str | os.PathLike, xyz: np.ndarray, rgb: np.ndarray, cameras: np.ndarray | None = None) -> None:
    """A GLB scene of the cloud (``[M, 3]``, uint8 ``[M, 3]``) and camera markers (camera-to-world ``[n, 4, 4]``).

    Each camera is drawn as a wire pyramid (apex at the centre, 4:3 base facing forward) sized 2% of
    the scene's bounding-box diagonal. Coordinates are rotated by :data:`OPENCV_TO_GLTF`.
    """
    try:
        import trimesh
    except ImportError:
        raise ImportError("pip install trimesh to export GLB") from None
    xyz = np.asarray(xyz, dtype=np.float64)
    rgb = np.asarray(rgb, dtype=np.uint8)
    rgba = np.concatenate([rgb, np.full((len(rgb), 1), 255, np.uint8)], axis=1)
    scene = trimesh.Scene()
    scene.add_geometry(trimesh.PointCloud(xyz @ OPENCV_TO_GLTF.T, colors=rgba), geom_name="points")
    if cameras is not None and len(cameras):
        cameras = np.asarray(cameras, dtype=np.float64)
        every = np.concatenate([xyz, cameras[:, :3, 3]])
        size = 0.02 * (float(np.linalg.norm(every.max(axis=0) - every.min(axis=0))) or 1.0)
        corners = size * np.array([[0, 0, 0], [-0.5, -0.375, 1], [0.5, -0.375, 1], [0.5, 0.375, 1], [-0.5, 0.375, 1]])
        edges = np.array([[0, 1], [0, 2], [0, 3], [0, 4], [1, 2], [2, 3], [3, 4], [4, 1]])
        world = np.einsum("nij,kj->nki", cameras[:, :3, :3], corners) + cameras[:, None, :3, 3]  # [n, 5, 3]
        segments = world[:, edges].reshape(-1, 2, 3) @ OPENCV_TO_GLTF.T
        scene.add_geometry(trimesh.load_path(segments), geom_name="cameras")
    data = scene.export(file_type="glb")
    with atomic_open(path, "wb") as f:
        f.write(data)
