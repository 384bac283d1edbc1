"""Checkpoints written by a thread beside training (``train/checkpoint_writer.py``)."""

import threading

import pytest
import torch

from loger3d.errors import OutputError
from loger3d.train import checkpoint_writer
from loger3d.train.checkpoint_writer import CheckpointWriter


def test_the_file_holds_the_state_of_the_moment_of_saving(tmp_path, monkeypatch):
    # the write is held back until training has changed the tensors in place, as the next optimiser step does
    release, real_save = threading.Event(), torch.save
    monkeypatch.setattr(checkpoint_writer.torch, "save", lambda obj, f: (release.wait(5), real_save(obj, f)))
    weight, moment = torch.zeros(1000), torch.ones(3)
    writer = CheckpointWriter()
    writer.save(tmp_path / "checkpoint.pt", {"model": {"w": weight}, "step": 3,
                                             "optimizer": {"state": {0: {"exp_avg": moment}}, "groups": [(0.1, 2)]}})
    weight.add_(1)
    moment.mul_(5)
    assert not (tmp_path / "checkpoint.pt").exists()  # not yet written, nor half written
    release.set()
    writer.wait()
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert torch.equal(saved["model"]["w"], torch.zeros(1000)) and saved["step"] == 3
    assert torch.equal(saved["optimizer"]["state"][0]["exp_avg"], torch.ones(3))
    assert saved["optimizer"]["groups"] == [(0.1, 2)]


def test_a_failed_write_is_raised_once_by_the_next_wait(tmp_path):
    writer = CheckpointWriter()
    writer.save(tmp_path / "no such folder" / "checkpoint.pt", {"step": 1})
    writer.join()  # waits without raising: the error is kept for wait()
    with pytest.raises(OutputError, match="no such folder"):
        writer.wait()
    writer.wait()
    writer.save(tmp_path / "checkpoint.pt", {"step": 2})
    writer.wait()
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True) == {"step": 2}
