"""DINOv2 ViT encoder with register tokens (ViT-L/14-reg4 in the full-size presets).

In: ImageNet-normalised images ``[B, 3, H, W]`` with H, W multiples of the patch size.
Out: final-LayerNorm patch tokens ``[B, h*w, C]`` in raster order (cls and registers dropped).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import Block

__all__ = ["PatchEmbed", "DinoV2Encoder"]


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class DinoV2Encoder(nn.Module):
    def __init__(self, dim: int, depth: int, heads: int, mlp_ratio: float, patch_size: int,
                 num_registers: int, pos_grid: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.num_registers = num_registers
        self.pos_grid = pos_grid
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + pos_grid * pos_grid, dim))
        self.register_tokens = nn.Parameter(torch.zeros(1, num_registers, dim))
        self.patch_embed = PatchEmbed(patch_size, dim)
        self.blocks = nn.ModuleList(
            Block(dim, heads, mlp_ratio, norm_eps=1e-6, layer_scale=1.0) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def position_embedding(self, height: int, width: int, dtype: torch.dtype) -> torch.Tensor:
        """Stored embedding resized to the patch grid: antialiased bicubic, by size, in fp32."""
        h, w = height // self.patch_size, width // self.patch_size
        if h * w == self.pos_grid ** 2 and height == width:
            return self.pos_embed
        table = self.pos_embed.float()
        cls, grid = table[:, :1], table[:, 1:]
        dim = table.shape[-1]
        grid = grid.reshape(1, self.pos_grid, self.pos_grid, dim).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(h, w), mode="bicubic", antialias=True)
        grid = grid.permute(0, 2, 3, 1).reshape(1, h * w, dim)
        return torch.cat([cls, grid], dim=1).to(dtype)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        B, _, H, W = images.shape
        if H % self.patch_size or W % self.patch_size:
            raise ValueError(f"image size {H}x{W} is not a multiple of the patch size {self.patch_size}")
        x = self.patch_embed(images)
        x = torch.cat([self.cls_token.expand(B, -1, -1), x], dim=1)
        x = x + self.position_embedding(H, W, x.dtype)
        x = torch.cat([x[:, :1], self.register_tokens.expand(B, -1, -1), x[:, 1:]], dim=1)
        for block in self.blocks:
            x = block(x)
        x = self.norm(x)
        return x[:, 1 + self.num_registers:]
