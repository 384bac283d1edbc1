"""Readers of the LoGeR paper's evaluation datasets in their native layouts; the user gives the paths.

    dataset = open_dataset("kitti", "/data/kitti/dataset")
    dataset.sequences()                         # ['00', '01', ...] found on disk
    seq = dataset.load("00")                    # the paper's frames; stride=/max_frames=/start= override them
    seq.image_paths, seq.gt_poses, seq.protocol # images in order, [N, 4, 4] camera-to-world, settings used

Each module's docstring gives the layout it reads, the protocol's frames, strides and resolution, and what could
not be verified. Conventions of the returned data: :mod:`loger3d.eval.datasets.base`.
"""

from __future__ import annotations

import os
from typing import Any

from loger3d.eval.datasets.base import PROTOCOL, Dataset, DatasetError, Selection, Sequence
from loger3d.eval.datasets.bonn import Bonn
from loger3d.eval.datasets.kitti import KittiOdometry
from loger3d.eval.datasets.scannet import ScanNet
from loger3d.eval.datasets.sevenscenes import SevenScenes
from loger3d.eval.datasets.sintel import Sintel
from loger3d.eval.datasets.tum import TumRgbd
from loger3d.eval.datasets.vbr import VbrProcessed, VbrRaw

__all__ = [
    "DATASETS",
    "PROTOCOL",
    "Bonn",
    "Dataset",
    "DatasetError",
    "KittiOdometry",
    "ScanNet",
    "Selection",
    "Sequence",
    "SevenScenes",
    "Sintel",
    "TumRgbd",
    "VbrProcessed",
    "VbrRaw",
    "open_dataset",
]

DATASETS: dict[str, type[Dataset]] = {
    "kitti": KittiOdometry,
    "vbr": VbrProcessed,
    "vbr-raw": VbrRaw,
    "tum": TumRgbd,
    "scannet": ScanNet,
    "7scenes": SevenScenes,
    "bonn": Bonn,
    "sintel": Sintel,
}


def open_dataset(name: str, root: str | os.PathLike, **options: Any) -> Dataset:
    """The reader registered as ``name`` over ``root``; ``options`` go to its constructor (e.g. ``camera_offset``)."""
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return DATASETS[name](root, **options)
