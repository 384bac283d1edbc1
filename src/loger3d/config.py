"""Model configuration: one frozen dataclass and the named presets.

The presets reproduce the official checkpoints exactly (``loger``, ``loger_star``), Pi3's
backbone without memory (``pi3``), and a ``tiny`` member of the same family for CPU tests
and small training runs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from .errors import InputError

__all__ = ["ModelConfig", "PRESETS", "get_config"]


@dataclass(frozen=True)
class ModelConfig:
    """Every size and switch of the LoGeR family of networks.

    Attributes mirror ARCHITECTURE.md; defaults are the full-size LoGeR network.
    """

    name: str = "loger"

    # Encoder: DINOv2 ViT with registers.
    patch_size: int = 14
    enc_dim: int = 1024
    enc_depth: int = 24
    enc_heads: int = 16
    enc_mlp_ratio: float = 4.0
    enc_registers: int = 4
    enc_pos_grid: int = 37  # side of the stored positional-embedding grid (518 / 14)

    # Decoder: alternating frame / global attention blocks with 2D RoPE.
    dec_dim: int = 1024
    dec_depth: int = 36
    dec_heads: int = 16
    dec_mlp_ratio: float = 4.0
    num_register_tokens: int = 5
    use_pe_tokens: bool = True  # the three window-position tokens of LoGeR (absent in Pi3)
    rope_freq: float = 100.0

    # Heads: three transformer decoders over the concatenated last two decoder streams.
    head_dim: int = 1024
    head_depth: int = 5
    head_heads: int = 16
    head_mlp_ratio: float = 4.0
    camera_dim: int = 512
    legacy_svd: bool = False  # Pi3 orthogonalises rotations with torch.svd, LoGeR with linalg.svd

    # Hybrid memory.
    ttt_insert_after: tuple[int, ...] = tuple(range(0, 36, 2))
    ttt_head_dim: int = 512
    ttt_inter_multi: int = 4
    ttt_pre_norm: bool = True
    ttt_base_lr: float = 0.01
    ttt_ns_steps: int = 5
    swa_insert_after: tuple[int, ...] = (10, 18, 26, 34)
    # Whether a chunk's memory reaches the next chunk. Ablations cut one or both (benchmarks/ablation.py): the
    # layers then work within each chunk only, with the same parameters, so every variant shares one
    # architecture and, on one-chunk clips, one function.
    carry_fast_weights: bool = True  # False: every chunk's TTT layers start from their parameters
    carry_kv_caches: bool = True  # False: the SWA layers attend to their own chunk only

    # Inference defaults of the checkpoint (paper / official demo settings).
    default_window: int = 32
    default_overlap: int = 3
    default_align: str = "none"

    def __post_init__(self) -> None:
        if self.dec_depth % 2:
            raise InputError("dec_depth must be even (frame and global blocks alternate)")
        for i in self.ttt_insert_after + self.swa_insert_after:
            if not 0 <= i < self.dec_depth:
                raise InputError(f"memory layer index {i} outside the decoder (depth {self.dec_depth})")
        if (self.dec_dim // self.dec_heads) % 4:
            raise InputError("decoder head width must be a multiple of 4 for 2D RoPE")
        if self.dec_dim % self.ttt_head_dim:
            raise InputError("dec_dim must be a multiple of ttt_head_dim")
        if self.default_align not in ("none", "se3", "sim3"):
            raise InputError(f"default_align must be none, se3 or sim3, not {self.default_align!r}")

    @property
    def num_special_tokens(self) -> int:
        """Tokens before the patches in every frame: registers, then the pe token if any."""
        return self.num_register_tokens + int(self.use_pe_tokens)

    @property
    def has_memory(self) -> bool:
        return bool(self.ttt_insert_after or self.swa_insert_after)

    def to_dict(self) -> dict:
        return asdict(self)


_LOGER = ModelConfig()

PRESETS: dict[str, ModelConfig] = {
    "loger": _LOGER,
    "loger_star": replace(_LOGER, name="loger_star", ttt_pre_norm=False, default_window=64, default_align="se3"),
    "pi3": replace(
        _LOGER,
        name="pi3",
        use_pe_tokens=False,
        ttt_insert_after=(),
        swa_insert_after=(),
        legacy_svd=True,
        default_window=0,
        default_overlap=0,
    ),
    # 4.9 M parameters: the same family (registers, pe tokens, TTT after every frame block,
    # SWA after two of them) at widths and depths that run in seconds on a CPU.
    "tiny": replace(
        _LOGER,
        name="tiny",
        enc_dim=128,
        enc_depth=4,
        enc_heads=4,
        enc_pos_grid=16,
        dec_dim=128,
        dec_depth=8,
        dec_heads=4,
        head_dim=128,
        head_depth=2,
        head_heads=4,
        camera_dim=64,
        ttt_insert_after=(0, 2, 4, 6),
        ttt_head_dim=64,
        ttt_inter_multi=2,
        swa_insert_after=(2, 6),
        default_window=8,
        default_overlap=2,
    ),
}


def get_config(preset: str | ModelConfig) -> ModelConfig:
    """Return the preset of that name (or the config itself)."""
    if isinstance(preset, ModelConfig):
        return preset
    try:
        return PRESETS[preset]
    except KeyError:
        raise InputError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}") from None
