"""The camera head's two ways to the nearest rotation: the SVD (the release's, the oracle) and the eigenvector by
repeated squaring that the fast path uses because it never waits for the GPU."""

import torch

from loger3d.model.compiled import compiled
from loger3d.model.heads import rotation_from_9d, rotation_from_9d_eigen


def random_rotations(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return rotation_from_9d(torch.randn(n, 3, 3, generator=g, dtype=torch.float64))


def inputs(seed: int) -> dict[str, torch.Tensor]:
    """Raw 9-D outputs a head may give: anything (about half with a negative determinant), near a rotation."""
    g = torch.Generator().manual_seed(seed)
    anything = torch.randn(4000, 3, 3, generator=g)
    near = random_rotations(4000, seed).float() + 0.05 * torch.randn(4000, 3, 3, generator=g)
    return {"anything": anything, "near a rotation": near}


def test_eigen_rotation_equals_the_svd_within_fp32_rounding():
    for name, m in inputs(0).items():
        ref = rotation_from_9d(m.double())
        eigen = rotation_from_9d_eigen(m).double()
        svd = rotation_from_9d(m).double()
        err, svd_err = (eigen - ref).abs().amax((1, 2)), (svd - ref).abs().amax((1, 2))
        assert err.median() < 1e-6 and err.max() < 1e-4, (name, err.median().item(), err.max().item())
        assert err.median() <= 2 * svd_err.median(), name  # as close to the fp64 SVD as the fp32 SVD is
        eye = torch.eye(3, dtype=torch.float64)
        assert (eigen @ eigen.transpose(1, 2) - eye).abs().max() < 1e-5, name
        assert (torch.linalg.det(eigen) - 1).abs().max() < 1e-5, name  # proper, also for det(m) < 0


def test_eigen_rotation_gradients_follow_the_fp64_svd():
    weights = torch.randn(4000, 3, 3, generator=torch.Generator().manual_seed(1))

    def grad(fn, m):
        m = m.clone().requires_grad_(True)
        (fn(m) * weights.to(m.dtype)).sum().backward()
        return m.grad.double()

    for name, m in inputs(2).items():
        ref = grad(rotation_from_9d, m.double())
        err = (grad(rotation_from_9d_eigen, m) - ref).norm(dim=(1, 2)) / ref.norm(dim=(1, 2))
        assert err.median() < 1e-5 and err.max() < 1e-2, (name, err.median().item(), err.max().item())


def test_an_exact_rotation_maps_to_itself_with_finite_gradients():
    """Where the SVD's gradient is NaN (three equal singular values), the eigenvector's is finite."""
    r = random_rotations(64, 3).float().requires_grad_(True)
    out = rotation_from_9d_eigen(r)
    assert (out - r).abs().max() < 1e-5
    out.sum().backward()
    assert torch.isfinite(r.grad).all()


def test_the_fast_path_switches_the_camera_head(tiny_model):
    assert not tiny_model.camera_head.sync_free
    try:
        assert tiny_model.set_fast_path().camera_head.sync_free
        assert not tiny_model.set_fast_path(sync_free=False).camera_head.sync_free
        assert not tiny_model.set_fast_path(compile=False).camera_head.sync_free
    finally:
        tiny_model.set_fast_path(False)
    assert not tiny_model.camera_head.sync_free


def test_the_compiled_eigen_rotation_equals_the_eager_one():
    """What the fast path runs: compiled with symbolic sizes, forward and backward."""
    m = inputs(4)["anything"][:50].requires_grad_(True)
    weights = torch.randn(50, 3, 3, generator=torch.Generator().manual_seed(5))
    out = compiled(rotation_from_9d_eigen, dynamic=True)(m)
    (out * weights).sum().backward()
    grad, m.grad = m.grad, None
    ref = rotation_from_9d_eigen(m)
    (ref * weights).sum().backward()
    assert (out - ref).abs().max() < 1e-5
    assert ((grad - m.grad).norm() / m.grad.norm()) < 1e-4
