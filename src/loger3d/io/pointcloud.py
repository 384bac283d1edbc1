"""The fused point cloud of a run: filtering, bounded voxel fusion, and PLY/GLB files.

Filtering follows the official Pi3/LoGeR demos: keep a pixel when ``sigmoid(conf) > 0.1`` and it
is not on a depth edge (``depth_edge(depth, rtol=0.03)``). Fusion averages points per voxel so a
long video gives a cloud of bounded size: memory is about 52 bytes per voxel, at most
``max_points`` voxels.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

import numpy as np

from loger3d.io.store import atomic_open

__all__ = [
    "DEFAULT_CONF_THRESHOLD",
    "OPENCV_TO_GLTF",
    "VOXELS_PER_MEDIAN_DISTANCE",
    "VoxelCloud",
    "filter_mask",
    "read_ply",
    "write_glb",
    "write_ply",
]

DEFAULT_CONF_THRESHOLD = 0.1
"""The official demos' threshold on the sigmoid confidence: drops sky and the most uncertain pixels only."""

VOXELS_PER_MEDIAN_DISTANCE = 300
"""Automatic voxel size = median camera-to-point distance / 300: about 1.5 pixel footprints at that
distance for a 518-pixel-wide image with a 60° field of view, so overlapping frames merge while
detail at the typical depth is kept."""

_BITS = 21  # per axis in a packed key: voxel coordinates in [-2**20, 2**20)
_OFFSET = 1 << (_BITS - 1)


def filter_mask(
    depth: np.ndarray,
    conf: np.ndarray,
    threshold: float = DEFAULT_CONF_THRESHOLD,
    edge_rtol: float = 0.03,
) -> np.ndarray:
    """Pixels to keep, bool ``[..., H, W]``, from depth (local Z) and sigmoid confidence ``[..., H, W]``.

    Kept: finite depth > 0, ``conf > threshold`` (strict, as the official demos), and not an edge.
    An edge is a pixel whose 3×3 neighbourhood spans more than ``edge_rtol`` times its depth
    (max − min over the real, finite neighbours: the image border is padded like ``max_pool2d``);
    ``edge_rtol <= 0`` keeps edges.
    """
    depth = np.asarray(depth, dtype=np.float32)
    conf = np.asarray(conf)
    if depth.ndim < 2 or conf.shape != depth.shape:
        raise ValueError(f"depth {depth.shape} and conf {conf.shape} must both be [..., H, W]")
    finite = np.isfinite(depth)
    span = _max_pool3(np.where(finite, depth, -np.inf)) + _max_pool3(np.where(finite, -depth, -np.inf))
    good = finite & (depth > 0)
    if edge_rtol <= 0:
        return good & (conf > threshold)
    with np.errstate(divide="ignore", invalid="ignore"):
        edge = span / np.where(good, depth, 1.0) > edge_rtol
    return good & ~edge & (conf > threshold)


def _max_pool3(x: np.ndarray) -> np.ndarray:
    """3×3 max over the last two axes, stride 1, padding with -inf (separable: rows, then columns)."""
    p = np.pad(x, [(0, 0)] * (x.ndim - 2) + [(1, 1), (1, 1)], constant_values=-np.inf)
    rows = np.maximum(np.maximum(p[..., :-2, :], p[..., 1:-1, :]), p[..., 2:, :])
    return np.maximum(np.maximum(rows[..., :-2], rows[..., 1:-1]), rows[..., 2:])


