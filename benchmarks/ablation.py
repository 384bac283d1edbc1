r"""Memory ablation: hybrid (TTT + SWA), TTT only, SWA only and no memory (Pi3-Chunk with SE(3) chaining), each
trained from scratch with the same config and budget on several training seeds, scored on held-out long worlds.

A run is the trainer on a base config (default: the shipped ``tiny_synthetic``'s, ``--set`` overrides it) with
seed ``k`` as both ``model.seed`` and ``data.seed`` and what the variant lacks taken away through
``model.options``: with ``--memory removed`` the memory layers themselves, with ``--memory cut`` only their path
from one chunk to the next (the layers stay and work within each chunk). Cut variants are one function on
one-chunk clips, so they can share a first stage trained once: ``--start`` begins every new run as a checkpoint
taken within the one-chunk stages of a run of the same config and seed (``branch_run`` checks both; a branched
run equals the variant trained from scratch, tests/test_train.py). Runs live in ``OUT/<variant>-seed<k>``.
``train`` continues unfinished runs and stops after ``--max-minutes`` in all, so an ablation too long for one
sitting proceeds in pieces (each run resumes exactly).

``branch`` only prepares the run folders (begun as ``--start``), to carry to a device machine.
``eval`` scores every finished run (of ``--variants`` and ``--seeds``) on ``--worlds`` held-out worlds (family ×
trajectory in turn, world seeds from ``HELD_OUT_SEED_OFFSET + 600``, which no training source draws), ``--frames``
frames each (several lengths: how far the memory holds a frame without resets), at the base config's image size:
Sim(3)-aligned ATE RMSE as a share of the path, without chaining and with SE(3) chaining (no memory: with
chaining only), beside a straight line at constant speed on the same worlds. The summary gives, per variant,
chaining and length, the mean over worlds per seed, then the mean and the spread (lowest, highest) over seeds.
``join`` puts reports of ``eval`` together (seeds trained, or runs scored, in separate sittings or on
separate machines), provided they were scored with the same protocol. ``losses`` compares runs' training logs:
a seed's variants draw the same clips at every step, so their loss terms there compare directly. ``paired``
compares a seed's variants world by world (the same worlds for both: the paired difference and its standard error,
which the spread of worlds does not blur), from ``eval`` reports and ``heldout_ate.py`` reports of one run each;
two variants compared in several seeds also get every seed's worlds pooled.

    python benchmarks/ablation.py train --config benchmarks/results/ablation_scratch/config.yaml --seeds 0 \
        --out runs/ablation --max-minutes 9 --parallel 4 [--mps]
    python benchmarks/ablation.py train --config benchmarks/results/train_6000_2026-12-03/run.yaml --memory cut \
        --start runs/stage1-seed{seed}/checkpoint.pt --seeds 0 --out runs/ablation_cut --max-minutes 9
    python benchmarks/ablation.py eval --config benchmarks/results/ablation_scratch/config.yaml --out runs/ablation \
        --json runs/ablation/seed1.json
    python benchmarks/ablation.py join benchmarks/results/ablation_scratch/ablation_scratch.json \
        runs/ablation/seed1.json --json benchmarks/results/ablation_scratch/ablation_scratch.json
    python benchmarks/ablation.py plot --json benchmarks/results/ablation_scratch/ablation_scratch.json \
        --plot docs/ablation_scratch.png
    python benchmarks/ablation.py table --json benchmarks/results/ablation_scratch/ablation_scratch.json  (markdown)
    python benchmarks/ablation.py losses benchmarks/results/ablation_shared/metrics_*-seed1.jsonl  (markdown)
    python benchmarks/ablation.py paired eval_hybrid-seed1_cpu.json hybrid-seed1=heldout_700_hybrid-seed1.json ...

(The 40-step fine-tuning ablation of benchmarks/results/ablation/ablation.json came from this file's version at
commit d4c2930.)
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone

import numpy as np
import torch
import yaml
from gpu_sharing import child_processes, mps_daemon
from heldout_worlds import ate, held_out_sequence, rotation_drift, straight_line, test_worlds

from loger3d.model.loger import LoGeR
from loger3d.train.config import config_from_dict, load_train_config
from loger3d.train.log import read_metrics
from loger3d.train.trainer import Trainer, comparable_config, model_config
from loger3d.util.atomic import atomic_open
from loger3d.weights import read_state_dict

VARIANTS = {
    "hybrid": {},
    "ttt_only": {"swa_insert_after": []},
    "swa_only": {"ttt_insert_after": []},
    "no_memory": {"ttt_insert_after": [], "swa_insert_after": []},
}
"""``--memory removed`` (the protocol of benchmarks/results/ablation_scratch): the layers a variant lacks are gone."""

CUT_VARIANTS = {
    "hybrid": {},
    "ttt_only": {"carry_kv_caches": False},
    "swa_only": {"carry_fast_weights": False},
    "no_memory": {"carry_fast_weights": False, "carry_kv_caches": False},
}
"""``--memory cut``: every variant keeps every layer; what a variant lacks is the path from one chunk to the next
(``ModelConfig.carry_*``). On one-chunk clips the four are one function, so they can share a first stage."""


def run_config(args: argparse.Namespace, variant: str, seed: int) -> dict:
    """The training config of one run, as a dict (what ``variant.json`` records)."""
    raw = load_train_config(args.config, args.set).to_dict()
    options = (CUT_VARIANTS if args.memory == "cut" else VARIANTS)[variant]
    raw["model"] = {**raw["model"], "init": "scratch", "seed": seed, "options": options}
    raw["data"] = {**raw["data"], "seed": seed}
    return config_from_dict(raw).to_dict()


def one_chunk_steps(raw: dict) -> int:
    """The steps at the head of curriculum ``raw["curriculum"]`` whose clips are one chunk each."""
    steps = 0
    for stage in raw["curriculum"]:
        if stage["chunks"] != 1:
            break
        steps += stage["steps"]
    return steps


CHUNK_LINKS = ("align", "truncate_every", "detach_swa_history", "loss_scope")
"""The ``train`` settings of how a clip's chunks link: on one-chunk clips they change nothing, so a run may branch
from a first stage trained with others (e.g. memory stages trained without chaining, ``--set train.align=none``)."""


def branch_run(start: str, out: str, raw: dict) -> dict:
    """Begin the run in ``out`` (config ``raw``) as checkpoint ``start``: a shared first stage. Allowed only where
    the two can have trained the same: configs equal but for ``model.options`` (the memory cut), ``CHUNK_LINKS``
    and the settings a resumed run may change, and ``start``'s step within the one-chunk stages, where no memory
    reaches another chunk (anywhere, if ``start``'s run is this one: the same run, continued). The checkpoint is
    copied with ``raw`` as its config, with its log (``metrics.jsonl`` beside it); ``--resume`` continues it.
    Returns what ``variant.json`` records of the start."""
    state = torch.load(start, map_location="cpu", weights_only=True)
    saved = yaml.safe_load(state["config"])

    def shared(config: dict) -> dict:
        config = yaml.safe_load(yaml.safe_dump(config))  # tuples read back as lists, as saved
        train = {k: v for k, v in config["train"].items() if k not in CHUNK_LINKS}
        return comparable_config({**config, "model": {**config["model"], "options": {}}, "train": train})

    if shared(saved) != shared(raw):
        changed = sorted(k for k in shared(raw) if shared(saved).get(k) != shared(raw)[k])
        sys.exit(f"--start {start}: its run's config differs from this run's in {', '.join(changed)} (only "
                 f"model.options and train.{', train.'.join(CHUNK_LINKS)} may); train the shared stage with this "
                 "--config and seed")
    step, one_chunk = int(state["step"]), one_chunk_steps(raw)
    same_run = (saved["model"].get("options", {}) == raw["model"]["options"]
                and all(saved["train"].get(k) == raw["train"].get(k) for k in CHUNK_LINKS))
    if step > one_chunk and not same_run:
        sys.exit(f"--start {start} is at step {step}, past the one-chunk stages (steps 1-{one_chunk}), where the "
                 "variants' memory already differs; start from a checkpoint of those stages")
    os.makedirs(out, exist_ok=True)
    with open(start, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    state["config"] = yaml.safe_dump(raw, sort_keys=False)
    with atomic_open(os.path.join(out, "checkpoint.pt")) as f:
        torch.save(state, f)
    log = os.path.join(os.path.dirname(os.path.abspath(start)), "metrics.jsonl")
    if os.path.exists(log):  # records past the checkpoint's step are dropped when the run resumes (MetricsLog)
        with open(log) as f, atomic_open(os.path.join(out, "metrics.jsonl"), "w") as g:
            g.write(f.read())
    return {"checkpoint": os.path.abspath(start), "sha256": digest, "step": step}


def prepare_run(args: argparse.Namespace, variant: str, seed: int, out: str) -> dict:
    """Run folder ``out`` ready to train (or resume): begun as ``--start`` where it has no checkpoint yet, with its
    ``variant.json`` (variant, seed, config and what it started from). Returns the run's config."""
    raw = run_config(args, variant, seed)
    meta = {"variant": variant, "seed": seed, "memory": args.memory, "config": raw}
    os.makedirs(out, exist_ok=True)
    if args.start and not os.path.exists(os.path.join(out, "checkpoint.pt")):
        meta["start"] = branch_run(args.start.format(seed=seed), out, raw)
    elif os.path.exists(os.path.join(out, "variant.json")):
        meta["start"] = read_json(os.path.join(out, "variant.json")).get("start")
    with atomic_open(os.path.join(out, "variant.json"), "w") as f:
        json.dump(meta, f, indent=1)
    return raw


def branch(args: argparse.Namespace) -> None:
    """The run folders of ``--variants`` × ``--seeds``, begun as ``--start`` and not trained: to carry to a
    device machine (a run resumes there from its folder)."""
    if not args.start or args.memory != "cut":
        sys.exit("branch: give --memory cut and --start CHECKPOINT")
    for variant in args.variants:
        for seed in args.seeds:
            out = os.path.join(args.out, f"{variant}-seed{seed}")
            prepare_run(args, variant, seed, out)
            start = read_json(os.path.join(out, "variant.json")).get("start")
            print(f"{out}: " + (f"begun at step {start['step']}" if start else "begun before, left as it is"))


def train(args: argparse.Namespace) -> None:
    if args.start and args.memory != "cut":
        sys.exit("--start shares a first stage between variants of one architecture: add --memory cut")
    if args.parallel > 1:
        return train_parallel(args)
    started = time.perf_counter()
    for variant in args.variants:
        for seed in args.seeds:
            out = os.path.join(args.out, f"{variant}-seed{seed}")
            if os.path.exists(os.path.join(out, "model.safetensors")):
                print(f"{variant} seed {seed}: done already", flush=True)
                continue
            left = None if args.max_minutes is None else args.max_minutes - (time.perf_counter() - started) / 60
            if left is not None and left <= 0:
                print("out of time; run train again to continue", flush=True)
                return
            raw = prepare_run(args, variant, seed, out)
            raw["train"] = {**raw["train"], "max_minutes": left}
            result = Trainer(config_from_dict(raw), out, resume=True, progress=False).run()
            state = "finished" if result.finished else "paused"
            print(f"{variant} seed {seed}: step {result.step}/{result.total_steps} {state}, last loss "
                  f"{result.last.get('total', float('nan')):.4f}", flush=True)


def train_parallel(args: argparse.Namespace) -> None:
    """``train`` with up to ``--parallel`` runs at once, each in its own process on the same GPU (with ``--gpus``,
    spread over several: on a machine of two GPUs, ``--parallel 2 --gpus 2`` trains two runs at full speed). A small
    model's step leaves most of the GPU idle between kernel launches (benchmarks/results/train_throughput);
    several processes fill those gaps. Each run is the one a sequential ``train`` makes (same config, same
    clips); a run started late gets what is left of ``--max-minutes``. ``--mps`` runs the CUDA MPS daemon
    meanwhile, so that the processes' kernels run side by side."""
    with mps_daemon() if args.mps else contextlib.nullcontext(None) as env, child_processes() as start:
        train_processes(args, env, start)


def train_processes(args: argparse.Namespace, env: dict[str, str] | None,
                    start: Callable[..., subprocess.Popen]) -> None:
    """``train_parallel``'s queue: one ``train`` process per unfinished run, ``--parallel`` at a time, started by
    ``start`` (``gpu_sharing.child_processes``: they stop if this process is stopped)."""
    started = time.perf_counter()
    queue = [(v, s) for v in args.variants for s in args.seeds
             if not os.path.exists(os.path.join(args.out, f"{v}-seed{s}", "model.safetensors"))]
    overrides = [x for assignment in args.set for x in ("--set", assignment)]
    running: list[tuple[str, subprocess.Popen, int | None]] = []
    failed = []
    while queue or running:
        left = None if args.max_minutes is None else args.max_minutes - (time.perf_counter() - started) / 60
        while queue and len(running) < args.parallel and (left is None or left > 0):
            variant, seed = queue.pop(0)
            command = [sys.executable, os.path.abspath(__file__), "train", "--config", args.config, "--out",
                       args.out, "--variants", variant, "--seeds", str(seed), "--memory", args.memory, *overrides]
            if args.start:
                command += ["--start", args.start]
            if left is not None:
                command += ["--max-minutes", f"{left:.3f}"]
            own = dict(env or os.environ)
            if args.gpus:  # the first free of --gpus GPUs, so that runs spread over a machine's GPUs
                used = {gpu for _, _, gpu in running}
                gpu = min(set(range(args.gpus)) - used, default=len(running) % args.gpus)
                own["CUDA_VISIBLE_DEVICES"] = str(gpu)
            else:
                gpu = None
            running.append((f"{variant} seed {seed}", start(command, env=own), gpu))
        if not running:
            break
        time.sleep(1)
        for name, process, gpu in [r for r in running if r[1].poll() is not None]:
            running.remove((name, process, gpu))
            if process.returncode != 0:
                failed.append(f"{name} (exit {process.returncode})")
    if queue:
        print(f"out of time with {len(queue)} runs not started; run train again to continue", flush=True)
    if failed:
        sys.exit("failed: " + ", ".join(failed))


PROTOCOL = ("frames", "worlds", "window", "overlap", "size")
"""The scoring settings an eval report records and ``join`` requires to agree."""


def read_json(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def load_run(folder: str, device: str) -> tuple[LoGeR, dict]:
    meta = read_json(os.path.join(folder, "variant.json"))
    model = LoGeR(model_config(config_from_dict(meta["config"])))
    model.load_state_dict({k: v.float() for k, v in read_state_dict(os.path.join(folder, "model.safetensors")).items()})
    return model.to(device).eval(), meta


def training_summary(metrics: str) -> dict:
    """What a run's log (``metrics``: its ``metrics.jsonl``) says about its training: steps, wall time between
    logged steps, the trainer's median frames/s (data included), the last logged loss and, over the last stage,
    whether the camera was learnt: the pose terms against a prediction of no motion (``rot / rot_identity``,
    ``trans / trans_zero``; 1 means not learnt)."""
    records = read_metrics(metrics)
    if not records:
        return {}
    last_stage = [r for r in records if r["stage"] == records[-1]["stage"]]
    return {"steps": records[-1]["step"], "minutes": sum(r.get("interval_s", 0.0) for r in records) / 60,
            "median_frames_per_s": float(np.median([r["frames_per_s"] for r in records])),
            "last_total_loss": records[-1]["total"],
            "last_stage_rot_over_identity": float(np.mean([r["rot"] / r["rot_identity"] for r in last_stage])),
            "last_stage_trans_over_zero": float(np.mean([r["trans"] / r["trans_zero"] for r in last_stage]))}


def evaluate(args: argparse.Namespace) -> None:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    device_name = torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu"
    chosen = {f"{v}-seed{s}" for v in args.variants for s in args.seeds}
    runs = sorted(d for d in os.listdir(args.out) if d in chosen
                  and os.path.exists(os.path.join(args.out, d, "model.safetensors")))
    if not runs:
        sys.exit(f"no finished runs of {', '.join(args.variants)} with seeds {args.seeds} in {args.out}; "
                 "run train first")
    models = [load_run(os.path.join(args.out, d), device) for d in runs]
    data = load_train_config(args.config, args.set).data
    protocol = dict(zip(PROTOCOL, (args.frames, args.worlds, args.window, args.overlap, f"{data.width}x{data.height}"),
                        strict=True))
    rows, lines = [], []
    for frames in args.frames:
        for family, kind, seed in test_worlds(args.worlds):
            images, gt, path = held_out_sequence(family, kind, seed, frames, data.height, data.width, device)
            lines.append({"frames": frames, "world": f"{family}-{kind}", "world_seed": seed,
                          "ate_pct_path": 100 * ate(straight_line(gt), gt) / path})
            for model, meta in models:
                for align in ["se3"] if meta["variant"] == "no_memory" else ["none", "se3"]:
                    started = time.perf_counter()
                    with torch.no_grad():
                        pred = model(images, window_size=args.window, overlap_size=args.overlap, align=align)
                    est = pred.camera_poses[0].double().cpu().numpy()
                    value = ate(est, gt)
                    rows.append({"frames": frames, "world": f"{family}-{kind}", "world_seed": seed,
                                 "variant": meta["variant"], "train_seed": meta["seed"], "align": align,
                                 "ate_m": value, "ate_pct_path": 100 * value / path, "path_m": path,
                                 **rotation_drift(est, gt), "seconds": time.perf_counter() - started,
                                 "device": device_name})
                    print(json.dumps(rows[-1]), flush=True)
    write_report(args.json, {
        "benchmark": f"memory ablation (memory {', '.join(sorted({m.get('memory', 'removed') for _, m in models}))})",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": device_name, "torch": torch.__version__, "command": " ".join(sys.argv), **protocol,
        "runs": runs, "train": {d: m["config"] for d, (_, m) in zip(runs, models)},
        "training": {d: training_summary(os.path.join(args.out, d, "metrics.jsonl")) for d in runs},
        "straight_line": lines, "rows": rows, "summary": summarise(rows, lines),
    })


def join(args: argparse.Namespace) -> None:
    """One report from several ``eval`` reports (``args.reports``) scored with the same protocol: their runs,
    configs, training summaries and rows (each row keeps the device that scored it). A run in a later report
    replaces the same run in an earlier one. The straight line must agree, since it depends only on the worlds."""
    if not args.reports:
        sys.exit("join: name the eval reports to join (JSON files written by eval)")
    reports = []
    for path in args.reports:
        if not os.path.isfile(path):
            sys.exit(f"join: no report {path}; give the JSON files that eval wrote")
        reports.append((path, read_json(path)))
    first_path, first = reports[0]
    for path, report in reports[1:]:
        differs = [k for k in PROTOCOL if report.get(k) != first.get(k)]
        if differs:
            sys.exit(f"join: {path} was scored with other {', '.join(differs)} than {first_path}; "
                     "score every run with the same settings")
        line = {(r["frames"], r["world"]): r["ate_pct_path"] for r in report["straight_line"]}
        if any(abs(line.get((r["frames"], r["world"]), np.inf) - r["ate_pct_path"]) > 1e-6
               for r in first["straight_line"]):
            sys.exit(f"join: {path} and {first_path} disagree on the held-out worlds (straight-line scores differ); "
                     "score every run with the same code")
    owner = {run: i for i, (_, report) in enumerate(reports) for run in report["runs"]}
    runs = sorted(owner)
    rows = [{"device": report["device"], **row} for i, (_, report) in enumerate(reports) for row in report["rows"]
            if owner[f"{row['variant']}-seed{row['train_seed']}"] == i]
    write_report(args.json, {
        "benchmark": first["benchmark"], "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": ", ".join(sorted({row["device"] for row in rows})), "command": " ".join(sys.argv),
        "joined": [{"path": path, "date": report["date"], "device": report["device"], "command": report["command"],
                    "runs": report["runs"]} for path, report in reports],
        **{k: first[k] for k in PROTOCOL}, "runs": runs,
        "train": {run: reports[owner[run]][1]["train"][run] for run in runs},
        "training": {run: reports[owner[run]][1].get("training", {}).get(run, {}) for run in runs},
        "straight_line": first["straight_line"], "rows": rows, "summary": summarise(rows, first["straight_line"]),
    })


def write_report(path: str, report: dict) -> None:
    """Write ``report`` to ``path`` whole (``atomic_open``) and print its summary."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_open(path, "w") as f:
        json.dump(report, f, indent=1)
    for key, value in report["summary"].items():
        print(f"{key:22s} mean ATE {value['mean']:.2f} % of path (seeds {value['lowest']:.2f}–{value['highest']:.2f}, "
              f"{value['seeds']} seeds × {value['worlds']} worlds)")


def with_line_rows(rows: list[dict], lines: list[dict]) -> list[dict]:
    """``rows`` and, after them, the straight line's scores as rows of a variant ``straight_line`` (chaining
    ``-``, seed -1), so that summaries and tables treat the baseline like any run."""
    return rows + [{**line, "variant": "straight_line", "align": "-", "train_seed": -1} for line in lines]


def summarise(rows: list[dict], lines: list[dict]) -> dict[str, dict]:
    """Per variant, chaining and sequence length (``variant/align/frames``, by length, then in ``VARIANTS``'
    order): the mean over worlds for each training seed, then over seeds, and the spread; then
    ``straight_line/-/frames``, the camera that takes nothing from the images (``heldout_worlds.straight_line``)
    on the same worlds, as one "seed"."""
    per_seed: dict[tuple, dict[int, list[float]]] = {}
    for row in with_line_rows(rows, lines):
        group = per_seed.setdefault((row["variant"], row["align"], row["frames"]), {})
        group.setdefault(row["train_seed"], []).append(row["ate_pct_path"])
    order = [*VARIANTS, "straight_line"]
    summary = {}
    for (variant, align, frames), seeds in sorted(per_seed.items(),
                                                  key=lambda item: (item[0][2], order.index(item[0][0]), item[0][1])):
        means = [float(np.mean(v)) for v in seeds.values()]
        summary[f"{variant}/{align}/{frames}"] = {
            "mean": float(np.mean(means)), "lowest": min(means), "highest": max(means),
            "per_seed": dict(zip(map(str, seeds), means)), "seeds": len(means),
            "worlds": len(next(iter(seeds.values())))}
    return summary


NAMES = {"hybrid": "hybrid", "ttt_only": "TTT only", "swa_only": "SWA only", "no_memory": "no memory",
         "straight_line": "*a straight line (no model)*"}


def plot(args: argparse.Namespace) -> None:
    """Bars of the mean ATE (% of path) per variant over its seeds, each seed's mean a marker on its bar (so that a
    variant scored for fewer seeds than another shows it); without chaining (and the straight line) in one panel,
    with SE(3) chaining in another on its own scale, where the variants differ by tenths of a point."""
    from matplotlib.figure import Figure

    report = read_json(args.json)
    summary = summarise(report["rows"], report["straight_line"])
    panels = {"without chaining": [k for k in summary if k.split("/")[1] in ("none", "-")],
              "with SE(3) chaining": [k for k in summary if k.split("/")[1] == "se3"]}
    panels = {title: keys for title, keys in panels.items() if keys}
    seeds = sorted({s for v in summary.values() for s in v["per_seed"] if s != "-1"}, key=int)
    fig = Figure(figsize=(10, 4), layout="constrained")
    axes = fig.subplots(1, len(panels), width_ratios=[len(keys) for keys in panels.values()], squeeze=False)[0]
    for ax, (title, keys) in zip(axes, panels.items()):
        colours = ["0.6" if k.startswith("straight_line") else "C0" if "/none/" in k else "C1" for k in keys]
        ax.bar(range(len(keys)), [summary[k]["mean"] for k in keys], color=colours)
        for seed, marker in zip(seeds, "os^Dv"):
            at = [(i, summary[k]["per_seed"][seed]) for i, k in enumerate(keys) if seed in summary[k]["per_seed"]]
            if at:
                ax.scatter(*zip(*at), marker=marker, color="k", s=18, zorder=3, label=f"seed {seed}")
        for i, key in enumerate(keys):
            ax.annotate(f"{summary[key]['mean']:.2f}", (i, summary[key]["highest"]), ha="center", va="bottom",
                        fontsize=7, xytext=(0, 6), textcoords="offset points")
        labels = [f"{NAMES[k.split('/')[0]].strip('*').removesuffix(' (no model)')}\n{k.split('/')[2]} frames"
                  for k in keys]
        ax.set_xticks(range(len(keys)), labels, fontsize=7)
        ax.set_ylim(0, 1.12 * max(summary[k]["highest"] for k in keys))
        ax.set_title(title, fontsize=9)
    axes[0].set_ylabel("ATE RMSE, % of path length")
    axes[-1].legend(fontsize=7, title="each seed's mean", title_fontsize=7)
    fig.suptitle(f"{args.title} (bars: mean over seeds of the mean over held-out worlds)", fontsize=9)
    fig.savefig(args.plot, dpi=100)


def table(args: argparse.Namespace) -> None:
    """Markdown tables of an ``eval`` JSON: per variant and chaining, each seed's mean over worlds and the mean
    over seeds; then per world (the mean over seeds)."""
    report = read_json(args.json)
    rows = report["rows"]
    summary = summarise(rows, report["straight_line"])
    seeds = sorted({s for v in summary.values() for s in v["per_seed"] if s != "-1"}, key=int)
    print("| variant | chaining | frames | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | spread |")
    print("|---|---|---:|" + "---:|" * (len(seeds) + 2))
    for key, value in summary.items():
        variant, align, frames = key.split("/")
        cells = [f"{value['per_seed'][s]:.2f} %" if s in value["per_seed"] else "–" for s in seeds]
        spread = f"{value['highest'] - value['lowest']:.2f}" if value["seeds"] > 1 else "–"
        print(f"| {NAMES[variant]} | {align} | {frames} | " + " | ".join(cells) + f" | **{value['mean']:.2f} %** | "
              f"{spread} |")
    worlds = list(dict.fromkeys(row["world"] for row in rows))
    print("\n| variant | chaining | " + " | ".join(worlds) + " |")
    print("|---|---|" + "---:|" * len(worlds))
    scores: dict[tuple, list[float]] = {}
    for row in with_line_rows(rows, report["straight_line"]):
        key = f"{row['variant']}/{row['align']}/{row['frames']}"
        scores.setdefault((key, row["world"]), []).append(row["ate_pct_path"])
    for key in summary:
        variant, align, _ = key.split("/")
        print(f"| {NAMES[variant]} | {align} | " + " | ".join(f"{np.mean(scores[key, w]):.2f}" for w in worlds) + " |")


LOSS_TERMS = ("global_points", "local_points", "rot", "trans", "ttt_gate", "swa_gate")
"""The columns of ``losses``: the loss terms that chaining and the memory act on, then the memory's gates."""


