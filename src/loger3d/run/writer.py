"""The run's writer thread: finished frames into the sinks, checkpoints, run.json and progress, in order.

The main thread only runs the model and hands over what it finished; everything that touches
the disk happens here, so that the GPU does not wait for it. The run record is written by this
thread alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..inference.reconstructor import FinishedFrames
from ..sinks.base import FrameBatch, Sink
from ..sources import Frame
from ..util.workers import SerialWorker
from .folder import CHECKPOINT_FILE, Checkpoint, RunRecord, save_checkpoint

__all__ = ["RunWriter", "StageClock", "to_batch"]


@dataclass
class StageClock:
    """Seconds spent per stage; the main thread adds to decode, model and loops (loop closure), the writer to
    sinks and checkpoint."""

    decode: float = 0.0
    model: float = 0.0
    sinks: float = 0.0
    checkpoint: float = 0.0
    loops: float = 0.0

    def report(self, total: float, frames: int) -> dict:
        report = {"total_s": round(total, 3), "decode_wait_s": round(self.decode, 3), "model_s": round(self.model, 3),
                  "sinks_s": round(self.sinks, 3), "checkpoint_s": round(self.checkpoint, 3),
                  "frames_per_second": round(frames / total, 3) if total > 0 else None}
        if self.loops:
            report["loop_closure_s"] = round(self.loops, 3)
        return report


def to_batch(done: FinishedFrames, frames: list[Frame]) -> FrameBatch:
    """The sinks' view of finished frames: NumPy on the host, confidence as a probability."""
    pred = done.prediction
    return FrameBatch(
        index=np.arange(done.start, done.stop, dtype=np.int64),
        source_index=np.array([f.source_index for f in frames], dtype=np.int64),
        timestamp=np.array([f.timestamp for f in frames], dtype=np.float64),
        name=[f.name for f in frames],
        image=np.stack([f.image for f in frames]),
        local_points=pred.local_points[0].float().numpy(),
        conf=torch.sigmoid(pred.conf[0, ..., 0].float()).numpy(),
        camera_poses=pred.camera_poses[0].double().numpy(),
    )


class RunWriter:
    """Owns the sinks and the run record; every method but ``submit``'s work runs on the caller's thread."""

    def __init__(self, out: Path, sinks: dict[str, Sink], record: RunRecord, clock: StageClock,
                 progress: Callable[[int, int | None], None] | None, total: int | None) -> None:
        self.out = out
        self.sinks = sinks
        self.record = record
        self.clock = clock
        self.progress = progress
        self.total = total
        self.started = time.perf_counter()
        self._worker = SerialWorker(depth=2, name="loger3d-writer")

    def submit(self, done: list[tuple[FinishedFrames, list[Frame]]], chunks: int,
               stream_state: dict[str, torch.Tensor] | None = None) -> None:
        """Hand finished frames over (and, with ``stream_state``, a checkpoint covering them)."""
        self._worker.submit(self._write, done, chunks, stream_state)

    def finish(self) -> None:
        """Wait for every write, then finish the sinks (last flushes, files closed), on the writer thread too."""
        self._worker.submit(self._finish_sinks, True)
        self._worker.drain()

    def abandon(self) -> None:
        """After a failure or an interruption: wait for the writes handed over, then finish the sinks, ignoring
        errors (the first one is already on its way out)."""
        self._worker.drain(raise_errors=False)
        self._finish_sinks(raise_errors=False)

    def close(self) -> None:
        self._worker.close()

    def _finish_sinks(self, raise_errors: bool) -> None:
        for sink in self.sinks.values():
            try:
                sink.finish()
            except Exception:
                if raise_errors:
                    raise

    def _write(self, done: list[tuple[FinishedFrames, list[Frame]]], chunks: int,
               stream_state: dict[str, torch.Tensor] | None) -> None:
        t0 = time.perf_counter()
        for part, frames in done:
            batch = to_batch(part, frames)
            for sink in self.sinks.values():
                sink.write(batch)
            self.record.frames += len(batch)
        t1 = time.perf_counter()
        self.clock.sinks += t1 - t0
        self.record.chunks = chunks
        if stream_state is not None:
            checkpoint = Checkpoint(self.record.frames, chunks, stream_state,
                                    {name: sink.state() for name, sink in self.sinks.items()})
            save_checkpoint(self.out / CHECKPOINT_FILE, checkpoint)
            self.record.checkpoint = {"frames": self.record.frames, "chunks": chunks}
        self.clock.checkpoint += time.perf_counter() - t1
        self.record.timings = self.clock.report(time.perf_counter() - self.started, self.record.frames)
        self.record.write(self.out)
        if self.progress is not None:
            self.progress(self.record.frames, self.total)
