"""Benchmark runners: a dataset's sequences reconstructed through the streaming pipeline, then scored.

``loger3d eval kitti --data DIR --model loger`` reads each sequence with its dataset reader (the
LoGeR paper's frame selection by default), runs ``pipeline.reconstruct`` into ``OUT/runs/<seq>``
(an interrupted benchmark resumes; a finished sequence is not run again), pairs the estimated
poses with the ground truth frame by frame, scores them with ``score_trajectory`` (Sim(3) ATE,
RPE and, where the path allows, KITTI segments; VBR adds its own segments), optionally scores
video depth, and writes ``results.json``, ``results.md`` and two plots per sequence.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..errors import InputError, LogerError
from ..run import RUN_FILE, RunError, RunSettings, reconstruct
from ..run.folder import read_run_record
from ..sinks.store import FrameStore
from ..util.atomic import atomic_open
from ..weights.registry import preset_card
from .datasets import DATASETS, open_dataset
from .depth_metrics import combine_depth_metrics, video_depth_metrics
from .pointcloud_metrics import pointcloud_metrics
from .traj import plot_top_view, score_trajectory
from .trajectory_metrics import align_trajectory, vbr_segment_metric

__all__ = ["run_benchmark", "protocol_settings", "score_sequence"]


def protocol_settings(protocol: dict, preset: str) -> tuple[int, int, int, str]:
    """(window, overlap, reset_every, align) the official scripts use for this checkpoint: a window the protocol
    gives per model is looked up by the preset's card's ``protocol_name`` (the first one for a model the paper
    does not name), the chunk chaining is the card's."""
    card = preset_card(preset)
    window = protocol.get("window")
    if isinstance(window, dict):
        window = window.get(card.protocol_name, next(iter(window.values()), None))
    return (int(window or 32), int(protocol.get("overlap") or 3), int(protocol.get("reset_every") or 0), card.align)


def _selection(options: dict) -> dict:
    return {k: options[k] for k in ("start", "stride", "max_frames") if options.get(k) is not None}


def _reconstruct_sequence(seq, run_dir: Path, model, model_spec: str, dtype: str, preset: str, options: dict,
                          progress) -> None:
    window, overlap, reset_every, align = protocol_settings(seq.protocol, preset)
    fast = bool(options.get("fast"))
    if fast:
        model.set_fast_path()
    settings = RunSettings(
        input=list(seq.image_paths), model=model_spec, dtype=dtype, fast=fast,
        window=options.get("window") or window,
        overlap=options["overlap"] if options.get("overlap") is not None else overlap,
        align=options.get("align") or align,
        reset_every=options["reset_every"] if options.get("reset_every") is not None else reset_every,
        resolution=list(options["resolution"]) if options.get("resolution") else None,
        max_pixels=options.get("max_pixels") or 255000,
        save=["depth", "conf", "points"], store_precision="float32")  # scores use the model's exact outputs
    if options.get("loop_closure"):  # verification reads the frames back as JPEGs
        from ..loop.closer import LoopOptions

        settings.save, settings.loop_closure = ["depth", "conf", "points", "images"], LoopOptions().to_dict()
    resume = (run_dir / RUN_FILE).exists()
    if resume:
        previous = read_run_record(run_dir)
        if previous["settings"] != asdict(settings):
            raise RunError(f"{run_dir} holds a run with other settings; remove it or use another --out")
        if previous.get("status") == "complete":
            return  # finished earlier with the same settings: reuse
    reconstruct(list(seq.image_paths), run_dir, model, settings, resume=resume, progress=progress)


def _depth_scores(seq, store: FrameStore, cap: float | None, align: str) -> dict:
    """Video-depth metrics of one sequence: predicted depth resized to the ground truth's size."""
    import torch
    import torch.nn.functional as F

    preds, gts = [], []
    for batch in store.iter_batches():
        for row, index in enumerate(batch["index"]):
            gt = seq.load_depth(int(index))
            pred = torch.from_numpy(batch["depth"][row].astype(np.float32))[None, None]
            pred = F.interpolate(pred, size=gt.shape, mode="bilinear", align_corners=False)[0, 0].numpy()
            preds.append(pred)
            gts.append(gt)
    return video_depth_metrics(np.stack(preds), np.stack(gts), align=align, max_depth=cap)


#: The 7-Scenes protocol scores the central 224×224 of 512×384 inputs: the same fraction of each side here.
_CROP = (224 / 384, 224 / 512)


def _central(array: np.ndarray, fraction: tuple[float, float]) -> np.ndarray:
    """The central ``fraction`` (of height, of width) of ``[H, W, ...]``."""
    h, w = array.shape[:2]
    ch, cw = max(1, round(h * fraction[0])), max(1, round(w * fraction[1]))
    top, left = (h - ch) // 2, (w - cw) // 2
    return array[top:top + ch, left:left + cw]


