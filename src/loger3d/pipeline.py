"""The reconstruct job: a frame source streamed through the ``Reconstructor`` into an output folder.

Per chunk, finished frames go to the frame store (depth, confidence, local points, poses,
intrinsics, image), the image folder, the trajectory files and the fused point cloud; then the
reconstructor's state is saved. A run stopped at any point (Ctrl-C, a crash) leaves every
completed chunk on disk, and ``resume=True`` continues from the last saved state with results
identical to an uninterrupted run. Memory does not grow with the video: the source decodes
ahead by a few frames, the reconstructor keeps one chunk, the cloud is voxel-bounded.

Output folder:
    run.json                  settings, versions, frame counts, per-stage timings, status
    frames/chunk_XXXXX.npz    per-frame results (see io/store.py)
    images/<name>.jpg         the frames as the model saw them (JPEG, for COLMAP / nerfstudio)
    trajectory_tum.txt        timestamp tx ty tz qx qy qz qw (camera-to-world)
    trajectory_kitti.txt      3×4 camera-to-world matrices, row-major
    cloud.ply                 fused, filtered, voxel-downsampled point cloud
    intrinsics.txt            the run's shared pinhole K (fx fy cx cy, pixels)
    colmap/                   COLMAP text model (cameras, images, points3D)
    transforms.json           nerfstudio cameras
    state/reconstructor.safetensors   resume state after the last completed chunk
"""

from __future__ import annotations

import json
import os
import platform
import queue
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from . import __version__
from .inference.reconstructor import FinishedFrames, Reconstructor
from .io.frames import FrameBatch
from .io.pointcloud import VoxelCloud, filter_mask
from .io.preprocess import frames_to_tensor
from .io.sources import Frame, open_source
from .io.store import FrameStore, ImageWriter, atomic_open, image_relpath
from .io.trajectory import write_kitti, write_tum

__all__ = ["RunSettings", "RunError", "reconstruct", "export_run", "write_exports", "rebuild_cloud", "RUN_FILE"]

RUN_FILE = "run.json"
STATE_FILE = Path("state") / "reconstructor.safetensors"


class RunError(ValueError):
    """A problem with the output folder or the run's settings; one line with the fix."""


@dataclass
class RunSettings:
    """Everything that decides a run's outputs (compared on ``--resume``)."""

    input: list[str]
    model: str
    window: int
    overlap: int
    align: str = "none"
    reset_every: int = 0
    dtype: str = "fp32"
    fast: bool = False
    start: int = 0
    end: int | None = None
    stride: int = 1
    fps: float | None = None
    resolution: list[int] | None = None
    max_pixels: int = 255000
    store_dtype: str = "float32"
    conf_threshold: float = 0.1
    edge_rtol: float = 0.03
    cloud_stride: int = 2
    voxel_size: float | None = None
    max_points: int = 5_000_000


