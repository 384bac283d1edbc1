"""Where finished frames go: one :class:`Sink` protocol; the frame store, images, trajectories, the
fused cloud, and the export formats (PLY, GLB, COLMAP, nerfstudio, intrinsics)."""

from .base import FrameBatch, Sink, SinkState
from .cloud import CloudSink, VoxelCloud
from .images import ImageWriter
from .store import FrameStore
from .trajectory import TrajectoryWriter

__all__ = ["CloudSink", "FrameBatch", "FrameStore", "ImageWriter", "Sink", "SinkState", "TrajectoryWriter",
           "VoxelCloud"]
