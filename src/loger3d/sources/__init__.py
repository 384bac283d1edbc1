"""Frames in: videos (PyAV), image folders, globs and lists, sampled and resized as the official demo
does, decoded ahead of the model on a pool of threads."""

from .chunks import FrameChunk, group_frames
from .prefetch import Prefetcher
from .preprocess import frames_to_tensor
from .readers import (
    IMAGE_EXTENSIONS,
    VIDEO_EXTENSIONS,
    Frame,
    FrameSource,
    ImageSource,
    SourceError,
    VideoSource,
    default_decode_threads,
    natural_key,
    open_source,
)

__all__ = ["Frame", "FrameChunk", "FrameSource", "IMAGE_EXTENSIONS", "ImageSource", "Prefetcher", "SourceError",
           "VIDEO_EXTENSIONS", "VideoSource", "default_decode_threads", "frames_to_tensor", "group_frames",
           "natural_key", "open_source"]
