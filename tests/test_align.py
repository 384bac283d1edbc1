"""SE(3) / Sim(3) chaining recovers a known transform between two chunks."""

import pytest
import torch

from loger3d.geometry import local_to_world, rigid_inverse
from loger3d.model.align import ChunkAligner, median_depth_ratio
from loger3d.model.outputs import ChunkPrediction


def random_rotation(g):
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    return q if torch.det(q) > 0 else -q


def chunk(poses, local):
    conf = torch.zeros(*local.shape[:-1], 1, dtype=local.dtype)
    return ChunkPrediction(local, conf, poses, local_to_world(poses, local))


def make_pair(scale, overlap=2, n=4, seed=0):
    """Chunk A in the world frame; chunk B = A's last `overlap` frames and more, seen in a frame
    moved by (R, t) and scaled by 1/scale."""
    g = torch.Generator().manual_seed(seed)
    world_poses = torch.eye(4, dtype=torch.float64).repeat(1, n + n - overlap, 1, 1)
    for i in range(world_poses.shape[1]):
        world_poses[0, i, :3, :3] = random_rotation(g)
        world_poses[0, i, :3, 3] = torch.randn(3, generator=g, dtype=torch.float64)
    local = torch.rand(1, world_poses.shape[1], 5, 6, 3, generator=g, dtype=torch.float64) + 0.5
    R, t = random_rotation(g), torch.randn(3, generator=g, dtype=torch.float64)
    # Raw poses of B: Q = T^-1 ∘ P with T = (scale, R, t).
    raw = world_poses.clone()
    raw[..., :3, :3] = R.T @ world_poses[..., :3, :3]
    raw[..., :3, 3] = ((world_poses[..., :3, 3] - t) @ R) / scale
    a = chunk(world_poses[:, :n], local[:, :n])
    b = chunk(raw[:, n - overlap:], local[:, n - overlap:] / scale)
    return a, b, (R, t), world_poses[:, n - overlap:], local[:, n - overlap:]


@pytest.mark.parametrize("mode,scale", [("se3", 1.0), ("sim3", 2.5), ("sim3", 0.4)])
def test_chaining_recovers_known_transform(mode, scale):
    a, b, (R, t), b_world_poses, b_world_local = make_pair(scale)
    aligner = ChunkAligner(mode, overlap=2)
    a_aligned, _ = aligner(0, a)
    torch.testing.assert_close(a_aligned.camera_poses, a.camera_poses)  # the first chunk keeps its frame
    b_aligned, T = aligner(1, b)
    torch.testing.assert_close(T.rotation[0], R)
    torch.testing.assert_close(T.translation[0], t)
    torch.testing.assert_close(T.scale[0], torch.tensor(scale, dtype=torch.float64))
    torch.testing.assert_close(b_aligned.camera_poses, b_world_poses)
    torch.testing.assert_close(b_aligned.local_points, b_world_local)
    torch.testing.assert_close(b_aligned.points, local_to_world(b_world_poses, b_world_local))


def test_se3_does_not_rescale():
    a, b, *_ = make_pair(scale=3.0)
    aligner = ChunkAligner("se3", overlap=2)
    aligner(0, a)
    b_aligned, T = aligner(1, b)
    assert T.scale.item() == 1.0
    torch.testing.assert_close(b_aligned.local_points, b.local_points)
    # Frame 0 of B still lands exactly on its aligned pose in A.
    torch.testing.assert_close(b_aligned.camera_poses[:, 0], a.camera_poses[:, 2])


def test_reset_blocks_reuse_one_transform():
    a, b, *_ = make_pair(scale=1.0)
    aligner = ChunkAligner("none", reset_every=2, overlap=2)
    aligner(0, a)
    _, t1 = aligner(1, b)  # inside the first block: identity
    assert torch.equal(t1.rotation[0], torch.eye(3, dtype=torch.float64))
    _, t2 = aligner(2, b)  # a reset boundary: estimated
    _, t3 = aligner(3, b)  # reused
    assert not torch.allclose(t2.rotation, t1.rotation)
    assert t3 is t2


def test_median_depth_ratio_ignores_invalid_pixels():
    prev = torch.tensor([[[2.0, 4.0, float("nan"), 6.0]]])
    curr = torch.tensor([[[1.0, 1.0, 1.0, 0.0]]])
    assert median_depth_ratio(prev, curr).item() == 2.0  # ratios {2, 4}: the lower median
    assert median_depth_ratio(torch.full((1, 2, 2), 1e9), torch.ones(1, 2, 2)).item() == 1e3


def test_rigid_inverse():
    g = torch.Generator().manual_seed(3)
    T = torch.eye(4, dtype=torch.float64)
    T[:3, :3], T[:3, 3] = random_rotation(g), torch.randn(3, generator=g, dtype=torch.float64)
    torch.testing.assert_close(rigid_inverse(T) @ T, torch.eye(4, dtype=torch.float64))


def test_state_roundtrip_continues_identically():
    a, b, *_ = make_pair(scale=2.0)
    first = ChunkAligner("sim3", overlap=2)
    first(0, a)
    second = ChunkAligner("sim3", overlap=2)
    second.load_state_dict({k: v.clone() for k, v in first.state_dict().items()})
    assert torch.equal(first(1, b)[0].points, second(1, b)[0].points)


def test_unknown_mode():
    with pytest.raises(ValueError, match="align"):
        ChunkAligner("affine")


def test_median_depth_ratio_equals_the_lower_median_of_the_valid_pixels():
    """The read-back-free median equals torch.median over each batch element's valid ratios, with
    NaN, inf, zero depths, all-invalid elements and overflowing ratios among them."""
    g = torch.Generator().manual_seed(0)
    for case in range(60):
        prev = torch.randn(3, 5, 1 + case % 8, generator=g) * 4
        curr = torch.randn(3, 5, 1 + case % 8, generator=g)
        mask = torch.rand(prev.shape, generator=g)
        prev[mask < 0.2], curr[mask > 0.9], prev[mask > 0.95] = float("nan"), 0.0, float("inf")
        if case % 7 == 0:
            prev[0] = float("nan")  # no valid pixel: ratio 1
        if case % 11 == 0:
            prev[1], curr[1] = 3e38, 1e-6  # ratios that overflow to inf stay valid
        expected = []
        for b in range(3):
            p, c = prev[b].flatten(), curr[b].flatten()
            valid = torch.isfinite(p) & torch.isfinite(c) & (c.abs() > torch.finfo(torch.float32).eps)
            expected.append((p[valid] / c[valid]).median() if valid.any() else torch.tensor(1.0))
        assert torch.equal(median_depth_ratio(prev, curr), torch.stack(expected).clamp(1e-3, 1e3)), case
