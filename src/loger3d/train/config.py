"""Training configuration: one YAML file, read into dataclasses with every key checked.

Top-level sections: ``model``, ``data``, ``curriculum`` (a list of stages), ``optim``, ``train``, ``loss``.
Unknown keys are errors (a typo must not silently fall back to a default). ``--set section.key=value`` on the
command line overrides single values; values are parsed as YAML (``--set optim.lr=1e-4``).
The example configs in ``loger3d/train/configs`` document every key.
"""

from __future__ import annotations

import os
from dataclasses import MISSING, asdict, dataclass, field, fields
from importlib import resources

import yaml

from ..errors import LogerError
from .curriculum import Stage
from .losses import LossConfig
from .recurrent import RecurrentSettings

__all__ = ["ConfigError", "ModelSection", "DataSection", "OptimSection", "TrainSection", "TrainConfig",
           "load_train_config", "builtin_configs"]


class ConfigError(LogerError, ValueError):
    """A training configuration that cannot be used; the message names the key and the fix."""


@dataclass
class ModelSection:
    """``preset``: a model preset, changed by ``options`` (fields of ``loger3d.config.ModelConfig``, e.g.
    ``{swa_insert_after: []}`` for a TTT-only ablation); ``init``: ``scratch`` (seeded with ``seed``),
    ``pi3:PATH`` (the paper's initialisation from Pi3 weights) or ``weights:PATH`` (LoGeR-family weights; layers
    the options removed are dropped)."""

    preset: str = "tiny"
    init: str = "scratch"
    seed: int = 0
    options: dict = field(default_factory=dict)


@dataclass
class DataSection:
    """Frames of ``height × width`` (multiples of 14); ``sources`` as in docs/training-data.md; ``max_depth``
    and ``depth_percentile`` filter every clip (each source may add its own)."""

    height: int = 168
    width: int = 224
    seed: int = 0
    max_depth: float | None = None
    depth_percentile: float | None = None
    sources: list[dict] = field(default_factory=lambda: [{"kind": "synthetic"}])


@dataclass
class OptimSection:
    """AdamW. ``encoder_lr`` / ``memory_lr``: rates for the DINOv2 encoder (0 freezes it) and for the new memory
    layers (TTT, SWA and their gates); ``None`` means ``lr``. Linear warm-up over ``warmup_steps``, then cosine
    decay to ``min_lr_ratio·lr`` at the last step. Weight decay skips biases, norms, tokens and layer scales."""

    lr: float = 3e-4
    encoder_lr: float | None = None
    memory_lr: float | None = None
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0


@dataclass
class TrainSection:
    """``batch_size`` sequences per optimiser step over all processes, drawn ``micro_batch`` at a time (the rest is
    gradient accumulation); ``precision``: ``bf16`` (autocast, CUDA only), ``fp32`` or ``auto`` (bf16 on CUDA);
    recurrence: ``truncate_every``, ``detach_swa_history``, ``align``, ``loss_scope``; logging and checkpoints every
    so many steps; ``max_minutes`` ends a run (with a checkpoint) after that much wall time, so that long trainings
    proceed in resumable pieces (a stage is not begun with less time left than the longest step so far: its first
    step compiles); ``stop_at`` ends it at that step (the weights of a run's step, reproducibly: the
    schedule stays the whole curriculum's). ``fast_path``: on CUDA, train through the model's fast path (cuDNN
    attention and compiled blocks, ``LoGeR.set_fast_path``): a minute or two of compiling, then fewer, larger
    kernels; ignored on a CPU. ``activation_checkpointing`` recomputes each block and TTT layer in the backward pass
    (through the compiled layers when ``fast_path`` is on); a curriculum stage may set its own. ``cuda_graphs``: on
    one CUDA GPU, record each micro-step's forward and backward once per shape and replay it as one CUDA graph
    (``train/graphed.py``), for stages of many chunks, where launching kernels bounds the step; it keeps a
    micro-step's activations beside an eager pass's (where memory is short: activation checkpointing or a smaller
    micro-batch); ignored on a CPU; a curriculum stage may set its own. ``keep_stage_weights``: also write the
    weights at the end of every stage but the last (``model_step<N>.safetensors``), to compare what each stage
    added (for instance, how far the memory holds a frame as the training horizon grows)."""

    batch_size: int = 8
    micro_batch: int = 1
    precision: str = "auto"
    activation_checkpointing: bool = False
    fast_path: bool = False
    cuda_graphs: bool = False
    truncate_every: int = 0
    detach_swa_history: bool = False
    align: str = "none"
    loss_scope: str = "sequence"
    log_every: int = 10
    checkpoint_every: int = 500
    max_minutes: float | None = None
    stop_at: int | None = None
    keep_stage_weights: bool = False
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ConfigError(f"precision must be auto, bf16 or fp32, got {self.precision!r}")
        if self.batch_size < 1 or self.micro_batch < 1 or self.batch_size % self.micro_batch:
            raise ConfigError(f"batch_size ({self.batch_size}) must be a positive multiple of micro_batch "
                              f"({self.micro_batch})")
        if self.log_every < 1 or self.checkpoint_every < 1:
            raise ConfigError("log_every and checkpoint_every must be >= 1")
        if self.stop_at is not None and self.stop_at < 1:
            raise ConfigError(f"stop_at must be a step >= 1, got {self.stop_at}")
        self.recurrent  # noqa: B018 -- validates align, loss_scope and truncate_every

    @property
    def recurrent(self) -> RecurrentSettings:
        return RecurrentSettings(self.truncate_every, self.detach_swa_history, self.align, self.loss_scope)


