"""benchmarks/carry_parts.sh: files too large for one device call go in parts, one a call, and come out whole."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "carry_parts.sh"
pytestmark = pytest.mark.skipif(shutil.which("bash") is None or shutil.which("sha256sum") is None,
                                reason="needs bash and coreutils")


def carry(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=cwd, env={**os.environ, **env},
                          capture_output=True, text=True)


def test_parts_carried_one_a_call_unpack_once(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=home, check=True)
    checkpoint = os.urandom(250_000)
    (home / "ck.pt").write_bytes(checkpoint)
    (home / "run").mkdir()
    (home / "run" / "metrics.jsonl").write_text('{"step": 5}\n')

    made = carry(home, "split", "start-seed0.pt=ck.pt", "ttt_only-seed0=run", CARRY_PART_BYTES="100000")
    assert made.returncode == 0, made.stderr
    parts = sorted((home / ".scratch" / "carry_parts").iterdir(), key=lambda p: int(p.name))
    assert len(parts) == 3 and all((p / "carry.manifest").is_file() for p in parts)

    stash, dest = tmp_path / "stash", tmp_path / "abl"
    for k, part in enumerate(parts, 1):  # each call carries its part only, as the device's carry does
        device = tmp_path / f"call{k}"
        shutil.copytree(part, device / ".scratch" / "carry_parts" / part.name)
        got = carry(device, "gather", str(dest), CARRY_STASH=str(stash))
        assert got.returncode == (0 if k == len(parts) else 3), got.stdout + got.stderr
        assert dest.exists() == (k == len(parts))
    assert (dest / "start-seed0.pt").read_bytes() == checkpoint
    assert (dest / "ttt_only-seed0" / "metrics.jsonl").read_text() == '{"step": 5}\n'

    (dest / "ttt_only-seed0" / "metrics.jsonl").write_text("trained since\n")
    again = carry(tmp_path / "call3", "gather", str(dest), CARRY_STASH=str(stash))
    assert again.returncode == 0 and "earlier call" in again.stdout
    assert (dest / "ttt_only-seed0" / "metrics.jsonl").read_text() == "trained since\n"


def test_damaged_part_is_not_unpacked(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=home, check=True)
    (home / "ck.pt").write_bytes(os.urandom(150_000))
    assert carry(home, "split", "ck.pt=ck.pt", CARRY_PART_BYTES="100000").returncode == 0
    parts = home / ".scratch" / "carry_parts"
    damaged = next((parts / "2").glob("carry.tar.part-*"))
    damaged.write_bytes(b"x" + damaged.read_bytes()[1:])
    got = carry(home, "gather", str(tmp_path / "dest"), CARRY_STASH=str(tmp_path / "stash"))
    assert got.returncode == 3 and "1 of 2" in got.stdout
    assert not (tmp_path / "dest").exists()


def test_bad_usage(tmp_path: Path) -> None:
    assert carry(tmp_path, "split", "no-equals-sign").returncode == 2
    assert carry(tmp_path, "gather").returncode == 2
    assert carry(tmp_path, "other").returncode == 2
