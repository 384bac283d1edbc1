"""``loger3d info``: versions, devices, the model cards and whether their weights are cached."""

from __future__ import annotations

import argparse

from .. import __version__


def add_parser(commands: argparse._SubParsersAction) -> None:
    info = commands.add_parser("info", help="versions, devices, cached weights and presets")
    info.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """``info``: versions, devices and cached weights."""
    import platform

    import torch

    from ..config import PRESETS
    from ..weights import cached_path, shipped_path
    from ..weights.registry import MODEL_CARDS, preset_card

    print(f"loger3d {__version__}, torch {torch.__version__}, python {platform.python_version()}")
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            print(f"cuda:{i} {p.name}, {p.total_memory / 2**30:.1f} GiB")
    else:
        print("no CUDA device: running on the CPU (slow for the full-size models)")
    for card in MODEL_CARDS.values():
        if card.hub:
            path = cached_path(card.name)
            where = f"{card.hub}: {path if path else 'not cached (downloaded on first use)'}"
        else:
            where = f"shipped with loger3d: {shipped_path(card.name)}"
        print(f"model  {card.name} (preset {card.preset}, licence: {card.licence}) {where}\n"
              f"       {card.about}\n       reconstruct defaults: {card.describe()}")
    for name in PRESETS:
        print(f"preset {name:10s} reconstruct defaults (a checkpoint without a card): "
              f"{preset_card(name).describe()}")
    return 0
