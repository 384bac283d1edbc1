"""The ``loger3d`` command line: convert, --version, --help and the error path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import loger3d
from loger3d.cli import build_parser, main
from loger3d.seeded import fill_seeded_

SRC = str(Path(loger3d.__file__).resolve().parents[1])


@pytest.fixture(scope="module")
def tiny_sd() -> dict[str, torch.Tensor]:
    model = fill_seeded_(loger3d.build_model("tiny", device="meta"), 2)
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.fixture
def src_pt(tmp_path, tiny_sd) -> Path:
    path = tmp_path / "latest.pt"
    torch.save({"model_state_dict": tiny_sd}, path)
    return path


def error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("loger3d: error: ")
    return err


def test_convert(tmp_path, src_pt, tiny_sd, capsys):
    out = tmp_path / "out.safetensors"
    assert main(["convert", str(src_pt), str(out)]) == 0
    assert "preset tiny" in capsys.readouterr().out
    got = load_file(out)
    assert sorted(got) == sorted(tiny_sd) and all(torch.equal(got[k], v) for k, v in tiny_sd.items())

    assert main(["convert", str(src_pt), str(tmp_path / "bf16.safetensors"), "--dtype", "bf16"]) == 0
    got = load_file(tmp_path / "bf16.safetensors")
    assert got["decoder.0.attn.qkv.weight"].dtype == torch.bfloat16 and got["image_std"].dtype == torch.float32
    assert torch.equal(got["decoder.0.attn.qkv.weight"], tiny_sd["decoder.0.attn.qkv.weight"].to(torch.bfloat16))


def test_convert_existing_output_needs_force(tmp_path, src_pt, capsys):
    out = tmp_path / "out.safetensors"
    out.write_bytes(b"old")
    assert main(["convert", str(src_pt), str(out)]) == 2
    err = error_line(capsys)
    assert "already exists" in err and "--force" in err
    assert out.read_bytes() == b"old"

    assert main(["convert", str(src_pt), str(out), "--force"]) == 0
    assert load_file(out)["image_mean"].shape == (1, 3, 1, 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.pt", "out.safetensors"]  # no temp files


def test_errors_are_one_line_with_status_2(tmp_path, src_pt, capsys, monkeypatch):
    assert main(["convert", str(tmp_path / "missing.pt"), str(tmp_path / "o.safetensors")]) == 2
    assert "no such file" in error_line(capsys)

    torch.save({"model_state_dict": {"x": torch.zeros(2)}, "args": _Opaque()}, tmp_path / "unsafe.pt")
    assert main(["convert", str(tmp_path / "unsafe.pt"), str(tmp_path / "o.safetensors")]) == 2
    assert "is unsafe" in error_line(capsys)

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    assert main(["convert", "pi3", str(tmp_path / "o.safetensors")]) == 2
    assert "not in the Hugging Face cache" in error_line(capsys)

    assert main(["convert", str(src_pt), str(tmp_path / "o.pt")]) == 2
    assert ".safetensors" in error_line(capsys)
    assert not list(tmp_path.glob("o.*"))


class _Opaque:  # a payload: unpickling it would call print
    def __reduce__(self):
        return (print, ("payload ran",))


def test_usage_errors_version_and_no_command(capsys):
    assert main(["convert", "a.pt", "b.safetensors", "--dtype", "int8"]) == 2
    assert "invalid choice" in capsys.readouterr().err
    assert main(["convert"]) == 2
    capsys.readouterr()
    assert main([]) == 2
    assert "convert" in capsys.readouterr().err
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"loger3d {loger3d.__version__}"
    assert main(["convert", "--help"]) == 0
    assert "safetensors" in capsys.readouterr().out


def test_each_command_is_a_module_with_its_parser_and_run():
    from loger3d.cli import COMMANDS

    args = build_parser().parse_args(["convert", "in.pt", "out.safetensors"])
    assert args.func.__module__ == "loger3d.cli.convert" and args.dtype == "fp32" and args.force is False
    for name, argv in {"reconstruct": ["v.mp4", "-o", "o"], "demo": [], "export": ["o", "--format", "ply"],
                       "view": ["o"], "info": [], "train": ["c.yaml", "-o", "o"]}.items():
        args = build_parser().parse_args([name, *argv])
        assert args.func.__module__ == f"loger3d.cli.{name}" and args.func.__name__ == "run", name
    assert set(COMMANDS) >= {"convert", "reconstruct", "demo", "export", "view", "eval", "train", "info"}


def test_python_m_help():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [SRC, os.environ.get("PYTHONPATH")]))}
    for argv in (["--help"], ["convert", "--help"]):
        run = subprocess.run([sys.executable, "-m", "loger3d", *argv], capture_output=True, text=True, env=env,
                             timeout=120)
        assert run.returncode == 0, run.stderr
        assert "safetensors" in run.stdout and "usage: loger3d" in run.stdout
    assert "--dtype" in run.stdout and "--force" in run.stdout and "example" in run.stdout


def test_the_parser_is_built_without_pytorch():
    """``--help``, ``--version`` and every option check before a model is needed start in a blink."""
    code = "import sys; from loger3d.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [SRC, os.environ.get("PYTHONPATH")]))}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0 and run.stdout.strip() == "False", run.stderr
