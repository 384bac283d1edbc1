"""Peak GPU memory and host RSS of the streaming reconstruct job, for growing video lengths.

Each length runs in a fresh process over the same image folder (JPEG frames written once), with
the full-size preset and seeded weights (no download), through the whole pipeline: decoding,
model, frame store, images, trajectories, fused cloud, exports. GPU peak is measured from after
the model is loaded; host RSS is sampled every 0.2 s during the run (the model's weights are
created on the GPU directly, so they do not count against the host).

    python benchmarks/memory_flatness.py --frames 256 1024 4096 --out results/
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def write_frames(folder: Path, n: int, width: int, height: int) -> None:
    """Smooth synthetic frames (a drifting gradient with texture), JPEG."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 60, (height, width * 2, 3), dtype=np.uint8)
    ramp = np.linspace(0, 180, width * 2, dtype=np.float32)[None, :, None]
    base = (texture + ramp).clip(0, 255).astype(np.uint8)
    for i in range(n):
        x = (3 * i) % width
        Image.fromarray(np.ascontiguousarray(base[:, x:x + width])).save(folder / f"{i:06d}.jpg", quality=90)


def one_run(args) -> dict:
    """Inside the child process: load the model on the GPU, reconstruct the first N frames."""
    import torch

    import loger3d
    from loger3d.run import RunSettings, reconstruct
    from loger3d.seeded import fill_seeded_

    cuda = args.device.startswith("cuda")
    model = fill_seeded_(loger3d.build_model(args.preset, device="meta"), 0, device=args.device).eval()
    if cuda:
        model.set_precision(torch.bfloat16)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    weights_gib = torch.cuda.memory_allocated() / 2**30 if cuda else 0.0
    samples, stop = [], threading.Event()

    def sample():
        while not stop.is_set():
            samples.append(rss_bytes())
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    rss_start = rss_bytes()
    sampler.start()
    settings = RunSettings(input=[args.folder], model=f"seeded:{args.preset}", window=args.window,
                           overlap=args.overlap, dtype="bf16" if cuda else "fp32", end=args.n,
                           resolution=[args.width, args.height])
    t0 = time.perf_counter()
    with torch.no_grad():
        run = reconstruct(args.folder, args.run_dir, model, settings, checkpoint_every=args.checkpoint_every)
    seconds = time.perf_counter() - t0
    stop.set()
    sampler.join()
    return {"frames": run["frames"], "seconds": seconds, "frames_per_second": run["frames"] / seconds,
            "gpu_weights_gib": weights_gib,
            "gpu_peak_allocated_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0,
            "gpu_peak_reserved_gib": torch.cuda.max_memory_reserved() / 2**30 if cuda else 0.0,
            "host_rss_start_gib": rss_start / 2**30, "host_rss_peak_gib": max(samples) / 2**30,
            "cloud_points": run["cloud_points"], "timings": run["timings"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, nargs="+", default=[256, 1024, 4096])
    parser.add_argument("--preset", default="loger")
    parser.add_argument("--width", type=int, default=504)
    parser.add_argument("--height", type=int, default=280)
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument("--overlap", type=int, default=3)
    parser.add_argument("--checkpoint-every", type=float, default=5.0,
                        help="resume-state interval in seconds (small, so that every run holds a checkpoint)")
    parser.add_argument("--device", default="cuda", help="cuda (the benchmark) or cpu (a smoke test with tiny)")
    parser.add_argument("--out", required=True, help="folder for the JSON result")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--run-dir", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one_run(args)))
        return

    import torch

    work = Path(tempfile.mkdtemp(prefix="loger3d-mem-"))
    folder = work / "frames"
    t0 = time.perf_counter()
    write_frames(folder, max(args.frames), args.width, args.height)
    print(f"wrote {max(args.frames)} frames in {time.perf_counter() - t0:.1f} s", flush=True)
    results = []
    for n in args.frames:
        run_dir = work / f"run_{n}"
        cmd = [sys.executable, __file__, "--child", "--folder", str(folder), "--run-dir", str(run_dir), "--n", str(n),
               "--preset", args.preset, "--width", str(args.width), "--height", str(args.height),
               "--window", str(args.window), "--overlap", str(args.overlap), "--out", args.out,
               "--device", args.device, "--checkpoint-every", str(args.checkpoint_every)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        results.append(result)
        print(f"N={n:5d}: {result['frames_per_second']:6.1f} frames/s, cloud {result['cloud_points']}, "
              f"GPU peak {result['gpu_peak_allocated_gib']:.2f} GiB allocated "
              f"({result['gpu_peak_reserved_gib']:.2f} reserved), host RSS peak {result['host_rss_peak_gib']:.2f} GiB",
              flush=True)
        shutil.rmtree(run_dir)
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    report = {"device": device, "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"),
              "preset": args.preset, "size": [args.width, args.height], "window": args.window,
              "overlap": args.overlap, "weights": "seeded (seed 0)", "runs": results,
              "checkpoint_every_s": args.checkpoint_every,
              "dtype": "bf16 weights (set_precision)" if device != "cpu" else "fp32"}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "memory_flatness.json").write_text(json.dumps(report, indent=1))
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
