"""LoGeR: Pi3's encoder, decoder and heads, with a hybrid chunk memory (TTT + SWA).

``forward_chunk`` runs one chunk against an explicit ``ChunkMemory`` and returns the new one;
``forward`` is the official whole-sequence interface (windows, merging, alignment) built on it.
The module tree and parameter names equal the official release's, so its checkpoints (and
Pi3's, with the ``pi3`` preset) load strictly.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Sequence
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend

from ..config import ModelConfig, get_config
from ..errors import InputError
from ..geometry import local_to_world
from .activations import ChunkActivations
from .blocks import Attention, Block
from .compiled import compiled, mark_dynamic
from .dinov2 import DinoV2Encoder
from .heads import CameraHead, HeadDecoder, PixelHead
from .memory import ChunkMemory, KVCache
from .outputs import ChunkPrediction, Prediction
from .rope import RoPE2D, RotaryTable, token_positions
from .sequence import run_sequence
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
                              x_in: torch.Tensor, cuda_graphs: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    for t in (gate_input, out, x_in):
        mark_dynamic(t, 1, 2)  # frames per chunk, tokens per frame
    return compiled(gated_residual, cuda_graphs=cuda_graphs)(proj, gate_input, out, x_in)


def _roles_on(roles: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A chunk's frame roles ``[N]`` (a host tensor) on ``device``, made there: each run of equal roles is a fill.

    No copy from the host, so the host never waits for the GPU's queue and a CUDA graph can record the chunk
    (a recorded copy would read its host buffer again at every replay, long after it was freed).
    """
    if device.type != "cuda":
        return roles.to(device)
    values = roles.tolist()
    out = torch.empty(len(values), dtype=torch.long, device=device)
    start = 0
    for end in range(1, len(values) + 1):
        if end == len(values) or values[end] != values[start]:
            out[start:end].fill_(values[start])
            start = end
    return out


