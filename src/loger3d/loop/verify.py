"""Verification of a loop candidate: the model on frames of both ends, and the drift it implies.

The model runs on one window made of frames around both ends (no memory: a fresh chunk), so it
predicts both ends in one frame of its own. A robust, confidence-weighted Sim(3) fit maps that
frame onto the run's world points of each end (S_a, S_b); the run's drift between the ends is
D = S_a ∘ S_b⁻¹, which maps the world of end b's chunk into the world of end a's. A candidate is
accepted only when both fits are good (inlier share, residual), the two ends see the same surfaces
(overlap), and the drift is plausible for the path travelled between them (rotation, scale,
translation): a wrong loop is worse than a missed one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np
import torch

from ..errors import InputError
from ..sinks.images import read_images
from ..sinks.store import FrameStore
from .sim3 import Sim3, robust_fit_sim3

__all__ = ["EndFrames", "FramesNotReady", "LoopCheck", "VerifyOptions", "read_end", "verify_loop"]


@dataclass(frozen=True)
class VerifyOptions:
    """When a verified candidate becomes a loop edge.

    min_inliers     share of the confident points that each end's robust fit keeps
    max_residual    each fit's median residual, relative to the run's median depth
    min_overlap     share of end b's points (in the window) within 5 % of their depth from end a's
    max_rotation_deg, max_log_scale   the drift's rotation and |log scale|
    max_drift       the drift's displacement at end b, relative to the path length between the ends
    pixel_step      every ``pixel_step``-th pixel (in rows and columns) enters the fits
    """

    min_inliers: float = 0.6
    max_residual: float = 0.05
    min_overlap: float = 0.3
    max_rotation_deg: float = 20.0
    max_log_scale: float = 0.2
    max_drift: float = 0.15
    pixel_step: int = 4

    def check(self) -> VerifyOptions:
        ranges = {"min_inliers": (0, 1), "max_residual": (0, np.inf), "min_overlap": (0, 1),
                  "max_rotation_deg": (0, 180), "max_log_scale": (0, np.inf), "max_drift": (0, np.inf)}
        for name, (low, high) in ranges.items():
            value = getattr(self, name)
            if not low <= value <= high:
                raise InputError(f"loop verification option {name} = {value} is out of range [{low}, {high}]")
        if self.pixel_step < 1:
            raise InputError(f"loop verification option pixel_step = {self.pixel_step}: give 1 or more")
        return self


@dataclass
class EndFrames:
    """The run's frames around one end of a loop, as stored (uncorrected).

    indices ``[n]`` frame indices; images ``[n,H,W,3]`` uint8; points ``[n,H,W,3]`` float32 world points
    (camera-to-world pose applied to the local points); depth, conf ``[n,H,W]`` float32; centres ``[n,3]``.
    """

    indices: np.ndarray
    images: np.ndarray
    points: np.ndarray
    depth: np.ndarray
    conf: np.ndarray
    centres: np.ndarray


class FramesNotReady(Exception):
    """A frame's image is not on disk yet: the run's JPEGs are encoded in the background."""


def read_end(store: FrameStore, indices: np.ndarray) -> EndFrames:
    """Frames ``indices`` of a run from its raw frame ``store`` (``corrected=False``) and JPEG images;
    ``FramesNotReady`` when an image is still being written."""
    out = store.folder.parent
    frames = store.read_frames([int(i) for i in indices])
    poses = frames["camera_poses"]
    local = frames["local_points"].astype(np.float64)
    points = np.einsum("nij,nhwj->nhwi", poses[:, :3, :3], local) + poses[:, None, None, :3, 3]
    try:
        images = read_images(out, [str(n) for n in frames["name"]])
    except FileNotFoundError as e:
        raise FramesNotReady(str(e)) from None
    return EndFrames(np.asarray(indices, np.int64), images, points.astype(np.float32), frames["depth"],
                     frames["conf"], poses[:, :3, 3].copy())


@dataclass
class LoopCheck:
    """One verified candidate: keyframes ``a < b``, their chunks, the retrieval score, what verification
    measured, the drift (``None`` when the fits failed) and the verdict."""

    a: int
    b: int
    node_a: int
    node_b: int
    score: float
    path_m: float
    inliers: float = 0.0
    residual: float = float("inf")
    overlap: float = 0.0
    rotation_deg: float = float("nan")
    log_scale: float = float("nan")
    drift_m: float = float("nan")
    drift: Sim3 | None = None
    accepted: bool = False
    reason: str = ""

    def judge(self, options: VerifyOptions) -> LoopCheck:
        """Set ``accepted`` and ``reason`` (the first test failed, or ``accepted``)."""
        tests = [
            (self.drift is not None, "the alignment failed"),
            (self.inliers >= options.min_inliers, f"inliers {self.inliers:.2f} < {options.min_inliers}"),
            (self.residual <= options.max_residual, f"residual {self.residual:.3f} > {options.max_residual}"),
            (self.overlap >= options.min_overlap, f"overlap {self.overlap:.2f} < {options.min_overlap}"),
            (self.rotation_deg <= options.max_rotation_deg,
             f"drift rotation {self.rotation_deg:.1f} deg > {options.max_rotation_deg}"),
            (abs(self.log_scale) <= options.max_log_scale,
             f"drift scale change |log s| {abs(self.log_scale):.3f} > {options.max_log_scale}"),
            (self.drift_m <= options.max_drift * self.path_m,
             f"drift {self.drift_m:.2f} m > {options.max_drift} of the path between the ends ({self.path_m:.1f} m)"),
        ]
        failed = [reason for ok, reason in tests if not ok]
        self.accepted = not failed
        self.reason = failed[0] if failed else "accepted"
        return self

    def report(self) -> dict:
        """A JSON-ready record (loops.json)."""
        report = {k: v for k, v in asdict(self).items() if k != "drift"}
        report["drift"] = self.drift.to_vector().tolist() if self.drift is not None else None
        return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in report.items()}

    _NUMBERS = ("a", "b", "node_a", "node_b", "score", "path_m", "inliers", "residual", "overlap", "rotation_deg",
                "log_scale", "drift_m", "accepted")
    WIDTH = len(_NUMBERS) + 7
    """How many numbers ``numbers`` gives: the fields, then the drift's 7-vector."""

    def numbers(self) -> np.ndarray:
        """Everything as ``WIDTH`` float64 numbers (for the resume state): the fields, then the drift's 7-vector."""
        drift = self.drift.to_vector() if self.drift is not None else np.full(7, np.nan)
        return np.concatenate([[float(getattr(self, k)) for k in self._NUMBERS], drift])

    @classmethod
    def from_numbers(cls, values: np.ndarray, options: VerifyOptions) -> LoopCheck:
        values = np.asarray(values, np.float64)
        kinds = {f.name: f.type for f in fields(cls)}
        named = {k: (int(v) if kinds[k] == "int" else float(v))
                 for k, v in zip(cls._NUMBERS[:-1], values[:len(cls._NUMBERS) - 1])}
        drift = values[len(cls._NUMBERS):]
        check = cls(**named, drift=Sim3.from_vector(drift) if np.all(np.isfinite(drift)) else None)
        return check.judge(options)