def _reconstruction_scores(seq, store: FrameStore, gt: np.ndarray, est: np.ndarray, max_points: int = 200_000,
                           seed: int = 0) -> dict:
    """Accuracy, completeness, normal consistency of the fused central crops (7-Scenes protocol).

    Ground truth: each frame's depth unprojected with the dataset intrinsics and posed with its
    ground-truth pose. Prediction: each frame's local points posed with its estimated pose, then
    moved into the ground truth's frame by the trajectory's Sim(3) (monocular scale), refined by
    point-to-point ICP (0.1 m) inside ``pointcloud_metrics``. Both clouds are subsampled to
    ``max_points`` (seeded) for the nearest-neighbour queries.
    """
    _, sim = align_trajectory(gt, est, "sim3")
    pred_parts, gt_parts = [], []
    K = seq.intrinsics
    for batch in store.iter_batches():
        for row, index in enumerate(batch["index"]):
            depth = seq.load_depth(int(index))
            crop = _central(depth, _CROP)
            top, left = (depth.shape[0] - crop.shape[0]) // 2, (depth.shape[1] - crop.shape[1]) // 2
            v, u = np.nonzero(crop > 0)
            z = crop[v, u]
            u, v = u + left, v + top
            cam = np.stack([(u - K[0, 2]) / K[0, 0] * z, (v - K[1, 2]) / K[1, 1] * z, z], axis=1)
            pose = seq.gt_poses[int(index)]
            gt_parts.append(cam @ pose[:3, :3].T + pose[:3, 3])
            local = _central(batch["local_points"][row].astype(np.float64), _CROP).reshape(-1, 3)
            pose = est[int(index)]
            world = local @ pose[:3, :3].T + pose[:3, 3]
            pred_parts.append(sim.scale * world @ sim.rotation.T + sim.translation)
    rng = np.random.default_rng(seed)

    def subsample(points: np.ndarray) -> np.ndarray:
        points = points[np.isfinite(points).all(axis=1)]
        return points[rng.choice(len(points), max_points, replace=False)] if len(points) > max_points else points

    return pointcloud_metrics(subsample(np.concatenate(pred_parts)), subsample(np.concatenate(gt_parts)),
                              icp_threshold=0.1)


def _plot_error_along(path: Path, ate: np.ndarray, title: str) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 3), layout="constrained")
    ax = fig.subplots()
    ax.plot(np.arange(len(ate)), ate, linewidth=1.0)
    ax.set_xlabel("frame")
    ax.set_ylabel("ATE (m)")
    ax.set_title(title)
    fig.savefig(path, dpi=120)


def score_sequence(seq, run_dir: Path, dataset: str, eval_align: str, depth: bool, plots: Path | None) -> dict:
    """Metrics of one reconstructed sequence against its ground truth (frame-by-frame pairing)."""
    store = FrameStore(run_dir)
    index, _, est, _ = store.read_poses()
    result: dict = {"sequence": seq.name, "frames": int(len(index))}
    if seq.gt_poses is not None:
        gt = seq.gt_poses[index]
        valid = np.isfinite(gt).all(axis=(1, 2))
        score = score_trajectory(gt[valid], est[valid], align=eval_align)
        result.update(score.metrics)
        if dataset.startswith("vbr"):
            vbr = vbr_segment_metric(score.gt, score.est_aligned)
            if vbr is not None:
                result.update({f"vbr_{k}": v for k, v in vbr.items()})
        if plots is not None:
            try:
                stem = seq.name.replace("/", "_")
                plot_top_view(plots / f"{stem}_top.png", score)
                _plot_error_along(plots / f"{stem}_ate.png", score.ate, f"{dataset} {seq.name}")
            except (ImportError, InputError):  # matplotlib missing: the numbers are still written
                pass
    if dataset == "7scenes" and seq.gt_poses is not None and seq.depth_paths is not None:
        result["reconstruction"] = _reconstruction_scores(seq, store, seq.gt_poses[index], est)
    if depth and seq.depth_paths is not None:
        cap = seq.protocol.get("depth_cap_m")
        result["depth"] = _depth_scores(seq, store, cap, "scale")
    return result


_WORKER_MODEL: dict = {}


def _worker_start(devices, workers: int, model_spec: str, dtype: str) -> None:
    """A sharding worker takes the next free device and loads the model on it once."""
    import torch

    from ..weights import model_from_spec

    device = devices.get()
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))  # the workers share the host's cores
    _WORKER_MODEL["model"], _ = model_from_spec(model_spec, device, dtype)
    _WORKER_MODEL["device"] = device


def _worker_reconstruct(dataset: str, data: str, name: str, run_dir: str, model_spec: str, dtype: str,
                        options: dict) -> str:
    seq = open_dataset(dataset, data).load(name, **_selection(options))
    model = _WORKER_MODEL["model"]
    _reconstruct_sequence(seq, Path(run_dir), model, model_spec, dtype, model.config.name, options, None)
    return _WORKER_MODEL["device"]


