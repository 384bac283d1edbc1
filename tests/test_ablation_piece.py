"""benchmarks/ablation_piece.sh and device_piece.sh, run with stand-ins for the training, scoring and conversion:
where a call begins its runs, what it brings back, and that a training cannot run a call past its limit."""

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
pytestmark = pytest.mark.skipif(shutil.which("bash") is None or shutil.which("sha256sum") is None,
                                reason="needs bash and coreutils")

# Stands in for the training: records the command line ablation_piece.sh hands to compile_cache.py.
RECORDER = """import json, sys
json.dump(sys.argv[1:], open(sys.argv[0] + ".args.json", "w"))
"""


def fake_repo(tmp_path: Path) -> Path:
    """The scripts under test in a repository of their own, the training replaced by RECORDER."""
    repo = tmp_path / "repo"
    (repo / "benchmarks").mkdir(parents=True)
    for name in ("ablation_piece.sh", "carry_parts.sh", "device_piece.sh"):
        shutil.copy(BENCHMARKS / name, repo / "benchmarks" / name)
    (repo / "benchmarks" / "compile_cache.py").write_text(RECORDER)
    (repo / "config.yaml").write_text("model: {}\n")
    return repo


def test_start_copied_into_a_fresh_ablation_folder(tmp_path: Path) -> None:
    """A machine's first call for a seed, with no parts carried: $ABL does not exist yet (it once failed there:
    'cannot create regular file .../start-seed1.pt')."""
    repo = fake_repo(tmp_path)
    start = tmp_path / "checkpoint.pt"
    start.write_bytes(os.urandom(1000))
    abl, out = tmp_path / "fresh" / "ablation", tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "ABL": str(abl), "SEED": "1", "OUT": str(out), "CARRY_STASH": str(tmp_path / "stash")}

    done = subprocess.run(["bash", "benchmarks/ablation_piece.sh", "config.yaml", str(start), "5", "hybrid"],
                          cwd=repo, env=env, capture_output=True, text=True)

    assert done.returncode == 0, done.stdout + done.stderr
    shared = abl / "start-seed1.pt"
    assert shared.read_bytes() == start.read_bytes()
    args = json.loads((repo / "benchmarks" / "compile_cache.py.args.json").read_text())
    assert args[args.index("--start") + 1] == str(shared)
    assert args[args.index("--seeds") + 1] == "1" and args[args.index("--variants") + 1] == "hybrid"


def test_within_interrupts_a_training_that_overruns(tmp_path: Path) -> None:
    """device_piece.sh's `within`: GRACE seconds after its minutes the command gets SIGINT (a Python training then
    saves its checkpoint and ends), so that a device call never runs past its limit; its status is then 124."""
    script = ("import time\ntry:\n    time.sleep(60)\nexcept KeyboardInterrupt:\n    print('interrupted')\n"
              "    raise SystemExit(7)\n")
    began = time.monotonic()
    done = subprocess.run(["bash", "-c", f'source "{BENCHMARKS / "device_piece.sh"}" && within 0.02 python -c "$0"',
                           script], env={**os.environ, "GRACE": "1"}, capture_output=True, text=True)
    assert (done.returncode, done.stdout.strip()) == (124, "interrupted"), done.stderr
    assert time.monotonic() - began < 30


# Stand in for `ablation.py eval` and `loger3d convert`: each records that it ran and writes what it would.
ABLATION_STUB = """import json, sys
open(sys.argv[0] + ".calls", "a").write(" ".join(sys.argv[1:]) + "\\n")
json.dump({"rows": []}, open(sys.argv[sys.argv.index("--json") + 1], "w"))
"""
CONVERT_STUB = """import sys
open(sys.argv[0] + ".calls", "a").write(sys.argv[2] + "\\n")
open(sys.argv[3], "wb").write(b"fp16")
"""


@pytest.mark.parametrize("score", ["device", "home"])
def test_a_finished_run_comes_back_scored_or_for_scoring_at_home(tmp_path: Path, score: str) -> None:
    """A finished run comes back as <run>.tar: fp16 weights, final and per stage, log and variant record, with its
    scores unless SCORE=home leaves the scoring to the CPU at home (over a minute of a device call). A stage's
    weights that an unfinished call of the run already converted and sent (BRING) are converted once and packed
    once (2026-12-04: a second copy took 9.8 MB of a call's 64)."""
    repo = fake_repo(tmp_path)
    (repo / "benchmarks" / "ablation.py").write_text(ABLATION_STUB)
    (repo / "src" / "loger3d").mkdir(parents=True)  # first on the script's PYTHONPATH: `python -m loger3d` is the stub
    (repo / "src" / "loger3d" / "__init__.py").write_text("")
    (repo / "src" / "loger3d" / "__main__.py").write_text(CONVERT_STUB)
    abl, out = tmp_path / "ablation", tmp_path / "out"
    run = abl / "no_memory-seed1"
    run.mkdir(parents=True)
    out.mkdir()
    for name, text in (("model_step6280.safetensors", "stage weights"), ("checkpoint.pt", "checkpoint"),
                       ("variant.json", "{}"), ("metrics.jsonl", json.dumps(
                           {"step": 6400, "stage": 3, "total": 0.3, "frames_per_s": 3000.0}) + "\n")):
        (run / name).write_text(text)
    env = {**os.environ, "ABL": str(abl), "SEED": "1", "OUT": str(out), "CARRY_STASH": str(tmp_path / "stash"),
           "SCORE": score, "BACK": str(tmp_path / "back")}
    piece = ["bash", "benchmarks/ablation_piece.sh", "config.yaml", "none", "1", "no_memory"]

    unfinished = subprocess.run(piece, cwd=repo, env={**env, "BRING": "no_memory-seed1"}, capture_output=True,
                                text=True)
    assert unfinished.returncode == 0, unfinished.stdout + unfinished.stderr
    assert (out / "no_memory-seed1.model_step6280_fp16.safetensors").exists()
    shutil.rmtree(out)
    out.mkdir()
    (run / "model.safetensors").write_text("weights")
    done = subprocess.run(piece, cwd=repo, env=env, capture_output=True, text=True)

    assert done.returncode == 0, done.stdout + done.stderr
    converted = (repo / "src" / "loger3d" / "__main__.py.calls").read_text().split()
    assert sorted(Path(name).name for name in converted) == ["model.safetensors", "model_step6280.safetensors"]
    calls = repo / "benchmarks" / "ablation.py.calls"
    assert calls.exists() == (score == "device")
    listing = subprocess.run(f"cat {out}/no_memory-seed1.tar.part-* | tar t", shell=True, capture_output=True,
                             text=True, check=True).stdout.split()
    expected = {"model_fp16.safetensors", "model_step6280_fp16.safetensors", "metrics.jsonl", "variant.json"}
    files = [Path(name).name for name in listing if not name.endswith("/")]
    assert sorted(files) == sorted(expected | ({"eval.json"} if score == "device" else set()))
