"""Where the renderer's time goes on a GPU: synchronised timings of its phases for one training step's clips.

Wraps the ray caster's and the textures' functions (culling, exact intersections, ray casting as a whole,
sky, textures, fractal noise, shading as a whole) with a device synchronisation before and after, renders 64
clips of 48 frames of training worlds in one batch (after a warm-up), and prints the seconds of each phase.
Nested phases are included in their callers (``_cull`` in ``trace``, ``albedo`` in ``shade``). The
synchronisation serialises the work, so the total is a little above an unwrapped render's.

    PYTHONPATH=src python benchmarks/render_phases.py > render_step_phases_h200.txt
"""

from __future__ import annotations

import importlib
import json
import time

import torch

from loger3d.train.synthetic import SyntheticSource
from loger3d.train.worlds.world import render_worlds

RENDER = importlib.import_module("loger3d.train.worlds.render")
TEXTURES = importlib.import_module("loger3d.train.worlds.textures")


def timed(module, name: str, seconds: dict[str, float]) -> None:
    """Replace ``module.name`` with a version that adds its synchronised wall time to ``seconds[name]``."""
    function = getattr(module, name)

    def wrapper(*args, **kwargs):
        torch.cuda.synchronize()
        start = time.perf_counter()
        result = function(*args, **kwargs)
        torch.cuda.synchronize()
        seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start
        return result

    setattr(module, name, wrapper)


def main() -> None:
    device = torch.device("cuda")
    seconds: dict[str, float] = {}
    for name in ("trace", "shade", "_cull", "_in_pyramid", "_sky", "albedo", "intersect_shapes", "_pyramid"):
        timed(RENDER, name, seconds)
    timed(TEXTURES, "fbm", seconds)
    source = SyntheticSource(height=126, width=224, world_length=600)
    worlds = [source.world(i) for i in range(64)]
    requests = [(w, torch.arange(i % 7, i % 7 + 96, 2)) for i, w in enumerate(worlds)]
    render_worlds(requests, device)
    seconds.clear()
    torch.cuda.synchronize()
    start = time.perf_counter()
    render_worlds(requests, device)
    torch.cuda.synchronize()
    print("phases (synchronised)", json.dumps({"total": time.perf_counter() - start, **seconds}))


if __name__ == "__main__":
    main()