def _reconstruct_sharded(dataset: str, data: str | os.PathLike, names: list[str], out: Path, model_spec: str,
                         dtype: str, options: dict, devices: list[str]) -> None:
    """Reconstruct ``names`` with one process per entry of ``devices``, each taking the next sequence."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn")  # CUDA cannot be forked
    queue = context.Manager().Queue(len(devices))
    for device in devices:
        queue.put(device)
    with ProcessPoolExecutor(len(devices), context, initializer=_worker_start,
                             initargs=(queue, len(devices), model_spec, dtype)) as pool:
        jobs = {name: pool.submit(_worker_reconstruct, dataset, str(data), name, str(out / "runs" / name),
                                  model_spec, dtype, options) for name in names}
        for name, job in jobs.items():
            try:
                job.result()
            except LogerError as e:  # a worker's one-line error, named with its sequence (a bug keeps its traceback)
                raise type(e)(f"sequence {name}: {e}") from None


def run_benchmark(dataset: str, data: str | os.PathLike, model, model_spec: str, out: str | os.PathLike, *,
                  dtype: str = "fp32", sequences: list[str] | None = None, options: dict | None = None,
                  progress=None, devices: list[str] | None = None) -> dict:
    """Reconstruct and score ``sequences`` (default: the protocol's, those present) of ``dataset``.

    ``options`` override the protocol (absent or ``None``: the protocol's value): window, overlap,
    align, reset_every, start, stride, max_frames, resolution, max_pixels, eval_align, depth; ``fast``
    runs the model's fast path (``LoGeR.set_fast_path``).
    ``devices``: with more than one, sequences are spread over one worker process per device (each loads
    ``model_spec`` itself; ``model`` may be ``None``); scoring then runs here, in sequence order, so the
    results equal a one-device run's.
    """
    if dataset not in DATASETS:
        raise InputError(f"unknown benchmark {dataset!r}; choose one of {', '.join(DATASETS)}")
    options = dict(options or {})
    reader = open_dataset(dataset, data)
    names = sequences or reader.sequences()
    out = Path(out)
    plots = out / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    sharded = devices is not None and len(devices) > 1
    if sharded:
        _reconstruct_sharded(dataset, data, names, out, model_spec, dtype, options, devices)
    rows = []
    for name in names:
        seq = reader.load(name, **_selection(options))
        run_dir = out / "runs" / name
        if not sharded:
            _reconstruct_sequence(seq, run_dir, model, model_spec, dtype, model.config.name, options, progress)
        row = score_sequence(seq, run_dir, dataset, options.get("eval_align") or "sim3", bool(options.get("depth")),
                             plots)
        row["protocol"] = seq.protocol
        rows.append(row)
        _write_results(out, dataset, model_spec, rows)
    return _write_results(out, dataset, model_spec, rows)


_COLUMNS = (("frames", "frames", "{:d}"), ("ate_rmse", "ATE RMSE (m)", "{:.4f}"),
            ("rpe_trans_rmse", "RPE trans (m)", "{:.4f}"), ("rpe_rot_rmse", "RPE rot (deg)", "{:.4f}"),
            ("kitti_t_err", "t_err (%)", "{:.3f}"), ("kitti_r_err", "r_err (deg/100m)", "{:.3f}"))


def _write_results(out: Path, dataset: str, model_spec: str, rows: list[dict]) -> dict:
    summary = {"dataset": dataset, "model": model_spec, "sequences": rows}
    means = {}
    for key, _, _ in _COLUMNS[1:]:
        values = [r[key] for r in rows if isinstance(r.get(key), (int, float))]
        if values:
            means[key] = float(np.mean(values))
    summary["mean"] = means
    with atomic_open(out / "results.json", "w") as f:
        json.dump(summary, f, indent=1, default=float)
        f.write("\n")
    lines = [f"# {dataset}: {model_spec}", "", "| sequence | " + " | ".join(t for _, t, _ in _COLUMNS) + " |",
             "|---" * (len(_COLUMNS) + 1) + "|"]
    for r in rows:
        cells = [fmt.format(r[k]) if isinstance(r.get(k), (int, float)) else "–" for k, _, fmt in _COLUMNS]
        lines.append(f"| {r['sequence']} | " + " | ".join(cells) + " |")
    mean_cells = [fmt.format(means[k]) if k in means else "" for k, _, fmt in _COLUMNS[1:]]
    lines.append("| **mean** | | " + " | ".join(mean_cells) + " |")
    if any("depth" in r for r in rows):
        lines += ["", "| sequence | AbsRel | δ<1.25 |", "|---|---|---|"]
        lines += [f"| {r['sequence']} | {r['depth']['abs_rel']:.4f} | {r['depth']['delta1']:.4f} |"
                  for r in rows if "depth" in r]
        merged = combine_depth_metrics([r["depth"] for r in rows if "depth" in r])
        summary["mean"]["depth"] = merged
        lines.append(f"| **all** | {merged['abs_rel']:.4f} | {merged['delta1']:.4f} |")
    if any("reconstruction" in r for r in rows):
        lines += ["", "| sequence | Acc (m) | Comp (m) | Chamfer (m) | NC |", "|---|---|---|---|---|"]
        lines += [f"| {r['sequence']} | {c['acc']:.4f} | {c['comp']:.4f} | {c['chamfer']:.4f} | {c['nc']:.4f} |"
                  for r in rows if "reconstruction" in r for c in [r["reconstruction"]]]
    with atomic_open(out / "results.md", "w") as f:
        f.write("\n".join(lines) + "\n")
    return summary
