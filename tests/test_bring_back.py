"""benchmarks/bring_back.sh: a file too large for one call's return comes home in parts over several calls."""

import gzip
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bring_back.sh"
pytestmark = pytest.mark.skipif(any(shutil.which(tool) is None for tool in ("bash", "gzip", "sha256sum")),
                                reason="needs bash, gzip and coreutils")


def bring(path: Path, out: Path, state: Path, room: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "OUT": str(out), "BRING_DIR": str(state), "BRING_PART_BYTES": "40000",
           "BRING_ROOM": str(room)}
    return subprocess.run(["bash", str(SCRIPT), str(path)], env=env, capture_output=True, text=True)


def test_parts_come_back_over_calls_and_join_into_the_file(tmp_path: Path) -> None:
    cache = tmp_path / "compile_cache.bin"
    content = os.urandom(100_000)  # incompressible: three parts of at most 40,000 bytes
    cache.write_bytes(content)
    state, home = tmp_path / "state", tmp_path / "home"
    home.mkdir()
    codes = []
    for call in range(4):
        out = tmp_path / f"out{call}"
        out.mkdir()
        (out / "other.log").write_bytes(b"x" * 10_000)  # what the call returns besides
        got = bring(cache, out, state, room=60_000)  # room for one part a call beside the log
        codes.append(got.returncode)
        for piece in out.glob("compile_cache.bin.gz*"):
            shutil.copy(piece, home / piece.name)
        if got.returncode == 0:
            break
    assert codes == [3, 3, 0], codes
    joined = b"".join(p.read_bytes() for p in sorted(home.glob("compile_cache.bin.gz.part-*")))
    digest = (home / "compile_cache.bin.gz.sha256").read_text().split()[0]
    assert hashlib.sha256(joined).hexdigest() == digest
    assert gzip.decompress(joined) == content


def test_a_changed_file_starts_over(tmp_path: Path) -> None:
    cache, state = tmp_path / "cache.bin", tmp_path / "state"
    cache.write_bytes(os.urandom(50_000))
    first = tmp_path / "out1"
    first.mkdir()
    assert bring(cache, first, state, room=45_000).returncode == 3
    newer = os.urandom(30_000)
    cache.write_bytes(newer)
    os.utime(cache, (cache.stat().st_atime + 10, cache.stat().st_mtime + 10))
    second = tmp_path / "out2"
    second.mkdir()
    assert bring(cache, second, state, room=200_000).returncode == 0
    assert gzip.decompress(b"".join(p.read_bytes() for p in sorted(second.glob("cache.bin.gz.part-*")))) == newer


def test_bad_usage(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    assert bring(tmp_path / "missing.bin", out, tmp_path / "state", room=1_000).returncode == 2
