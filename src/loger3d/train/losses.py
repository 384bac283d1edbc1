"""Per-chunk training losses of Pi3 and LoGeR.

Follows Pi3's training code (github.com/yyfz/Pi3, branch ``training``, ``pi3/models/loss.py`` and the MoGe
solver in ``pi3/utils/alignment.py``) and LoGeR's description (L = L_local + L_pose + λ·L_global):

* both sides are first brought to unit size: the ground truth by the mean distance of its valid points from the
  chunk's first camera, the prediction by the mean distance of its valid local points from their own camera
  (differentiable, so the loss is blind to the prediction's overall size and its gradient has no component
  along it);
* one scale s* per batch element maps the prediction onto the ground truth (robust weighted median, detached);
* local points: L1 on ``s*·pred - gt`` weighted by 1 / depth; confidence: BCE of the logits against "error below
  a threshold" (Pi3 does not weight the point loss by confidence);
* poses: all ordered frame pairs (i, j), i ≠ j, relative pose ``T_i⁻¹ T_j``; geodesic rotation angle plus
  Huber on ``s*·t_pred - t_gt``;
* global points: local points mapped by the poses into the chunk's first camera, same L1 and weights.

Shapes: points ``[B, N, H, W, 3]`` (camera frame, OpenCV axes), poses ``[B, N, 4, 4]`` camera-to-world,
``valid`` ``[B, N, H, W]`` bool, confidence logits ``[B, N, H, W, 1]``, scales ``[B]``.
Each loss function returns ``(its weighted contribution to the total, {name: unweighted value})``. The values
are detached 0-dim tensors on the loss's device, never floats: reading one would make the host wait for the
GPU in the middle of every step. ``read_stats`` turns them into floats in one transfer, when they are logged.
Nothing here needs an SVD of the prediction.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from loger3d.geometry import local_to_world, rigid_inverse
from loger3d.model.outputs import ChunkPrediction

__all__ = [
    "LossConfig",
    "ChunkLoss",
    "depth_weights",
    "optimal_scale",
    "confidence_loss",
    "local_point_loss",
    "camera_pose_loss",
    "global_point_loss",
    "relative_to_first",
    "rotation_angle",
    "rotation_magnitude",
    "read_stats",
]


@dataclass
class LossConfig:
    """Weights and constants; Pi3's values unless noted.

    total = local_weight·L_points + conf_weight·L_conf + pose_weight·(trans_weight·L_trans + rot_weight·L_rot)
    + global_weight·L_global.
    """

    local_weight: float = 1.0
    conf_weight: float = 0.05
    pose_weight: float = 0.1
    trans_weight: float = 100.0
    rot_weight: float = 1.0
    # λ_global: LoGeR's value is unpublished; Pi3 adds its optional global point loss with weight 1.
    global_weight: float = 1.0
    huber_delta: float = 0.1
    # A valid pixel counts as "confident" when its depth-weighted L1 error (mean over x, y, z) is below this.
    conf_error_threshold: float = 0.02
    # Depths are floored at this fraction of the frame's mean valid depth before taking 1 / depth.
    depth_floor: float = 0.1
    # Points fed to the scale solver per batch element (evenly strided over the valid ones); None: all of them.
    align_points: int | None = 4096
    # Read by the trainer, not by the loss: every balance_every steps (0: never) the translation and rotation
    # weights are re-set so that each term's gradient on the shared layers is balance_target times the local
    # term's (train/balance.py says why).
    balance_every: int = 0
    balance_target: float = 1.0
    balance_rot_target: float | None = None  # the rotation term's own target; None: balance_target

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None and f.name in ("align_points", "balance_rot_target"):
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{f.name} must be a number >= 0, got {value!r}")
        if not isinstance(self.balance_every, int):
            raise ValueError(f"balance_every must be a whole number of steps, got {self.balance_every!r}")
        if self.balance_every and not (self.local_weight > 0 and self.balance_target > 0
                                       and self.balance_rot_target != 0):
            raise ValueError("loss balancing levels the pose terms with the local point term: it needs "
                             "local_weight > 0, balance_target > 0 and balance_rot_target > 0 (or unset)")


def _full(t: torch.Tensor) -> torch.Tensor:
    """Half-precision tensors in float32: the losses need the precision (Pi3 casts too)."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def _zero_invalid(points: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Invalid pixels set to 0, so that garbage (even NaN) there reaches neither the values nor the gradients."""
    return torch.where(valid[..., None], points, torch.zeros((), dtype=points.dtype, device=points.device))