class VoxelCloud:
    """Per-voxel running means of position and colour, with counts, over all added points.

    The table is sorted by packed int64 voxel keys (21 bits per axis), so merging a batch is a
    ``searchsorted`` and an insert, never a loop over points. Points more than 2**20 voxels from
    the origin on an axis are dropped. When the table would exceed ``max_points`` voxels the voxel
    size doubles and stored voxels are re-binned into their parents, which is exactly what binning
    the original points at the doubled size gives. The same adds in the same order give identical results.
    """

    def __init__(self, voxel_size: float | None = None, max_points: int = 5_000_000) -> None:
        if voxel_size is not None and not voxel_size > 0:
            raise ValueError(f"voxel_size {voxel_size} must be positive, or None to choose it from the first batch")
        if max_points < 8:
            raise ValueError(f"max_points {max_points} is below 8: the coarsest table has up to 8 voxels")
        self.voxel_size = voxel_size
        self.max_points = max_points
        self._keys = np.zeros(0, np.int64)
        self._xyz = np.zeros((0, 3), np.float64)
        self._rgb = np.zeros((0, 3), np.float32)
        self._count = np.zeros(0, np.int64)

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, points: np.ndarray, colors: np.ndarray, mask: np.ndarray, centers: np.ndarray | None = None) -> None:
        """Add world points ``[n, H, W, 3]`` with uint8 colours ``[n, H, W, 3]`` where ``mask`` ``[n, H, W]`` is set.

        ``centers`` ``[n, 3]`` (camera positions) only serves the automatic voxel size: while none
        is set, the first batch with points sets it to the median distance of its points from their
        camera centres / 300 (:data:`VOXELS_PER_MEDIAN_DISTANCE`); without centres, from the
        batch's median point (a spread estimate).
        """
        points, mask = np.asarray(points), np.asarray(mask, dtype=bool)
        if (
            points.ndim != 4
            or points.shape[3] != 3
            or points.shape[:3] != mask.shape
            or np.shape(colors) != points.shape
        ):
            raise ValueError(f"points {points.shape}, colors {np.shape(colors)}, mask {mask.shape} do not match")
        mask = mask & np.isfinite(points).all(axis=-1)
        xyz = points[mask].astype(np.float64)
        if len(xyz) == 0:
            return
        if self.voxel_size is None:
            self.voxel_size = self._auto_voxel_size(xyz, mask, centers)
        rgb = np.asarray(colors)[mask].astype(np.float64)
        coords = np.floor(xyz / self.voxel_size)
        inside = (np.abs(coords + 0.5) < _OFFSET).all(axis=1)
        keys = _pack(coords[inside].astype(np.int64))
        ukeys, inverse = np.unique(keys, return_inverse=True)
        count = np.bincount(inverse, minlength=len(ukeys))
        self._merge(ukeys, _group_mean(inverse, xyz[inside], count), _group_mean(inverse, rgb[inside], count), count)
        while len(self._keys) > self.max_points:
            self._coarsen()

    def points(self) -> tuple[np.ndarray, np.ndarray]:
        """Voxel means: positions ``[M, 3]`` float32 and colours ``[M, 3]`` uint8, in voxel-key order."""
        rgb = np.clip(np.rint(self._rgb), 0, 255).astype(np.uint8)
        return self._xyz.astype(np.float32), rgb

    def _auto_voxel_size(self, xyz: np.ndarray, mask: np.ndarray, centers: np.ndarray | None) -> float:
        if centers is None:
            origin = np.median(xyz, axis=0)
        else:
            centers = np.asarray(centers, dtype=np.float64)
            if centers.shape != (mask.shape[0], 3):
                raise ValueError(f"centers have shape {centers.shape}, expected {(mask.shape[0], 3)}: one per frame")
            origin = np.repeat(centers, mask.reshape(len(mask), -1).sum(axis=1), axis=0)
        size = float(np.median(np.linalg.norm(xyz - origin, axis=1))) / VOXELS_PER_MEDIAN_DISTANCE
        if not size > 0:
            raise ValueError("cannot choose a voxel size: the first batch's points coincide; pass voxel_size")
        return size

    def _merge(self, keys: np.ndarray, xyz: np.ndarray, rgb: np.ndarray, count: np.ndarray) -> None:
        """Merge unique sorted ``keys`` with their means and counts into the table."""
        pos = np.searchsorted(self._keys, keys)
        hit = pos < len(self._keys)
        hit[hit] = self._keys[pos[hit]] == keys[hit]
        at = pos[hit]
        frac = (count[hit] / (self._count[at] + count[hit]))[:, None]
        self._xyz[at] += frac * (xyz[hit] - self._xyz[at])
        self._rgb[at] += (frac * (rgb[hit] - self._rgb[at])).astype(np.float32)
        self._count[at] += count[hit]
        new, where = ~hit, pos[~hit]
        self._keys = np.insert(self._keys, where, keys[new])
        self._xyz = np.insert(self._xyz, where, xyz[new], axis=0)
        self._rgb = np.insert(self._rgb, where, rgb[new].astype(np.float32), axis=0)
        self._count = np.insert(self._count, where, count[new])

    def _coarsen(self) -> None:
        """Double the voxel size: each voxel joins its parent (coordinates halved, rounding down)."""
        keys, inverse = np.unique(_pack(_unpack(self._keys) >> 1), return_inverse=True)
        count = np.bincount(inverse, weights=self._count, minlength=len(keys))
        weight = self._count[:, None].astype(np.float64)
        self._xyz = _group_mean(inverse, self._xyz * weight, count)
        self._rgb = _group_mean(inverse, self._rgb * weight, count).astype(np.float32)
        self._count = count.astype(np.int64)
        self._keys = keys
        self.voxel_size *= 2


def _pack(coords: np.ndarray) -> np.ndarray:
    """int64 keys ``[k]`` from voxel coordinates ``[k, 3]`` in [-2**20, 2**20); sorting keys sorts x, then y, then z."""
    c = coords + _OFFSET
    return (c[:, 0] << (2 * _BITS)) | (c[:, 1] << _BITS) | c[:, 2]


def _unpack(keys: np.ndarray) -> np.ndarray:
    mask = (1 << _BITS) - 1
    return np.stack([keys >> (2 * _BITS), (keys >> _BITS) & mask, keys & mask], axis=1) - _OFFSET


def _group_mean(inverse: np.ndarray, values: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Sum of ``values`` ``[k, 3]`` per group ``inverse`` ``[k]``, divided by ``count`` ``[g]``."""
    sums = np.stack([np.bincount(inverse, weights=values[:, d], minlength=len(count)) for d in range(3)], axis=1)
    return sums / count[:, None]


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
        raise ValueError(f"{path} is not a PLY file: no 'ply' magic or 'end_header' line")
    fields, count = [], None
    for line in data[:end].decode("ascii").splitlines()[1:]:
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "format" and words[1] != "binary_little_endian":
            raise ValueError(f"{path} is PLY {words[1]}: only binary_little_endian is read")
        if words[0] == "element":
            if count is not None or words[1] != "vertex":
                raise ValueError(f"{path} has element {words[1]!r}: only a single vertex element is read")
            count = int(words[2])
        if words[0] == "property":
            if words[1] == "list" or words[1] not in _PLY_TYPES:
                raise ValueError(f"{path} has property {' '.join(words[1:])!r}: only float, double and uchar are read")
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
