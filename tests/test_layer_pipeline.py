"""The layer pipeline (several devices on one video): the staged model equals the one-device model
bit for bit, driven by its threads exactly as on GPUs, here with every stage on the CPU."""

import pytest
import torch

from loger3d.inference.pipeline import parse_devices, plan_stages, unit_costs
from loger3d.inference.reconstructor import Reconstructor

from .conftest import random_images, seeded_model

KEYS = ("points", "local_points", "conf", "camera_poses")
# 23 frames, window 6, overlap 2: five chunks of 6 frames and a last one of 3
N, WINDOW, OVERLAP = 23, 6, 2


def run(images, devices, align, reset_every, split=None, pushes=(5,), save_after=None):
    """Finished frames of a stream, pushed in pieces; with ``save_after``, its state saved after that many
    pieces and loaded into a new stream (and a new model) that finishes the run."""
    model = seeded_model("tiny")
    stream = Reconstructor(model, WINDOW, OVERLAP, align, reset_every, devices=devices, split=split)
    parts, pos, piece = [], 0, 0
    with torch.no_grad():
        while pos < images.shape[1]:
            size = pushes[piece % len(pushes)]
            parts += stream.push(images[:, pos:pos + size])
            pos, piece = pos + size, piece + 1
            if piece == save_after:
                parts += stream.flush()
                state = stream.state_dict()
                stream.close()
                stream = Reconstructor(seeded_model("tiny"), WINDOW, OVERLAP, align, reset_every, devices=devices,
                                       split=split)
                stream.load_state_dict(state)
        parts += stream.finish()
    starts = [p.start for p in parts]
    assert starts == sorted(starts)
    out = {k: torch.cat([getattr(p.prediction, k) for p in parts], dim=1) for k in KEYS}
    out["gates"] = torch.tensor(stream.mean_gates)
    return out


@pytest.fixture(scope="module")
def images():
    return random_images(N, batch=1)


@pytest.mark.parametrize("align,reset_every", [("none", 0), ("se3", 0), ("sim3", 2), ("none", 2)])
def test_two_stages_equal_one_device(images, align, reset_every):
    one = run(images, None, align, reset_every)
    two = run(images, ["cpu", "cpu"], align, reset_every, pushes=(4, 7))
    for key in one:
        assert torch.equal(one[key], two[key]), key


def test_three_stages_resumed_in_the_middle_equal_one_device(images):
    one = run(images, None, "sim3", 2)
    three = run(images, "cpu,cpu,cpu", "sim3", 2, split=[3, 9], save_after=3)
    for key in one:
        assert torch.equal(one[key], three[key]), key


@pytest.mark.parametrize("align,reset_every", [("none", 2), ("sim3", 0)])
def test_whole_sequence_forward_equals_the_stream(images, align, reset_every):
    """``LoGeR.forward`` (the model's own loop over a sequence at hand) and the streaming driver agree."""
    one = run(images, None, align, reset_every)
    with torch.no_grad():
        whole = seeded_model("tiny")(images, window_size=WINDOW, overlap_size=OVERLAP, align=align,
                                     reset_every=reset_every)
    for key in KEYS:
        assert torch.equal(one[key], whole[key]), key
    assert torch.equal(one["gates"], torch.stack([whole.avg_gate_scale, whole.attn_gate_scale]))
    assert whole.chunk_transforms.shape == (1, 6, 4, 4)  # chunks at 0, 4, 8, 12, 16, 20


def test_one_device_saved_state_resumes_in_a_pipeline(images):
    """The state format does not depend on how many devices made it."""
    one = run(images, None, "se3", 0)
    model = seeded_model("tiny")
    with torch.no_grad():
        first = Reconstructor(model, WINDOW, OVERLAP, "se3")
        parts = first.push(images[:, :12]) + first.flush()
        state = first.state_dict()
        second = Reconstructor(seeded_model("tiny"), WINDOW, OVERLAP, "se3", devices=["cpu", "cpu"])
        second.load_state_dict(state)
        parts += second.push(images[:, 12:]) + second.finish()
    for key in KEYS:
        assert torch.equal(one[key], torch.cat([getattr(p.prediction, key) for p in parts], dim=1)), key


def test_plan_stages_minimises_the_largest_stage():
    assert plan_stages([1, 1, 1, 1], 2) == [range(0, 2), range(2, 4)]
    assert plan_stages([5, 1, 1, 1, 1, 1], 2) == [range(0, 1), range(1, 6)]
    assert plan_stages([1, 2, 3, 4, 5], 3) == [range(0, 3), range(3, 4), range(4, 5)]
    stages = plan_stages(unit_costs(seeded_model("tiny"), 280, 504, 32), 4)
    assert stages[0].start == 0 and stages[-1].stop == seeded_model("tiny").num_units
    assert all(a.stop == b.start and len(a) > 0 for a, b in zip(stages, stages[1:]))
    with pytest.raises(ValueError, match="cannot cut"):
        plan_stages([1, 2], 3)


def test_unit_costs_put_the_global_blocks_above_the_frame_blocks():
    model = seeded_model("loger")
    costs = unit_costs(model, 280, 504, 32)
    assert len(costs) == model.num_units == 2 + 36 + 18 + 4  # encoder, blocks, TTT and SWA layers, heads
    cost = dict(zip(model.units, costs))
    assert cost["block", 1] > cost["block", 0]  # block 1 attends over the chunk, block 0 within frames
    assert cost["swa", 10] > cost["block", 10]  # an SWA layer attends over two chunks
    # a split of the full model in two balances to within one unit's cost
    first, second = plan_stages(costs, 2)
    assert abs(sum(costs[u] for u in first) - sum(costs[u] for u in second)) <= max(costs)


def test_devices_and_splits_are_checked():
    assert parse_devices("cpu, cpu") == [torch.device("cpu")] * 2
    with pytest.raises(ValueError, match="not a device"):
        parse_devices("tpu")
    with pytest.raises(ValueError, match="no devices"):
        parse_devices(" , ")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="not available"):
            parse_devices("cuda:0,cuda:1")
        with pytest.raises(ValueError, match="needs CUDA"):
            parse_devices("all")
    model = seeded_model("tiny")
    with pytest.raises(ValueError, match="split must be"):
        Reconstructor(model, WINDOW, OVERLAP, devices=["cpu", "cpu"], split=[0])
    with pytest.raises(ValueError, match="inference only"):
        Reconstructor(model, WINDOW, OVERLAP, offload=False, devices=["cpu", "cpu"])