@dataclass
class _Timings:
    decode: float = 0.0
    model: float = 0.0
    sinks: float = 0.0
    checkpoint: float = 0.0

    @contextmanager
    def measure(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            setattr(self, name, getattr(self, name) + time.perf_counter() - t0)


def _write_json(path: Path, data: dict) -> None:
    with atomic_open(path, "w") as f:
        json.dump(data, f, indent=1)
        f.write("\n")


def _environment(device: torch.device) -> dict:
    env = {"loger3d": __version__, "torch": torch.__version__, "python": platform.python_version(),
           "device": str(device)}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def _prepare_folder(out: Path, settings: RunSettings, resume: bool) -> dict | None:
    """Check the output folder; return the previous run.json when resuming."""
    run_file = out / RUN_FILE
    if not run_file.exists():
        if resume:
            raise RunError(f"nothing to resume in {out}: it holds no {RUN_FILE}; run without --resume")
        if out.exists() and any(out.iterdir()):
            raise RunError(f"output folder {out} is not empty and holds no loger3d run; choose a new folder")
        out.mkdir(parents=True, exist_ok=True)
        return None
    previous = json.loads(run_file.read_text())
    same = previous.get("settings") == asdict(settings)
    if not resume:
        what = "this run" if same else "a different run"
        raise RunError(f"output folder {out} already holds {what} ({previous.get('status')}); "
                       f"use --resume to continue it, or choose a new folder")
    if not same:
        changed = sorted(k for k, v in asdict(settings).items() if previous["settings"].get(k) != v)
        raise RunError(f"{out} holds a run with other settings ({', '.join(changed)} differ); resume with the "
                       f"same settings or choose a new folder")
    if previous.get("status") == "complete":
        raise RunError(f"the run in {out} is already complete; nothing to resume")
    return previous


def _to_batch(done: FinishedFrames, meta: dict[int, Frame]) -> FrameBatch:
    pred = done.prediction
    frames = [meta.pop(i) for i in range(done.start, done.stop)]
    return FrameBatch(
        index=np.arange(done.start, done.stop, dtype=np.int64),
        source_index=np.array([f.source_index for f in frames], dtype=np.int64),
        timestamp=np.array([f.timestamp for f in frames], dtype=np.float64),
        name=[f.name for f in frames],
        image=np.stack([f.image for f in frames]),
        local_points=pred.local_points[0].float().numpy(),
        conf=torch.sigmoid(pred.conf[0, ..., 0].float()).numpy(),
        camera_poses=pred.camera_poses[0].double().numpy(),
        points=pred.points[0].float().numpy(),
    )


def _world_points(poses: np.ndarray, local: np.ndarray) -> np.ndarray:
    """``[n,H,W,3]`` world points from camera-to-world ``[n,4,4]`` and camera-frame points."""
    rot = poses[:, None, None, :3, :3].astype(np.float32)
    return (rot @ local[..., None])[..., 0] + poses[:, None, None, :3, 3].astype(np.float32)


class _Sinks:
    """Everything written per finished batch; rebuilt from the frame store on resume.

    The fused cloud is fed from the values as stored (after the store's dtype), so a resumed run,
    which re-reads them, accumulates exactly what an uninterrupted one did.
    """

    def __init__(self, out: Path, settings: RunSettings) -> None:
        self.out = out
        self.settings = settings
        self.store = FrameStore(out, dtype=settings.store_dtype)
        self.images = ImageWriter(out)
        self.cloud = VoxelCloud(voxel_size=settings.voxel_size, max_points=settings.max_points)
        self.frames = 0

    def write(self, batch: FrameBatch) -> None:
        self.store.append(batch)
        self.images.write(batch)
        dtype = np.dtype(self.settings.store_dtype)
        local = batch.local_points.astype(dtype).astype(np.float32)
        conf = batch.conf.astype(dtype).astype(np.float32)
        add_to_cloud(self.cloud, batch.camera_poses, local, conf, batch.image, self.settings.conf_threshold,
                     self.settings.edge_rtol, self.settings.cloud_stride)
        self._append_trajectory(batch.timestamp, batch.camera_poses)
        self.frames += len(batch)

    def _append_trajectory(self, timestamps: np.ndarray, poses: np.ndarray) -> None:
        write_tum(self.out / "trajectory_tum.txt", timestamps, poses, append=True)
        write_kitti(self.out / "trajectory_kitti.txt", poses, append=True)

    def restore(self, num_chunks: int) -> None:
        """Drop store chunks written after the saved state, then rebuild the cloud and trajectories."""
        self.store.truncate(num_chunks)
        for name in ("trajectory_tum.txt", "trajectory_kitti.txt"):
            (self.out / name).unlink(missing_ok=True)
        for chunk in self.store.iter_batches():
            add_to_cloud(self.cloud, chunk["camera_poses"], chunk["local_points"].astype(np.float32),
                         chunk["conf"].astype(np.float32), chunk["image"], self.settings.conf_threshold,
                         self.settings.edge_rtol, self.settings.cloud_stride)
            self._append_trajectory(chunk["timestamp"], chunk["camera_poses"])
            self.frames += len(chunk["index"])


def add_to_cloud(cloud: VoxelCloud, poses: np.ndarray, local: np.ndarray, conf: np.ndarray, images: np.ndarray,
                 conf_threshold: float, edge_rtol: float, stride: int = 1) -> None:
    """Filter (confidence, depth edges) and fuse ``n`` frames into the voxel cloud.

    ``stride`` keeps every stride-th pixel row and column after filtering: consecutive video
    frames see the same surfaces, so the cloud loses little and fusion runs stride² times faster.
    """
    mask = filter_mask(local[..., 2], conf, conf_threshold, edge_rtol)[:, ::stride, ::stride]
    local, images = local[:, ::stride, ::stride], images[:, ::stride, ::stride]
    cloud.add(_world_points(poses, local), images, mask, centers=poses[:, :3, 3])


def rebuild_cloud(out: Path, conf_threshold: float, edge_rtol: float, voxel_size: float | None,
                  max_points: int, stride: int) -> VoxelCloud:
    """The fused cloud of a run, from its frame store."""
    cloud = VoxelCloud(voxel_size=voxel_size, max_points=max_points)
    for chunk in FrameStore(out).iter_batches():
        add_to_cloud(cloud, chunk["camera_poses"], chunk["local_points"].astype(np.float32),
                     chunk["conf"].astype(np.float32), chunk["image"], conf_threshold, edge_rtol, stride)
    return cloud


EXPORT_FORMATS = ("ply", "glb", "colmap", "nerfstudio", "intrinsics")


def write_exports(out: Path, cloud: VoxelCloud, formats=("ply", "colmap", "nerfstudio", "intrinsics")) -> list[Path]:
    """Exports of a run from its frame store and fused cloud (see the module docstring for the files)."""
    from .io.colmap import write_colmap_text
    from .io.intrinsics import shared_intrinsics
    from .io.nerfstudio import write_transforms_json
    from .io.pointcloud import write_glb, write_ply

    store = FrameStore(out)
    _, _, poses, names = store.read_poses()
    K = shared_intrinsics(store.read_intrinsics())
    with Image.open(out / image_relpath(names[0])) as first:  # the header only: no chunk array is loaded
        width, height = first.size
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


def export_run(run_dir: str | os.PathLike, formats, conf_threshold: float | None = None,
               voxel_size: float | None = None) -> list[Path]:
    """Rebuild exports of a finished (or interrupted) run, optionally with other cloud settings."""
    out = Path(run_dir)
    if not (out / RUN_FILE).exists():
        raise RunError(f"{out} holds no loger3d run ({RUN_FILE} missing); give a folder written by reconstruct")
    settings = json.loads((out / RUN_FILE).read_text())["settings"]
    if not FrameStore(out).chunks():
        raise RunError(f"the run in {out} has no finished frames yet; nothing to export")
    cloud = rebuild_cloud(out, settings["conf_threshold"] if conf_threshold is None else conf_threshold,
                          settings["edge_rtol"], settings["voxel_size"] if voxel_size is None else voxel_size,
                          settings["max_points"], settings["cloud_stride"])
    return write_exports(out, cloud, formats)


@torch.no_grad()  # inference: no autograd graph (a full-size chunk's would not fit in GPU memory)
def reconstruct(source_spec, out: str | os.PathLike, model, settings: RunSettings, *, resume: bool = False,
                progress=None, checkpoint_every: float = 30.0) -> dict:
    """Run (or resume) a reconstruction into ``out``; returns the final run.json contents.

    ``progress`` is called as ``progress(frames_done, frames_total_or_None)`` after each chunk.
    The resume state (the memory: hundreds of MB for the full-size model) is saved at most every
    ``checkpoint_every`` seconds (0: after every chunk), and on Ctrl-C whenever the stream is at a
    chunk boundary; ``run.json`` records which stored chunks it covers.
    """
    out = Path(out)
    # The input is checked before the output folder is touched: a bad input leaves nothing behind.
    source = open_source(source_spec, start=settings.start, end=settings.end, stride=settings.stride,
                         fps=settings.fps, resolution=tuple(settings.resolution) if settings.resolution else None,
                         max_pixels=settings.max_pixels)
    previous = _prepare_folder(out, settings, resume)
    device = model.image_mean.device
    stream = Reconstructor(model, settings.window, settings.overlap, settings.align, settings.reset_every)
    sinks = _Sinks(out, settings)
    timings = _Timings()
    run = {"settings": asdict(settings), "environment": _environment(device), "source": source.describe(),
           "status": "running", "frames": 0, "chunks": 0, "store_chunks": 0, "checkpoint": None}
    if previous is not None:
        saved = previous.get("checkpoint")
        if saved is not None:
            stream.load(out / STATE_FILE)
        sinks.restore(saved["store_chunks"] if saved is not None else 0)
        run.update(checkpoint=saved, frames=sinks.frames, timings_previous_runs=previous.get("timings", {}))
    (out / STATE_FILE).parent.mkdir(exist_ok=True)
    _write_json(out / RUN_FILE, run)

    meta: dict[int, Frame] = {}
    pending: list[Frame] = []
    t_start = last_save = time.perf_counter()
    writer = _BackgroundWriter()

    def write_chunk(batches: list[FrameBatch], state: dict | None, chunks_run: int) -> None:
        """On the writer thread: the chunk's files first, then (when due) the state that covers them."""
        with timings.measure("sinks"):
            for batch in batches:
                sinks.write(batch)
        with timings.measure("checkpoint"):
            store_chunks = len(sinks.store.chunks())
            if state is not None:
                stream.save(out / STATE_FILE, state)
                run["checkpoint"] = {"store_chunks": store_chunks, "frames": sinks.frames, "chunks": chunks_run}
            run.update(frames=sinks.frames, chunks=chunks_run, store_chunks=store_chunks,
                       timings=_timing_report(timings, time.perf_counter() - t_start, sinks.frames))
            _write_json(out / RUN_FILE, run)
        if progress is not None:
            progress(sinks.frames, source.num_frames)

    def checkpoint(done: list[FinishedFrames], force: bool = False) -> None:
        nonlocal last_save
        due = force or time.perf_counter() - last_save >= checkpoint_every
        if due:  # the state covers every finished frame: the chunk in flight is finalised first
            last_save = time.perf_counter()
            done = done + stream.flush()
        batches = [_to_batch(part, meta) for part in done]
        writer.submit(write_chunk, batches, stream.state_dict() if due else None, stream.chunks_run)

    frames = source.frames(skip=stream.frames_finished)
    at_boundary = True  # the stream's state matches what has been handed to the writer
    try:
        while True:
            with timings.measure("decode"):
                frame = next(frames, None)
            if frame is None:
                break
            meta[frame.index] = frame
            if frame.index < stream.frames_pushed:
                continue  # already in the reconstructor's buffer (resumed): only its metadata was needed
            pending.append(frame)
            if len(pending) == stream.frames_until_chunk:
                at_boundary = False
                with timings.measure("model"):
                    done = stream.push(frames_to_tensor(np.stack([f.image for f in pending]), scaled=False))
                pending = []
                checkpoint(done)
                at_boundary = True
        at_boundary = False
        with timings.measure("model"):
            if pending:
                stream.push(frames_to_tensor(np.stack([f.image for f in pending]), scaled=False))
            done = stream.finish()
        checkpoint(done)
        writer.drain()
        with timings.measure("sinks"):
            write_exports(out, sinks.cloud)
    except BaseException as error:
        interrupted = isinstance(error, KeyboardInterrupt)
        if interrupted and at_boundary and stream.chunks_run > 0:  # lose nothing on Ctrl-C
            writer.submit(write_chunk, [_to_batch(part, meta) for part in stream.flush()], stream.state_dict(),
                          stream.chunks_run)
        writer.drain(raise_errors=False)  # chunks already handed over are finished: resume starts after them
        run["status"] = "interrupted" if interrupted else "failed"
        _write_json(out / RUN_FILE, run)
        raise
    finally:
        writer.close()
        close = getattr(frames, "close", None)
        if close is not None:
            close()
    run.update(status="complete", cloud_points=len(sinks.cloud),
               timings=_timing_report(timings, time.perf_counter() - t_start, sinks.frames))
    _write_json(out / RUN_FILE, run)
    return run


class _BackgroundWriter:
    """Runs submitted work in order on one thread, so that the GPU does not wait for the disk.

    At most ``depth`` tasks wait (back-pressure on the producer); the first error is raised in
    the producer at its next ``submit`` or ``drain``, and no later task runs after it.
    """

    def __init__(self, depth: int = 2) -> None:
        self._tasks: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="loger3d-writer", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while True:
            task = self._tasks.get()
            try:
                if task is None:
                    return
                if self._error is None:
                    fn, args = task
                    fn(*args)
            except BaseException as e:  # handed to the producer
                self._error = e
            finally:
                self._tasks.task_done()

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def submit(self, fn, *args) -> None:
        self._raise()
        self._tasks.put((fn, args))

    def drain(self, raise_errors: bool = True) -> None:
        self._tasks.join()
        if raise_errors:
            self._raise()

    def close(self) -> None:
        if self._thread.is_alive():
            self._tasks.put(None)
            self._thread.join()


def _timing_report(t: _Timings, total: float, frames: int) -> dict:
    return {"total_s": round(total, 3), "decode_wait_s": round(t.decode, 3), "model_s": round(t.model, 3),
            "sinks_s": round(t.sinks, 3), "checkpoint_s": round(t.checkpoint, 3),
            "frames_per_second": round(frames / total, 3) if total > 0 else None}
