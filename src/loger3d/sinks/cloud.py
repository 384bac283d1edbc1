"""The fused point cloud of a run: filtering, bounded voxel fusion, and the sink that feeds it.

Filtering follows the official Pi3/LoGeR demos: keep a pixel when ``sigmoid(conf) > 0.1`` and it
is not on a depth edge (``depth_edge(depth, rtol=0.03)``). Fusion averages points per voxel so a
long video gives a cloud of bounded size: memory is about 52 bytes per voxel, at most
``max_points`` voxels.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from .base import FrameBatch, SinkState

__all__ = ["CloudSink", "DEFAULT_CONF_THRESHOLD", "MIN_POINTS", "VOXELS_PER_MEDIAN_DISTANCE", "VoxelCloud",
           "add_to_cloud", "filter_mask"]

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
    stride: int = 1,
) -> np.ndarray:
    """Pixels to keep, bool ``[..., H, W]``, from depth (local Z) and sigmoid confidence ``[..., H, W]``.

    Kept: finite depth > 0, ``conf > threshold`` (strict, as the official demos), and not an edge.
    An edge is a pixel whose 3×3 neighbourhood spans more than ``edge_rtol`` times its depth
    (max − min over the real, finite neighbours: the image border is padded like ``max_pool2d``);
    ``edge_rtol <= 0`` keeps edges. ``stride`` returns the mask of every stride-th row and column
    only, ``filter_mask(...)[..., ::stride, ::stride]`` exactly, at a fraction of the cost.
    """
    depth = np.asarray(depth, dtype=np.float32)
    conf = np.asarray(conf)
    if depth.ndim < 2 or conf.shape != depth.shape:
        raise ValueError(f"depth {depth.shape} and conf {conf.shape} must both be [..., H, W]")
    finite = np.isfinite(depth)
    picked = depth[..., ::stride, ::stride]
    good = finite[..., ::stride, ::stride] & (picked > 0) & (conf[..., ::stride, ::stride] > threshold)
    if edge_rtol <= 0:
        return good
    span = _max_pool3(np.where(finite, depth, -np.inf), stride) + _max_pool3(np.where(finite, -depth, -np.inf), stride)
    with np.errstate(divide="ignore", invalid="ignore"):
        edge = span / np.where(good, picked, 1.0) > edge_rtol
    return good & ~edge


def _max_pool3(x: np.ndarray, stride: int = 1) -> np.ndarray:
    """3×3 max over the last two axes at every stride-th row and column, padding with -inf (rows, then columns)."""
    h, w = x.shape[-2:]
    p = np.pad(x, [(0, 0)] * (x.ndim - 2) + [(1, 1), (1, 1)], constant_values=-np.inf)
    rows = np.maximum(np.maximum(p[..., 0:h:stride, :], p[..., 1:h + 1:stride, :]), p[..., 2:h + 2:stride, :])
    return np.maximum(np.maximum(rows[..., 0:w:stride], rows[..., 1:w + 1:stride]), rows[..., 2:w + 2:stride])


MIN_POINTS = 8
"""The smallest ``max_points`` of a :class:`VoxelCloud`: its coarsest table has up to 8 voxels."""


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
            raise InputError(f"voxel_size {voxel_size} must be positive, or None to choose it from the first batch")
        if max_points < MIN_POINTS:
            raise InputError(f"max_points {max_points} is below {MIN_POINTS}: the coarsest table has up to 8 voxels")
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

    def state_dict(self) -> dict[str, np.ndarray]:
        """The table as arrays (a run's checkpoint holds it); :meth:`load_state_dict` restores it exactly."""
        size = np.nan if self.voxel_size is None else self.voxel_size
        return {"keys": self._keys, "xyz": self._xyz, "rgb": self._rgb, "count": self._count,
                "voxel_size": np.array(size, np.float64)}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        size = float(np.asarray(state["voxel_size"]).reshape(-1)[0])
        self.voxel_size = None if np.isnan(size) else size
        self._keys = np.array(state["keys"], np.int64)
        self._xyz = np.array(state["xyz"], np.float64).reshape(-1, 3)
        self._rgb = np.array(state["rgb"], np.float32).reshape(-1, 3)
        self._count = np.array(state["count"], np.int64)

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
            raise InputError("cannot choose a voxel size: the first batch's points coincide; pass voxel_size")
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


def add_to_cloud(cloud: VoxelCloud, poses: np.ndarray, local: np.ndarray, conf: np.ndarray, images: np.ndarray,
                 conf_threshold: float, edge_rtol: float, stride: int = 1) -> None:
    """Filter (confidence, depth edges) and fuse ``n`` frames into the voxel cloud.

    ``stride`` keeps every stride-th pixel row and column after filtering (the filter still sees
    the full-resolution neighbourhoods): consecutive video frames see the same surfaces, so the
    cloud loses little and fusion runs stride² times faster.
    """
    mask = filter_mask(local[..., 2], conf, conf_threshold, edge_rtol, stride=stride)
    local, images = local[:, ::stride, ::stride], images[:, ::stride, ::stride]
    cloud.add(_world_points(poses, local), images, mask, centers=poses[:, :3, 3])


def _world_points(poses: np.ndarray, local: np.ndarray) -> np.ndarray:
    """``[n,H,W,3]`` world points from camera-to-world ``[n,4,4]`` and camera-frame points."""
    rot = poses[:, None, None, :3, :3].astype(np.float32)
    return (rot @ local[..., None])[..., 0] + poses[:, None, None, :3, 3].astype(np.float32)


class CloudSink:
    """A sink fusing every finished frame into a :class:`VoxelCloud`, from the model's full-precision outputs.

    Its state (the voxel table) goes into the run's checkpoint, so a resumed run's cloud is the
    one an uninterrupted run builds, whatever the frame store keeps. The exports write it at the end.
    """

    def __init__(self, conf_threshold: float = DEFAULT_CONF_THRESHOLD, edge_rtol: float = 0.03, stride: int = 2,
                 voxel_size: float | None = None, max_points: int = 5_000_000) -> None:
        self.conf_threshold, self.edge_rtol, self.stride = conf_threshold, edge_rtol, stride
        self.cloud = VoxelCloud(voxel_size=voxel_size, max_points=max_points)

    def write(self, batch: FrameBatch) -> None:
        add_to_cloud(self.cloud, batch.camera_poses, batch.local_points, batch.conf, batch.image,
                     self.conf_threshold, self.edge_rtol, self.stride)

    def state(self) -> SinkState:
        return self.cloud.state_dict()

    def verify(self, state: SinkState, frames: int) -> None:
        pass  # the cloud lives in the checkpoint's state, which loading it has checked

    def restore(self, state: SinkState, frames: int) -> None:
        if state:
            self.cloud.load_state_dict(state)

    def finish(self) -> None:
        pass
