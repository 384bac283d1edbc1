"""Which errors are one line and which are tracebacks: a ``LogerError`` (what a user caused) is one line with its
exit status, a plain ``ValueError`` is a bug and propagates; files that are not what they should be are one line."""

from __future__ import annotations

import errno
import json
import os

import numpy as np
import pytest
import torch

import loger3d
from loger3d.cli import main
from loger3d.errors import DamagedFileError, InputError, LogerError, OutputError
from loger3d.eval.trajectory_metrics import rpe_pairs
from loger3d.model.windows import plan_windows
from loger3d.seeded import fill_seeded_
from loger3d.sinks.cloud import VoxelCloud
from loger3d.sources.preprocess import parse_resolution
from loger3d.util.atomic import atomic_write

from .conftest import one_line_error


def _raise(error: BaseException):
    def fail(*args, **kwargs):
        raise error

    return fail


def test_a_plain_value_error_is_a_bug_and_shows_its_traceback(tmp_path, monkeypatch):
    monkeypatch.setattr("loger3d.run.export_run", _raise(ValueError("bug")))
    with pytest.raises(ValueError, match="bug"):
        main(["export", str(tmp_path), "--format", "ply"])


@pytest.mark.parametrize("error, status", [(InputError("--thing 3: give 1 or 2"), 2),
                                           (DamagedFileError("run.json is damaged; start again"), 2),
                                           (OutputError("no space left to write x; free some space"), 4)])
def test_a_loger_error_is_one_line_with_its_exit_status(tmp_path, monkeypatch, capsys, error, status):
    monkeypatch.setattr("loger3d.run.export_run", _raise(error))
    assert main(["export", str(tmp_path), "--format", "ply"]) == status
    one_line_error(capsys, str(error))


def test_a_missing_input_file_is_one_line(tmp_path, capsys):
    missing = str(tmp_path / "gt.txt")
    assert main(["eval", "traj", "--gt", missing, "--est", missing]) == 2
    one_line_error(capsys, "gt.txt")


def test_files_that_are_not_text_are_one_line(tmp_path, capsys):
    binary = tmp_path / "est.bin"
    binary.write_bytes(bytes(range(256)) * 4)
    assert main(["eval", "traj", "--gt", str(binary), "--est", str(binary)]) == 2
    one_line_error(capsys, "est.bin is not a text file", "TUM or KITTI")
    assert main(["train", str(binary), "-o", str(tmp_path / "run")]) == 2
    one_line_error(capsys, "est.bin is not valid YAML")
    assert main(["train", "tiny_synthetic", "-o", str(tmp_path / "run"), "--set", "optim.lr=["]) == 2
    one_line_error(capsys, "--set optim.lr=[", "not valid YAML")


def test_damaged_metrics_log_and_dataset_text_name_the_file(tmp_path):
    from loger3d.eval.datasets import DatasetError
    from loger3d.eval.datasets.base import text_lines
    from loger3d.train.log import read_metrics

    log = tmp_path / "metrics.jsonl"
    log.write_text(json.dumps({"step": 1}) + '\n{"step": 2, "tot\n')
    with pytest.raises(DamagedFileError, match=r"metrics.jsonl:2 is damaged"):
        read_metrics(log)
    (tmp_path / "times.txt").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(DatasetError, match="times.txt is not a text file"):
        text_lines(str(tmp_path / "times.txt"))


@pytest.mark.parametrize("call", [
    lambda: loger3d.get_config("huge"),
    lambda: loger3d.ModelConfig(dec_depth=3),
    lambda: plan_windows(10, 4, 4),
    lambda: parse_resolution("big"),
    lambda: VoxelCloud(max_points=2),
    lambda: rpe_pairs(np.zeros((3, 4, 4)), 0),
])
def test_options_a_user_gives_the_library_are_loger_errors(call):
    with pytest.raises(LogerError) as error:
        call()
    assert isinstance(error.value, ValueError) and "\n" not in str(error.value)


def test_a_bad_model_option_in_a_training_config_names_the_key():
    from loger3d.train.config import config_from_dict
    from loger3d.train.trainer import TrainingError, model_config

    with pytest.raises(TrainingError, match="model.options: dec_depth must be even"):
        model_config(config_from_dict({"model": {"options": {"dec_depth": 7}}}))


def test_a_full_disk_during_convert_is_one_line_exit_4(tmp_path, monkeypatch, capsys):
    import safetensors.torch
    from safetensors import SafetensorError

    model = fill_seeded_(loger3d.build_model("tiny", device="meta"), 0)
    torch.save(model.state_dict(), tmp_path / "src.pt")

    def full_disk(tensors, filename, metadata=None):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(safetensors.torch, "save_file", full_disk)
    assert main(["convert", str(tmp_path / "src.pt"), str(tmp_path / "out.safetensors")]) == 4
    one_line_error(capsys, "no space left to write", "out.safetensors", "free some space")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src.pt"]


def test_atomic_write_renames_on_success_and_cleans_up_on_failure(tmp_path):
    def own_temporary(tmp):  # as safetensors writes: its own 0600 file, renamed onto the path it was given
        mine = tmp.with_name(".mine")
        mine.write_bytes(b"whole")
        mine.chmod(0o600)
        os.replace(mine, tmp)

    out = tmp_path / "big.bin"
    atomic_write(out, own_temporary)
    assert out.read_bytes() == b"whole" and sorted(p.name for p in tmp_path.iterdir()) == ["big.bin"]
    (tmp_path / "plain").write_bytes(b"")
    assert out.stat().st_mode == (tmp_path / "plain").stat().st_mode  # the permissions of any new file
    (tmp_path / "plain").unlink()

    def full(tmp):
        tmp.write_bytes(b"part")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OutputError, match="no space left to write .*big.bin"):
        atomic_write(out, full)
    assert out.read_bytes() == b"whole" and sorted(p.name for p in tmp_path.iterdir()) == ["big.bin"]
