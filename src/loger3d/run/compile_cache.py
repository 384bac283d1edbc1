"""When the fast path is worth its compilation, and where the compiled code is kept between runs.

The fast path compiles each kind of layer once per process, on the first chunk: 42 s measured on
an H200 with a cold cache, 13 to 15 s with PyTorch's on-disk cache warmed by an earlier run of the
job (benchmarks/results/e2e_h200, leases 3 and 4).
It then saves about 8 ms a frame (82 against 50 frames/s at 504×280 on an H100, docs/performance.md),
so it repays a warm compilation after about 3,000 frames: :data:`FAST_MIN_FRAMES`.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["FAST_MIN_FRAMES", "use_compile_cache"]

FAST_MIN_FRAMES = 3000


def use_compile_cache() -> Path:
    """The folder of PyTorch's compile cache, set to ``~/.cache/loger3d/torch_compile`` unless the user chose one.

    PyTorch's default lies under /tmp, which many machines empty at reboot.
    """
    chosen = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if chosen:
        return Path(chosen)
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    folder = base / "loger3d" / "torch_compile"
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(folder)
    return folder
