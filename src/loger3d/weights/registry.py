"""One card per model that loger3d knows by name: where its weights are, which preset they fit, how to run it.

The command line (``reconstruct``, ``demo``, ``eval``, ``info``), ``load_model`` and ``convert`` all read
the cards, so the defaults of a model are stated once. A card travels with the model: ``convert`` writes
it into the safetensors metadata (key ``loger3d_card``, JSON), and :func:`card_for` reads it back from
a file, so a copied or converted model keeps its own defaults. Models without a card (a bare
checkpoint, ``seeded:PRESET``) run with their preset's defaults (:func:`preset_card`).

    card_for("loger_star").window            # 64
    card_for("ckpt/tiny.safetensors")         # the card convert wrote into it, if any
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ..config import PRESETS, ModelConfig

__all__ = ["CARD_METADATA_KEY", "MODEL_CARDS", "ModelCard", "card_for", "card_options", "preset_card"]

CARD_METADATA_KEY = "loger3d_card"
OFFICIAL_DEMO_PIXELS = 255_000


def card_options(options: dict) -> tuple[tuple[str, object], ...]:
    """``ModelConfig`` overrides (lists as tuples, as the config holds them) as a card's sorted ``options``."""
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in options.items()))


@dataclass(frozen=True)
class ModelCard:
    """What loger3d knows about one model.

    name          what users type (``--model``, ``load_model``)
    preset        the architecture its weights fit (``config.PRESETS``)
    hub           ``repo/path`` of its file on the Hugging Face Hub, or ``None``
    package_file  its file inside the loger3d package (shipped models), or ``None``
    window, overlap, align, reset_every   how ``reconstruct`` runs it by default (the paper's settings)
    training_size ``(W, H)`` it was trained at when that bounds its input (the automatic size never
                  exceeds it), else ``None`` (the official demo's 255,000-pixel rule)
    edge_rtol     the fused cloud's depth-edge filter that suits its depth maps
    licence, about  the weights' licence and what the model is for
    protocol_name its name in the LoGeR paper's evaluation protocols (``LoGeR``, ``LoGeR*``), whose per-model
                  windows ``loger3d eval`` follows, or ``None`` for a model they do not name
    options       ``ModelConfig`` fields set apart from the preset's, as ``(name, value)`` pairs: a trained
                  variant's ``model.options`` (memory layers removed or cut), so that its file loads as it trained
    """

    name: str
    preset: str
    window: int
    overlap: int
    align: str
    reset_every: int = 0
    hub: str | None = None
    package_file: str | None = None
    training_size: tuple[int, int] | None = None
    edge_rtol: float = 0.03
    licence: str = "unknown"
    about: str = ""
    protocol_name: str | None = None
    options: tuple[tuple[str, object], ...] = ()

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"model card {self.name!r}: unknown preset {self.preset!r}")
        if self.align not in ("none", "se3", "sim3"):
            raise ValueError(f"model card {self.name!r}: align must be none, se3 or sim3, not {self.align!r}")
        if not 0 <= self.overlap < max(self.window, 1):
            raise ValueError(f"model card {self.name!r}: overlap {self.overlap} must be in [0, window)")

    def model_config(self) -> ModelConfig:
        """The architecture its weights fit: the preset with ``options`` applied."""
        return replace(PRESETS[self.preset], **dict(self.options))

    @property
    def max_pixels(self) -> int:
        """The automatic input size's pixel budget."""
        return self.training_size[0] * self.training_size[1] if self.training_size else OFFICIAL_DEMO_PIXELS

    @property
    def repo_id(self) -> str | None:
        return self.hub.split("/", 2)[0] + "/" + self.hub.split("/", 2)[1] if self.hub else None

    @property
    def hub_file(self) -> str | None:
        return self.hub.split("/", 2)[2] if self.hub else None

    def describe(self) -> str:
        """How ``reconstruct`` runs it, in one line."""
        size = f", at most {self.training_size[0]}x{self.training_size[1]}" if self.training_size else ""
        return f"window {self.window}, overlap {self.overlap}, align {self.align}{size}, edge-rtol {self.edge_rtol}"

    def to_metadata(self) -> dict[str, str]:
        """The card as safetensors metadata (strings only)."""
        return {CARD_METADATA_KEY: json.dumps(asdict(self), sort_keys=True)}

    @classmethod
    def from_metadata(cls, metadata: dict[str, str] | None) -> ModelCard | None:
        """The card a file's metadata holds, or ``None`` (none, or one this version cannot read)."""
        text = (metadata or {}).get(CARD_METADATA_KEY)
        if not text:
            return None
        try:
            fields = json.loads(text)
            if fields.get("training_size") is not None:
                fields["training_size"] = tuple(fields["training_size"])
            if "options" in fields:
                fields["options"] = card_options(dict(fields["options"]))
            known = {k: v for k, v in fields.items() if k in cls.__dataclass_fields__}
            return cls(**known)
        except (ValueError, TypeError):
            return None


MODEL_CARDS: dict[str, ModelCard] = {card.name: card for card in (
    ModelCard("loger", "loger", 32, 3, "none", hub="Junyi42/LoGeR/LoGeR/latest.pt",
              licence="none declared by the LoGeR release (Junyi42/LoGeR#3)",
              about="LoGeR (hybrid TTT + SWA memory): long videos; --reset-every 5 beyond about 1,000 frames",
              protocol_name="LoGeR"),
    ModelCard("loger_star", "loger_star", 64, 3, "se3", hub="Junyi42/LoGeR/LoGeR_star/latest.pt",
              licence="none declared by the LoGeR release (Junyi42/LoGeR#3)",
              about="LoGeR*: chunks chained by SE(3) through their overlap", protocol_name="LoGeR*"),
    ModelCard("pi3", "pi3", 32, 3, "sim3", hub="yyfz233/Pi3/model.safetensors",
              licence="CC BY-NC 4.0 (Pi3's weights)",
              about="Pi3 without memory, chunked and chained by Sim(3): the paper's Pi3-Chunk baseline"),
    ModelCard("tiny_synthetic", "tiny", 10, 2, "se3", package_file="assets/tiny_synthetic.safetensors",
              training_size=(224, 126), edge_rtol=0.1, licence="same as loger3d",
              about="a 4.9 M-parameter demo model trained on synthetic videos only (offline, CPU): shows the "
                    "pipeline, not LoGeR's accuracy"),
)}


def preset_card(preset: str) -> ModelCard:
    """The card of a model known only by its preset (its config's defaults)."""
    cfg = PRESETS[preset]
    named = MODEL_CARDS.get(preset)
    if named is not None:
        return replace(named, hub=None, package_file=None)
    window = cfg.default_window if cfg.default_window > 0 else 32
    overlap = cfg.default_overlap if cfg.default_window > 0 else 3
    return ModelCard(preset, preset, window, overlap, cfg.default_align, about=f"the {preset} preset")


def card_for(spec: str | os.PathLike) -> ModelCard | None:
    """The card of a model name, of a ``.safetensors`` file that carries one, or ``None`` (nothing read but
    a safetensors header)."""
    if isinstance(spec, str) and spec in MODEL_CARDS:
        return MODEL_CARDS[spec]
    path = Path(spec).expanduser()
    if path.suffix.lower() != ".safetensors" or not path.is_file():
        return None
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return ModelCard.from_metadata(f.metadata())
    except Exception:  # not readable as safetensors: loading it will say why
        return None