def named(given: str) -> tuple[str | None, str]:
    """``RUN=PATH`` as (RUN, PATH); a bare PATH as (None, PATH)."""
    run, sep, path = given.partition("=")
    return (run, path) if sep else (None, given)


def variant_and_seed(run: str) -> tuple[str, str]:
    """``<variant>-seed<k>`` as (variant, k)."""
    variant, _, seed = run.rpartition("-seed")
    return variant, seed


def run_name(given: str) -> str:
    """The run a training log belongs to: ``RUN=PATH`` names it, else ``.../metrics_<run>.jsonl`` (as committed
    under benchmarks/results) or ``.../<run>/metrics.jsonl`` (a run's folder)."""
    run, path = named(given)
    if run:
        return run
    name = os.path.basename(path).removesuffix(".jsonl")
    if name == "metrics":
        return os.path.basename(os.path.dirname(os.path.abspath(path)))
    return name.removeprefix("metrics_")


def stage_losses(records: list[dict], last: int) -> list[dict]:
    """Per stage of a training log (``records``, in step order), the mean of each of ``LOSS_TERMS`` over the
    stage's ``last`` logged steps, with the stage (counted from 1) and the steps averaged."""
    stages = []
    for stage in dict.fromkeys(r["stage"] for r in records):
        recent = [r for r in records if r["stage"] == stage][-last:]
        stages.append({"stage": stage + 1, "steps": [recent[0]["step"], recent[-1]["step"]],
                       **{term: float(np.mean([r[term] for r in recent])) for term in LOSS_TERMS
                          if all(term in r for r in recent)}})
    return stages


