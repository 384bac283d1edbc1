"""The whole ``reconstruct`` job on a GPU: PNG folder in, every default output on disk.

Makes (once) a folder of PNG frames sized like KITTI odometry (1241×376, natural-image-like
content so that PNG decoding costs what it costs on real frames), then runs
``loger3d.run.reconstruct`` on it with seeded full-size weights (no download) and reports the
frames per second, the job's stage timings, how long the GPU sat idle between chunks, and the
bytes written per frame. Compare with ``benchmarks/throughput.py`` (the model alone) at the same
size in the same lease.

    python benchmarks/e2e.py --folder /tmp/kitti00 --frames 4541 --resolution 924x266 --reset-every 5 --out results/

GPU idle time: each chunk's model call is bracketed by CUDA events; a gap between one chunk's end
and the next one's start on the GPU is time the GPU waited for the host.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def _make_frame(args: tuple[str, int, int, int]) -> None:
    path, index, width, height = args
    rng = np.random.default_rng(index // 50)  # a scene every 50 frames, drifting in between
    low = rng.integers(0, 255, size=(height // 16 + 2, width // 16 + 2, 3)).astype(np.uint8)
    base = np.asarray(Image.fromarray(low).resize((width + 64, height), Image.Resampling.BICUBIC), np.int16)
    shift = (index % 50)
    frame = base[:, shift:shift + width]
    noise = np.random.default_rng(index).normal(0, 6, size=frame.shape)
    Image.fromarray(np.clip(frame + noise, 0, 255).astype(np.uint8)).save(path, compress_level=1)


def make_folder(folder: Path, frames: int, width: int, height: int) -> float:
    """PNG frames ``000000.png`` ...; returns their mean size in bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    todo = [(str(folder / f"{i:06d}.png"), i, width, height) for i in range(frames)
            if not (folder / f"{i:06d}.png").exists()]
    if todo:
        with Pool(os.cpu_count()) as pool:
            pool.map(_make_frame, todo, chunksize=16)
    sizes = [p.stat().st_size for p in folder.glob("*.png")]
    return float(np.mean(sizes))


class ChunkEvents:
    """CUDA events around every ``forward_chunk`` of a model."""

    def __init__(self, model) -> None:
        self.pairs: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []
        original = model.forward_chunk

        def timed(*args, **kwargs):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            out = original(*args, **kwargs)
            end.record()
            self.pairs.append((start, end))
            return out

        model.forward_chunk = timed

    def report(self) -> dict:
        torch.cuda.synchronize()
        if not self.pairs:  # a layer pipeline runs the model's units on its own threads, not forward_chunk
            return {"chunks": 0}
        busy = [s.elapsed_time(e) / 1000 for s, e in self.pairs]
        gaps = [max(0.0, end.elapsed_time(start) / 1000) for (_, end), (start, _) in zip(self.pairs, self.pairs[1:])]
        steady = gaps[1:]  # after the first chunk (compilation)
        return {"chunks": len(self.pairs), "gpu_busy_s": round(sum(busy), 3), "first_chunk_s": round(busy[0], 3),
                "gpu_idle_between_chunks_s": round(sum(gaps), 3),
                "gpu_idle_after_first_chunk_s": round(sum(steady), 3),
                "gpu_idle_per_chunk_median_ms": round(1000 * float(np.median(steady)), 2) if steady else None}


def disk_bytes(folder: Path) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for path in folder.rglob("*"):
        if path.is_file():
            top = path.relative_to(folder).parts[0]
            sizes[top] = sizes.get(top, 0) + path.stat().st_size
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", required=True, help="PNG folder (made if missing)")
    parser.add_argument("--frames", type=int, default=4541)
    parser.add_argument("--source-size", default="1241x376")
    parser.add_argument("--resolution", default="924x266")
    parser.add_argument("--preset", default="loger")
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument("--overlap", type=int, default=3)
    parser.add_argument("--reset-every", type=int, default=5)
    parser.add_argument("--no-fast", action="store_true")
    parser.add_argument("--save", default="depth,conf,images")
    parser.add_argument("--run-dir", required=True, help="output folder of the job (replaced)")
    parser.add_argument("--out", required=True, help="folder for the JSON result")
    parser.add_argument("--label", default="e2e")
    parser.add_argument("--devices", help="a layer pipeline over these GPUs (e.g. cuda:0,cuda:1 or all)")
    args = parser.parse_args()

    import shutil

    from loger3d.run import RunSettings, parse_save, reconstruct
    from loger3d.run.compile_cache import use_compile_cache
    from loger3d.weights import model_from_spec

    width, height = (int(v) for v in args.source_size.split("x"))
    t0 = time.perf_counter()
    png_bytes = make_folder(Path(args.folder), args.frames, width, height)
    made = time.perf_counter() - t0
    cache = use_compile_cache()
    model, dtype = model_from_spec(f"seeded:{args.preset}", "cuda", "bf16")
    fast = not args.no_fast
    if fast:
        model.set_fast_path()
    events = ChunkEvents(model)
    settings = RunSettings(input=[args.folder], model=f"seeded:{args.preset}", window=args.window,
                           overlap=args.overlap, reset_every=args.reset_every, dtype=dtype, fast=fast,
                           resolution=[int(v) for v in args.resolution.split("x")], save=parse_save(args.save))
    run_dir = Path(args.run_dir)
    shutil.rmtree(run_dir, ignore_errors=True)
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    devices = None
    if args.devices:
        from loger3d.inference.pipeline import parse_devices

        devices = parse_devices(args.devices)
    record = reconstruct(args.folder, run_dir, model, settings, checkpoint_every=30.0, devices=devices)
    wall = time.perf_counter() - t0
    sizes = disk_bytes(run_dir)
    frames = record["frames"]
    result = {
        "label": args.label, "date": time.strftime("%Y-%m-%d"), "device": torch.cuda.get_device_name(),
        "torch": torch.__version__, "python": platform.python_version(), "cpus": os.cpu_count(),
        "command": "python benchmarks/e2e.py " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()
                                                          if v not in (False, None)),
        "frames": frames, "source_size": [width, height], "resolution": settings.resolution,
        "png_mean_bytes": round(png_bytes), "folder_made_s": round(made, 1), "compile_cache": str(cache),
        "fast": fast, "wall_s": round(wall, 2), "frames_per_second": round(frames / wall, 2),
        "job_timings": record["timings"], "gpu": events.report(),
        "gpu_peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
        "gpu_peak_gib_per_device": {str(d): round(torch.cuda.max_memory_allocated(d) / 2**30, 2)
                                    for d in (devices or [torch.device("cuda", 0)])},
        "disk_bytes": sizes, "disk_bytes_per_frame": round(sum(sizes.values()) / frames),
    }
    if result["gpu"]["chunks"]:
        steady_frames = frames - (args.window - args.overlap)
        steady_wall = wall - result["gpu"]["first_chunk_s"]
        result["frames_per_second_after_first_chunk"] = round(steady_frames / steady_wall, 2)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.label}.json").write_text(json.dumps(result, indent=1))
    print(json.dumps({k: result.get(k) for k in ("label", "frames", "wall_s", "frames_per_second",
                                                  "frames_per_second_after_first_chunk", "disk_bytes_per_frame",
                                                  "gpu_peak_gib_per_device")}))
    print(json.dumps(result["gpu"]), json.dumps(result["job_timings"]))


if __name__ == "__main__":
    main()
