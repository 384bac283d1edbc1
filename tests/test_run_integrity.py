"""A run that cannot lie: damaged and replaced inputs, damaged run files, failed writes, and runs killed at
any point. Each ends in one line with a documented exit status, and never with finished outputs deleted or
half-written; an interrupted run resumes to the same bytes as one that never stopped."""

import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from loger3d.cli import main
from loger3d.util.signals import signals_held

from .conftest import one_line_error, write_video

TINY = ["--model", "seeded:tiny", "--resolution", "112x84", "--window", "6", "--overlap", "2", "--quiet"]
ENV = dict(os.environ, OMP_NUM_THREADS="1")


def stderr_of(run: subprocess.Popen, timeout: float) -> str:
    """What ``run`` printed on stderr once it ended; a run still going after ``timeout`` seconds is a hang, and
    fails the test with the stack of each of its threads (SIGABRT; started with ``PYTHONFAULTHANDLER=1``)."""
    try:
        return run.communicate(timeout=timeout)[1]
    except subprocess.TimeoutExpired:
        run.send_signal(signal.SIGABRT)
        pytest.fail(f"{run.args} hangs; its threads:\n{run.communicate()[1]}")


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("integrity") / "clip.mp4", n=20)


@pytest.fixture(scope="module")
def reference(video, tmp_path_factory):
    """The files of an uninterrupted run on ``video``."""
    out = tmp_path_factory.mktemp("reference") / "out"
    assert main(["reconstruct", video, "-o", str(out), *TINY]) == 0
    return out


