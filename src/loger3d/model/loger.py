"""LoGeR: Pi3's encoder, decoder and heads, with a hybrid chunk memory (TTT + SWA).

``forward_chunk`` runs one chunk against an explicit ``ChunkMemory`` and returns the new one;
``forward`` is the official whole-sequence interface (windows, merging, alignment) built on it.
The module tree and parameter names equal the official release's, so its checkpoints (and
Pi3's, with the ``pi3`` preset) load strictly.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend

from ..config import ModelConfig, get_config
from ..geometry import local_to_world
from .blocks import Attention, Block
from .compiled import compiled, mark_dynamic
from .dinov2 import DinoV2Encoder
from .heads import CameraHead, HeadDecoder, PixelHead
from .memory import ChunkMemory, KVCache
from .outputs import ChunkPrediction, Prediction
from .rope import RoPE2D, RotaryTable, token_positions
from .ttt import FastWeightMemory

__all__ = ["LoGeR", "gated_residual"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
_FP32_MODULES = ("point_head", "conf_head", "camera_head")  # the official release runs them in fp32
IMAGENET_STD = (0.229, 0.224, 0.225)


def gated_residual(proj: nn.Linear, gate_input: torch.Tensor, out: torch.Tensor,
                   x_in: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A memory layer's contribution ``x_in + out·silu(proj(gate_input))``, and the gate's mean |value|.

    Tokens ``[B, N, T, C]``; the gate is one scalar per token (zero-initialised: memory off).
    """
    gate = F.silu(proj(gate_input))
    return out * gate + x_in, gate.detach().abs().mean()


