"""Per-chunk training losses: zero when perfect, invariant where they should be, robust, differentiable."""

from __future__ import annotations

import math

import pytest
import torch

from loger3d.model.outputs import ChunkPrediction
from loger3d.train.losses import (
    ChunkLoss,
    LossConfig,
    _ordered_pairs,
    camera_pose_loss,
    depth_weights,
    global_point_loss,
    local_point_loss,
    optimal_scale,
    read_stats,
    rotation_angle,
)

B, N, H, W = 2, 4, 6, 8


def random_rotations(n: int) -> torch.Tensor:
    q = torch.nn.functional.normalize(torch.randn(n, 4), dim=-1)
    w, x, y, z = q.unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
        2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
        2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
    ], -1).reshape(n, 3, 3)


def rigid(rot: torch.Tensor, trans: torch.Tensor) -> torch.Tensor:
    out = torch.eye(4).repeat(*rot.shape[:-2], 1, 1)
    out[..., :3, :3], out[..., :3, 3] = rot, trans
    return out


def axis_rotation(angle: float) -> torch.Tensor:
    """Rotation by ``angle`` about a fixed oblique axis."""
    k = torch.nn.functional.normalize(torch.tensor([1.0, 2.0, -1.0]), dim=0)
    kx = torch.tensor([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return torch.eye(3) + math.sin(angle) * kx + (1 - math.cos(angle)) * kx @ kx


def scene(b: int = B, n: int = N):
    """GT local points from depth in [1, 5] and pinhole intrinsics, random c2w poses, ~80% valid pixels."""
    depth = 1 + 4 * torch.rand(b, n, H, W)
    v, u = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij")
    rays = torch.stack([(u - W / 2) / 10, (v - H / 2) / 10, torch.ones(H, W)], -1)
    gt_local = rays * depth[..., None]
    gt_poses = rigid(random_rotations(b * n).reshape(b, n, 3, 3), torch.randn(b, n, 3))
    valid = torch.rand(b, n, H, W) < 0.8
    return gt_local, gt_poses, valid


def as_prediction(gt_local, gt_poses, scale: float = 2.5, frame: torch.Tensor | None = None, logit: float = 30.0):
    """The GT seen in another world frame and at another scale: a perfect prediction."""
    poses = gt_poses.clone()
    poses[..., :3, 3] *= scale
    if frame is not None:
        poses = frame @ poses
    conf = torch.full((*gt_local.shape[:-1], 1), logit)
    return ChunkPrediction(local_points=gt_local * scale, conf=conf, camera_poses=poses, points=gt_local)


def perturbed(pred: ChunkPrediction, point_noise: float = 0.05, angle: float = 0.05, shift: float = 0.05):
    """Relative noise on the points, and per-frame rotation / translation errors on the poses."""
    local = pred.local_points * (1 + point_noise * torch.randn_like(pred.local_points))
    delta = rigid(axis_rotation(angle), torch.tensor([shift, -shift, shift]))
    poses = pred.camera_poses.clone()
    poses[:, 1::2] = poses[:, 1::2] @ delta  # every other frame moved: pairs with one and with both frames moved
    return ChunkPrediction(local_points=local, conf=pred.conf, camera_poses=poses, points=pred.points)


def scaled(pred: ChunkPrediction, c: float) -> ChunkPrediction:
    poses = pred.camera_poses.clone()
    poses[..., :3, 3] *= c
    return ChunkPrediction(local_points=pred.local_points * c, conf=pred.conf, camera_poses=poses, points=pred.points)


def assert_stats_close(a: dict, b: dict, rtol: float = 1e-4) -> None:
    a, b = read_stats(a), read_stats(b)
    assert a.keys() == b.keys()
    for key in a:
        assert a[key] == pytest.approx(b[key], rel=rtol, abs=1e-7), key


# ---------------------------------------------------------------------------------------------------------------
# optimal_scale


@pytest.mark.parametrize("max_points", [4096, None])
@pytest.mark.parametrize("s_true", [0.3, 7.0])
def test_optimal_scale_recovers_known_scale(max_points, s_true):
    gt, _, valid = scene()
    s = optimal_scale(gt / s_true, gt, valid, max_points=max_points)
    assert s.shape == (B,)
    torch.testing.assert_close(s, torch.full((B,), s_true), rtol=1e-6, atol=0)


def test_optimal_scale_ignores_a_few_outliers():
    gt, _, valid = scene()
    pred = gt / 4.0
    outliers = valid & (torch.rand(valid.shape) < 0.1)  # 10% of the points off by a factor of 3 to 5
    pred[outliers] *= 3 + 2 * torch.rand(int(outliers.sum()), 1)
    s = optimal_scale(pred, gt, valid)
    torch.testing.assert_close(s, torch.full((B,), 4.0), rtol=1e-6, atol=0)
    w = depth_weights(gt, valid)[..., None].expand_as(pred).flatten(1)  # least squares: dragged by the outliers
    x, y = pred.flatten(1), gt.flatten(1)
    least_squares = (w * x * y).sum(1) / (w * x * x).sum(1)
    assert ((least_squares - 4.0).abs() > 0.1).all()


def test_optimal_scale_is_the_l1_minimum():
    gt, _, valid = scene()
    pred = gt * (1 + 0.3 * torch.randn_like(gt))
    w = depth_weights(gt, valid)
    s = optimal_scale(pred, gt, valid, w, max_points=None)

    def objective(a: torch.Tensor) -> torch.Tensor:
        return ((a.view(-1, 1, 1, 1, 1) * pred - gt).abs() * w[..., None]).sum(dim=(1, 2, 3, 4))

    grid = s[None, :] * torch.linspace(0.8, 1.2, 401)[:, None]  # [401, B]
    best = torch.stack([objective(g) for g in grid]).min(0).values
    assert (objective(s) <= best * (1 + 1e-6)).all()


# ---------------------------------------------------------------------------------------------------------------
# the whole loss


def test_perfect_prediction_gives_zero():
    gt_local, gt_poses, valid = scene()
    frame = rigid(random_rotations(1)[0], torch.randn(3))
    total, stats = ChunkLoss()(as_prediction(gt_local, gt_poses, 2.5, frame), gt_local, gt_poses, valid)
    stats = read_stats(stats)
    assert total.item() < 1e-5
    for key in ("local_points", "conf", "trans", "rot", "global_points"):
        assert stats[key] < 1e-5, key
    assert stats["scale"] > 0


def test_rot_identity_is_what_a_never_rotating_model_scores():
    """The logged baseline: a prediction without rotation scores rot == rot_identity; the truth scores 0 < it."""
    _, gt_poses, _ = scene()
    still = gt_poses.clone()
    still[..., :3, :3] = torch.eye(3)
    scale = torch.ones(B)
    frozen = read_stats(camera_pose_loss(still, gt_poses, scale)[1])
    perfect = read_stats(camera_pose_loss(gt_poses, gt_poses, scale)[1])
    n = gt_poses.shape[1]
    rel = gt_poses[:, :, None, :3, :3].transpose(-1, -2) @ gt_poses[:, None, :, :3, :3]
    angles = [rotation_angle(torch.eye(3), rel[b, i, j])
              for b in range(B) for i in range(n) for j in range(n) if i != j]
    assert math.isclose(frozen["rot_identity"], float(torch.stack(angles).mean()), rel_tol=1e-5)
    assert math.isclose(frozen["rot"], frozen["rot_identity"], rel_tol=1e-5)
    assert perfect["rot"] < 1e-5 < perfect["rot_identity"] == frozen["rot_identity"]


def test_trans_zero_is_what_a_never_moving_model_scores():
    """The logged baseline: a prediction that stays at the first camera's position scores trans == trans_zero
    (whatever its scale); the truth scores 0 < it."""
    _, gt_poses, _ = scene()
    unmoved = gt_poses.clone()
    unmoved[..., :3, 3] = 0.0
    frozen = read_stats(camera_pose_loss(unmoved, gt_poses, torch.full((B,), 3.0))[1])
    perfect = read_stats(camera_pose_loss(gt_poses, gt_poses, torch.ones(B))[1])
    assert math.isclose(frozen["trans"], frozen["trans_zero"], rel_tol=1e-5)
    assert perfect["trans"] < 1e-7 < perfect["trans_zero"] == frozen["trans_zero"]


@pytest.mark.parametrize("n", [2, 3, 8])
def test_pose_pairs_are_the_off_diagonal_in_row_order(n):
    """The pose loss indexes its frame pairs with integer indices made on the device; they must be the pairs
    (and the order) that the boolean off-diagonal mask gives, which the loss used before."""
    i, j = _ordered_pairs(n, torch.device("cpu"))
    mask_i, mask_j = (~torch.eye(n, dtype=torch.bool)).nonzero().unbind(1)
    assert torch.equal(i, mask_i) and torch.equal(j, mask_j)


def test_single_frame_has_no_pose_term():
    gt_local, gt_poses, valid = scene(b=1, n=1)
    pred = perturbed(as_prediction(gt_local, gt_poses))
    pred.local_points.requires_grad_(True)
    total, stats = ChunkLoss()(pred, gt_local, gt_poses, valid)
    stats = read_stats(stats)
    assert stats["trans"] == 0.0 and stats["rot"] == 0.0
    assert stats["local_points"] > 0 and math.isfinite(total.item())
    total.backward()
    assert torch.isfinite(pred.local_points.grad).all()


@pytest.mark.parametrize("c", [0.1, 3.0, 50.0])
def test_invariant_to_global_scale(c):
    gt_local, gt_poses, valid = scene()
    pred = perturbed(as_prediction(gt_local, gt_poses, 1.7, logit=0.5))
    loss = ChunkLoss()
    _, base = loss(pred, gt_local, gt_poses, valid)
    _, pred_scaled = loss(scaled(pred, c), gt_local, gt_poses, valid)
    gt_poses_c = gt_poses.clone()
    gt_poses_c[..., :3, 3] *= c
    _, gt_scaled = loss(pred, gt_local * c, gt_poses_c, valid)
    base.pop("scale"), pred_scaled.pop("scale"), gt_scaled.pop("scale")
    assert_stats_close(base, pred_scaled)
    assert_stats_close(base, gt_scaled)


@pytest.mark.parametrize("c", [0.1, 3.0, 50.0])
def test_each_term_invariant_to_prediction_scale(c):
    """Unnormalised inputs: s* absorbs the scale, and pose translations follow the points' s*."""
    gt_local, gt_poses, valid = scene()
    pred = perturbed(as_prediction(gt_local, gt_poses, 1.7))

    def terms(p: ChunkPrediction) -> list[float]:
        s = optimal_scale(p.local_points, gt_local, valid)
        return [
            local_point_loss(p.local_points, gt_local, valid)[0].item(),
            camera_pose_loss(p.camera_poses, gt_poses, s)[0].item(),
            global_point_loss(p.local_points, p.camera_poses, gt_local, gt_poses, valid, s)[0].item(),
        ]

    assert terms(scaled(pred, c)) == pytest.approx(terms(pred), rel=1e-4)


def test_invariant_to_world_frame():
    gt_local, gt_poses, valid = scene()
    pred = perturbed(as_prediction(gt_local, gt_poses, 1.7, logit=0.5))
    loss = ChunkLoss()
    _, base = loss(pred, gt_local, gt_poses, valid)
    moved = ChunkPrediction(local_points=pred.local_points, conf=pred.conf,
                            camera_poses=rigid(random_rotations(1)[0], 5 * torch.randn(3)) @ pred.camera_poses,
                            points=pred.points)
    _, other = loss(moved, gt_local, rigid(random_rotations(1)[0], 5 * torch.randn(3)) @ gt_poses, valid)
    assert_stats_close(base, other)


def test_grows_with_perturbation():
    gt_local, gt_poses, valid = scene()
    perfect = as_prediction(gt_local, gt_poses, 1.7)
    loss = ChunkLoss()
    points = [loss(perturbed(perfect, p, 0, 0), gt_local, gt_poses, valid)[1] for p in (0.01, 0.05, 0.2)]
    for key in ("local_points", "global_points"):
        assert 0 < points[0][key] < points[1][key] < points[2][key], key
    poses = [loss(perturbed(perfect, 0, a, a), gt_local, gt_poses, valid)[1] for a in (0.01, 0.05, 0.2)]
    for key in ("trans", "rot", "global_points"):
        assert 0 < poses[0][key] < poses[1][key] < poses[2][key], key


def test_gradients_finite_and_nonzero_without_svd(monkeypatch):
    def no_svd(*args, **kwargs):
        raise AssertionError("the losses must not need an SVD")

    monkeypatch.setattr(torch.linalg, "svd", no_svd)
    monkeypatch.setattr(torch, "svd", no_svd)
    gt_local, gt_poses, valid = scene()
    pred = perturbed(as_prediction(gt_local, gt_poses, 1.7, logit=0.0))
    for t in (pred.local_points, pred.conf, pred.camera_poses):
        t.requires_grad_(True)
    total, _ = ChunkLoss()(pred, gt_local, gt_poses, valid)
    total.backward()
    for t in (pred.local_points, pred.conf, pred.camera_poses):
        assert torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0


def test_rotation_angle_exact_and_smooth_at_zero():
    r = random_rotations(3)
    torch.testing.assert_close(rotation_angle(r, r), torch.zeros(3), atol=1e-6, rtol=0)
    for angle in (1e-3, 0.3, 3.0):
        torch.testing.assert_close(rotation_angle(r, r @ axis_rotation(angle)), torch.full((3,), angle), rtol=1e-4,
                                   atol=1e-6)
    m = r.clone().requires_grad_(True)
    rotation_angle(m, r).sum().backward()
    assert torch.isfinite(m.grad).all()


def test_confidence_rewarded_where_error_is_small():
    gt_local, gt_poses, valid = scene()
    pred = as_prediction(gt_local, gt_poses, 1.7, logit=0.0)
    bad = torch.rand(valid.shape) < 0.3
    noise = torch.where(bad, 0.3, 0.002)[..., None] * torch.randn_like(gt_local)
    local = pred.local_points * (1 + noise)
    sky = ~valid & (torch.rand(valid.shape) < 0.5)

    def total(conf: torch.Tensor) -> torch.Tensor:
        p = ChunkPrediction(local_points=local, conf=conf, camera_poses=pred.camera_poses, points=pred.points)
        return ChunkLoss()(p, gt_local, gt_poses, valid, sky=sky)[0]

    conf = torch.zeros_like(pred.conf, requires_grad=True)
    total(conf).backward()
    grad = conf.grad[..., 0]
    assert (grad[valid & ~bad] < 0).float().mean() > 0.95  # raising confidence lowers the loss where errors are small
    assert (grad[valid & bad] > 0).float().mean() > 0.9  # and raises it where they are large
    assert (grad[sky] > 0).all() and (grad[~valid & ~sky] == 0).all()  # sky pushed down, other invalid unsupervised
    right = torch.where((valid & ~bad)[..., None], 4.0, -4.0)
    assert total(right) < total(torch.zeros_like(right)) < total(-right)


def test_invalid_pixels_are_ignored():
    gt_local, gt_poses, valid = scene()
    pred = perturbed(as_prediction(gt_local, gt_poses, 1.7, logit=0.5))
    _, clean = ChunkLoss()(pred, gt_local, gt_poses, valid)
    garbage = torch.tensor([float("nan"), 1e6, -1e6])[torch.randint(0, 3, (*valid.shape, 3))]
    local = torch.where(valid[..., None], pred.local_points, garbage).requires_grad_(True)
    conf = torch.where(valid[..., None], pred.conf, garbage[..., :1]).requires_grad_(True)
    dirty_gt = torch.where(valid[..., None], gt_local, garbage.flip(-1))
    poses = pred.camera_poses.clone().requires_grad_(True)
    dirty = ChunkPrediction(local_points=local, conf=conf, camera_poses=poses, points=pred.points)
    total, stats = ChunkLoss()(dirty, dirty_gt, gt_poses, valid)
    assert_stats_close(clean, stats, rtol=1e-6)
    total.backward()
    for t in (local, conf, poses):
        assert torch.isfinite(t.grad).all()
    assert (local.grad[~valid] == 0).all() and (conf.grad[~valid] == 0).all()


def test_config_weights_scale_terms():
    gt_local, gt_poses, valid = scene()
    pred = perturbed(as_prediction(gt_local, gt_poses, 1.7, logit=0.5))
    total, s = ChunkLoss()(pred, gt_local, gt_poses, valid)
    s = read_stats(s)
    cfg = LossConfig()
    expected = (cfg.local_weight * s["local_points"] + cfg.conf_weight * s["conf"]
                + cfg.pose_weight * (cfg.trans_weight * s["trans"] + cfg.rot_weight * s["rot"])
                + cfg.global_weight * s["global_points"])
    assert total.item() == pytest.approx(expected, rel=1e-5)
    no_global, _ = ChunkLoss(LossConfig(global_weight=0.0))(pred, gt_local, gt_poses, valid)
    assert no_global.item() == pytest.approx(expected - s["global_points"], rel=1e-5)


def _masked_reference(pred_local, gt_local, valid, conf_logits, scale, cfg, sky):
    """The point and confidence terms written with boolean indexing, as Pi3 does (the loss itself uses dense
    masked sums): an independent check of the same numbers."""
    import torch.nn.functional as F

    from loger3d.train.losses import depth_weights

    weights = depth_weights(gt_local, valid, cfg.depth_floor)
    b = valid.nonzero()[:, 0]
    err = (scale[b, None] * pred_local[valid] - gt_local[valid]).abs() * weights[valid][:, None]
    points = err.sum() / (3 * valid.sum())
    target = (err.mean(-1) < cfg.conf_error_threshold).float()
    logits = conf_logits[..., 0]
    conf = F.binary_cross_entropy_with_logits(logits[valid], target)
    sky = sky & ~valid
    conf = conf + F.binary_cross_entropy_with_logits(logits[sky], torch.zeros_like(logits[sky]))
    return points, conf


def _reference_scale(pred, gt, valid, weights, max_points):
    """optimal_scale one batch element at a time, with boolean indexing (the loss batches it)."""
    scales = []
    for b in range(pred.shape[0]):
        idx = valid[b].flatten().nonzero().squeeze(1)
        if max_points is not None:
            idx = idx[torch.arange(max_points) * idx.numel() // max_points]
        x, y = pred[b].reshape(-1, 3)[idx].flatten(), gt[b].reshape(-1, 3)[idx].flatten()
        w = weights[b].flatten()[idx].repeat_interleave(3)
        ratio = torch.where(x != 0, y / x, torch.zeros_like(x))
        candidates = ratio.abs().unique()
        costs = torch.stack([(w * (a * x - y).abs()).sum() for a in candidates])
        scales.append(candidates[costs.argmin()])
    return torch.stack(scales)


@pytest.mark.parametrize("max_points", [None, 64])
def test_dense_masked_terms_equal_the_boolean_indexed_ones(max_points):
    from loger3d.train.losses import LossConfig, confidence_loss, depth_weights, local_point_loss, optimal_scale

    g = torch.Generator().manual_seed(5)
    B, N, H, W = 3, 2, 6, 7
    gt = torch.rand(B, N, H, W, 3, generator=g) + torch.tensor([0.0, 0.0, 1.0])
    pred = 2.0 * gt + 0.05 * torch.randn(B, N, H, W, 3, generator=g)
    valid = torch.rand(B, N, H, W, generator=g) > 0.4
    sky = torch.rand(B, N, H, W, generator=g) > 0.5
    logits = torch.randn(B, N, H, W, 1, generator=g)
    cfg = LossConfig(conf_error_threshold=0.05, align_points=max_points)
    weights = depth_weights(gt, valid, cfg.depth_floor)
    scale = optimal_scale(pred, gt, valid, weights, max_points)
    torch.testing.assert_close(scale, _reference_scale(pred, gt, valid, weights, max_points), rtol=1e-6, atol=0)
    points, conf = _masked_reference(pred, gt, valid, logits, scale, cfg, sky)
    total, stats = local_point_loss(pred, gt, valid, logits, cfg, scale=scale, sky=sky)
    stats = read_stats(stats)
    assert stats["local_points"] == pytest.approx(points.item(), rel=1e-6)
    assert stats["conf"] == pytest.approx(conf.item(), rel=1e-6)
    empty = torch.zeros_like(valid)
    assert optimal_scale(pred, gt, empty).tolist() == [1.0] * B  # nothing valid: scale 1, as before
    dense_error = torch.rand(B, N, H, W, generator=g)
    assert torch.isfinite(confidence_loss(logits, dense_error, empty, cfg))
