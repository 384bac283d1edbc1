"""benchmarks/compile_cache.py: the carried file keeps every run's compiles, not only the last run's."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "compile_cache.py"
TARGET = """import sys, torch
fn = {"sin": lambda x: torch.sin(x) * 2 + 1, "cos": lambda x: torch.cos(x) - x * x}[sys.argv[1]]
torch.compile(fn)(torch.ones(8))
"""


def keys(path: Path) -> set[tuple[str, str]]:
    from torch.compiler._cache import CacheArtifactManager

    artifacts = CacheArtifactManager.deserialize(path.read_bytes()) or {}
    return {(kind, a.key) for kind, items in artifacts.items() for a in items}


def test_a_run_writes_back_what_it_loaded_as_well_as_what_it_compiled(tmp_path: Path) -> None:
    from torch.compiler._cache import CacheArtifactManager

    if not hasattr(CacheArtifactManager, "_seen_artifacts"):
        pytest.skip("this PyTorch has no registry of seen artifacts")
    (tmp_path / "target.py").write_text(TARGET)
    cache = tmp_path / "cache.bin"
    found = {}
    for run, fn in enumerate(("sin", "cos")):
        # A fresh inductor cache each run, as a fresh machine has: what run 1 finds comes from the file alone.
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / f"inductor{run}")}
        done = subprocess.run([sys.executable, str(SCRIPT), str(cache), "target.py", fn], cwd=tmp_path, env=env,
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        found[fn] = keys(cache)
    assert found["sin"] and found["sin"] < found["cos"]
