"""Training micro-steps replayed as CUDA graphs (train/graphed.py): the same run as the eager step.

The replay itself needs a CUDA GPU (those tests are skipped on a CPU, and run on the device machine); on a CPU
the setting is ignored, and a resumed run may switch it.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file

from loger3d.model.loger import _roles_on
from loger3d.train.clip import Clip
from loger3d.train.config import config_from_dict
from loger3d.train.graphed import micro_step_key
from loger3d.train.losses import LossConfig, read_stats
from loger3d.train.trainer import Trainer, TrainingError
from tests.test_train import small_config

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA GPU")


def test_cuda_graphs_are_ignored_on_a_cpu_and_may_change_on_resume(tmp_path):
    straight = Trainer(config_from_dict(small_config(steps=2, train={"device": "cpu"})), tmp_path / "a",
                       progress=False)
    straight.run()
    for piece in range(2):  # two pieces, the second with graphs asked for (ignored here)
        raw = small_config(steps=2, train={"max_minutes": 0, "cuda_graphs": piece == 1, "device": "cpu"})
        raw["curriculum"][0]["cuda_graphs"] = piece == 1
        trainer = Trainer(config_from_dict(raw), tmp_path / "b", resume=True, progress=False)
        trainer.run()
        assert trainer.graphed is None
    a, b = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def _gpu_trainer(tmp_path, name: str, graphs: bool, align: str = "none") -> Trainer:
    """Two micro-steps a step, two shapes (3 chunks for two steps, then 4), the loss balanced at step 0 (the
    balanced weights are graph inputs: the graphs are recorded before they are filled)."""
    stages = [{"steps": 2, "frames": 8, "chunks": chunks, "overlap": 1} for chunks in (3, 4)]
    raw = small_config(curriculum=stages, loss={"balance_every": 4},
                       train={"device": "cuda", "precision": "fp32", "cuda_graphs": graphs, "batch_size": 4,
                              "micro_batch": 2, "align": align})
    trainer = Trainer(config_from_dict(raw), tmp_path / name, progress=False)
    trainer.model.camera_head.sync_free = True  # as graphs need it: both runs find rotations alike
    return trainer


def _relative(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    diff = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(x - y) for x, y in zip(a, b)]))
    return (diff / torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(x) for x in a]))).item()


@cuda
def test_roles_are_made_on_the_device():
    roles = torch.tensor([0, 0, 1, 1, 1, 2])
    assert torch.equal(_roles_on(roles, torch.device("cuda")).cpu(), roles)
    assert torch.equal(_roles_on(torch.tensor([1]), torch.device("cuda")).cpu(), torch.tensor([1]))


@cuda
@pytest.mark.parametrize("align", ["none", "se3"])
def test_graphed_steps_train_as_the_eager_steps(tmp_path, align):
    """Step by step, from the same parameters, the graphed run's loss and gradients are the eager run's. Not bit
    for bit: the GPU's backward adds with atomics, so two eager runs differ too, and left alone they drift apart
    (after two balanced steps their losses differed by 1 %: benchmarks/results/train_graphs/parity_h200.txt).
    So before every step the graphed model takes the eager model's parameters, in place (the graphs read them
    where they are), and the gradients must agree to the atomics' rounding at every step, the eager warm-up,
    the recording and the replays alike: on an H200 they were 2.2e-4 apart at most (step 2, the new shape's
    warm-up and recording; the most in the TTT layers' learning-rate bias), where a micro-step's gradients lost
    or counted twice would be 50 % off, and a stale input (clip, balanced weight) about as much."""
    eager, graphed = _gpu_trainer(tmp_path, "eager", False, align), _gpu_trainer(tmp_path, "graphed", True, align)
    names = [name for name, _ in eager.model.named_parameters()]
    params = [list(t.model.parameters()) for t in (eager, graphed)]
    for step in range(4):
        with torch.no_grad():
            for e, g in zip(params[0], params[1]):
                g.copy_(e)
        records = [read_stats(t.train_step()) for t in (eager, graphed)]
        assert records[1]["total"] == pytest.approx(records[0]["total"], rel=1e-5), step
        assert records[1]["trans_weight"] == records[0]["trans_weight"]
        reached = [[p.grad is not None for p in ps] for ps in params]
        assert reached[0] == reached[1], step  # the same parameters reached, the others left at None
        pairs = [(n, e.grad, g.grad) for n, e, g, r in zip(names, *params, reached[0]) if r]
        error = _relative([e for _, e, _ in pairs], [g for _, _, g in pairs])
        worst = max(pairs, key=lambda t: _relative([t[1]], [t[2]]))
        assert error < 1e-3, f"step {step}: gradients {error:.2e} apart, most in {worst[0]}"
    assert eager.graphed is None and len(graphed.graphed.recorded) == 2  # one graph a shape
    for t in (eager, graphed):
        t.loader.close()


def test_running_out_of_gpu_memory_saves_and_says_what_to_change(tmp_path, monkeypatch):
    trainer = Trainer(config_from_dict(small_config(steps=4, train={"device": "cpu"})), tmp_path / "run",
                      progress=False)
    real = trainer.train_step

    def failing_second_step():
        if trainer.step == 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.58 GiB")
        return real()

    monkeypatch.setattr(trainer, "train_step", failing_second_step)
    with pytest.raises(TrainingError) as e:
        trainer.run()
    message = str(e.value)
    assert "out of GPU memory at step 1, curriculum stage 1 (8-frame sequences in chunks of 5, micro-batch 1)" \
        in message
    assert "lower its micro_batch or turn on its activation_checkpointing" in message
    assert "continue with --resume (checkpoint at step 1)" in message and "\n" not in message
    resumed = Trainer(config_from_dict(small_config(steps=4, train={"device": "cpu"})), tmp_path / "run",
                      resume=True, progress=False)
    resumed.loader.close()
    assert resumed.step == 1


def test_a_recorded_micro_step_is_reused_across_rebalances_but_not_other_changes():
    clip = Clip(torch.zeros(2, 8, 3, 42, 56), torch.zeros(2, 8, 42, 56), torch.zeros(2, 8, 42, 56, dtype=torch.bool),
                torch.zeros(2, 8, 3, 3), torch.zeros(2, 8, 4, 4))
    cfg = LossConfig(trans_weight=3000.0, rot_weight=100.0)
    key = micro_step_key(clip, 5, 1, 2, cfg)
    assert micro_step_key(clip, 5, 1, 2, replace(cfg, trans_weight=12.5, rot_weight=0.7)) == key  # graph inputs
    for other in (micro_step_key(clip, 4, 1, 2, cfg), micro_step_key(clip, 5, 2, 2, cfg),
                  micro_step_key(clip, 5, 1, 1, cfg), micro_step_key(clip, 5, 1, 2, replace(cfg, global_weight=0.5)),
                  micro_step_key(replace(clip, images=torch.zeros(1, 8, 3, 42, 56)), 5, 1, 2, cfg)):
        assert other != key
