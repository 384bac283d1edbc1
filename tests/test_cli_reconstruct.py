"""The reconstruct / export / info commands, and every bad input of the streaming job."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from loger3d.cli import main
from loger3d.seeded import fill_seeded_

from .conftest import one_line_error, write_video

TINY = ["--model", "seeded:tiny", "--resolution", "112x84", "--window", "6", "--overlap", "2"]


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("cli") / "clip.mp4", n=14)


def test_reconstruct_writes_the_documented_outputs(video, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["reconstruct", video, "-o", str(out), "--quiet", *TINY]) == 0
    assert capsys.readouterr().out == ""
    for name in ("run.json", "trajectory_tum.txt", "trajectory_kitti.txt", "cloud.ply", "intrinsics.txt",
                 "transforms.json", "colmap/cameras.txt", "colmap/images.txt", "colmap/points3D.txt",
                 "images/frame_000000.jpg", "frames/chunk_00000.npz"):
        assert (out / name).exists(), name
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "complete" and run["frames"] == 14
    assert set(run["timings"]) >= {"total_s", "decode_wait_s", "model_s", "sinks_s", "frames_per_second"}
    assert run["settings"]["window"] == 6 and run["environment"]["torch"] == torch.__version__
    assert main(["export", str(out), "--format", "ply", "--format", "nerfstudio"]) == 0
    assert "cloud.ply" in capsys.readouterr().out
    assert not (out / "state").exists() and run["checkpoint"] is None  # removed once complete
    assert run["settings"]["fast"] is False  # the CPU never gets the fast path by default
    with np.load(out / "frames" / "chunk_00000.npz") as z:
        assert z["depth"].dtype == np.float16 and z["conf"].dtype == np.uint8 and "local_points" not in z.files


def test_save_options_choose_what_is_kept(video, tmp_path, capsys):
    bare, full = tmp_path / "bare", tmp_path / "full"
    assert main(["reconstruct", video, "-o", str(bare), "--quiet", "--save", "none", *TINY]) == 0
    with np.load(bare / "frames" / "chunk_00000.npz") as z:
        assert {"depth", "conf", "local_points"}.isdisjoint(z.files) and "camera_poses" in z.files
    assert not (bare / "images").exists() and (bare / "cloud.ply").exists()
    assert main(["export", str(bare), "--format", "ply"]) == 2
    one_line_error(capsys, "kept no depth or conf", "--save")
    assert main(["reconstruct", video, "-o", str(full), "--quiet", "--save", "all", "--float32", "--keep-state",
                 *TINY]) == 0
    with np.load(full / "frames" / "chunk_00000.npz") as z:
        assert z["local_points"].dtype == z["depth"].dtype == z["conf"].dtype == np.float32
    assert (full / "state" / "checkpoint.safetensors").exists()
    assert main(["reconstruct", video, "-o", str(tmp_path / "bad"), "--quiet", "--save", "depth,normals", *TINY]) == 2
    one_line_error(capsys, "--save", "normals")
    assert not (tmp_path / "bad").exists()


def test_fast_path_reconstructs_and_is_recorded(video, tmp_path):
    """``--fast`` on the CPU: compiled layers, same outputs layout, the choice kept in run.json."""
    slow, fast = tmp_path / "slow", tmp_path / "fast"
    assert main(["reconstruct", video, "-o", str(slow), "--quiet", *TINY]) == 0
    assert main(["reconstruct", video, "-o", str(fast), "--quiet", "--fast", *TINY]) == 0
    run = json.loads((fast / "run.json").read_text())
    assert run["status"] == "complete" and run["settings"]["fast"] is True
    a, b = (np.loadtxt(d / "trajectory_tum.txt") for d in (slow, fast))
    assert a.shape == b.shape == (14, 8)
    # The first chunk sees the same (initial) memory on both paths: its camera positions agree closely.
    np.testing.assert_allclose(b[:4, 1:4], a[:4, 1:4], rtol=1e-2, atol=1e-4)


def test_reconstruct_builds_no_autograd_graph(video, tmp_path, monkeypatch):
    """The streaming job is inference: every chunk runs with gradients off (a full-size chunk's
    autograd graph would not fit in GPU memory)."""
    from loger3d.model.loger import LoGeR

    seen = []
    original = LoGeR.forward_chunk

    def spy(self, *args, **kwargs):
        seen.append(torch.is_grad_enabled())
        return original(self, *args, **kwargs)

    monkeypatch.setattr(LoGeR, "forward_chunk", spy)
    assert main(["reconstruct", video, "-o", str(tmp_path / "out"), "--quiet", *TINY]) == 0
    assert seen and not any(seen)


def test_help_states_the_defaults(capsys):
    assert main(["reconstruct", "--help"]) == 0
    text = capsys.readouterr().out
    for fact in ("loger_star     window 64, overlap 3, align se3", "tiny_synthetic window 10, overlap 2, align se3, "
                 "at most 224x126", "--resume", "--reset-every", "255,000"):
        assert fact in text


def test_info(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "preset loger " in out and "model  loger_star (preset loger_star" in out
    assert "reconstruct defaults: window 64, overlap 3, align se3" in out


def image_folder(path, sizes, mode="RGB"):
    path.mkdir()
    for i, size in enumerate(sizes):
        value = (np.arange(size[0] * size[1]).reshape(size[1], size[0]) * 7 % 255).astype(np.uint8)
        img = Image.fromarray(value)
        img = img.convert(mode) if mode != "I;16" else Image.fromarray(value.astype(np.uint16) * 257)
        img.save(path / f"f{i}.png")
    return str(path)


@pytest.mark.parametrize("mode", ["L", "RGBA", "I;16", "P"])
def test_unusual_image_modes_are_converted(tmp_path, mode):
    folder = image_folder(tmp_path / "imgs", [(60, 45)] * 3, mode)
    assert main(["reconstruct", folder, "-o", str(tmp_path / "out"), "--quiet", *TINY]) == 0


def test_mixed_sizes_are_resized_and_said(tmp_path, capsys):
    folder = image_folder(tmp_path / "imgs", [(60, 45), (80, 60), (60, 45)])
    with pytest.warns(UserWarning, match="resiz"):
        assert main(["reconstruct", folder, "-o", str(tmp_path / "out"), "--quiet", *TINY]) == 0


def test_bad_inputs_give_one_line_and_exit_2(video, tmp_path, capsys):
    def fails(args, *words):
        assert main(["reconstruct", *args, "--quiet", *TINY]) == 2
        one_line_error(capsys, *words)

    fails([str(tmp_path / "missing.mp4"), "-o", str(tmp_path / "o1")], "missing.mp4")
    (tmp_path / "empty").mkdir()
    fails([str(tmp_path / "empty"), "-o", str(tmp_path / "o2")], "no .png")
    (tmp_path / "junk.mp4").write_text("not a video")
    fails([str(tmp_path / "junk.mp4"), "-o", str(tmp_path / "o3")], "junk.mp4")
    fails([video, "-o", str(tmp_path / "o4"), "--start", "100"], "no frames")
    fails([image_folder(tmp_path / "tiny", [(10, 8)] * 2), "-o", str(tmp_path / "o5")], "14")
    assert main(["reconstruct", video, "-o", str(tmp_path / "o6"), "--quiet", *TINY, "--end", "5"]) == 0
    fails([video, "-o", str(tmp_path / "o6"), "--end", "7"], "already holds a run", "--resume", "same settings")
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o4" / "cloud.ply").exists()


def test_checkpoint_for_another_model(tmp_path, video, capsys):
    import loger3d

    model = fill_seeded_(loger3d.build_model("tiny", device="meta"), 0)
    sd = {k: v for k, v in model.state_dict().items() if not k.startswith("ttt_layers.")}
    torch.save(sd, tmp_path / "broken.pt")
    args = ["reconstruct", video, "-o", str(tmp_path / "out"), "--quiet", "--model", str(tmp_path / "broken.pt")]
    assert main(args) == 2
    one_line_error(capsys, "missing", "ttt_layers")


def test_out_of_memory_suggests_a_smaller_window(video, tmp_path, capsys, monkeypatch):
    import loger3d

    def oom(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(loger3d.LoGeR, "forward_chunk", oom)
    assert main(["reconstruct", video, "-o", str(tmp_path / "out"), "--quiet", *TINY]) == 3
    err = capsys.readouterr().err
    assert "out of GPU memory" in err and "--window" in err and len(err.strip().splitlines()) == 1


def test_ctrl_c_says_how_to_resume(video, tmp_path, capsys, monkeypatch):
    from loger3d.inference.reconstructor import Reconstructor

    original, calls = Reconstructor.push, {"n": 0}

    def push(self, images):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(self, images)

    monkeypatch.setattr(Reconstructor, "push", push)
    out = tmp_path / "out"
    assert main(["reconstruct", video, "-o", str(out), "--quiet", *TINY]) == 130
    assert "--resume" in capsys.readouterr().err
    monkeypatch.setattr(Reconstructor, "push", original)
    assert main(["reconstruct", video, "-o", str(out), "--quiet", "--resume", *TINY]) == 0
    assert json.loads((out / "run.json").read_text())["frames"] == 14


def test_devices_run_a_layer_pipeline_with_identical_files(video, tmp_path, capsys):
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(["reconstruct", video, "-o", str(one), "--quiet", *TINY]) == 0
    assert main(["reconstruct", video, "-o", str(two), "--quiet", "--devices", "cpu,cpu", *TINY]) == 0
    files = sorted(p.relative_to(one) for p in one.rglob("*") if p.is_file() and p.name != "run.json")
    assert files and files == sorted(p.relative_to(two) for p in two.rglob("*") if p.is_file() and p.name != "run.json")
    for name in files:
        assert (one / name).read_bytes() == (two / name).read_bytes(), name
    assert main(["reconstruct", video, "-o", str(tmp_path / "bad"), "--quiet", "--devices", "cpu,cpu",
                 "--device", "cpu", *TINY]) == 2
    one_line_error(capsys, "--device or --devices")
    assert main(["reconstruct", video, "-o", str(tmp_path / "bad"), "--quiet", "--devices", "cuda:7,cuda:8",
                 *TINY]) == 2
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("options,words", [
    (["--window", "0"], ["--window 0"]),
    (["--window", "4", "--overlap", "4"], ["--overlap 4"]),
    (["--reset-every", "-1"], ["--reset-every -1"]),
    (["--conf-threshold", "2"], ["--conf-threshold 2"]),
    (["--voxel-size", "0"], ["--voxel-size 0"]),
    (["--cloud-stride", "0"], ["--cloud-stride 0"]),
])
def test_options_are_checked_before_the_model_is_loaded(video, tmp_path, capsys, monkeypatch, options, words):
    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the options were checked")

    monkeypatch.setattr("loger3d.weights.model_from_spec", no_model)
    out = tmp_path / "out"
    assert main(["reconstruct", video, "-o", str(out), "--quiet", "--model", "seeded:tiny", *options]) == 2
    one_line_error(capsys, *words)
    assert not out.exists()


def test_input_and_folder_are_checked_before_the_model_is_loaded(video, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("loger3d.weights.model_from_spec", lambda *a, **k: pytest.fail("model loaded first"))
    assert main(["reconstruct", str(tmp_path / "missing.mp4"), "-o", str(tmp_path / "out"), "--quiet"]) == 2
    one_line_error(capsys, "missing.mp4")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    assert main(["reconstruct", video, "-o", str(busy), "--quiet"]) == 2
    one_line_error(capsys, "not empty")
    assert main(["reconstruct", video, "-o", str(tmp_path / "none"), "--resume", "--quiet"]) == 2
    one_line_error(capsys, "nothing to resume")
    assert (busy / "notes.txt").read_text() == "mine" and not (tmp_path / "out").exists()


def test_sigterm_stops_like_ctrl_c_and_the_run_resumes_to_identical_files(tmp_path):
    """SIGTERM after the first chunks: exit 143, one line naming --resume, status "interrupted"; the
    resumed run's files equal an uninterrupted run's."""
    import os
    import signal
    import subprocess
    import sys
    import time

    clip = write_video(tmp_path / "long.mp4", n=120)
    command = [sys.executable, "-m", "loger3d", "reconstruct", clip, "--quiet", "--checkpoint-every", "0", *TINY]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    subprocess.run([*command, "-o", str(whole)], check=True, env=env)
    run = subprocess.Popen([*command, "-o", str(cut)], env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and run.poll() is None:
        record = cut / "run.json"
        if record.exists() and json.loads(record.read_text()).get("frames", 0) > 0:
            break
        time.sleep(0.02)
    run.send_signal(signal.SIGTERM)
    err = run.communicate(timeout=120)[1].strip().splitlines()
    assert run.returncode == 143, err
    assert len(err) == 1 and "terminated" in err[0] and "--resume" in err[0], err
    record = json.loads((cut / "run.json").read_text())
    assert record["status"] == "interrupted" and 0 < record["frames"] < 120
    subprocess.run([*command, "-o", str(cut), "--resume"], check=True, env=env)
    files = sorted(p.relative_to(whole) for p in whole.rglob("*") if p.is_file() and p.name != "run.json")
    assert files == sorted(p.relative_to(cut) for p in cut.rglob("*") if p.is_file() and p.name != "run.json")
    for name in files:
        assert (whole / name).read_bytes() == (cut / name).read_bytes(), name
