"""The scene families by name: ``indoor`` (rooms and corridors), ``street`` (city blocks), ``terrain`` (hills).

Each generator is ``(seed, **options) -> Scene``, deterministic per seed; options are the fields of the
family's options dataclass.
"""

from __future__ import annotations

from .indoor import IndoorOptions, indoor_rooms
from .scene import Scene
from .street import StreetOptions, street_blocks
from .terrain import TerrainOptions, open_terrain

__all__ = ["FAMILIES", "IndoorOptions", "StreetOptions", "TerrainOptions", "indoor_rooms", "make_scene",
           "open_terrain", "street_blocks"]

FAMILIES = {"indoor": indoor_rooms, "street": street_blocks, "terrain": open_terrain}


def make_scene(family: str, seed: int, **options) -> Scene:
    """The scene of ``family`` for ``seed``."""
    if family not in FAMILIES:
        raise ValueError(f"unknown scene family {family!r}; choose one of {sorted(FAMILIES)}")
    return FAMILIES[family](seed, **options)