def _compiled_gated_residual(proj: nn.Linear, gate_input: torch.Tensor, out: torch.Tensor,
                              x_in: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    for t in (gate_input, out, x_in):
        mark_dynamic(t, 1, 2)  # frames per chunk, tokens per frame
    return compiled(gated_residual)(proj, gate_input, out, x_in)


class LoGeR(nn.Module):
    def __init__(self, config: ModelConfig | str = "loger") -> None:
        super().__init__()
        cfg = self.config = get_config(config)
        C = cfg.dec_dim
        self.register_token = nn.Parameter(torch.randn(1, 1, cfg.num_register_tokens, C) * 1e-6)
        if cfg.use_pe_tokens:
            for i in range(3):
                self.register_parameter(f"pe_token_{i}", nn.Parameter(torch.randn(1, 1, 1, C) * 1e-6))
        self.register_buffer("image_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("image_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

        self.rope = RoPE2D(cfg.rope_freq)
        self.encoder = DinoV2Encoder(cfg.enc_dim, cfg.enc_depth, cfg.enc_heads, cfg.enc_mlp_ratio, cfg.patch_size,
                                     cfg.enc_registers, cfg.enc_pos_grid)
        self.decoder = nn.ModuleList(
            Block(C, cfg.dec_heads, cfg.dec_mlp_ratio, qk_norm=True, layer_scale=0.01, rope=self.rope)
            for _ in range(cfg.dec_depth))

        def head_decoder(out_dim: int) -> HeadDecoder:
            return HeadDecoder(2 * C, cfg.head_dim, out_dim, cfg.head_depth, cfg.head_heads, cfg.head_mlp_ratio,
                               self.rope)

        self.point_decoder = head_decoder(cfg.head_dim)
        self.point_head = PixelHead(cfg.head_dim, 3, cfg.patch_size)
        self.conf_decoder = head_decoder(cfg.head_dim)
        self.conf_head = PixelHead(cfg.head_dim, 1, cfg.patch_size)
        self.camera_decoder = head_decoder(cfg.camera_dim)
        self.camera_head = CameraHead(cfg.camera_dim, legacy_svd=cfg.legacy_svd)

        self.ttt_layers = nn.ModuleList(
            FastWeightMemory(C, cfg.ttt_head_dim, cfg.ttt_inter_multi, cfg.ttt_pre_norm, cfg.ttt_base_lr,
                             cfg.ttt_ns_steps)
            for _ in cfg.ttt_insert_after)
        self.ttt_gate_projs = nn.ModuleList(nn.Linear(C, 1) for _ in cfg.ttt_insert_after)
        self.swa_layers = nn.ModuleList(
            Block(C, cfg.dec_heads, cfg.ttt_inter_multi, qk_norm=True, layer_scale=0.01, rope=self.rope)
            for _ in cfg.swa_insert_after)
        self.swa_gate_projs = nn.ModuleList(nn.Linear(C, 1) for _ in cfg.swa_insert_after)
        for gate in (*self.ttt_gate_projs, *self.swa_gate_projs):
            nn.init.zeros_(gate.weight)
            nn.init.zeros_(gate.bias)  # the memory starts switched off, as in the official training

        self.compiled = False  # the memory layers' gating through torch.compile (set_fast_path)
        self._ttt_slot = {layer: j for j, layer in enumerate(cfg.ttt_insert_after)}
        self._swa_slot = {layer: j for j, layer in enumerate(cfg.swa_insert_after)}

    # ------------------------------------------------------------------ precision
    @property
    def compute_dtype(self) -> torch.dtype:
        """The dtype the transformer weights are held in; below fp32 the forward runs under autocast."""
        return self.decoder[0].attn.qkv.weight.dtype

    def set_precision(self, dtype: torch.dtype) -> LoGeR:
        """Hold the transformers' matrix weights in ``dtype`` (bf16 or fp16; fp32 restores).

        What the official release computes in fp32 keeps fp32 weights: the point, confidence and
        camera heads and the TTT learning-rate projections; norms, tokens, layer scales and the
        fast weights' initial values stay fp32 as well. With bf16 this reproduces the official
        bf16-autocast run while storing half the bytes.
        """
        for name, module in self.named_modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)) and not name.startswith(_FP32_MODULES) \
                    and not name.endswith("lr_fc"):
                module.to(dtype)
        return self

    @property
    def newton_schulz_dtype(self) -> torch.dtype:
        """The dtype of the TTT update's Newton–Schulz orthogonalisation (bf16 unless changed)."""
        return self.ttt_layers[0].ns_dtype if len(self.ttt_layers) else torch.bfloat16

    def set_newton_schulz_dtype(self, dtype: torch.dtype) -> LoGeR:
        """Run the TTT update's Newton–Schulz orthogonalisation in ``dtype``.

        ``torch.bfloat16`` (the default) is the official release's numerics. bf16 products differ in
        their last bits between CPUs and GPUs and the iteration amplifies that, so outputs are
        reproducible only on matching hardware; ``torch.float32`` gives results that hold on every
        machine (the hardware-independent golden cases). Memory saved under one dtype resumes
        under another, but the outputs then follow the new dtype.
        """
        if dtype not in (torch.bfloat16, torch.float16, torch.float32, torch.float64):
            raise ValueError(f"Newton–Schulz dtype must be a floating torch dtype such as torch.float32, not {dtype!r}")
        for layer in self.ttt_layers:
            layer.ns_dtype = dtype
        return self

    def _autocast(self, device: torch.device):
        dtype = self.compute_dtype
        if dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=dtype)

    def set_activation_checkpointing(self, enabled: bool = True) -> LoGeR:
        """Recompute every transformer block's and TTT layer's activations in the backward pass (training).

        Trades about one extra forward for activation memory that no longer grows with the depth.
        """
        for module in self.modules():
            if hasattr(module, "activation_checkpointing"):
                module.activation_checkpointing = enabled
        return self

    def set_fast_path(self, enabled: bool = True, *, attention: str = "cudnn", compile: bool = True) -> LoGeR:
        """Faster inference kernels, within a measured tolerance of the eager path (docs/performance.md).

        ``attention="cudnn"`` puts cuDNN's fused attention first (flash, memory-efficient and
        math follow where it does not apply); ``"flash"`` keeps the official kernel. ``compile``
        runs every transformer block and TTT layer through ``torch.compile``, which fuses norms,
        casts, RoPE and the elementwise tails (the first chunk of each shape pays the compilation).
        The TTT layers' unused ``to_qkv_stack`` weights move to host memory (they stay in the
        state dict). ``enabled=False`` restores the eager path with the official kernels: the oracle.
        """
        if attention not in ("cudnn", "flash"):
            raise ValueError(f"attention must be 'cudnn' or 'flash', not {attention!r}")
        backends = None
        if enabled and attention == "cudnn":
            backends = (SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION,
                        SDPBackend.MATH)
        for module in self.modules():
            if isinstance(module, Attention):
                module.backends = backends
            if hasattr(module, "compiled"):
                module.compiled = enabled and compile
        if enabled:
            # The official checkpoints carry a projection the forward pass never reads: keep it off the GPU.
            for layer in self.ttt_layers:
                layer.to_qkv_stack.to("cpu")
        return self

    # ------------------------------------------------------------------ memory
    def new_memory(self) -> ChunkMemory:
        """An empty memory: fast weights at their parameters, no previous chunk."""
        return ChunkMemory.empty(len(self.ttt_layers), len(self.swa_layers))

    # ------------------------------------------------------------------ chunk
    def _special_tokens(self, B: int, roles: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """``[B*N, S, C]``: the registers, then each frame's pe token (chosen by ``roles``)."""
        N = roles.shape[0]
        C = self.config.dec_dim
        tokens = [self.register_token.repeat(B, N, 1, 1).reshape(B * N, -1, C)]
        if self.config.use_pe_tokens:
            table = torch.cat([self.pe_token_0, self.pe_token_1, self.pe_token_2], dim=2)[0, 0]  # [3, C]
            tokens.append(table[roles].to(dtype).repeat(B, 1).reshape(B * N, 1, C))
        return torch.cat(tokens, dim=1)

    def _rotary_tables(self, h: int, w: int, device: torch.device) -> dict[int, RotaryTable]:
        """One frame's RoPE rotations for each head width in the model, gathered once per chunk."""
        cfg = self.config
        pos = token_positions(h, w, cfg.num_special_tokens, device)
        dtype = self.compute_dtype
        widths = {cfg.dec_dim // cfg.dec_heads, cfg.head_dim // cfg.head_heads}
        return {d: self.rope.table(pos, d, dtype, max_position=max(h, w)) for d in widths}

    def _decode(self, tokens: torch.Tensor, B: int, N: int, pos: RotaryTable, memory: ChunkMemory):
        """Decoder with the memory layers. ``tokens`` ``[B*N, T, C]`` → ``[B*N, T, 2C]``.

        ``pos``: one frame's rotations; the global blocks see them repeated over the chunk's frames.
        """
        _, T, C = tokens.shape
        pos_global = pos.repeat(N)
        gated = _compiled_gated_residual if self.compiled else gated_residual
        fast_weights = list(memory.fast_weights)
        kv_caches = list(memory.kv_caches)
        ttt_gates, swa_gates, streams = [], [], []
        x = tokens
        depth = len(self.decoder)
        for i, block in enumerate(self.decoder):
            if i % 2 == 0:
                x = block(x.reshape(B * N, T, C), pos)
            else:
                x = block(x.reshape(B, N * T, C), pos_global)
            if i in self._ttt_slot:
                j = self._ttt_slot[i]
                x_in = x.view(B, N, T, C)
                out, fast_weights[j] = self.ttt_layers[j](x_in, fast_weights[j])
                x, gate = gated(self.ttt_gate_projs[j], x_in, out, x_in)
                ttt_gates.append(gate)
            if i in self._swa_slot:
                j = self._swa_slot[i]
                x_in = x.view(B, N, T, C)
                cache = kv_caches[j]
                prefix = (cache.k, cache.v) if cache is not None else None
                out, (k, v) = self.swa_layers[j](x_in.reshape(B, N * T, C), pos_global, prefix=prefix,
                                                 return_kv=True)
                out = out.reshape(B, N, T, C)
                x, gate = gated(self.swa_gate_projs[j], out, out, x_in)
                x = x.reshape(B * N, T, C)
                kv_caches[j] = KVCache(k, v)
                swa_gates.append(gate)
            if i >= depth - 2:
                streams.append(x.reshape(B * N, T, C))
        new_memory = ChunkMemory(fast_weights, kv_caches, memory.chunks_seen + 1)
        ttt_gate = torch.stack(ttt_gates).mean() if ttt_gates else None
        swa_gate = torch.stack(swa_gates).mean() if swa_gates else None
        return torch.cat(streams, dim=-1), new_memory, ttt_gate, swa_gate

    def forward_chunk(
        self,
        images: torch.Tensor,
        memory: ChunkMemory | None = None,
        frame_roles: Sequence[int] | torch.Tensor | None = None,
    ) -> tuple[ChunkPrediction, ChunkMemory]:
        """Run one chunk.

        Args:
            images: ``[B, N, 3, H, W]`` (or ``[N, 3, H, W]``) RGB in [0, 1] (or uint8 in [0, 255]),
                H and W multiples of 14.
            memory: the state after the previous chunk; ``None`` starts a new sequence.
            frame_roles: per frame, which pe token it gets: 0 = also in the previous chunk,
                1 = interior, 2 = also in the next chunk (see ``inference.windows.frame_roles``);
                ``None`` marks every frame interior.
        Returns:
            the chunk's ``ChunkPrediction`` (on the model's device) and the memory after it.
        """
        if images.dim() == 4:
            images = images.unsqueeze(0)
        if images.dim() != 5 or images.shape[2] != 3:
            raise ValueError(f"images must be [B, N, 3, H, W] or [N, 3, H, W], got {tuple(images.shape)}")
        if not (images.is_floating_point() or images.dtype == torch.uint8):
            raise ValueError(f"images must be float RGB in [0, 1] or uint8 in [0, 255], got {images.dtype}")
        cfg = self.config
        B, N, _, H, W = images.shape
        p = cfg.patch_size
        if H % p or W % p:
            raise ValueError(f"image size {H}x{W} is not a multiple of {p}; resize or crop to multiples of {p}")
        device = self.image_mean.device
        if memory is None:
            memory = self.new_memory()
        if frame_roles is None:
            frame_roles = [1] * N
        roles = torch.as_tensor(frame_roles, dtype=torch.long)
        if roles.shape != (N,) or bool(((roles < 0) | (roles > 2)).any()):  # checked on the host: no GPU sync
            raise ValueError(f"frame_roles must hold {N} values in {{0, 1, 2}}")
        # From pinned memory without waiting: a plain copy would make the host wait for the GPU's queue.
        roles = roles.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else roles.to(device)

        if images.dtype == torch.uint8:  # a quarter of the bytes to move; scaled on the device
            images = images.to(device, non_blocking=True).float().div_(255)
        x = (images.to(device) - self.image_mean) / self.image_std
        h, w = H // p, W // p
        with self._autocast(device):
            patches = self.encoder(x.reshape(B * N, 3, H, W))
            specials = self._special_tokens(B, roles, patches.dtype)
            tokens = torch.cat([specials, patches], dim=1)
            S = specials.shape[1]
            rot = self._rotary_tables(h, w, device)
            hidden, memory, ttt_gate, swa_gate = self._decode(tokens, B, N, rot[cfg.dec_dim // cfg.dec_heads], memory)
            head_rot = rot[cfg.head_dim // cfg.head_heads]
            point_hidden = self.point_decoder(hidden, head_rot)
            conf_hidden = self.conf_decoder(hidden, head_rot)
            camera_hidden = self.camera_decoder(hidden, head_rot)
        with torch.autocast(device_type=device.type, enabled=False):
            xyz = self.point_head(point_hidden.float()[:, S:], h, w).reshape(B, N, H, W, -1)
            xy, z = xyz.split([2, 1], dim=-1)
            z = torch.exp(z)
            local_points = torch.cat([xy * z, z], dim=-1)
            conf = self.conf_head(conf_hidden.float()[:, S:], h, w).reshape(B, N, H, W, -1)
            poses = self.camera_head(camera_hidden.float()[:, S:], h, w).reshape(B, N, 4, 4)
            points = local_to_world(poses, local_points)
        pred = ChunkPrediction(local_points, conf, poses, points, ttt_gate, swa_gate)
        return pred, memory

    # ------------------------------------------------------------------ sequence
    def forward(
        self,
        images: torch.Tensor,
        window_size: int | None = None,
        overlap_size: int | None = None,
        align: str | None = None,
        reset_every: int = 0,
    ) -> Prediction:
        """The whole sequence, cut into chunks and merged, as the official ``forward`` does.

        Args:
            images: ``[B, N, 3, H, W]`` or ``[N, 3, H, W]`` in [0, 1]; may stay on the CPU, each
                chunk is moved to the model's device in turn.
            window_size / overlap_size: chunk length and frames shared by consecutive chunks
                (``window_size <= 0``: one chunk). Default: the preset's paper settings.
            align: ``none`` | ``se3`` | ``sim3`` chaining of chunks (default: the preset's).
            reset_every: reset the fast weights before every ``reset_every``-th chunk (0: never).
        Returns:
            a ``Prediction`` on the CPU (on the device, with gradients, in training mode).
        """
        from ..inference.sequence import run_sequence

        cfg = self.config
        return run_sequence(
            self,
            images,
            window_size=cfg.default_window if window_size is None else window_size,
            overlap_size=cfg.default_overlap if overlap_size is None else overlap_size,
            align=cfg.default_align if align is None else align,
            reset_every=reset_every,
        )