def losses(args: argparse.Namespace) -> None:
    """Markdown table of each run's loss terms per stage (``stage_losses``) from training logs (``args.reports``:
    ``metrics.jsonl`` files, named as ``run_name`` reads them), runs of one stage side by side."""
    if not args.reports:
        sys.exit("losses: name the training logs to compare (metrics.jsonl files, or RUN=PATH)")
    rows = []
    for given in args.reports:
        path = named(given)[1]
        if not os.path.isfile(path):
            sys.exit(f"losses: no training log {path}; give metrics.jsonl files")
        rows += [(run_name(given), stage) for stage in stage_losses(read_metrics(path), args.last)]
    print(f"| stage | run | steps (last {args.last} logged) | " + " | ".join(LOSS_TERMS) + " |")
    print("|---|---|---|" + "---:|" * len(LOSS_TERMS))
    for run, s in sorted(rows, key=lambda row: row[1]["stage"]):  # stable: runs in the order given within a stage
        cells = [f"{s[t]:.4f}" if t in s else "–" for t in LOSS_TERMS]
        print(f"| {s['stage']} | {run} | {s['steps'][0]}–{s['steps'][1]} | " + " | ".join(cells) + " |")


def world_scores(given: str, align: str, window: int) -> dict[str, dict[tuple[int, int], tuple[float, float]]]:
    """Per run, per world (frames, world seed), the ATE (% of path) and the rotation error every 8 frames with
    ``align`` and ``window``, from one report: an ``eval`` report (its runs), or ``RUN=PATH`` for a
    ``heldout_ate.py`` report (one model; RUN names it, ``<variant>-seed<k>``)."""
    run, path = named(given)
    if not os.path.isfile(path):
        sys.exit(f"paired: no report {path}; give eval reports, or RUN=PATH for heldout_ate.py reports")
    report = read_json(path)
    if ("runs" in report) == (run is not None):
        sys.exit(f"paired: {given}: name a heldout_ate.py report's run (RUN=PATH) and only that kind of report")
    variant, seed = variant_and_seed(run or "")
    if run is not None and not (variant in VARIANTS and seed.isdigit()):
        sys.exit(f"paired: {given}: name the run <variant>-seed<k> with a variant of {', '.join(VARIANTS)}, "
                 "e.g. hybrid-seed1=PATH")
    scores: dict[str, dict] = {}
    for row in report["rows"]:
        if row["align"] != align or row.get("window", report.get("window")) != window:
            continue
        name = run or f"{row['variant']}-seed{row['train_seed']}"
        scores.setdefault(name, {})[row.get("frames", report.get("frames")), row["world_seed"]] = (
            row["ate_pct_path"], row["rpe_rot_deg_8"])
    return scores