@dataclass
class TrainConfig:
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    curriculum: list[Stage] = field(default_factory=lambda: [Stage(steps=1000, frames=48, chunks=4)])
    optim: OptimSection = field(default_factory=OptimSection)
    train: TrainSection = field(default_factory=TrainSection)
    loss: LossConfig = field(default_factory=LossConfig)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["curriculum"] = [{k: v for k, v in asdict(s).items() if v is not None} for s in self.curriculum]
        return out


def _build(cls, values: object, where: str):
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"{where} must be a mapping of keys to values, got {type(values).__name__}")
    names = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ConfigError(f"unknown key {where}.{unknown[0]}; valid keys: {', '.join(sorted(names))}")
    for f in names.values():
        if f.default is MISSING and f.default_factory is MISSING and f.name not in values:
            raise ConfigError(f"{where}.{f.name} is required")
    kwargs = {k: _coerce(v, names[k].type, f"{where}.{k}") for k, v in values.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from None


def _coerce(value: object, annotation: str, where: str) -> object:
    """YAML 1.1 reads ``1e-4`` (no dot) as a string: numbers for float fields are parsed here."""
    if isinstance(value, str) and "float" in annotation:
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{where} must be a number, got {value!r}") from None
    if isinstance(value, list) and annotation.startswith("tuple"):
        return tuple(_coerce(v, "float" if "float" in annotation else "", where) for v in value)
    return value


def _override(raw: dict, assignment: str) -> None:
    key, sep, value = assignment.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set takes section.key=value, got {assignment!r}")
    *path, last = key.strip().split(".")
    node = raw
    for part in path:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {key}: {part} is not a section")
    try:
        node[last] = yaml.safe_load(value)
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {assignment}: the value is not valid YAML ({str(e).splitlines()[0]})") from None


def builtin_configs() -> dict[str, str]:
    """The example configs shipped with the package, by name (file stem) → path."""
    folder = resources.files("loger3d.train") / "configs"
    return {p.name[:-5]: str(p) for p in folder.iterdir() if p.name.endswith(".yaml")}


def load_train_config(path: str | os.PathLike, overrides: list[str] = ()) -> TrainConfig:
    """Read a YAML config (a path, or the name of a shipped example) and apply ``--set`` overrides."""
    path = os.fspath(path)
    if not os.path.exists(path):
        shipped = builtin_configs()
        if path not in shipped:
            raise ConfigError(f"no config file {path!r}; give a YAML path or one of the shipped examples: "
                              f"{', '.join(sorted(shipped))}")
        path = shipped[path]
    try:
        with open(path, encoding="utf-8") as f:
            raw = yaml.safe_load(f) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:  # not YAML, or not text at all
        raise ConfigError(f"{path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping with sections model, data, curriculum, optim, train, loss")
    for assignment in overrides:
        _override(raw, assignment)
    return config_from_dict(raw, where=os.path.basename(path))


def config_from_dict(raw: dict, where: str = "config") -> TrainConfig:
    sections = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(raw) - sections)
    if unknown:
        raise ConfigError(f"{where}: unknown section {unknown[0]!r}; valid sections: {', '.join(sorted(sections))}")
    stages = raw.get("curriculum") or [{"steps": 1000, "frames": 48, "chunks": 4}]
    if not isinstance(stages, list):
        raise ConfigError(f"{where}: curriculum must be a list of stages")
    return TrainConfig(
        model=_build(ModelSection, raw.get("model"), "model"),
        data=_build(DataSection, raw.get("data"), "data"),
        curriculum=[_build(Stage, s, f"curriculum[{i}]") for i, s in enumerate(stages)],
        optim=_build(OptimSection, raw.get("optim"), "optim"),
        train=_build(TrainSection, raw.get("train"), "train"),
        loss=_build(LossConfig, raw.get("loss"), "loss"),
    )
