"""The run folder's own files: ``run.json`` (the run record) and ``state/checkpoint.safetensors`` (resume state).

The checkpoint is one file, replaced atomically: the stream's state (memory, buffered frames,
alignment anchor) and every sink's state, with the number of finished frames and chunks it
covers in its metadata. A run resumes from it alone, so a crash between any two writes leaves a
consistent pair of checkpoint and files; ``run.json`` only reports.
"""

from __future__ import annotations

import json
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import __version__
from ..sinks.base import SinkState
from ..util.atomic import atomic_path, write_json
from .settings import RunError, RunSettings

__all__ = ["RUN_FILE", "CHECKPOINT_FILE", "Checkpoint", "RunRecord", "check_folder", "prepare_folder",
           "save_checkpoint", "load_checkpoint", "environment"]

RUN_FILE = "run.json"
CHECKPOINT_FILE = Path("state") / "checkpoint.safetensors"


@dataclass
class Checkpoint:
    """Everything a resumed run starts from: it covers the first ``frames`` finished frames."""

    frames: int
    chunks: int
    stream: dict[str, torch.Tensor]
    sinks: dict[str, SinkState]


def save_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    """Write ``checkpoint`` to one safetensors file, atomically."""
    from safetensors.torch import save_file

    tensors = {f"stream.{k}": v for k, v in checkpoint.stream.items()}
    for name, state in checkpoint.sinks.items():
        tensors.update({f"sink.{name}.{k}": torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"frames": str(checkpoint.frames), "chunks": str(checkpoint.chunks)})


def load_checkpoint(path: Path) -> Checkpoint:
    """Read a file written by :func:`save_checkpoint`."""
    from safetensors import safe_open

    stream: dict[str, torch.Tensor] = {}
    sinks: dict[str, SinkState] = {}
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        for key in f.keys():
            kind, rest = key.split(".", 1)
            if kind == "stream":
                stream[rest] = f.get_tensor(key)
            else:
                name, member = rest.split(".", 1)
                sinks.setdefault(name, {})[member] = f.get_tensor(key).numpy()
    return Checkpoint(int(meta["frames"]), int(meta["chunks"]), stream, sinks)


def environment(device: torch.device) -> dict[str, str]:
    env = {"loger3d": __version__, "torch": torch.__version__, "python": platform.python_version(),
           "device": str(device)}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


@dataclass
class RunRecord:
    """The contents of ``run.json``; written by the run's writer thread only."""

    settings: dict[str, Any]
    environment: dict[str, str]
    source: dict[str, Any]
    status: str = "running"
    frames: int = 0
    chunks: int = 0
    checkpoint: dict[str, int] | None = None
    timings: dict[str, Any] = field(default_factory=dict)
    timings_previous_runs: dict[str, Any] | None = None
    cloud_points: int | None = None

    def write(self, out: Path) -> None:
        write_json(out / RUN_FILE, asdict(self))


def check_folder(out: Path, resume: bool) -> None:
    """What can be said about the output folder before the settings are known (nothing is written)."""
    run_file = out / RUN_FILE
    if out.exists() and not out.is_dir():
        raise RunError(f"output {out} is a file, not a folder; choose a folder")
    if not run_file.exists():
        if resume:
            raise RunError(f"nothing to resume in {out}: it holds no {RUN_FILE}; run without --resume")
        if out.exists() and any(out.iterdir()):
            raise RunError(f"output folder {out} is not empty and holds no loger3d run; choose a new folder")
    elif not resume:
        status = json.loads(run_file.read_text()).get("status")
        raise RunError(f"output folder {out} already holds a run ({status}); use --resume to continue it with the "
                       "same settings, or choose a new folder")


def prepare_folder(out: Path, settings: RunSettings, resume: bool) -> dict | None:
    """Check the output folder; return the previous run.json when resuming."""
    run_file = out / RUN_FILE
    if not run_file.exists():
        check_folder(out, resume)
        out.mkdir(parents=True, exist_ok=True)
        return None
    previous = json.loads(run_file.read_text())
    same = previous.get("settings") == asdict(settings)
    changed = sorted(k for k, v in asdict(settings).items() if previous.get("settings", {}).get(k) != v)
    if not resume:
        if same:
            raise RunError(f"output folder {out} already holds this run ({previous.get('status')}); use --resume to "
                           "continue it, or choose a new folder")
        raise RunError(f"output folder {out} holds another run ({', '.join(changed)} differ); choose a new folder")
    if not same:
        raise RunError(f"{out} holds a run with other settings ({', '.join(changed)} differ); resume with the "
                       f"same settings or choose a new folder")
    if previous.get("status") == "complete":
        raise RunError(f"the run in {out} is already complete; nothing to resume")
    return previous