def paired(args: argparse.Namespace) -> None:
    """Markdown table comparing each two runs of one training seed on the worlds both were scored on (``args.reports``
    as ``world_scores`` reads them; a run in several reports gathers their worlds): the means, the mean paired
    difference with its standard error, and on how many worlds each is the better, in ATE and rotation error. Two
    variants compared in more than one seed get a row more, every seed's pairs pooled (a world of each seed a pair;
    its standard error is over worlds: how much the difference itself moves from seed to seed, the seeds' rows show)."""
    if not args.reports:
        sys.exit("paired: name the reports to compare (eval reports, RUN=PATH for heldout_ate.py reports)")
    scores: dict[str, dict] = {}
    for given in args.reports:
        for run, worlds in world_scores(given, args.align, args.window).items():
            scores.setdefault(run, {}).update(worlds)
    order = list(VARIANTS)
    runs = sorted(scores, key=lambda r: (int(variant_and_seed(r)[1]), order.index(variant_and_seed(r)[0])))
    print("| seed | A | B | worlds | A mean | B mean | B − A (± s.e.) | A better, ATE | A lower, rotation error |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    compared: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for a, b in ((a, b) for i, a in enumerate(runs) for b in runs[i + 1:]):
        seed = variant_and_seed(a)[1]
        if seed == variant_and_seed(b)[1] and set(scores[a]) & set(scores[b]):
            print_paired(seed, [(scores[a], scores[b])], a, b)
            compared.setdefault((variant_and_seed(a)[0], variant_and_seed(b)[0]), []).append((a, b))
    for pairs in compared.values():
        if len(pairs) > 1:
            seeds = ", ".join(variant_and_seed(a)[1] for a, _ in pairs)
            print_paired(f"all ({seeds})", [(scores[a], scores[b]) for a, b in pairs], *pairs[0])


def print_paired(label: str, pairs: list[tuple[dict, dict]], a: str, b: str) -> None:
    """One row of ``paired``, its seed column ``label``: runs A and B (named as ``a`` and ``b``'s variants) over
    the worlds each pair of score maps (A's, B's: world -> (ATE, rotation error)) shares."""
    common = [(run_a[k], run_b[k]) for run_a, run_b in pairs for k in sorted(set(run_a) & set(run_b))]
    (ate_a, rot_a), (ate_b, rot_b) = (np.array([scored[i] for scored in common]).T for i in (0, 1))
    diff = ate_b - ate_a
    error = diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else float("nan")
    name = {r: NAMES[variant_and_seed(r)[0]] for r in (a, b)}
    print(f"| {label} | {name[a]} | {name[b]} | {len(common)} | {ate_a.mean():.2f} % | {ate_b.mean():.2f} % | "
          f"{diff.mean():+.2f} ± {error:.2f} | {int((ate_a < ate_b).sum())} | {int((rot_a < rot_b).sum())} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=("branch", "train", "eval", "join", "plot", "table", "losses", "paired"))
    parser.add_argument("reports", nargs="*", metavar="REPORT",
                        help="join: the eval reports (JSON) to put together; losses: the training logs "
                             "(metrics.jsonl, or RUN=PATH) to compare; paired: eval reports, and heldout_ate.py "
                             "reports as RUN=PATH")
    parser.add_argument("--config", default="tiny_synthetic", help="base training config (YAML or shipped name)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override the base config (as loger3d train --set)")
    parser.add_argument("--out", default="runs/ablation")
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1], help="training seeds of each variant")
    parser.add_argument("--max-minutes", type=float, help="train: stop after this long in all (continue later)")
    parser.add_argument("--memory", choices=("removed", "cut"), default="removed",
                        help="train: what a variant lacks: the memory layers themselves (removed, the protocol of "
                             "benchmarks/results/ablation_scratch) or their path between chunks (cut: the same "
                             "layers, so the variants can share a first stage, --start)")
    parser.add_argument("--start", metavar="CHECKPOINT",
                        help="train --memory cut: begin every new run as this checkpoint.pt of a run of the same "
                             "config and seed, taken within its one-chunk stages (a shared first stage); "
                             "'{seed}' in it is replaced by each run's seed")
    parser.add_argument("--parallel", type=int, default=1,
                        help="train: runs trained at once, each in its own process (one GPU fits several)")
    parser.add_argument("--gpus", type=int, default=0,
                        help="train --parallel: spread the runs over this many GPUs, one CUDA_VISIBLE_DEVICES each "
                             "(0: every run sees every GPU and uses the first)")
    parser.add_argument("--mps", action="store_true",
                        help="train --parallel: run the CUDA MPS daemon meanwhile (the processes' kernels overlap)")
    parser.add_argument("--worlds", type=int, default=9, help="held-out worlds scored")
    parser.add_argument("--frames", type=int, nargs="+", default=[1000],
                        help="frames per held-out world; several (e.g. 1000 5000 10000) show how far the memory "
                             "holds the frame")
    parser.add_argument("--window", type=int, default=10)
    parser.add_argument("--align", choices=("none", "se3"), default="se3", help="paired: the chaining compared")
    parser.add_argument("--overlap", type=int, default=2)
    parser.add_argument("--json", default="benchmarks/results/ablation_scratch/ablation_scratch.json",
                        help="eval, join: the report written; plot, table: the report read")
    parser.add_argument("--plot", default="docs/ablation_scratch.png", help="where 'plot' writes the chart")
    parser.add_argument("--title", default="memory ablation from scratch", help="plot: what the chart shows")
    parser.add_argument("--last", type=int, default=12, help="losses: logged steps averaged at each stage's end")
    args = parser.parse_args()
    {"branch": branch, "train": train, "eval": evaluate, "join": join, "plot": plot, "table": table,
     "losses": losses, "paired": paired}[args.stage](args)


if __name__ == "__main__":
    main()
