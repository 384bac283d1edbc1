"""The CPU demo against the model alone: what the whole job costs on top of the model (issue 13).

Alternates, ``--reps`` times each, in fresh processes pinned to ``--cores`` (default: the first two):
the model alone (the demo's model, frames, window, overlap, alignment and thread count, frames
decoded beforehand, timed from the first push to the last finished frame) and ``loger3d demo``
(its ``run.json`` total, the same span for the whole job: decoding, the model, the writer). Run
it on a machine doing nothing else: the two share the cores with whatever else runs.

    python benchmarks/demo_overhead.py --reps 4 --out results/cpu_demo/
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_MODEL_ALONE = """
import json, time
import numpy as np, torch
from loger3d.weights import MODEL_CARDS
from loger3d.demo import MODEL, SAMPLE_VIDEO
from loger3d.inference import Reconstructor
from loger3d.run import RunSettings
from loger3d.run.job import open_run_source
from loger3d.sources import frames_to_tensor
from loger3d.weights import model_from_spec

defaults = MODEL_CARDS[MODEL]
window, overlap, align = defaults.window, defaults.overlap, defaults.align
model, dtype = model_from_spec(MODEL, "cpu", "auto")
settings = RunSettings(input=[str(SAMPLE_VIDEO)], model=MODEL, window=window, overlap=overlap, align=align,
                       dtype=dtype, resolution=[224, 126])
frames = list(open_run_source(str(SAMPLE_VIDEO), settings).frames())
with torch.no_grad():
    stream, i = Reconstructor(model, window, overlap, align), 0
    t0 = time.perf_counter()
    while i < len(frames):
        n = stream.frames_until_chunk
        stream.push(frames_to_tensor(np.stack([f.image for f in frames[i:i + n]]), scaled=False))
        i += n
    stream.finish()
print(json.dumps({"seconds": time.perf_counter() - t0, "threads": torch.get_num_threads()}))
"""


def pinned(cores: str) -> list[str]:
    return ["taskset", "-c", cores] if cores else []


def model_alone(cores: str) -> float:
    out = subprocess.run([*pinned(cores), sys.executable, "-c", _MODEL_ALONE], check=True, capture_output=True,
                         text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["seconds"]


def demo(cores: str) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([*pinned(cores), sys.executable, "-m", "loger3d", "demo", "-o", tmp, "--force", "-q"],
                       check=True, capture_output=True)
        return json.loads((Path(tmp) / "run.json").read_text())["timings"]["total_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=4)
    parser.add_argument("--cores", default="0,1", help="taskset core list ('' for no pinning)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    alone, job = [], []
    for rep in range(args.reps):
        alone.append(model_alone(args.cores))
        job.append(demo(args.cores))
        print(f"rep {rep + 1}: model alone {alone[-1]:.2f} s, demo job {job[-1]:.2f} s")
    ratio = statistics.median(job) / statistics.median(alone)
    result = {"date": time.strftime("%Y-%m-%d"), "cpu": platform.processor() or platform.machine(),
              "cores": args.cores, "cpus_visible": os.cpu_count(), "python": platform.python_version(),
              "command": "python benchmarks/demo_overhead.py " + " ".join(sys.argv[1:]),
              "model_alone_s": [round(x, 3) for x in alone], "demo_job_s": [round(x, 3) for x in job],
              "median_ratio": round(ratio, 3)}
    print(f"median job / median model alone: {ratio:.3f}")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "demo_overhead.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
