"""CUDA MPS for benchmarks whose processes share one GPU: with the daemon running, their kernels run side by
side instead of taking turns, which helps small, launch-bound steps."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def mps_daemon() -> Iterator[dict[str, str]]:
    """The CUDA MPS control daemon for the length of the block (its pipes and logs in a temporary folder):
    yields the environment that makes CUDA processes started with it the daemon's clients."""
    if shutil.which("nvidia-cuda-mps-control") is None:
        sys.exit("--mps: nvidia-cuda-mps-control is not on PATH; run without --mps or install the NVIDIA utilities")
    with tempfile.TemporaryDirectory() as folder:
        env = {**os.environ, "CUDA_MPS_PIPE_DIRECTORY": str(Path(folder) / "pipe"),
               "CUDA_MPS_LOG_DIRECTORY": str(Path(folder) / "log")}
        for sub in ("pipe", "log"):
            (Path(folder) / sub).mkdir()
        subprocess.run(["nvidia-cuda-mps-control", "-d"], env=env, check=True)
        try:
            yield env
        finally:
            subprocess.run(["nvidia-cuda-mps-control"], input="quit\n", text=True, env=env)
