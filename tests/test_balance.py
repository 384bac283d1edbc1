"""Loss balancing: the weights it sets, the gradients it measures, its validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from loger3d.train.balance import LossBalance, shared_parameters, term_gradient_norms
from loger3d.train.clip import stack_clips
from loger3d.train.config import config_from_dict
from loger3d.train.losses import LossConfig
from loger3d.train.recurrent import SequenceObjective
from loger3d.train.synthetic import SyntheticSource
from loger3d.train.trainer import build_training_model

BALANCED = LossConfig(balance_every=1, balance_target=0.5, local_weight=2.0)


def test_update_levels_each_term_with_the_local_term_then_smooths():
    balance = LossBalance()
    balance.update([1.0, 1e-3, 0.02], BALANCED)
    assert balance.trans_weight == pytest.approx(0.5 * 2.0 * 1.0 / 1e-3)  # target × local weight × ratio
    assert balance.rot_weight == pytest.approx(0.5 * 2.0 * 1.0 / 0.02)
    balance.update([1.0, 2.5e-4, 0.02], BALANCED)
    assert balance.trans_weight == pytest.approx((1000.0 * 4000.0) ** 0.5)  # geometric mean with the last
    assert balance.rot_weight == pytest.approx(50.0)
    balance.update([1.0, 0.0, 1e12], BALANCED)
    assert balance.trans_weight == pytest.approx((2000.0 * 1e7) ** 0.5) and balance.rot_weight >= 1e-3


def test_rotation_may_have_its_own_target():
    balance = LossBalance()
    balance.update([1.0, 1e-3, 0.02], LossConfig(balance_every=1, balance_rot_target=4.0))
    assert balance.trans_weight == pytest.approx(1000.0) and balance.rot_weight == pytest.approx(200.0)


def test_apply_folds_the_pose_weight_and_keeps_switched_off_terms_off():
    balance = LossBalance()
    assert balance.apply(BALANCED) is BALANCED  # nothing measured yet
    balance.update([1.0, 1e-3, 0.02], BALANCED)
    applied = balance.apply(BALANCED)
    assert (applied.pose_weight, applied.trans_weight, applied.rot_weight) == (1.0, balance.trans_weight,
                                                                               balance.rot_weight)
    assert applied.local_weight == BALANCED.local_weight and applied.huber_delta == BALANCED.huber_delta
    off = LossConfig(balance_every=1, trans_weight=0.0)
    assert balance.apply(off).trans_weight == 0.0 and balance.apply(off).rot_weight == balance.rot_weight
    restored = LossBalance()
    restored.load_state_dict(balance.state_dict())
    assert restored == balance


def test_term_gradient_norms_equal_each_term_backpropagated_alone():
    cfg = config_from_dict({"model": {"preset": "tiny", "seed": 0}})
    model = build_training_model(cfg)
    source = SyntheticSource(height=42, width=56, num_worlds=2, world_length=40, families=("indoor",),
                             trajectories=("walk",))
    batch = stack_clips([source.sample(np.random.default_rng([1, k]), 6) for k in range(2)])
    objective = SequenceObjective(model)
    params = shared_parameters(model)
    shared = {id(p) for p in params}
    names = [n for n, p in model.named_parameters() if id(p) in shared]
    assert names and all(n.startswith(("decoder.", "ttt_", "swa_")) for n in names)
    assert len(names) < len(list(model.parameters()))  # the encoder and the heads are left out

    def loss_of(term_cfg: LossConfig) -> torch.Tensor:
        objective.loss.cfg = term_cfg
        return objective(batch.images, batch.local_points, batch.poses, batch.valid, 6, 2)[0]

    norms = term_gradient_norms(loss_of, params, BALANCED)
    assert all(p.grad is None for p in model.parameters())  # .grad untouched
    off = dict(local_weight=0.0, conf_weight=0.0, global_weight=0.0, trans_weight=0.0, rot_weight=0.0,
               pose_weight=1.0)
    for norm, field in zip(norms, ("local_weight", "trans_weight", "rot_weight")):
        model.zero_grad(set_to_none=True)
        loss_of(LossConfig(**dict(off, **{field: 1.0}))).backward()
        expected = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params if p.grad is not None]))
        torch.testing.assert_close(norm, expected, rtol=1e-5, atol=0.0)
        assert norm > 0


@pytest.mark.parametrize("values, message", [
    ({"balance_every": 1.5}, "whole number of steps"),
    ({"balance_every": 5, "local_weight": 0.0}, "needs local_weight > 0"),
    ({"balance_every": 5, "balance_target": 0.0}, "balance_target > 0"),
    ({"balance_every": 5, "balance_rot_target": 0.0}, "balance_rot_target > 0"),
    ({"balance_rot_target": -1.0}, "must be a number >= 0"),
])
def test_balance_settings_are_checked(values, message):
    with pytest.raises(ValueError, match=message):
        LossConfig(**values)
