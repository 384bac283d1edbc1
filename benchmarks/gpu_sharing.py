"""Benchmarks whose processes share one GPU: the CUDA MPS daemon (with it running, their kernels run side by side
instead of taking turns, which helps small, launch-bound steps), and child processes that stop with their parent."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
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


@contextlib.contextmanager
def child_processes() -> Iterator[Callable[..., subprocess.Popen]]:
    """Yields ``start(command, **popen_kwargs)``, which runs a command in its own process group. When the block
    ends (finished, failed, Ctrl-C, or SIGTERM from a ``timeout``, which becomes ``SystemExit`` meanwhile), every
    group still running gets SIGTERM and is waited for, torchrun's workers and world builders included: no orphan
    keeps the GPU busy under the next run."""
    started: list[subprocess.Popen] = []
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    def start(command: list[str], **popen_kwargs) -> subprocess.Popen:
        started.append(subprocess.Popen(command, start_new_session=True, **popen_kwargs))
        return started[-1]

    try:
        yield start
    finally:
        for child in started:
            if child.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGTERM)
        for child in started:
            child.wait()
        signal.signal(signal.SIGTERM, previous)
