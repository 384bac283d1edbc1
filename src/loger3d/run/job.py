"""The reconstruct job: frames from a source, through the streaming reconstructor, into the sinks.

    source ──frames (decoded ahead, in parallel; stacked and pinned per chunk in a thread)──▶
    Reconstructor (the model) ──finished frames──▶ RunWriter thread (sinks, checkpoint, run.json)

A run stopped at any point (Ctrl-C, a crash) leaves every completed chunk on disk; ``resume=True``
continues from the last checkpoint with results identical to an uninterrupted run. Memory does
not grow with the video: the source decodes two chunks ahead, the reconstructor keeps one chunk,
the cloud is voxel-bounded.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from ..errors import DamagedFileError
from ..inference.pipeline import parse_devices
from ..inference.reconstructor import FinishedFrames, Reconstructor
from ..loop.closer import LoopCloser
from ..sinks.base import Sink
from ..sinks.cloud import CloudSink
from ..sinks.images import ImageWriter
from ..sinks.store import FrameStore
from ..sinks.trajectory import TrajectoryWriter
from ..sources import Frame, FrameSource, Prefetcher, SourceError, group_frames, open_source
from .exports import write_exports
from .folder import (
    CHECKPOINT_FILE,
    RUN_FILE,
    Checkpoint,
    RunRecord,
    environment,
    load_checkpoint,
    prepare_folder,
    remove_stale_temporaries,
)
from .loops import close_loops, discard_loop_outputs
from .settings import RunError, RunSettings
from .writer import RunWriter, StageClock

__all__ = ["reconstruct", "build_sinks", "open_run_source"]

_LOOP = "loop."  # the loop closer's entries in the checkpoint's stream state


def open_run_source(source_spec, settings: RunSettings, decode_threads: int | None = None) -> FrameSource:
    """The run's frames, as its settings select and size them."""
    return open_source(source_spec, start=settings.start, end=settings.end, stride=settings.stride, fps=settings.fps,
                       resolution=tuple(settings.resolution) if settings.resolution else None,
                       max_pixels=settings.max_pixels, decode_threads=decode_threads)


def build_sinks(out: Path, settings: RunSettings) -> dict[str, Sink]:
    """The sinks a run writes, by name (the names key their state in the checkpoint)."""
    store = FrameStore(out, keep=settings.store_fields, precision=settings.store_precision, corrected=False)
    sinks: dict[str, Sink] = {
        "store": store,
        "trajectory": TrajectoryWriter(out, store),
        "cloud": CloudSink(settings.conf_threshold, settings.edge_rtol, settings.cloud_stride, settings.voxel_size,
                           settings.max_points),
    }
    if "images" in settings.save:
        sinks["images"] = ImageWriter(out)
    return sinks


