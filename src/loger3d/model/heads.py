"""Prediction heads: three transformer decoders over the decoder's last two token streams,
a per-patch linear head for points and confidence, and the camera-pose head.

Decoders take ``[B*N, T, 2*C]`` (special tokens included) and return ``[B*N, T, D]``; the
final heads see patch tokens only and always run in fp32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import Block
from .compiled import compiled
from .rope import RoPE2D, RotaryTable

__all__ = ["HeadDecoder", "PixelHead", "CameraHead", "rotation_from_9d", "rotation_from_9d_eigen"]


class HeadDecoder(nn.Module):
    """Linear projection, a few per-frame RoPE blocks (no q/k norm, no layer scale), linear out."""

    def __init__(self, in_dim: int, dim: int, out_dim: int, depth: int, heads: int, mlp_ratio: float,
                 rope: RoPE2D) -> None:
        super().__init__()
        self.projects = nn.Linear(in_dim, dim)
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio, norm_eps=1e-6, rope=rope) for _ in range(depth))
        self.linear_out = nn.Linear(dim, out_dim)

    def forward(self, x: torch.Tensor, pos: torch.Tensor | RotaryTable) -> torch.Tensor:
        x = self.projects(x)
        for block in self.blocks:
            x = block(x, pos)
        return self.linear_out(x)


class PixelHead(nn.Module):
    """Each patch token → a ``patch×patch`` tile of ``channels`` values (pixel shuffle).

    In: ``[B*N, h*w, D]``. Out: ``[B*N, H, W, channels]``.
    """

    def __init__(self, dim: int, channels: int, patch_size: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Linear(dim, channels * patch_size ** 2)

    def forward(self, tokens: torch.Tensor, h: int, w: int) -> torch.Tensor:
        BN = tokens.shape[0]
        feat = self.proj(tokens).transpose(-1, -2).view(BN, -1, h, w)
        return F.pixel_shuffle(feat, self.patch_size).permute(0, 2, 3, 1)


def rotation_from_9d(m: torch.Tensor, legacy_svd: bool = False) -> torch.Tensor:
    """Nearest proper rotation to the row-normalised 3×3 matrices ``m`` ``[n, 3, 3]``.

    ``legacy_svd`` uses ``torch.svd`` as Pi3 does; the maths is the same, the bits differ.
    """
    mt = F.normalize(m, p=2, dim=-1).transpose(-1, -2)
    if legacy_svd:
        u, _, v = torch.svd(mt)
        det = torch.det(torch.matmul(v, u.transpose(-2, -1)))
        return torch.matmul(torch.cat([v[:, :, :-1], v[:, :, -1:] * det.view(-1, 1, 1)], dim=2), u.transpose(-2, -1))
    u, _, vh = torch.linalg.svd(mt)
    det = torch.det(u @ vh)
    d = torch.diag_embed(torch.stack([torch.ones_like(det), torch.ones_like(det), det], dim=-1))
    return (u @ d @ vh).transpose(-1, -2)


EIGEN_SQUARINGS = 16
"""Squarings of the shifted quaternion matrix in :func:`rotation_from_9d_eigen`: the other eigenvalues' share
falls as (λ2 / λ1) to the power 2^16, which puts the result within fp32 rounding of the SVD's."""


def rotation_from_9d_eigen(m: torch.Tensor, squarings: int = EIGEN_SQUARINGS) -> torch.Tensor:
    """:func:`rotation_from_9d` without a host wait: the same nearest proper rotation ``[n, 3, 3]``, found as an
    eigenvector by matrix products instead of an SVD (which checks its convergence on the host, a GPU sync per
    chunk).

    The rotation ``R(q)`` nearest to the row-normalised ``A`` maximises ``tr(R(q)ᵀ A) = qᵀ K q`` over unit
    quaternions ``q = (w, x, y, z)``, with ``K`` the symmetric 4×4 matrix below (Horn's formulation), so ``q`` is
    ``K``'s top eigenvector. ``tr(RᵀA) ≤ 3`` for unit rows, so ``K + 3I`` is positive semi-definite and repeated
    squaring (normalised by the trace) converges to ``q qᵀ``; ``q`` is its largest column, rescaled. Within fp32
    rounding of the SVD (benchmarks/results/eigen_rotation), with gradients that stay accurate for
    near-orthogonal inputs, where the SVD's degrade and, at exact repeats, become NaN.
    """
    a = F.normalize(m, p=2, dim=-1)
    (a00, a01, a02), (a10, a11, a12), (a20, a21, a22) = (row.unbind(-1) for row in a.unbind(-2))
    k = torch.stack([
        a00 + a11 + a22 + 3, a21 - a12, a02 - a20, a10 - a01,
        a21 - a12, a00 - a11 - a22 + 3, a01 + a10, a02 + a20,
        a02 - a20, a01 + a10, a11 - a00 - a22 + 3, a12 + a21,
        a10 - a01, a02 + a20, a12 + a21, a22 - a00 - a11 + 3,
    ], dim=-1).view(-1, 4, 4)
    for _ in range(squarings):
        k = k @ k
        k = k / k.diagonal(dim1=-2, dim2=-1).sum(-1)[:, None, None]
    largest = k.diagonal(dim1=-2, dim2=-1).argmax(-1)
    w, x, y, z = F.normalize(torch.gather(k, 2, largest[:, None, None].expand(-1, 4, 1))[..., 0], dim=-1).unbind(-1)
    return torch.stack([
        w * w + x * x - y * y - z * z, 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), w * w - x * x + y * y - z * z, 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), w * w - x * x - y * y + z * z,
    ], dim=-1).view(-1, 3, 3)


class _ResidualMlp(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.res_conv1 = nn.Linear(dim, dim)
        self.res_conv2 = nn.Linear(dim, dim)
        self.res_conv3 = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.res_conv3(F.relu(self.res_conv2(F.relu(self.res_conv1(x))))))
        return x + y


class CameraHead(nn.Module):
    """Patch tokens ``[B*N, h*w, D]`` → camera-to-world poses ``[B*N, 4, 4]`` (OpenCV axes)."""

    def __init__(self, dim: int, legacy_svd: bool = False) -> None:
        super().__init__()
        self.legacy_svd = legacy_svd
        self.sync_free = False  # rotations by rotation_from_9d_eigen (LoGeR.set_fast_path; CUDA-graph training)
        self.compiled = False  # ... compiled (LoGeR.set_fast_path)
        self.res_conv = nn.ModuleList(_ResidualMlp(dim) for _ in range(2))
        self.more_mlps = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim), nn.ReLU())
        self.fc_t = nn.Linear(dim, 3)
        self.fc_rot = nn.Linear(dim, 9)

    def forward(self, tokens: torch.Tensor, h: int, w: int) -> torch.Tensor:
        BN = tokens.shape[0]
        for block in self.res_conv:
            tokens = block(tokens)
        feat = tokens.permute(0, 2, 1).reshape(BN, -1, h, w).contiguous()
        feat = F.adaptive_avg_pool2d(feat, 1).view(BN, -1)
        feat = self.more_mlps(feat)
        t = self.fc_t(feat.float())
        m = self.fc_rot(feat.float()).reshape(-1, 3, 3)
        if self.sync_free:
            rot = (compiled(rotation_from_9d_eigen, dynamic=True) if self.compiled else rotation_from_9d_eigen)(m)
        else:
            rot = rotation_from_9d(m, self.legacy_svd)
        pose = torch.zeros(BN, 4, 4, device=tokens.device)
        pose[:, :3, :3] = rot
        pose[:, :3, 3] = t
        pose[:, 3, 3] = 1.0
        return pose