def verify_loop(model, end_a: EndFrames, end_b: EndFrames, check: LoopCheck, options: VerifyOptions) -> LoopCheck:
    """Run ``model`` on the frames of both ends and fill ``check`` with what it implies (then judged)."""
    images = torch.from_numpy(np.concatenate([end_a.images, end_b.images])).permute(0, 3, 1, 2)[None]
    prediction, _ = model.forward_chunk(images)
    points = prediction.points[0].float().cpu().numpy()
    conf = torch.sigmoid(prediction.conf[0, ..., 0].float()).cpu().numpy()
    depth = prediction.local_points[0, ..., 2].float().cpu().numpy()
    n_a = len(end_a.indices)
    step = options.pixel_step
    try:
        fit_a, inliers_a, residual_a = _fit_end(points[:n_a], conf[:n_a], end_a, step)
        fit_b, inliers_b, residual_b = _fit_end(points[n_a:], conf[n_a:], end_b, step)
    except ValueError:  # too few confident points, or degenerate ones
        return check.judge(options)
    drift = fit_a.compose(fit_b.inverse())
    centre_b = end_b.centres[len(end_b.centres) // 2]
    check.drift = drift
    check.inliers = min(inliers_a, inliers_b)
    check.residual = max(residual_a, residual_b)
    check.overlap = _overlap(points[:n_a, ::step, ::step], conf[:n_a, ::step, ::step],
                             points[n_a:, ::step, ::step], conf[n_a:, ::step, ::step], depth[n_a:, ::step, ::step])
    check.rotation_deg = drift.angle_deg
    check.log_scale = float(np.log(drift.scale))
    check.drift_m = float(np.linalg.norm(drift.apply(centre_b) - centre_b))
    return check.judge(options)


def _fit_end(points: np.ndarray, conf: np.ndarray, end: EndFrames, step: int) -> tuple[Sim3, float, float]:
    """The Sim(3) from the window's frame onto the run's world at one end; its inlier share and relative
    residual. Points enter weighted by both confidences; only points confident in both count."""
    src = points[:, ::step, ::step].reshape(-1, 3).astype(np.float64)
    dst = end.points[:, ::step, ::step].reshape(-1, 3).astype(np.float64)
    weight = (conf[:, ::step, ::step] * end.conf[:, ::step, ::step]).reshape(-1)
    depth = end.depth[:, ::step, ::step].reshape(-1)
    usable = np.isfinite(src).all(1) & np.isfinite(dst).all(1) & (weight > 0) & (depth > 0)
    if usable.any():  # the weakest points say little and slow the fit down
        usable &= weight >= 0.5 * np.median(weight[usable])
    fit, robust = robust_fit_sim3(src[usable], dst[usable], weight[usable])
    residual = np.linalg.norm(fit.apply(src[usable]) - dst[usable], axis=1)
    inliers = robust > 0.5
    relative = float(np.median(residual[inliers]) / np.median(depth[usable])) if inliers.any() else float("inf")
    return fit, float(inliers.mean()), relative


def _overlap(points_a: np.ndarray, conf_a: np.ndarray, points_b: np.ndarray, conf_b: np.ndarray,
             depth_b: np.ndarray, samples: int = 4000) -> float:
    """Share of end b's confident points (window frame) with an end-a point within 5 % of their depth."""
    from scipy.spatial import cKDTree

    def confident(points, conf):
        flat, c = points.reshape(-1, 3), conf.reshape(-1)
        keep = np.isfinite(flat).all(1) & (c >= np.median(c))
        return keep, flat

    keep_a, flat_a = confident(points_a, conf_a)
    keep_b, flat_b = confident(points_b, conf_b)
    if keep_a.sum() < 3 or keep_b.sum() < 3:
        return 0.0
    rng = np.random.default_rng(0)  # fixed: the same candidate gives the same number on a resume
    pick_b = np.flatnonzero(keep_b)
    pick_b = rng.choice(pick_b, min(samples, len(pick_b)), replace=False)
    distance, _ = cKDTree(flat_a[keep_a]).query(flat_b[pick_b])
    return float(np.mean(distance <= 0.05 * np.abs(depth_b.reshape(-1)[pick_b])))
