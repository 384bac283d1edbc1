"""Exports of a run: the fused cloud (PLY, GLB), COLMAP, nerfstudio and the shared intrinsics.

At the end of a run they are written from the live cloud; ``loger3d export`` rebuilds them later
from the frame store, for example with another confidence threshold or voxel size (the rebuilt
cloud uses the stored depth and confidence and the JPEG colours, so it differs from the live one
by their rounding).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from ..sinks.cloud import VoxelCloud, add_to_cloud
from ..sinks.images import image_relpath, read_images
from ..sinks.store import FrameStore
from ..util.atomic import atomic_open
from .folder import read_run_record
from .settings import RunError, check_cloud_options

__all__ = ["EXPORT_FORMATS", "check_export_formats", "write_exports", "export_run", "rebuild_cloud"]

EXPORT_FORMATS = ("ply", "glb", "colmap", "nerfstudio", "intrinsics")


_NEEDS = {"glb": ("trimesh", "pip install 'loger3d[glb]'")}


def check_export_formats(formats) -> None:
    """Refuse unknown formats, or formats whose optional package is missing, before anything is written."""
    import importlib.util

    for fmt in formats:
        if fmt not in EXPORT_FORMATS:
            raise RunError(f"unknown export format {fmt!r}: choose from {', '.join(EXPORT_FORMATS)}")
        module, install = _NEEDS.get(fmt, (None, None))
        if module is not None and importlib.util.find_spec(module) is None:
            raise RunError(f"the {fmt} export needs {module}, which is not installed: {install}; nothing was "
                           "written")


def write_exports(out: Path, cloud: VoxelCloud, size: tuple[int, int] | None = None,
                  formats=("ply", "colmap", "nerfstudio", "intrinsics")) -> list[Path]:
    """Exports of a run from its frame store and fused cloud; ``size`` is the frames' ``(W, H)``
    (default: read from the first JPEG's header)."""
    from ..sinks.colmap import write_colmap_text
    from ..sinks.intrinsics import shared_intrinsics
    from ..sinks.nerfstudio import write_transforms_json
    from ..sinks.pointcloud import write_glb, write_ply

    check_export_formats(formats)
    store = FrameStore(out)
    _, _, poses, names = store.read_poses()
    K = shared_intrinsics(store.read_intrinsics())
    if size is None:
        with Image.open(out / image_relpath(names[0])) as first:  # the header only
            size = first.size
    width, height = size
    xyz, rgb = cloud.points()
    written = []
    if "ply" in formats:
        write_ply(out / "cloud.ply", xyz, rgb)
        written.append(out / "cloud.ply")
    if "glb" in formats:
        write_glb(out / "scene.glb", xyz, rgb, cameras=poses)
        written.append(out / "scene.glb")
    if "colmap" in formats:
        write_colmap_text(out / "colmap", names, poses, K, width, height, xyz=xyz, rgb=rgb)
        written.append(out / "colmap")
    if "nerfstudio" in formats:
        write_transforms_json(out / "transforms.json", names, poses, K, width, height,
                              ply_file_path="cloud.ply" if (out / "cloud.ply").exists() else None)
        written.append(out / "transforms.json")
    if "intrinsics" in formats:
        with atomic_open(out / "intrinsics.txt", "w") as f:
            f.write(f"# fx fy cx cy in pixels (pixel centres at integer coordinates), image {width}x{height}\n"
                    f"{K[0, 0]:.6f} {K[1, 1]:.6f} {K[0, 2]:.6f} {K[1, 2]:.6f}\n")
        written.append(out / "intrinsics.txt")
    return written


def rebuild_cloud(out: Path, conf_threshold: float, edge_rtol: float, voxel_size: float | None,
                  max_points: int, stride: int) -> VoxelCloud:
    """The fused cloud of a run, from its frame store (depth and confidence) and its JPEG images."""
    cloud = VoxelCloud(voxel_size=voxel_size, max_points=max_points)
    for chunk in FrameStore(out).iter_batches():
        missing = [k for k in ("depth", "conf") if k not in chunk]
        if missing:
            raise RunError(f"the run in {out} kept no {' or '.join(missing)} (--save), so its cloud cannot be "
                           f"rebuilt; reconstruct again with --save depth,conf,images")
        images = chunk["image"] if "image" in chunk else _read_images(out, chunk["name"])
        add_to_cloud(cloud, chunk["camera_poses"], chunk["local_points"], chunk["conf"], images, conf_threshold,
                     edge_rtol, stride)
    return cloud


def _read_images(out: Path, names: np.ndarray) -> np.ndarray:
    try:
        return read_images(out, names)
    except FileNotFoundError:
        raise RunError(f"the run in {out} kept no images (--save), so its cloud has no colours to rebuild from; "
                       f"reconstruct again with --save depth,conf,images") from None


def export_run(run_dir: str | os.PathLike, formats, conf_threshold: float | None = None,
               voxel_size: float | None = None, edge_rtol: float | None = None) -> list[Path]:
    """Rebuild exports of a finished (or interrupted) run, optionally with other cloud settings
    (``None``: the run's)."""
    out = Path(run_dir)
    check_export_formats(formats)
    check_cloud_options(conf_threshold or 0.0, edge_rtol or 0.0, voxel_size=voxel_size)
    record = read_run_record(out)
    settings = record["settings"]
    if not FrameStore(out).chunks():
        raise RunError(f"the run in {out} has no finished frames yet; nothing to export")
    cloud = rebuild_cloud(out, settings["conf_threshold"] if conf_threshold is None else conf_threshold,
                          settings["edge_rtol"] if edge_rtol is None else edge_rtol,
                          settings["voxel_size"] if voxel_size is None else voxel_size,
                          settings["max_points"], settings["cloud_stride"])
    size = tuple(record["source"]["size"]) if "source" in record else None
    return write_exports(out, cloud, size=size, formats=formats)