class _RotaryCache:
    """One chunk's RoPE tables, made once per device on first use (a stage's units share them)."""

    def __init__(self, model: LoGeR, acts: ChunkActivations) -> None:
        self.model = model
        p = model.config.patch_size
        self.h, self.w, self.frames = acts.height // p, acts.width // p, acts.frames
        self._tables: dict[torch.device, tuple] = {}

    def _get(self, device: torch.device) -> tuple:
        if device not in self._tables:
            cfg = self.model.config
            tables = self.model._rotary_tables(self.h, self.w, device)
            pos = tables[cfg.dec_dim // cfg.dec_heads]
            self._tables[device] = (pos, pos.repeat(self.frames), tables[cfg.head_dim // cfg.head_heads])
        return self._tables[device]

    def decoder(self, device: torch.device) -> tuple[RotaryTable, RotaryTable]:
        """One frame's rotations, and the same repeated over the chunk's frames (the global blocks')."""
        return self._get(device)[:2]

    def heads(self, device: torch.device) -> RotaryTable:
        return self._get(device)[2]


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
        self.cuda_graphs = False  # ... replayed as CUDA graphs
        self._ttt_slot = {layer: j for j, layer in enumerate(cfg.ttt_insert_after)}
        self._swa_slot = {layer: j for j, layer in enumerate(cfg.swa_insert_after)}
        # The chunk's units in order: ("encoder", 0), then per decoder block i ("block", i) and the memory
        # layers after it, ("ttt", i) and ("swa", i) where the model has them; last ("heads", 0).
        units = [("encoder", 0)]
        for i in range(cfg.dec_depth):
            units += [("block", i)] + [("ttt", i)] * (i in self._ttt_slot) + [("swa", i)] * (i in self._swa_slot)
        self.units: tuple[tuple[str, int], ...] = (*units, ("heads", 0))

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
            raise InputError(f"Newton–Schulz dtype must be a floating torch dtype such as torch.float32, not {dtype!r}")
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

    def set_fast_path(self, enabled: bool = True, *, attention: str = "cudnn", compile: bool = True,
                      cuda_graphs: bool = False, sync_free: bool = True) -> LoGeR:
        """Faster inference kernels, within a measured tolerance of the eager path (docs/performance.md).

        ``attention="cudnn"`` puts cuDNN's fused attention first (flash, memory-efficient and
        math follow where it does not apply); ``"flash"`` keeps the official kernel. ``compile``
        runs every transformer block and TTT layer through ``torch.compile``, which fuses norms,
        casts, RoPE and the elementwise tails (the first chunk of each shape pays the compilation).
        The TTT layers' unused ``to_qkv_stack`` weights move to host memory (they stay in the
        state dict). ``enabled=False`` restores the eager path with the official kernels: the oracle.
        ``cuda_graphs`` (with ``compile``): the compiled layers replay as CUDA graphs, a launch per layer instead
        of one per kernel; the caller marks each step with ``torch.compiler.cudagraph_mark_step_begin()``. Not for
        training over several chunks: a layer that runs again before its backward makes inductor record new
        graphs instead of replaying (benchmarks/results/train_end_to_end, the CUDA-graphs attempt); training records
        whole micro-steps instead (``train.cuda_graphs``, train/graphed.py).
        ``sync_free`` (with ``compile``): the camera head finds its rotations by ``rotation_from_9d_eigen``, compiled,
        instead of an SVD that waits for the GPU once a chunk; the same rotations within fp32 rounding.
        """
        if attention not in ("cudnn", "flash"):
            raise InputError(f"attention must be 'cudnn' or 'flash', not {attention!r}")
        backends = None
        if enabled and attention == "cudnn":
            backends = (SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION,
                        SDPBackend.MATH)
        for module in self.modules():
            if isinstance(module, Attention):
                module.backends = backends
            if hasattr(module, "compiled"):
                module.compiled = enabled and compile
                module.cuda_graphs = enabled and compile and cuda_graphs
        self.camera_head.sync_free = enabled and compile and sync_free
        if enabled:
            # The official checkpoints carry a projection the forward pass never reads: keep it off the GPU.
            for layer in self.ttt_layers:
                layer.to_qkv_stack.to("cpu")
        return self

    def _gated_residual(self) -> Callable:
        """The memory layers' gating, compiled (and replayed as CUDA graphs) as ``set_fast_path`` chose."""
        if not self.compiled:
            return gated_residual
        return functools.partial(_compiled_gated_residual, cuda_graphs=self.cuda_graphs)

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

    # ------------------------------------------------------------------ units
    @property
    def num_units(self) -> int:
        """How many units a chunk runs through (``units``); a layer pipeline cuts them into contiguous stages."""
        return len(self.units)

    def unit_modules(self, unit: int) -> list[nn.Module]:
        """The submodules (parameters, buffers) unit ``unit`` computes with."""
        kind, i = self.units[unit]
        if kind == "encoder":
            return [self.encoder]
        if kind == "heads":
            return [self.point_decoder, self.point_head, self.conf_decoder, self.conf_head, self.camera_decoder,
                    self.camera_head]
        if kind == "ttt":
            return [self.ttt_layers[self._ttt_slot[i]], self.ttt_gate_projs[self._ttt_slot[i]]]
        if kind == "swa":
            return [self.swa_layers[self._swa_slot[i]], self.swa_gate_projs[self._swa_slot[i]]]
        return [self.decoder[i]]

    def unit_memory_slots(self, unit: int) -> tuple[list[int], list[int]]:
        """The TTT and SWA memory slots that unit ``unit`` reads and writes."""
        kind, i = self.units[unit]
        return ([self._ttt_slot[i]] if kind == "ttt" else []), ([self._swa_slot[i]] if kind == "swa" else [])

    def unit_device(self, unit: int) -> torch.device:
        """Where unit ``unit``'s parameters are."""
        return next(p for m in self.unit_modules(unit) for p in m.parameters()).device

    def place_units(self, devices: Sequence[torch.device | str]) -> LoGeR:
        """Put each unit's parameters on ``devices[unit]`` (a layer pipeline); the model's own tokens
        and input statistics go with the encoder. ``place_units([d] * num_units)`` undoes a split."""
        if len(devices) != self.num_units:
            raise ValueError(f"need one device per unit ({self.num_units}), got {len(devices)}")
        unused_on_host = any(layer.to_qkv_stack[0].weight.device.type == "cpu" for layer in self.ttt_layers)
        for unit, device in enumerate(devices):
            for module in self.unit_modules(unit):
                module.to(device)
        if unused_on_host:  # the fast path keeps the projection the forward pass never reads off the GPUs
            for layer in self.ttt_layers:
                layer.to_qkv_stack.to("cpu")
        first = torch.device(devices[0])
        for name in ("register_token", "pe_token_0", "pe_token_1", "pe_token_2"):
            if hasattr(self, name):
                getattr(self, name).data = getattr(self, name).data.to(first)
        self.image_mean.data = self.image_mean.data.to(first)
        self.image_std.data = self.image_std.data.to(first)
        return self

    def begin_chunk(self, images: torch.Tensor, frame_roles: Sequence[int] | torch.Tensor | None = None
                    ) -> ChunkActivations:
        """A chunk's input checked and ready for unit 0 (nothing moves to a device yet)."""
        if images.dim() == 4:
            images = images.unsqueeze(0)
        if images.dim() != 5 or images.shape[2] != 3:
            raise InputError(f"images must be [B, N, 3, H, W] or [N, 3, H, W], got {tuple(images.shape)}")
        if not (images.is_floating_point() or images.dtype == torch.uint8):
            raise InputError(f"images must be float RGB in [0, 1] or uint8 in [0, 255], got {images.dtype}")
        B, N, _, H, W = images.shape
        p = self.config.patch_size
        if H % p or W % p:
            raise InputError(f"image size {H}x{W} is not a multiple of {p}; resize or crop to multiples of {p}")
        roles = torch.as_tensor([1] * N if frame_roles is None else frame_roles, dtype=torch.long)
        if roles.shape != (N,) or bool(((roles < 0) | (roles > 2)).any()):  # checked on the host: no GPU sync
            raise InputError(f"frame_roles must hold {N} values in {{0, 1, 2}}")
        return ChunkActivations(images, roles, B, N, H, W)

    def run_units(self, acts: ChunkActivations, memory: ChunkMemory, units_range: range
                  ) -> tuple[ChunkActivations, ChunkMemory]:
        """Run units ``units_range`` (consecutive, each on the device of its parameters) on a chunk.

        Returns the chunk after them and the memory with the slots of those units updated (the
        other slots as they were). The activations must be on the first unit's device.
        """
        fast_weights, kv_caches = list(memory.fast_weights), list(memory.kv_caches)
        rotary = _RotaryCache(self, acts)
        units = self.units
        last_block = len(self.decoder) - 2  # the outputs of the last two blocks feed the heads
        for unit in units_range:
            kind, i = units[unit]
            if kind == "encoder":
                acts = self._encode(acts)
            elif kind == "heads":
                acts = self._predict(acts, rotary)
            elif kind == "block":
                acts = self._block(i, acts, rotary)
            elif kind == "ttt":
                acts = self._ttt(i, acts, fast_weights)
            else:
                acts = self._swa(i, acts, kv_caches, rotary)
            ends_block = kind in ("block", "ttt", "swa") and units[unit + 1][0] in ("block", "heads")
            if ends_block and i >= last_block:
                acts = replace(acts, hidden=[*acts.hidden, acts.tokens])
        return acts, ChunkMemory(fast_weights, kv_caches, memory.chunks_seen)

    def _encode(self, acts: ChunkActivations) -> ChunkActivations:
        device = self.image_mean.device
        images, B, N, H, W = acts.images, acts.batch, acts.frames, acts.height, acts.width
        roles = _roles_on(acts.roles, device)
        if images.dtype == torch.uint8:  # a quarter of the bytes to move; scaled on the device
            images = images.to(device, non_blocking=True).float().div_(255)
        # Contiguous whatever the caller's layout: a channels-last input (frames stacked HxWx3 and permuted) picks
        # other convolution kernels, whose results differ in the last bits on some CPUs (AVX2 oneDNN).
        x = ((images.to(device) - self.image_mean) / self.image_std).contiguous()
        with self._autocast(device):
            patches = self.encoder(x.reshape(B * N, 3, H, W))
            specials = self._special_tokens(B, roles, patches.dtype)
            tokens = torch.cat([specials, patches], dim=1)
        descriptors = torch.nn.functional.normalize(patches.float().mean(dim=1), dim=-1).reshape(B, N, -1)
        return replace(acts, images=None, tokens=tokens, descriptors=descriptors)

    def _block(self, i: int, acts: ChunkActivations, rotary: _RotaryCache) -> ChunkActivations:
        """Decoder block ``i``: attention within each frame (even ``i``) or across the chunk (odd)."""
        x = acts.tokens
        B, N = acts.batch, acts.frames
        _, T, C = x.shape
        pos, pos_global = rotary.decoder(x.device)
        with self._autocast(x.device):
            if i % 2 == 0:
                x = self.decoder[i](x.reshape(B * N, T, C), pos)
            else:
                x = self.decoder[i](x.reshape(B, N * T, C), pos_global)
        return replace(acts, tokens=x.reshape(B * N, T, C))

    def _ttt(self, i: int, acts: ChunkActivations, fast_weights: list) -> ChunkActivations:
        """The TTT layer after block ``i``: applies, then updates, its fast weights (``fast_weights[j]``; not
        updated when ``carry_fast_weights`` is off: no chunk would see the update)."""
        x = acts.tokens
        B, N = acts.batch, acts.frames
        _, T, C = x.shape
        j = self._ttt_slot[i]
        gated = self._gated_residual()
        with self._autocast(x.device):
            x_in = x.view(B, N, T, C)
            out, fast_weights[j] = self.ttt_layers[j](x_in, fast_weights[j], update=self.config.carry_fast_weights)
            x, gate = gated(self.ttt_gate_projs[j], x_in, out, x_in)
        return replace(acts, tokens=x.reshape(B * N, T, C), ttt_gates=[*acts.ttt_gates, gate])

    def _swa(self, i: int, acts: ChunkActivations, kv_caches: list, rotary: _RotaryCache) -> ChunkActivations:
        """The SWA layer after block ``i``: attends to the previous chunk's keys and values (``kv_caches[j]``)."""
        x = acts.tokens
        B, N = acts.batch, acts.frames
        _, T, C = x.shape
        j = self._swa_slot[i]
        _, pos_global = rotary.decoder(x.device)
        gated = self._gated_residual()
        with self._autocast(x.device):
            x_in = x.view(B, N, T, C)
            cache = kv_caches[j]
            prefix = (cache.k, cache.v) if cache is not None else None
            out, (k, v) = self.swa_layers[j](x_in.reshape(B, N * T, C), pos_global, prefix=prefix, return_kv=True)
            out = out.reshape(B, N, T, C)
            x, gate = gated(self.swa_gate_projs[j], out, out, x_in)
        if self.config.carry_kv_caches:
            kv_caches[j] = KVCache(k, v)
        return replace(acts, tokens=x.reshape(B * N, T, C), swa_gates=[*acts.swa_gates, gate])

    def _predict(self, acts: ChunkActivations, rotary: _RotaryCache) -> ChunkActivations:
        cfg = self.config
        device = acts.hidden[0].device
        B, N, H, W = acts.batch, acts.frames, acts.height, acts.width
        h, w = H // cfg.patch_size, W // cfg.patch_size
        S = cfg.num_special_tokens
        with self._autocast(device):
            hidden = torch.cat(acts.hidden, dim=-1)
            head_rot = rotary.heads(device)
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
        ttt_gate = torch.stack(acts.ttt_gates).mean() if acts.ttt_gates else None
        swa_gate = torch.stack(acts.swa_gates).mean() if acts.swa_gates else None
        pred = ChunkPrediction(local_points, conf, poses, points, ttt_gate, swa_gate, acts.descriptors)
        return replace(acts, tokens=None, hidden=[], descriptors=None, prediction=pred)

    # ------------------------------------------------------------------ chunk
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
                1 = interior, 2 = also in the next chunk (see ``model.windows.frame_roles``);
                ``None`` marks every frame interior.
        Returns:
            the chunk's ``ChunkPrediction`` (on the model's device) and the memory after it.
        """
        acts = self.begin_chunk(images, frame_roles)
        if memory is None:
            memory = self.new_memory()
        acts, new_memory = self.run_units(acts, memory, range(self.num_units))
        new_memory.chunks_seen = memory.chunks_seen + 1
        return acts.prediction, new_memory

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
        cfg = self.config
        return run_sequence(
            self,
            images,
            window=cfg.default_window if window_size is None else window_size,
            overlap=cfg.default_overlap if overlap_size is None else overlap_size,
            align=cfg.default_align if align is None else align,
            reset_every=reset_every,
        )