def _zero_outside(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``values`` ``[...]`` with 0 where ``mask`` ``[...]`` is false (values and gradients)."""
    return torch.where(mask, values, torch.zeros((), dtype=values.dtype, device=values.device))


def _masked_sum(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The sum of ``values`` where ``mask`` holds (same shapes)."""
    return _zero_outside(values, mask).sum()


def _masked_mean(values: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """``values.sum() / count``, 0 (still attached to the graph) when nothing is valid."""
    return values.sum() / count.clamp_min(1)


def relative_to_first(poses: torch.Tensor) -> torch.Tensor:
    """Camera-to-world ``[B, N, 4, 4]`` re-expressed in the first camera's frame, so the world frame cancels."""
    return rigid_inverse(poses[:, :1]) @ poses


def depth_weights(gt_local: torch.Tensor, valid: torch.Tensor, floor: float = 0.1) -> torch.Tensor:
    """Per-pixel weights ``[B, N, H, W]`` = 1 / max(z, floor · mean valid z of the frame); 0 where invalid.

    Makes the point error relative to depth, so far pixels do not dominate; the floor keeps near-zero depths
    from blowing up (Pi3 ``PointLoss.forward``).
    """
    z = torch.where(valid, gt_local[..., 2], 0.0)
    frame_mean = z.sum(dim=(-2, -1), keepdim=True) / valid.sum(dim=(-2, -1), keepdim=True).clamp_min(1)
    w = 1.0 / (z.clamp_min(floor * frame_mean) + 1e-6)
    return torch.where(valid, w, 0.0)


def _gt_norm_factor(gt_local: torch.Tensor, gt_poses: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``[B]`` mean distance of the valid GT points from the chunk's first camera (Pi3 ``prepare_gt``)."""
    dist = local_to_world(relative_to_first(gt_poses), _zero_invalid(gt_local, valid)).norm(dim=-1)
    count = valid.sum(dim=(1, 2, 3))
    return torch.where(count > 0, dist.sum(dim=(1, 2, 3)) / count.clamp_min(1), 1.0)


def _pred_norm_factor(pred_local: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``[B]`` mean distance of the valid predicted points from their own camera (Pi3 ``normalize_pred``)."""
    dist = _zero_invalid(pred_local, valid).norm(dim=-1)
    count = valid.sum(dim=(1, 2, 3))
    return torch.where(count > 0, dist.sum(dim=(1, 2, 3)) / count.clamp_min(1), 1.0)


def _rescale(local: torch.Tensor, poses: torch.Tensor, factor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Points and pose translations divided by ``factor`` ``[B]``; rotations untouched."""
    f = factor.view(-1, 1, 1, 1, 1)
    translation = poses[..., :3, 3:] / f[..., 0]
    bottom = poses[..., 3:, :]
    return local / f, torch.cat([torch.cat([poses[..., :3, :3], translation], dim=-1), bottom], dim=-2)


def _weighted_median_ratio(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """argmin_a Σ w·|a·x − y| per row of ``[B, K]`` ``x, y, w``: the median of y/x weighted by w·|x| (MoGe
    ``align``, no trunc); 1 for a row without weight. Returns ``[B]``.

    The objective is convex and piecewise linear with kinks at y/x; its slope at a is
    Σ_{y/x<a} w|x| − Σ_{y/x>a} w|x|, so the minimum is where the sorted cumulative weight first reaches half.
    """
    sign = torch.sign(x)
    x, y = x * sign, y * sign
    ratio, order = (y / x.clamp_min(eps)).sort(dim=1)
    cum = (w * x).gather(1, order).cumsum(1)
    k = torch.searchsorted(cum, cum[:, -1:] / 2).clamp_max(cum.shape[1] - 1)
    median = ratio.gather(1, k).squeeze(1)
    return torch.where(cum[:, -1] > 0, median, torch.ones_like(median))


@torch.no_grad()
def optimal_scale(
    pred: torch.Tensor,
    gt: torch.Tensor,
    valid: torch.Tensor,
    weights: torch.Tensor | None = None,
    max_points: int | None = 4096,
) -> torch.Tensor:
    """s* ``[B]`` minimising Σ_valid w·|s·pred − gt|₁ over all frames of each batch element; detached.

    ``weights`` ``[B, N, H, W]`` default to ``depth_weights(gt, valid)``. Exact optimum (weighted median, Pi3's
    MoGe solver), hence robust to outliers carrying under half the weight. Like Pi3, ``max_points`` evenly
    strided valid points (nearest resampling, repeats when fewer) feed the solver, a negative s is flipped, and
    an element with no valid pixel gets 1.
    """
    pred, gt = _full(pred), _full(gt)
    if weights is None:
        weights = depth_weights(gt, valid)
    B = pred.shape[0]
    flat_valid = valid.reshape(B, -1)
    counts = flat_valid.sum(1)  # [B]
    # The k-th valid pixel of element b, for every element at once (no loop, no host sync): where the running
    # count of valid pixels first reaches k + 1. Evenly strided ranks, as Pi3 picks them.
    running = flat_valid.cumsum(1)  # [B, P]
    if max_points is None:
        ranks = torch.arange(flat_valid.shape[1], device=pred.device).expand(B, -1)
        used = ranks < counts[:, None]
    else:
        ranks = torch.arange(max_points, device=pred.device)[None] * counts[:, None] // max_points
        used = (counts > 0)[:, None].expand(-1, max_points)
    idx = torch.searchsorted(running, (ranks + 1).contiguous()).clamp_max(flat_valid.shape[1] - 1)  # [B, K]
    x = pred.reshape(B, -1, 3).gather(1, idx[..., None].expand(-1, -1, 3)).reshape(B, -1)
    y = gt.reshape(B, -1, 3).gather(1, idx[..., None].expand(-1, -1, 3)).reshape(B, -1)
    w = (weights.reshape(B, -1).gather(1, idx) * used).repeat_interleave(3, dim=1).to(pred.dtype)
    scale = _weighted_median_ratio(x, y, w)
    return torch.where(counts > 0, scale, torch.ones_like(scale)).abs()


def confidence_loss(
    conf_logits: torch.Tensor,
    error: torch.Tensor,
    valid: torch.Tensor,
    cfg: LossConfig,
    sky: torch.Tensor | None = None,
) -> torch.Tensor:
    """Pi3's confidence loss: BCE-with-logits of the valid pixels against ``error < threshold``.

    ``error`` ``[B, N, H, W]``: each pixel's depth-weighted L1 error (only valid pixels are read), detached
    here. ``sky`` ``[B, N, H, W]`` (optional, Pi3 gets it from a SegFormer): invalid pixels pushed to
    confidence 0 by a second BCE mean, added. Means over masks are sums of masked dense terms: no boolean
    indexing, whose backward is a scatter and whose size the host must wait for.
    """
    logits = _full(conf_logits[..., 0])
    target = (error.detach() < cfg.conf_error_threshold).to(logits.dtype)
    loss = _masked_sum(F.binary_cross_entropy_with_logits(_zero_outside(logits, valid), target, reduction="none"),
                       valid) / valid.sum().clamp_min(1)
    if sky is not None:
        sky = sky & ~valid
        bce = F.binary_cross_entropy_with_logits(_zero_outside(logits, sky), torch.zeros_like(logits),
                                                 reduction="none")
        loss = loss + _masked_sum(bce, sky) / sky.sum().clamp_min(1)
    return loss


def local_point_loss(
    pred: torch.Tensor,
    gt: torch.Tensor,
    valid: torch.Tensor,
    conf_logits: torch.Tensor | None = None,
    cfg: LossConfig | None = None,
    scale: torch.Tensor | None = None,
    sky: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Scale-invariant local point-map loss (+ confidence loss when ``conf_logits`` are given).

    L_points = mean over valid pixels and x, y, z of w·|s*·pred − gt| with w = ``depth_weights``; the mean runs
    over all valid pixels of the batch together (Pi3). ``scale`` defaults to ``optimal_scale`` (callers
    that already have s* pass it). Returns ``local_weight·L_points + conf_weight·L_conf``.
    """
    cfg = cfg or LossConfig()
    pred, gt = _full(pred), _full(gt)
    weights = depth_weights(gt, valid, cfg.depth_floor)
    if scale is None:
        scale = optimal_scale(pred, gt, valid, weights, cfg.align_points)
    pred, gt = _zero_invalid(pred, valid), _zero_invalid(gt, valid)
    err = (scale.detach().view(-1, 1, 1, 1, 1) * pred - gt).abs() * weights[..., None]  # [B, N, H, W, 3]; 0 if invalid
    points = _masked_mean(err, 3 * valid.sum())
    total = cfg.local_weight * points
    stats = {"local_points": points.detach(), "scale": scale.mean()}
    if conf_logits is not None:
        conf = confidence_loss(conf_logits, err.mean(-1), valid, cfg, sky)
        total = total + cfg.conf_weight * conf
        stats["conf"] = conf.detach()
    return total, stats


def read_stats(stats: Mapping[str, object]) -> dict[str, object]:
    """``stats`` with every tensor value read as a float, all of them copied to the host in one transfer (one
    wait for the GPU, where reading each would wait once per value); other values are kept as they are."""
    tensors = {k: v for k, v in stats.items() if isinstance(v, torch.Tensor)}
    read = {}
    if tensors:
        device = next(iter(tensors.values())).device
        values = torch.stack([v.detach().float().reshape(()).to(device) for v in tensors.values()])
        read = dict(zip(tensors, values.tolist()))
    return {k: read.get(k, v) for k, v in stats.items()}


def rotation_angle(r_a: torch.Tensor, r_b: torch.Tensor) -> torch.Tensor:
    """Geodesic angle (rad, ``[...]``) between rotations ``[..., 3, 3]``: the angle of ``r_aᵀ r_b``.

    Pi3 takes arccos((tr − 1) / 2) clamped to 1 − 1e-6, which leaves a 1.4e-3 rad floor at zero error and an
    unbounded slope near it; atan2(sin, cos) gives the same angle exactly, with a slope of at most 1.
    """
    return rotation_magnitude(r_a.transpose(-1, -2) @ r_b)


def rotation_magnitude(m: torch.Tensor) -> torch.Tensor:
    """Angle (rad, ``[...]``) by which the rotations ``m`` ``[..., 3, 3]`` turn: their geodesic distance to I."""
    cos = (m.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2
    axis = torch.stack([m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]], -1)
    return torch.atan2(axis.norm(dim=-1) / 2, cos)


def _ordered_pairs(n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices ``(i, j)`` ``[n(n-1)]`` of the ordered pairs i ≠ j, row by row. Computed on the device: a boolean
    mask of the pairs would give the same order, but indexing with it makes the host wait for the GPU."""
    k = torch.arange(n * (n - 1), device=device)
    i, j = k // (n - 1), k % (n - 1)
    return i, j + (j >= i)


def camera_pose_loss(
    pred_poses: torch.Tensor,
    gt_poses: torch.Tensor,
    scale: torch.Tensor,
    cfg: LossConfig | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Affine-invariant relative pose loss over the N·(N−1) ordered pairs (i ≠ j) of each chunk.

    T_ij = T_i⁻¹ T_j for prediction and GT. L_rot = mean geodesic angle between the relative rotations;
    L_trans = mean (over pairs and x, y, z) Huber(s*·t_ij^pred − t_ij^gt, delta). ``scale`` ``[B]`` is the s*
    of the point maps (detached), so translations share the points' scale. N = 1 has no pair: both terms are
    0 (still attached to the graph). Returns ``pose_weight·(trans_weight·L_trans + rot_weight·L_rot)`` and the
    stats ``trans``, ``rot``, ``rot_identity``: the L_rot a model that never rotates would score on the same
    pairs (the mean GT relative angle), and ``trans_zero``: the L_trans of a model that never moves, so a log
    shows whether rotation and translation are being learned at all.
    """
    cfg = cfg or LossConfig()
    pred_poses, gt_poses = _full(pred_poses), _full(gt_poses)
    n = pred_poses.shape[1]
    if n < 2:
        zero = 0.0 * pred_poses.sum()
        return zero, dict.fromkeys(("trans", "rot", "rot_identity", "trans_zero"), zero.detach())
    i, j = _ordered_pairs(n, pred_poses.device)
    rel_pred = (rigid_inverse(pred_poses)[:, :, None] @ pred_poses[:, None])[:, i, j]  # [B, N(N-1), 4, 4]
    rel_gt = (rigid_inverse(gt_poses)[:, :, None] @ gt_poses[:, None])[:, i, j]
    t_pred = scale.detach().view(-1, 1, 1) * rel_pred[..., :3, 3]
    trans = F.huber_loss(t_pred, rel_gt[..., :3, 3], delta=cfg.huber_delta)
    rot = rotation_angle(rel_pred[..., :3, :3], rel_gt[..., :3, :3]).mean()
    total = cfg.pose_weight * (cfg.trans_weight * trans + cfg.rot_weight * rot)
    with torch.no_grad():
        still = rotation_magnitude(rel_gt[..., :3, :3]).mean()
        unmoved = F.huber_loss(torch.zeros_like(t_pred), rel_gt[..., :3, 3], delta=cfg.huber_delta)
    return total, {"trans": trans.detach(), "rot": rot.detach(), "rot_identity": still, "trans_zero": unmoved}


def global_point_loss(
    pred_local: torch.Tensor,
    pred_poses: torch.Tensor,
    gt_local: torch.Tensor,
    gt_poses: torch.Tensor,
    valid: torch.Tensor,
    scale: torch.Tensor,
    cfg: LossConfig | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Global point-map loss: local points mapped by their poses into the chunk's first camera, then as local.

    Both sides go through ``relative_to_first`` (the arbitrary world frame cancels); s* and the 1 / depth
    weights are the local loss's (Pi3 weighs its global points the same way). Returns
    ``global_weight·L_global``.
    """
    cfg = cfg or LossConfig()
    pred_local, pred_poses, gt_local, gt_poses = map(_full, (pred_local, pred_poses, gt_local, gt_poses))
    weights = depth_weights(gt_local, valid, cfg.depth_floor)
    pred_world = local_to_world(relative_to_first(pred_poses), _zero_invalid(pred_local, valid))
    gt_world = local_to_world(relative_to_first(gt_poses), _zero_invalid(gt_local, valid))
    err = (scale.detach().view(-1, 1, 1, 1, 1) * pred_world - gt_world).abs() * weights[..., None]
    loss = _masked_mean(_zero_invalid(err, valid), 3 * valid.sum())
    return cfg.global_weight * loss, {"global_points": loss.detach()}


class ChunkLoss(nn.Module):
    """The whole per-chunk loss: normalisation, one s* per batch element, then the three terms.

    ``forward(pred, gt_local_points, gt_poses, valid, sky=None) -> (total, stats)``; ``stats`` holds the
    unweighted terms, the mean s* and the total (detached 0-dim tensors; ``read_stats`` reads them).
    """

    def __init__(self, cfg: LossConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or LossConfig()

    def forward(
        self,
        pred: ChunkPrediction,
        gt_local_points: torch.Tensor,
        gt_poses: torch.Tensor,
        valid: torch.Tensor,
        sky: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        cfg = self.cfg
        valid = valid.bool()
        pred_local = _zero_invalid(_full(pred.local_points), valid)
        gt_local = _zero_invalid(_full(gt_local_points), valid)
        gt_poses = _full(gt_poses)
        gt_local, gt_poses = _rescale(gt_local, gt_poses, _gt_norm_factor(gt_local, gt_poses, valid))
        pred_local, pred_poses = _rescale(pred_local, _full(pred.camera_poses), _pred_norm_factor(pred_local, valid))
        weights = depth_weights(gt_local, valid, cfg.depth_floor)
        scale = optimal_scale(pred_local, gt_local, valid, weights, cfg.align_points)

        local, stats = local_point_loss(pred_local, gt_local, valid, pred.conf, cfg, scale=scale, sky=sky)
        pose, pose_stats = camera_pose_loss(pred_poses, gt_poses, scale, cfg)
        glob, glob_stats = global_point_loss(pred_local, pred_poses, gt_local, gt_poses, valid, scale, cfg)
        total = local + pose + glob
        stats.update(pose_stats, **glob_stats, total=total.detach())
        return total, stats