@torch.no_grad()  # inference: no autograd graph (a full-size chunk's would not fit in GPU memory)
def reconstruct(source_spec, out: str | os.PathLike, model, settings: RunSettings, *, resume: bool = False,
                progress: Callable[[int, int | None], None] | None = None, checkpoint_every: float = 30.0,
                keep_state: bool = False, decode_threads: int | None = None,
                devices: Sequence[str | torch.device] | None = None) -> dict:
    """Run (or resume) a reconstruction of ``source_spec`` (what ``open_source`` takes, or a ``FrameSource``
    from :func:`open_run_source`) into ``out``; returns the final run.json contents.

    ``progress(frames_done, frames_total_or_None)`` is called (from the writer thread) after each
    chunk. The resume state is saved at most every ``checkpoint_every`` seconds (0: after every
    chunk), and on Ctrl-C whenever the stream is at a chunk boundary; it is removed when the run
    completes unless ``keep_state``. ``devices``: two or more run the model as a layer pipeline
    (``inference.pipeline``; the model is moved there), with the outputs of one device.
    """
    out = Path(out)
    settings.check()
    # The input is checked before the folder is touched (a FrameSource passed in was opened by open_run_source).
    source = source_spec if isinstance(source_spec, FrameSource) else \
        open_run_source(source_spec, settings, decode_threads)
    if settings.loop_closure is not None and devices is not None and len(parse_devices(devices)) > 1:
        raise RunError("loop closure runs on one device: leave out --devices, or --loop-closure")
    fingerprint = _fingerprint(source)
    previous = prepare_folder(out, settings, resume, fingerprint)
    stream = Reconstructor(model, settings.window, settings.overlap, settings.align, settings.reset_every,
                           devices=devices)
    closer = None
    if settings.loop_closure is not None:
        closer = LoopCloser(model, out, settings.loop_options(), settings.window, settings.overlap)
    sinks = build_sinks(out, settings)
    record = RunRecord(asdict(settings), environment(model.image_mean.device), source.describe(),
                       inputs={"fingerprint": fingerprint})
    if previous is not None:
        record.timings_previous_runs = previous.get("timings") or None
        checkpoint = _resume_point(out, previous, sinks)  # everything checked before anything changes
        discard_loop_outputs(out)
        if checkpoint is not None:
            stream_state = {k: v for k, v in checkpoint.stream.items() if not k.startswith(_LOOP)}
            stream.load_state_dict(stream_state)
            if closer is not None:
                closer.load_state_dict({k[len(_LOOP):]: v.numpy() for k, v in checkpoint.stream.items()
                                        if k.startswith(_LOOP)})
            record.frames, record.chunks = checkpoint.frames, checkpoint.chunks
            record.checkpoint = {"frames": checkpoint.frames, "chunks": checkpoint.chunks}
        remove_stale_temporaries(out)
        for name, sink in sinks.items():  # back to the checkpoint (or to nothing, without one)
            sink.restore(checkpoint.sinks.get(name, {}) if checkpoint else {}, record.frames)
    record.write(out)

    clock = StageClock()
    writer = RunWriter(out, sinks, record, clock, progress, source.num_frames)
    meta: dict[int, Frame] = {}
    last_save = time.perf_counter()

    def hand_over(done: list[FinishedFrames], force: bool = False) -> None:
        nonlocal last_save
        due = force or time.perf_counter() - last_save >= checkpoint_every
        if due:  # the checkpoint covers every finished frame: the chunk in flight is finalised first
            last_save = time.perf_counter()
            done = done + stream.flush()
        parts = [(part, [meta.pop(i) for i in range(part.start, part.stop)]) for part in done]
        state = stream.state_dict() if due else None
        if closer is not None:
            t0 = time.perf_counter()
            closer.observe(done)
            closer.verify_ready(writer.record.frames)  # frames the writer has put on disk so far
            clock.loops += time.perf_counter() - t0
            if due:
                state.update({_LOOP + k: torch.from_numpy(np.ascontiguousarray(v))
                              for k, v in closer.state_dict().items()})
        writer.submit(parts, stream.chunks_run, state)

    device = model.image_mean.device
    step = settings.window - settings.overlap
    frames = source.frames(skip=stream.frames_finished, prefetch=2 * settings.window + 8)
    chunks = Prefetcher(group_frames(frames, stream.frames_until_chunk, step, stream.frames_pushed,
                                     pin=device.type == "cuda"), depth=2)
    at_boundary = True  # the stream's state matches what has been handed to the writer
    try:
        while True:
            t0 = time.perf_counter()
            chunk = next(chunks, None)
            clock.decode += time.perf_counter() - t0
            if chunk is None:
                break
            meta.update((frame.index, frame) for frame in chunk.frames)
            if chunk.images is None:
                continue  # every frame already in the reconstructor's buffer (resumed): only metadata needed
            at_boundary = False
            t0 = time.perf_counter()
            done = stream.push(chunk.images.to(device, non_blocking=True))
            clock.model += time.perf_counter() - t0
            if stream.frames_until_chunk == step:  # a chunk ran: its frames go to the writer
                hand_over(done)
                at_boundary = True
        at_boundary = False
        t0 = time.perf_counter()
        done = stream.finish()
        clock.model += time.perf_counter() - t0
        # A kept state covers the whole run; with loop closure too, so that a run stopped while it closes
        # loops resumes there rather than at an earlier chunk.
        hand_over(done, force=keep_state or closer is not None)
        writer.finish()
        cloud = sinks["cloud"].cloud
        if closer is not None:
            t0 = time.perf_counter()
            corrected, record.loops = close_loops(out, closer, settings)
            cloud = corrected if corrected is not None else cloud
            clock.loops += time.perf_counter() - t0
        t0 = time.perf_counter()
        write_exports(out, cloud, size=source.size)
        clock.sinks += time.perf_counter() - t0
    except BaseException as error:
        interrupted = isinstance(error, KeyboardInterrupt)
        if interrupted and at_boundary and stream.chunks_run > 0:  # lose nothing on Ctrl-C
            hand_over([], force=True)
        writer.abandon()  # chunks already handed over are finished: resume starts after them
        record.status = "interrupted" if interrupted else "failed"
        record.write(out)
        raise
    finally:
        stream.close()
        writer.close()
        chunks.close()
        close = getattr(frames, "close", None)
        if close is not None:
            close()
    record.status = "complete"
    record.cloud_points = len(cloud)
    record.timings = clock.report(time.perf_counter() - writer.started, record.frames)
    if not keep_state:
        record.checkpoint = None
    record.write(out)  # complete first: a run killed before the state is removed is still a complete run
    if not keep_state:
        shutil.rmtree(out / CHECKPOINT_FILE.parent, ignore_errors=True)
    return asdict(record)


def _fingerprint(source: FrameSource) -> dict:
    try:
        return source.fingerprint()
    except OSError as e:
        raise SourceError(f"cannot read the input {getattr(e, 'filename', None) or source.path}: "
                          f"{e.strerror or e}") from None


def _resume_point(out: Path, previous: dict, sinks: dict[str, Sink]) -> Checkpoint | None:
    """The checkpoint a resumed run starts from, with every file it covers checked (nothing is changed);
    ``None`` when the run stopped before its first checkpoint. Damage is a ``DamagedFileError``."""
    path = out / CHECKPOINT_FILE
    try:
        if not path.exists():
            recorded = previous.get("checkpoint")
            if recorded:
                raise DamagedFileError(f"the resume state {path} is missing, though {RUN_FILE} records one after "
                                       f"{recorded.get('frames')} frames")
            return None
        checkpoint = load_checkpoint(path)
        for name, sink in sinks.items():
            sink.verify(checkpoint.sinks.get(name, {}), checkpoint.frames)
    except DamagedFileError as e:
        raise DamagedFileError(f"{e}: the run in {out} cannot be continued; nothing in it was changed, and "
                               "reconstructing into a new folder starts afresh") from None
    return checkpoint
