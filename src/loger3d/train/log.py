"""Training metrics: one JSON object per logged step (``metrics.jsonl``), TensorBoard scalars when the
``tensorboard`` package is installed, and a loss-curve plot (``loss.png``) when matplotlib is."""

from __future__ import annotations

import json
import os
import time

from ..errors import DamagedFileError
from ..util.atomic import atomic_open

__all__ = ["MetricsLog", "read_metrics", "plot_metrics", "camera_learning"]


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """The records of ``metrics.jsonl`` (none when it is missing); a garbled line is a ``DamagedFileError``."""
    if not os.path.exists(path):
        return []
    records = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise DamagedFileError(f"{os.fspath(path)}:{lineno} is damaged ({e.msg}); remove that line and "
                                       "run again") from None
    return records


def camera_learning(records: list[dict], last: int = 20) -> dict[str, float]:
    """How far the camera terms are below their never-moving baselines over the ``last`` logged steps of the
    final stage: ``rot`` / ``rot_identity`` and ``trans`` / ``trans_zero`` (ratios of the means; 1 = not learnt,
    0 = perfect). Terms without their baseline in the log, or with a zero baseline, are left out."""
    if not records:
        return {}
    stage = records[-1].get("stage")
    recent = [r for r in records if r.get("stage") == stage][-last:]
    ratios = {}
    for term, baseline in (("rot", "rot_identity"), ("trans", "trans_zero")):
        rows = [r for r in recent if term in r and baseline in r]
        below = sum(r[baseline] for r in rows)
        if rows and below > 0:
            ratios[term] = sum(r[term] for r in rows) / below
    return ratios


def plot_metrics(records: list[dict], path: str | os.PathLike) -> bool:
    """Loss terms and learning rate against the step; False when matplotlib is missing or nothing to plot."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return False
    if not records:
        return False
    steps = [r["step"] for r in records]
    balanced = any("trans_weight" in r for r in records)
    fig = Figure(figsize=(15 if balanced else 10, 4), layout="constrained")
    ax, ax_lr, *ax_weights = fig.subplots(1, 3 if balanced else 2)
    for key in ("total", "local_points", "global_points", "trans", "rot", "conf"):
        if key in records[-1]:
            ax.plot(steps, [r.get(key, float("nan")) for r in records], label=key, lw=1)
    # What a model that never rotates, or never moves, would score: rot and trans must fall below them.
    for key, label, colour in (("rot_identity", "rot if never rotating", "grey"),
                               ("trans_zero", "trans if never moving", "tan")):
        if key in records[-1]:
            ax.plot(steps, [r.get(key, float("nan")) for r in records], label=label, lw=1, ls="--", color=colour)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_title("training loss (unweighted terms)")
    ax.legend(fontsize=8)
    ax_lr.plot(steps, [r["lr"] for r in records], color="k", lw=1)
    ax_lr.set_xlabel("step")
    ax_lr.set_title("learning rate")
    for axis in ax_weights:  # loss.balance_every: the weights the balance set
        for key, label in (("trans_weight", "translation"), ("rot_weight", "rotation")):
            axis.plot(steps, [r.get(key, float("nan")) for r in records], label=label, lw=1)
        axis.set_yscale("log")
        axis.set_xlabel("step")
        axis.set_title("balanced loss weights")
        axis.legend(fontsize=8)
    with atomic_open(path) as f:
        fig.savefig(f, format="png", dpi=100)
    return True


class MetricsLog:
    """Appends records to ``out/metrics.jsonl`` (and TensorBoard under ``out/tensorboard``) on the main process.

    ``flush`` redraws ``loss.png`` at most once every ``plot_every_s`` seconds, ``close`` always: drawing takes
    the training thread 0.4-1.0 s for a log of 876 records (on a 2-core CPU), and the trainer flushes at every
    checkpoint (on the H200 a checkpoint every 20 steps added 0.9 s to steps of 0.1 s, writer thread and all:
    ``benchmarks/results/train_4000_2026-12-03``)."""

    def __init__(self, out: str | os.PathLike, enabled: bool = True, resume_step: int = 0,
                 plot_every_s: float = 60.0) -> None:
        self.enabled = enabled
        self.path = os.path.join(out, "metrics.jsonl")
        self.plot_path = os.path.join(out, "loss.png")
        self.plot_every_s = plot_every_s
        self._plotted_at: float | None = None
        self.writer = None
        if not enabled:
            return
        # A run that stopped between a log line and its checkpoint logged steps it will now redo: drop them.
        kept = [r for r in read_metrics(self.path) if r["step"] <= resume_step]
        with atomic_open(self.path, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in kept)
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            return
        purge = resume_step + 1 if resume_step else None
        self.writer = SummaryWriter(os.path.join(out, "tensorboard"), purge_step=purge)

    def log(self, record: dict) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)):
                    self.writer.add_scalar(key, value, record["step"])

    def flush(self, plot: bool = False) -> None:
        """Write out what is buffered; redraw the plot when ``plot`` or when the last drawing is old enough."""
        if not self.enabled:
            return
        if self.writer is not None:
            self.writer.flush()
        now = time.monotonic()
        if plot or self._plotted_at is None or now - self._plotted_at >= self.plot_every_s:
            plot_metrics(read_metrics(self.path), self.plot_path)
            self._plotted_at = now

    def close(self) -> None:
        self.flush(plot=True)
        if self.writer is not None:
            self.writer.close()
