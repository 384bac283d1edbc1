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
from ..errors import DamagedFileError
from ..sinks.base import SinkState
from ..sources.fingerprint import compare_fingerprints
from ..util.atomic import TEMPORARY_NAME, make_folder, write_json, write_safetensors
from .settings import RunError, RunSettings

__all__ = ["RUN_FILE", "CHECKPOINT_FILE", "Checkpoint", "RunRecord", "check_folder", "prepare_folder",
           "read_run_record", "remove_stale_temporaries", "save_checkpoint", "load_checkpoint", "environment"]

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
    tensors = {f"stream.{k}": v for k, v in checkpoint.stream.items()}
    for name, state in checkpoint.sinks.items():
        tensors.update({f"sink.{name}.{k}": torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()})
    make_folder(path.parent)
    write_safetensors(path, tensors, metadata={"frames": str(checkpoint.frames), "chunks": str(checkpoint.chunks)})


def load_checkpoint(path: Path) -> Checkpoint:
    """Read a file written by :func:`save_checkpoint`; one cut short or garbled is a ``DamagedFileError``."""
    from safetensors import safe_open

    stream: dict[str, torch.Tensor] = {}
    sinks: dict[str, SinkState] = {}
    try:
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
    except Exception as e:  # safetensors' own error type, or what a garbled header gives
        reason = " ".join(str(e).split()) or type(e).__name__
        raise DamagedFileError(f"the resume state {path} is damaged ({reason})") from None


def read_run_record(out: Path) -> dict[str, Any]:
    """The ``run.json`` of the run in ``out``: a ``RunError`` when there is none, a ``DamagedFileError`` when it
    is not a run record."""
    path = Path(out) / RUN_FILE
    if not path.is_file():
        raise RunError(f"{out} holds no loger3d run ({RUN_FILE} missing); give a folder written by loger3d "
                       "reconstruct")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DamagedFileError(f"{path} is damaged ({' '.join(str(e).split())}); the run's other files are "
                               "kept as they are") from None
    if not isinstance(record, dict) or not isinstance(record.get("settings"), dict):
        raise DamagedFileError(f"{path} is damaged (no run settings in it); the run's other files are kept as "
                               "they are")
    return record


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
    inputs: dict[str, Any] | None = None  # the input files' fingerprint (sources.fingerprint), compared on resume
    status: str = "running"
    frames: int = 0
    chunks: int = 0
    checkpoint: dict[str, int] | None = None
    timings: dict[str, Any] = field(default_factory=dict)
    timings_previous_runs: dict[str, Any] | None = None
    cloud_points: int | None = None
    loops: dict[str, Any] | None = None  # loop closure's summary (loops/loops.json has the details)

    def write(self, out: Path) -> None:
        write_json(out / RUN_FILE, asdict(self))


def remove_stale_temporaries(out: Path) -> list[Path]:
    """Delete the hidden temporary files that atomic writes of a run killed mid-write left (``.NAME.<hex>.tmp``,
    see ``util.atomic``) in the run folder and its subfolders; returns what was deleted."""
    stale = [p for folder in (out, *(d for d in out.iterdir() if d.is_dir())) for p in folder.iterdir()
             if p.is_file() and TEMPORARY_NAME.fullmatch(p.name)]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


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
        status = read_run_record(out).get("status")
        raise RunError(f"output folder {out} already holds a run ({status}); use --resume to continue it with the "
                       "same settings, or choose a new folder")


def prepare_folder(out: Path, settings: RunSettings, resume: bool,
                   fingerprint: dict[str, Any] | None = None) -> dict | None:
    """Check the output folder; return the previous run.json when resuming.

    A resumed run must have the same settings and the same input: ``fingerprint`` (the source's) is
    compared with the one recorded, whatever the paths were called; a record without one (loger3d
    0.1) is compared by the input paths as given.
    """
    run_file = out / RUN_FILE
    if not run_file.exists():
        check_folder(out, resume)
        make_folder(out)
        return None
    previous = read_run_record(out)
    mine, theirs = asdict(settings), previous["settings"]
    recorded = (previous.get("inputs") or {}).get("fingerprint")
    by_path = recorded is None or fingerprint is None
    changed = sorted(k for k, v in mine.items() if theirs.get(k) != v and (k != "input" or by_path))
    other_input = None if by_path else compare_fingerprints(recorded, fingerprint)
    if not resume:
        if not changed and other_input is None:
            raise RunError(f"output folder {out} already holds this run ({previous.get('status')}); use --resume to "
                           "continue it, or choose a new folder")
        differ = ", ".join(changed + (["input"] if other_input else []))
        raise RunError(f"output folder {out} holds another run ({differ} differ); choose a new folder")
    if changed:
        raise RunError(f"{out} holds a run with other settings ({', '.join(changed)} differ); resume with the "
                       f"same settings or choose a new folder")
    if other_input is not None:
        raise RunError(f"the input is not the one the run in {out} started with ({other_input}); resume with that "
                       "input, or choose a new folder")
    if previous.get("status") == "complete":
        raise RunError(f"the run in {out} is already complete; nothing to resume")
    return previous