def files_of(out: Path) -> dict[str, bytes]:
    """Every file of a run but run.json (timings differ), by relative path."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and p.name != "run.json"}


def assert_same_files(a: Path, b: Path) -> None:
    fa, fb = files_of(a), files_of(b)
    assert sorted(fa) == sorted(fb)
    for name in fa:
        assert fa[name] == fb[name], name


def interrupted_run(video, out, monkeypatch, after_pushes=2, extra=()):
    """A run stopped by Ctrl-C during its ``after_pushes``-th chunk (its state kept for a resume)."""
    from loger3d.inference.reconstructor import Reconstructor

    original, calls = Reconstructor.push, {"n": 0}

    def push(self, images):
        calls["n"] += 1
        if calls["n"] == after_pushes:
            raise KeyboardInterrupt
        return original(self, images)

    monkeypatch.setattr(Reconstructor, "push", push)
    assert main(["reconstruct", video, "-o", str(out), "--checkpoint-every", "0", *TINY, *extra]) == 130
    monkeypatch.setattr(Reconstructor, "push", original)
    assert json.loads((out / "run.json").read_text())["frames"] > 0


# --- inputs -----------------------------------------------------------------------------------------------------

def test_a_video_cut_short_is_an_input_error_naming_the_last_good_frame(tmp_path, capsys):
    whole = write_video(tmp_path / "whole.mp4", n=60, faststart=True)
    data = Path(whole).read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[:int(len(data) * 0.4)])
    out = tmp_path / "out"
    assert main(["reconstruct", str(cut), "-o", str(out), *TINY]) == 2
    line = one_line_error(capsys, "cut.mp4", "cut short or damaged", "--end")
    end = int(line.split("--end ")[1].split()[0])
    assert 0 < end < 60
    assert json.loads((out / "run.json").read_text())["status"] == "failed"  # never "complete"
    kept = tmp_path / "kept"
    assert main(["reconstruct", str(cut), "-o", str(kept), "--end", str(end), *TINY]) == 0  # as the line says
    assert json.loads((kept / "run.json").read_text())["frames"] == end


def test_an_image_damaged_after_its_header_names_its_position_and_the_end_that_skips_it(tmp_path, capsys):
    from PIL import Image

    folder = tmp_path / "frames"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(10):
        Image.fromarray(rng.integers(0, 255, (84, 112, 3), dtype=np.uint8)).save(folder / f"f{i:02d}.png")
    damaged = folder / "f07.png"
    damaged.write_bytes(damaged.read_bytes()[:300])  # the header is intact, the pixels are not
    out = tmp_path / "out"
    assert main(["reconstruct", str(folder), "-o", str(out), *TINY]) == 2
    one_line_error(capsys, "f07.png", "--end 7")
    assert json.loads((out / "run.json").read_text())["status"] == "failed"


def test_resume_refuses_a_replaced_input_and_accepts_the_same_file_named_otherwise(
        video, reference, tmp_path, monkeypatch, capsys):
    folder = tmp_path / "inputs"
    folder.mkdir()
    shutil.copy(video, folder / "in.mp4")
    monkeypatch.chdir(folder)
    out = tmp_path / "out"
    interrupted_run("in.mp4", out, monkeypatch)
    capsys.readouterr()
    write_video(folder / "in.mp4", n=20, fps=10)  # another video under the same name
    before = files_of(out)
    assert main(["reconstruct", "in.mp4", "-o", str(out), "--resume", *TINY]) == 2
    one_line_error(capsys, "not the one the run", "in.mp4")
    assert files_of(out) == before  # nothing changed
    shutil.copy(video, folder / "in.mp4")  # the original content back, newer modification time
    assert main(["reconstruct", "./in.mp4", "-o", str(out), "--resume", *TINY]) == 0
    assert_same_files(out, reference)
    record = json.loads((out / "run.json").read_text())
    assert record["inputs"]["fingerprint"]["first"]["path"] == str((folder / "in.mp4").resolve())


def test_the_automatic_size_keeps_to_the_models_training_size(tmp_path, capsys):
    """tiny_synthetic was trained at 224x126: its automatic size never upscales past that (the official
    demo's budget would take a 224x126 video to 672x378), and the line before the model loads says so."""
    small = write_video(tmp_path / "small.mp4", n=12, width=224, height=126)
    out = tmp_path / "out"
    assert main(["reconstruct", small, "-o", str(out), "--model", "tiny_synthetic", "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "frames 224x126 kept to 224x126 (automatic: at most 28224 pixels, the model's training size" in err
    run = json.loads((out / "run.json").read_text())
    assert run["source"]["size"] == [224, 126] and run["settings"]["edge_rtol"] == 0.1
    big = tmp_path / "big"
    assert main(["reconstruct", small, "-o", str(big), "--model", "tiny_synthetic", "--device", "cpu", "--quiet",
                 "--max-pixels", "255000", "--end", "4"]) == 0
    assert json.loads((big / "run.json").read_text())["source"]["size"] == [672, 378]  # what was asked


def test_a_converted_shipped_model_runs_with_its_own_defaults(tmp_path, capsys):
    """The card travels in the converted file: window, overlap, chaining, edge filter and input size."""
    copy = tmp_path / "mine.safetensors"
    assert main(["convert", "tiny_synthetic", str(copy), "--dtype", "bf16"]) == 0
    small = write_video(tmp_path / "small.mp4", n=12, width=224, height=126)
    out = tmp_path / "out"
    assert main(["reconstruct", small, "-o", str(out), "--model", str(copy), "--device", "cpu", "--quiet"]) == 0
    run = json.loads((out / "run.json").read_text())
    settings = run["settings"]
    assert (settings["window"], settings["overlap"], settings["align"], settings["edge_rtol"]) == (10, 2, "se3", 0.1)
    assert run["source"]["size"] == [224, 126]


def test_a_bad_device_is_one_line_before_anything_is_read(video, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("loger3d.weights.model_from_spec", lambda *a, **k: pytest.fail("model loaded first"))
    assert main(["reconstruct", video, "-o", str(tmp_path / "out"), "--device", "tpu", *TINY]) == 2
    one_line_error(capsys, "tpu")
    assert not (tmp_path / "out").exists()


# --- damaged run files ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("damage", ["truncate state", "delete state", "truncate chunk", "garble run.json"])
def test_a_damaged_run_is_reported_and_nothing_is_changed(video, tmp_path, monkeypatch, capsys, damage):
    out = tmp_path / "out"
    interrupted_run(video, out, monkeypatch, after_pushes=4)
    capsys.readouterr()
    target = {"truncate state": out / "state" / "checkpoint.safetensors", "delete state": None,
              "truncate chunk": out / "frames" / "chunk_00000.npz", "garble run.json": out / "run.json"}[damage]
    if damage == "delete state":
        (out / "state" / "checkpoint.safetensors").unlink()
    elif damage == "garble run.json":
        target.write_text("{ not json")
    else:
        target.write_bytes(target.read_bytes()[:100])
    before = files_of(out)
    run_json = (out / "run.json").read_bytes()
    assert main(["reconstruct", video, "-o", str(out), "--resume", *TINY]) == 2
    one_line_error(capsys, "damaged" if damage != "delete state" else "missing")
    assert files_of(out) == before and (out / "run.json").read_bytes() == run_json


def test_export_names_a_damaged_chunk_and_overwrites_nothing(reference, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    chunk = out / "frames" / "chunk_00001.npz"
    chunk.write_bytes(chunk.read_bytes()[:-200])
    before = files_of(out)
    assert main(["export", str(out), "--format", "ply"]) == 2
    one_line_error(capsys, "chunk_00001.npz", "damaged")
    assert files_of(out) == before


def test_lost_trajectory_files_are_rebuilt_on_resume(video, reference, tmp_path, monkeypatch):
    out = tmp_path / "out"
    interrupted_run(video, out, monkeypatch, after_pushes=4)
    (out / "trajectory_tum.txt").unlink()
    kitti = out / "trajectory_kitti.txt"
    kitti.write_text(kitti.read_text()[:-30])  # the last pose cut in the middle of its line
    assert main(["reconstruct", video, "-o", str(out), "--resume", *TINY]) == 0
    assert_same_files(out, reference)


def test_glb_export_without_trimesh_writes_nothing(reference, tmp_path, capsys, monkeypatch):
    import importlib.util

    out = tmp_path / "out"
    shutil.copytree(reference, out)
    before = files_of(out)
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "trimesh" else find_spec(name, *a))
    assert main(["export", str(out), "--format", "ply", "--format", "glb"]) == 2
    one_line_error(capsys, "glb", "trimesh", "pip install")
    assert files_of(out) == before


def test_export_checks_its_options_and_can_change_the_edge_filter(reference, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    assert main(["export", str(out), "--format", "ply", "--edge-rtol", "-1"]) == 2
    one_line_error(capsys, "--edge-rtol -1")
    assert main(["export", str(out), "--format", "ply", "--conf-threshold", "0", "--edge-rtol", "0"]) == 0
    assert "cloud.ply" in capsys.readouterr().out


# --- failed writes ----------------------------------------------------------------------------------------------

def test_a_full_disk_is_one_line_exit_4_and_the_run_resumes(video, reference, tmp_path, monkeypatch, capsys):
    """The disk fills while the third chunk is written: exit 4, nothing half-written, resume to the same files."""
    from loger3d.sinks import store

    savez, calls = np.savez, {"n": 0}

    def full_disk(file, **arrays):
        calls["n"] += 1
        if calls["n"] == 3:
            file.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        savez(file, **arrays)

    monkeypatch.setattr(store.np, "savez", full_disk)
    out = tmp_path / "out"
    assert main(["reconstruct", video, "-o", str(out), "--checkpoint-every", "0", *TINY]) == 4
    one_line_error(capsys, "no space left", "chunk_00002.npz", "--resume")
    assert json.loads((out / "run.json").read_text())["status"] == "failed"
    assert sorted(p.name for p in (out / "frames").iterdir()) == ["chunk_00000.npz", "chunk_00001.npz"]
    monkeypatch.setattr(store.np, "savez", savez)
    assert main(["reconstruct", video, "-o", str(out), "--resume", *TINY]) == 0
    assert_same_files(out, reference)


def test_a_file_size_limit_from_the_system_is_one_line_without_traceback(video, tmp_path):
    """A real write error from the kernel (EFBIG under RLIMIT_FSIZE, as a full disk gives ENOSPC)."""
    resource = pytest.importorskip("resource")
    out = tmp_path / "out"

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))

    run = subprocess.run([sys.executable, "-m", "loger3d", "reconstruct", video, "-o", str(out), *TINY],
                         env=ENV, preexec_fn=limit, capture_output=True, text=True, timeout=300)
    err = run.stderr.strip().splitlines()
    assert run.returncode == 4, run.stderr
    assert len(err) == 1 and err[0].startswith("loger3d: error: no space left to write"), err
    for chunk in (out / "frames").glob("chunk_*.npz"):
        with np.load(chunk) as z:
            assert len(z["index"]) > 0
    assert not [p for p in out.rglob("*.tmp")]


# --- signals ----------------------------------------------------------------------------------------------------

def test_signals_held_during_a_block_take_effect_as_it_ends(python_sigint):
    """What the command line wraps PyTorch's import in: a Ctrl-C inside the block (where PyTorch may be running
    Python from C++, which cannot pass an exception on) is raised when the block ends, not inside it."""
    reached_end = False
    with pytest.raises(KeyboardInterrupt):
        with signals_held():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # a Python handler would have run by now
            reached_end = True
    assert reached_end
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler in force is back


def test_ctrl_c_during_start_up_prints_no_traceback(video, tmp_path):
    """Ctrl-C while the command starts (imports, parser, input checks, model loading) or runs. A signal that
    arrives while the interpreter itself starts or looks for the module, before any of our code runs
    (no frame of loger3d in what it prints), is Python's to report, so such a sample is not counted; so is
    one raised inside a callback whose exceptions Python prints and drops ("Exception ignored in", as when
    the import system frees a module lock), since no code of ours can catch it there."""
    command = [sys.executable, "-m", "loger3d", "reconstruct", video, *TINY]
    counted = 0
    for i, delay in enumerate((0.05, 0.2, 0.4, 1.0, 2.5)):
        run = subprocess.Popen([*command, "-o", str(tmp_path / f"out{i}")], env={**ENV, "PYTHONFAULTHANDLER": "1"},
                               stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        time.sleep(delay)
        run.send_signal(signal.SIGINT)
        err = stderr_of(run, timeout=120)
        if "Traceback" in err and (f"{os.sep}loger3d{os.sep}" not in err or "Exception ignored in" in err):
            continue
        counted += 1
        assert "Traceback" not in err, (delay, err)
        # -2 only from a signal before Python's own handler is installed, which ends the process silently
        assert run.returncode in (130, 0) or (run.returncode == -signal.SIGINT and not err.strip()), \
            (delay, run.returncode, err)
        assert len(err.strip().splitlines()) <= 1, (delay, err)
    assert counted >= 3


def test_ctrl_c_caught_inside_code_run_from_a_string_still_exits_130(tmp_path):
    """A Ctrl-C that leaves ``exec(text)`` (as while dataclasses build their methods at import) is marked
    unhandled by CPython, and ``python -m`` would end by SIGINT (-2) although the command caught it and
    returned 130."""
    (tmp_path / "interrupted_in_exec.py").write_text(
        "import sys\n"
        "import loger3d.cli as cli\n"
        "def run(argv):\n"
        "    exec('raise KeyboardInterrupt')\n"
        "cli._run = run\n"
        "sys.exit(cli.main([]))\n")
    run = subprocess.run([sys.executable, "-m", "interrupted_in_exec"], cwd=tmp_path, env=ENV,
                         capture_output=True, text=True, timeout=120)
    assert (run.returncode, run.stderr.strip()) == (130, "loger3d: error: interrupted")


def test_ctrl_c_that_a_library_turns_into_another_error_is_still_an_interruption(monkeypatch, capsys,
                                                                                python_sigint):
    """numpy's import, interrupted, raises an ImportError instead of the KeyboardInterrupt; the command line
    remembers the signal, so it still ends in the one interruption line and exit 130. The same error without
    a signal is a bug and keeps its traceback."""
    import loger3d.cli as cli

    def interrupted_import(argv):
        try:
            signal.raise_signal(signal.SIGINT)
        except KeyboardInterrupt:
            raise ImportError("PyCapsule_Import could not import module") from None

    monkeypatch.setattr(cli, "_run", interrupted_import)
    assert main(["info"]) == 130
    assert capsys.readouterr().err.strip() == "loger3d: error: interrupted"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler

    def broken_import(argv):
        raise ImportError("a bug")

    monkeypatch.setattr(cli, "_run", broken_import)
    with pytest.raises(ImportError, match="a bug"):
        main(["info"])


def test_killed_at_random_points_and_resumed_gives_the_same_files(tmp_path):
    """SIGKILL (no clean-up at all) at random moments of one run, each followed by --resume, until it
    completes: the files equal an uninterrupted run's, byte for byte."""
    clip = write_video(tmp_path / "long.mp4", n=120)
    command = [sys.executable, "-m", "loger3d", "reconstruct", clip, "--checkpoint-every", "0", *TINY]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    subprocess.run([*command, "-o", str(whole)], check=True, env=ENV, timeout=300)
    rng = random.Random(15)
    kills = 0
    for attempt in range(8):
        resume = ["--resume"] if (cut / "run.json").exists() else []
        run = subprocess.Popen([*command, "-o", str(cut), *resume], env=ENV, stderr=subprocess.PIPE, text=True)
        if attempt < 4:  # wait until it is writing frames, then kill at a random moment
            start = json.loads((cut / "run.json").read_text())["frames"] if resume else 0
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and run.poll() is None:
                try:
                    if json.loads((cut / "run.json").read_text()).get("frames", 0) > start:
                        break
                except (OSError, ValueError):
                    pass
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.6))
            if run.poll() is None:
                run.kill()
                kills += 1
        err = run.communicate(timeout=300)[1]
        if run.returncode == 0:
            break
        assert run.returncode == -signal.SIGKILL, err
    assert kills >= 2 and run.returncode == 0
    assert json.loads((cut / "run.json").read_text())["status"] == "complete"
    assert_same_files(cut, whole)
