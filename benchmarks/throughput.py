"""End-to-end throughput of the streaming model: decoded frames in, merged outputs on the host.

Builds a preset with seeded weights on the GPU (no download), feeds N synthetic uint8 frames
(as a decoder would hand them over) through the ``Reconstructor`` one chunk at a time, and
collects the finished frames on the host. Reports frames per second, per-chunk latency, peak
GPU memory and host RSS. ``--single-window`` runs the whole input as one chunk instead (the
Pi3-style full-attention baseline). ``--profile`` adds the PyTorch profiler's top CUDA kernels.

    python benchmarks/throughput.py --preset loger --frames 1024 --window 32 --out results/
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import torch

import loger3d
from loger3d.inference.reconstructor import Reconstructor
from loger3d.seeded import fill_seeded_


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def synthetic_frames(n: int, width: int, height: int, seed: int = 0):
    """Decoded-looking uint8 frames ``[H, W, 3]``: a drifting textured gradient."""
    rng = np.random.default_rng(seed)
    base = (rng.integers(0, 60, (height, width * 2, 3)) + np.linspace(0, 180, width * 2)[None, :, None])
    base = base.clip(0, 255).astype(np.uint8)
    for i in range(n):
        x = (3 * i) % width
        yield base[:, x:x + width]


def to_tensor(frames: list[np.ndarray]) -> torch.Tensor:
    """Decoded frames as the model takes them: uint8 ``[n, 3, H, W]``, scaled to [0, 1] on the device."""
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).contiguous()


def run_stream(model, args) -> dict:
    stream = Reconstructor(model, args.window, args.overlap, args.align, args.reset_every)
    latencies, finished, pending = [], 0, []
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for frame in synthetic_frames(args.frames, args.width, args.height):
        pending.append(frame)
        if len(pending) == stream.frames_until_chunk:
            t = time.perf_counter()
            done = stream.push(to_tensor(pending))
            latencies.append(time.perf_counter() - t)  # outputs are on the host: the chunk is finished
            finished += sum(d.prediction.num_frames for d in done)
            pending = []
    if pending:
        stream.push(to_tensor(pending))
    finished += sum(d.prediction.num_frames for d in stream.finish())
    seconds = time.perf_counter() - t0
    assert finished == args.frames
    return {"seconds": seconds, "frames_per_second": args.frames / seconds, "chunks": stream.chunks_run,
            "chunk_latency_ms": {"median": 1e3 * statistics.median(latencies), "max": 1e3 * max(latencies),
                                 "min": 1e3 * min(latencies)} if latencies else None}


def verify_offload(model, args, frames: int = 96) -> None:
    """The offloading path (pinned copies on a side stream) gives bit for bit what staying on the device gives."""
    images = to_tensor(list(synthetic_frames(frames, args.width, args.height)))
    outputs = []
    for offload in (True, False):
        stream = Reconstructor(model, args.window, args.overlap, args.align, args.reset_every, offload=offload)
        parts = stream.push(images) + stream.finish()
        outputs.append({k: torch.cat([getattr(p.prediction, k).cpu() for p in parts], 1)
                        for k in ("points", "local_points", "conf", "camera_poses")})
    for key in outputs[0]:
        if not torch.equal(outputs[0][key], outputs[1][key]):
            raise AssertionError(f"offloaded {key} differ from the on-device run")
    print(f"verified: offloaded outputs equal the on-device run over {frames} frames")


def run_single_window(model, args) -> dict:
    images = to_tensor(list(synthetic_frames(args.frames, args.width, args.height)))
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    with torch.no_grad():
        pred, _ = model.forward_chunk(images.unsqueeze(0))
        pred = pred.detach().to("cpu")
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "frames_per_second": args.frames / seconds, "chunks": 1}


def profile(model, args) -> dict:
    """Top CUDA kernels over a few steady-state chunks, and how much of the wall time the GPU was busy."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    stream = Reconstructor(model, args.window, args.overlap, args.align)
    frames = list(synthetic_frames(args.window * 4, args.width, args.height))
    with torch.no_grad():
        stream.push(to_tensor(frames[:args.window]))  # warm-up chunk
        torch.cuda.synchronize()
        with torch_profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            t0 = time.perf_counter()
            stream.push(to_tensor(frames[args.window:]))
            torch.cuda.synchronize()
            wall = time.perf_counter() - t0
    events = [e for e in prof.key_averages() if e.device_type == torch.autograd.DeviceType.CUDA]
    total = sum(e.self_device_time_total for e in events) or 1.0
    events.sort(key=lambda e: e.self_device_time_total, reverse=True)
    top = [{"kernel": e.key[:120], "calls": e.count, "ms": e.self_device_time_total / 1e3,
            "share": e.self_device_time_total / total} for e in events[:30]]
    # Host waits: where the Python side blocks on the GPU (a chunk should have none but its output copies).
    waits = [{"call": e.key, "calls": e.count, "ms": e.self_cpu_time_total / 1e3} for e in prof.key_averages()
             if "Synchronize" in e.key or e.key in ("cudaMemcpy", "cudaMemcpy2D")]
    # Which lines make the host wait: CUDA's sync debug mode warns at each synchronising call of one chunk.
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught, torch.no_grad():
            warnings.simplefilter("always")
            stream.push(to_tensor(frames[:args.window - args.overlap]))
    finally:
        torch.cuda.set_sync_debug_mode(0)
    syncs = sorted({f"{Path(w.filename).name}:{w.lineno}" for w in caught if "synchroniz" in str(w.message)})
    return {"wall_ms": 1e3 * wall, "kernel_ms": total / 1e3, "top": top, "host_waits": waits, "host_syncs": syncs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="loger")
    parser.add_argument("--frames", type=int, default=1024)
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument("--overlap", type=int, default=3)
    parser.add_argument("--align", default="none")
    parser.add_argument("--reset-every", type=int, default=0)
    parser.add_argument("--width", type=int, default=504)
    parser.add_argument("--height", type=int, default=280)
    parser.add_argument("--dtype", default="bf16", choices=("bf16", "fp32"))
    parser.add_argument("--fast", action="store_true", help="the fast path: LoGeR.set_fast_path (cuDNN attention, "
                        "compiled blocks and TTT layers)")
    parser.add_argument("--attention", default="cudnn", choices=("cudnn", "flash"), help="fast path: attention kernel")
    parser.add_argument("--no-compile", action="store_true", help="fast path without torch.compile")
    parser.add_argument("--single-window", action="store_true", help="one chunk over all frames (full attention)")
    parser.add_argument("--profile", action="store_true", help="add the top CUDA kernels of a few chunks")
    parser.add_argument("--verify", action="store_true", help="check the offloading path against an on-device run")
    parser.add_argument("--out", required=True, help="folder for the JSON result")
    args = parser.parse_args()

    torch.backends.cuda.matmul.allow_tf32 = args.dtype != "fp32"
    model = fill_seeded_(loger3d.build_model(args.preset, device="meta"), 0, device="cuda").eval()
    if args.dtype == "bf16":
        model.set_precision(torch.bfloat16)
    if args.fast:
        model.set_fast_path(attention=args.attention, compile=not args.no_compile)
    t0 = time.perf_counter()
    with torch.no_grad():  # warm-up: kernels selected (and compiled), allocator primed
        if args.single_window:
            model.forward_chunk(to_tensor(list(synthetic_frames(min(args.frames, 8), args.width, args.height))))
        else:  # a first chunk, one with memory and a shorter last one: every compiled graph
            warm = Reconstructor(model, args.window, args.overlap, args.align)
            warm.push(to_tensor(list(synthetic_frames(2 * args.window - args.overlap + 1, args.width, args.height))))
            warm.finish()
            del warm  # its memory (fast weights, KV caches) must not count in the measured peak
    torch.cuda.synchronize()
    warmup_seconds = time.perf_counter() - t0
    torch.cuda.reset_peak_memory_stats()
    samples, stop = [], threading.Event()

    def sample():
        while not stop.is_set():
            samples.append(rss_bytes())
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    with torch.no_grad():
        result = run_single_window(model, args) if args.single_window else run_stream(model, args)
    stop.set()
    sampler.join()
    result.update(warmup_seconds=warmup_seconds, gpu_peak_allocated_gib=torch.cuda.max_memory_allocated() / 2**30,
                  gpu_peak_reserved_gib=torch.cuda.max_memory_reserved() / 2**30,
                  host_rss_peak_gib=max(samples) / 2**30)
    if args.profile:
        result["profile"] = profile(model, args)
    if args.verify:
        with torch.no_grad():
            verify_offload(model, args)
    report = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "python": platform.python_version(),
              "date": time.strftime("%Y-%m-%d"), "settings": vars(args) | {"out": None}, "result": result}
    path = "_fast" if args.fast else ""
    if args.fast and (args.attention != "cudnn" or args.no_compile):
        path += f"_{args.attention}{'_eager' if args.no_compile else ''}"
    name = (f"throughput_{args.preset}_{'single' if args.single_window else f'w{args.window}'}_n{args.frames}"
            f"_{args.dtype}{path}.json")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / name).write_text(json.dumps(report, indent=1))
    mem = result["gpu_peak_allocated_gib"]
    print(f"{args.preset} {'single window' if args.single_window else f'window {args.window}'} N={args.frames} "
          f"{args.dtype}{path}: {result['frames_per_second']:.1f} frames/s (warm-up {warmup_seconds:.0f} s), "
          f"GPU peak {mem:.2f} GiB, "
          f"host RSS {result['host_rss_peak_gib']:.2f} GiB")
    if args.profile:
        prof = result["profile"]
        print(f"  profile: {prof['kernel_ms']:.0f} ms of kernels in {prof['wall_ms']:.0f} ms of wall time")
        for row in prof["host_waits"]:
            print(f"  host wait: {row['call']} x{row['calls']}, {row['ms']:.1f} ms")
        print(f"  synchronising lines in one chunk: {', '.join(prof['host_syncs']) or 'none'}")
        for row in prof["top"][:15]:
            print(f"  {row['share']:6.1%} {row['ms']:9.2f} ms {row['calls']:6d}  {row['kernel']}")


if __name__ == "__main__":
    main()
