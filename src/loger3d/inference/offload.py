"""A chunk's outputs to host memory without making the host wait for the GPU."""

from __future__ import annotations

from dataclasses import replace

import torch

from ..model.align import ChunkTransform
from ..model.outputs import ChunkPrediction

__all__ = ["to_host"]


def to_host(pred: ChunkPrediction, transform: ChunkTransform | None, copy_stream: torch.cuda.Stream | None
            ) -> tuple[ChunkPrediction, ChunkTransform | None, torch.cuda.Event | None]:
    """``pred`` and ``transform`` on the host, and the event that marks their copy done.

    On CUDA the copies go to pinned memory on ``copy_stream`` after the work queued so far on the
    current stream, and return at once (wait on the event before reading them); elsewhere they are
    plain copies and the event is ``None``.
    """
    if pred.camera_poses.device.type != "cuda":
        return pred.to("cpu"), transform.to("cpu") if transform is not None else None, None
    copy_stream.wait_stream(torch.cuda.current_stream(pred.camera_poses.device))

    def pinned(value: torch.Tensor) -> torch.Tensor:
        host = torch.empty(value.shape, dtype=value.dtype, pin_memory=True)
        host.copy_(value, non_blocking=True)
        value.record_stream(copy_stream)  # the device buffer outlives the copy
        return host

    with torch.cuda.stream(copy_stream):
        pred = replace(pred, **{key: pinned(value) for key, value in pred.items()})
        if transform is not None:
            transform = ChunkTransform(pinned(transform.rotation), pinned(transform.translation),
                                       pinned(transform.scale))
        copied = torch.cuda.Event()
        copied.record(copy_stream)
    return pred, transform, copied
