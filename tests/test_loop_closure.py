"""Loop closure in a run: place search, the closer's state, and the job's outputs with and without loops."""

import json

import numpy as np
import pytest
import torch

from loger3d.errors import InputError
from loger3d.loop import closer as closer_module
from loger3d.loop.closer import LoopOptions, interpolate_corrections
from loger3d.loop.places import PlaceIndex
from loger3d.loop.sim3 import Sim3
from loger3d.loop.verify import LoopCheck, VerifyOptions
from loger3d.run import RunError, RunSettings, reconstruct
from loger3d.run.loops import LOOPS_FILE
from loger3d.sinks.store import FrameStore
from loger3d.sinks.trajectory import read_tum

from .conftest import write_video
from .test_pipeline import assert_same_outputs, output_files

SIZE = [112, 84]
LOOPS = {"similarity": -1.0, "min_gap": 10}  # every keyframe pair 10+ frames apart is a candidate


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("video") / "clip.mp4", n=30)


def settings(video, loop_closure=None, **kw):
    base = dict(input=[video], model="seeded:tiny", window=8, overlap=2, align="sim3", resolution=SIZE,
                conf_threshold=0.0, edge_rtol=0.0,  # seeded weights are not confident: keep every point
                loop_closure=LoopOptions.from_dict(loop_closure).to_dict() if loop_closure is not None else None)
    base.update(kw)
    return RunSettings(**base)


def run(video, out, model, checkpoint_every=0.0, **kw):
    with torch.no_grad():
        return reconstruct(video, out, model, settings(video, **kw), checkpoint_every=checkpoint_every)


def accept_everything(model, end_a, end_b, check, options):
    """A verification that accepts every candidate with a drift that depends only on its ends."""
    angle = 0.002 * (check.b - check.a)
    check.drift = Sim3.from_vector(np.array([0.0, 0.0, angle, 0.01 * check.a, 0.0, 0.02, 0.001 * check.b]))
    check.inliers, check.residual, check.overlap = 1.0, 0.0, 1.0
    check.rotation_deg, check.log_scale, check.drift_m = check.drift.angle_deg, float(np.log(check.drift.scale)), 0.0
    return check.judge(options)


# ---------------------------------------------------------------------------------------------- units
def test_place_index_finds_the_earlier_look_alike_and_respects_the_gap():
    rng = np.random.default_rng(0)
    common = rng.normal(size=16) * 5  # a large shared component, as the model's descriptors have
    places = [common + rng.normal(size=16) for _ in range(6)]
    index = PlaceIndex(min_gap=10, spacing=4)
    for frame in range(60):
        index.add(frame, places[(frame // 10) % 6] + 0.05 * rng.normal(size=16))
    found = index.query(61, places[1], similarity=0.8, limit=3)
    assert found and all(10 <= c.match < 20 for c in found)  # place 1 was seen at frames 10-19
    assert all(abs(x.match - y.match) >= 4 for x in found for y in found if x is not y)
    assert index.query(15, places[1], similarity=0.8) == []  # only frames 0-5 are 10+ frames earlier


def test_place_index_state_round_trip_gives_the_same_answers():
    rng = np.random.default_rng(1)
    a = PlaceIndex(min_gap=5, spacing=2)
    for frame in range(100):
        a.add(frame, rng.normal(size=8))
    b = PlaceIndex(min_gap=5, spacing=2)
    b.load_state_dict({k: v.copy() for k, v in a.state_dict().items()})
    query = rng.normal(size=8)
    assert a.query(100, query, -1.0, limit=5) == b.query(100, query, -1.0, limit=5)
    b.add(100, query)  # and it keeps growing
    assert b.count == 101


def test_wide_descriptors_are_projected_and_a_resumed_index_projects_them_the_same_way():
    rng = np.random.default_rng(2)
    places = [rng.normal(size=512) for _ in range(4)]
    a = PlaceIndex(min_gap=10, spacing=4, dims=32)
    for frame in range(40):
        a.add(frame, places[(frame // 10) % 4] + 0.05 * rng.normal(size=512))
    b = PlaceIndex(min_gap=10, spacing=4, dims=32)
    b.load_state_dict(a.state_dict())
    assert a.state_dict()["vectors"].shape == (40, 32)
    found = b.query(45, places[2], similarity=0.8)
    assert found == a.query(45, places[2], similarity=0.8) and 20 <= found[0].match < 30


def test_loop_check_numbers_round_trip():
    check = LoopCheck(10, 90, 1, 11, 0.8, 12.5)
    accept_everything(None, None, None, check, VerifyOptions())
    again = LoopCheck.from_numbers(check.numbers(), VerifyOptions())
    assert again.report() == check.report() and again.accepted


def test_corrections_hold_at_chunk_middles_and_blend_between():
    chunks = [Sim3.identity(), Sim3.from_vector(np.array([0, 0, 0.1, 1.0, 0, 0, 0.05]))]
    frames = interpolate_corrections(chunks, frames=12, step=6)
    assert frames.scale[0] == 1.0 and np.allclose(frames.translation[11], [1.0, 0, 0])
    np.testing.assert_allclose(frames.translation[:, 0], np.clip((np.arange(12) - 2.5) / 6, 0, 1), atol=1e-12)


def test_loop_options_are_checked_against_the_window():
    with pytest.raises(InputError, match="at least the window"):
        LoopOptions(min_gap=8).resolved(window=16)
    with pytest.raises(InputError, match="unknown loop closure option"):
        LoopOptions.from_dict({"similarty": 0.5})
    with pytest.raises(RunError, match="--save"):
        RunSettings(input=["x"], model="m", window=8, overlap=2, save=["depth", "conf"],
                    loop_closure=LoopOptions().to_dict()).check()


# ---------------------------------------------------------------------------------------------- job
def test_without_an_accepted_loop_the_outputs_are_those_of_a_plain_run(tiny_model, video, tmp_path):
    run(video, tmp_path / "plain", tiny_model)
    summary = run(video, tmp_path / "loops", tiny_model, loop_closure=LOOPS)
    report = json.loads((tmp_path / "loops" / LOOPS_FILE).read_text())
    assert report["verified"] > 0 and report["accepted"] == 0, report["loops"][0]["reason"]
    assert summary["loops"] == {"candidates": report["candidates"], "verified": report["verified"], "accepted": 0,
                                "corrected": False}
    plain = output_files(tmp_path / "plain")
    looped = {k: v for k, v in output_files(tmp_path / "loops").items() if not k.startswith("loops/")}
    assert plain == looped  # bit for bit


def test_accepted_loops_correct_every_output_and_keep_the_uncorrected_trajectory(tiny_model, video, tmp_path,
                                                                                monkeypatch):
    run(video, tmp_path / "plain", tiny_model)
    monkeypatch.setattr(closer_module, "verify_loop", accept_everything)
    summary = run(video, tmp_path / "loops", tiny_model, loop_closure=LOOPS)
    out = tmp_path / "loops"
    assert summary["loops"]["accepted"] > 0 and summary["loops"]["corrected"]
    raw = FrameStore(tmp_path / "plain").read_poses()[2]
    corrected = FrameStore(out).read_poses()[2]
    assert not np.allclose(raw, corrected)
    np.testing.assert_array_equal(FrameStore(out, corrected=False).read_poses()[2], raw)  # the store is untouched
    for kind in ("tum",):
        _, uncorrected = read_tum(out / f"trajectory_{kind}_uncorrected.txt")
        _, plain = read_tum(tmp_path / "plain" / f"trajectory_{kind}.txt")
        _, now = read_tum(out / f"trajectory_{kind}.txt")
        np.testing.assert_array_equal(uncorrected, plain)
        np.testing.assert_allclose(now[:, :3, 3], corrected[:, :3, 3], atol=1e-6)
    assert (out / "cloud.ply").read_bytes() != (tmp_path / "plain" / "cloud.ply").read_bytes()
    report = json.loads((out / LOOPS_FILE).read_text())
    assert report["graph"]["nodes"] == summary["chunks"]
    assert all(entry["graph_weight"] is not None for entry in report["loops"] if entry["accepted"])


@pytest.mark.parametrize("interrupt_after", [2, 5])
def test_a_run_with_loop_closure_interrupted_and_resumed_gives_the_same_files(tiny_model, video, tmp_path,
                                                                             monkeypatch, interrupt_after):
    monkeypatch.setattr(closer_module, "verify_loop", accept_everything)
    run(video, tmp_path / "plain", tiny_model, loop_closure=LOOPS)
    observe = closer_module.LoopCloser.observe
    calls = []

    def interrupting(self, finished):
        calls.append(1)
        if len(calls) == interrupt_after:
            raise KeyboardInterrupt
        observe(self, finished)

    monkeypatch.setattr(closer_module.LoopCloser, "observe", interrupting)
    with pytest.raises(KeyboardInterrupt):
        run(video, tmp_path / "resumed", tiny_model, loop_closure=LOOPS)
    monkeypatch.setattr(closer_module.LoopCloser, "observe", observe)
    with torch.no_grad():
        reconstruct(video, tmp_path / "resumed", tiny_model, settings(video, loop_closure=LOOPS), resume=True,
                    checkpoint_every=0.0)
    assert_same_outputs(tmp_path / "plain", tmp_path / "resumed")


def test_a_resumed_run_puts_back_what_loop_closure_wrote(tiny_model, video, tmp_path, monkeypatch):
    """Killed while it closed loops (corrected files already written): the resume starts from the stream's files."""
    monkeypatch.setattr(closer_module, "verify_loop", accept_everything)
    run(video, tmp_path / "plain", tiny_model, loop_closure=LOOPS)
    from loger3d.run import job

    def killed(out, closer, settings):
        close_loops(out, closer, settings)
        raise KeyboardInterrupt

    close_loops = job.close_loops
    monkeypatch.setattr(job, "close_loops", killed)
    with pytest.raises(KeyboardInterrupt):
        run(video, tmp_path / "resumed", tiny_model, loop_closure=LOOPS)
    monkeypatch.setattr(job, "close_loops", close_loops)
    with torch.no_grad():
        reconstruct(video, tmp_path / "resumed", tiny_model, settings(video, loop_closure=LOOPS), resume=True)
    assert_same_outputs(tmp_path / "plain", tmp_path / "resumed")


# ---------------------------------------------------------------------------------------------- verification
class _WindowModel:
    """Stands in for the model: predicts the window's frames exactly, in a frame of its own (``window``), or with
    end b's points moved by ``shift_b`` metres (a model that misplaces the revisit)."""

    def __init__(self, points, depth, window: Sim3, shift_b: float = 0.0, n_a: int = 0):
        self.points, self.depth, self.window, self.shift_b, self.n_a = points, depth, window, shift_b, n_a

    def forward_chunk(self, images):
        from loger3d.model.outputs import ChunkPrediction

        points = self.window.apply(self.points)
        points[self.n_a:, ..., 0] += self.shift_b
        n, h, w, _ = points.shape
        local = torch.ones(1, n, h, w, 3)
        local[..., 2] = torch.from_numpy(self.depth * self.window.scale)
        return ChunkPrediction(local, torch.full((1, n, h, w, 1), 5.0), torch.eye(4).repeat(1, n, 1, 1),
                               torch.from_numpy(points).float()[None]), None


def _plane_views(centres: np.ndarray, yaw: np.ndarray, h: int = 48, w: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """World points ``[n,h,w,3]`` and depth ``[n,h,w]`` of cameras at ``centres`` looking along +z (turned by
    ``yaw`` about y) at the plane z = 6."""
    u, v = np.meshgrid((np.arange(w) - w / 2) / (2 * w), (np.arange(h) - h / 2) / (2 * w))  # focal 2w pixels
    rays = np.stack([u, v, np.ones_like(u)], -1)
    points, depth = [], []
    for c, angle in zip(centres, yaw):
        r = Sim3.from_vector(np.array([0, angle, 0, 0, 0, 0, 0])).rotation
        world_rays = rays @ r.T
        t = (6.0 - c[2]) / world_rays[..., 2]
        points.append(c + t[..., None] * world_rays)
        depth.append(t)  # the local z of a ray with unit z is the ray parameter
    return np.stack(points), np.stack(depth)


def _end(indices, points, depth, drift: Sim3):
    from loger3d.loop.verify import EndFrames

    n, h, w, _ = points.shape
    return EndFrames(np.asarray(indices), np.zeros((n, h, w, 3), np.uint8), drift.apply(points).astype(np.float32),
                     (depth * drift.scale).astype(np.float32), np.ones((n, h, w), np.float32),
                     drift.apply(points[:, h // 2, w // 2]))


def _revisit(shift_b: float = 0.0):
    from loger3d.loop.verify import verify_loop

    rng = np.random.default_rng(3)
    centres = np.c_[rng.uniform(-0.3, 0.3, (8, 2)), np.zeros(8)]
    points, depth = _plane_views(centres, rng.uniform(-0.1, 0.1, 8))
    drift_a = Sim3.from_vector(np.array([0.01, -0.02, 0.03, 0.5, -0.2, 0.1, 0.02]))
    drift_b = Sim3.from_vector(np.array([-0.03, 0.05, -0.08, 2.5, 1.0, -0.4, -0.05]))
    window = Sim3.from_vector(np.array([0.4, -0.2, 0.9, 3.0, -1.0, 2.0, 0.3]))
    model = _WindowModel(points, depth, window, shift_b, n_a=4)
    check = LoopCheck(10, 500, 1, 40, 0.95, path_m=100.0)
    check = verify_loop(model, _end(range(8, 12), points[:4], depth[:4], drift_a),
                        _end(range(498, 502), points[4:], depth[4:], drift_b), check, VerifyOptions())
    return check, drift_a.compose(drift_b.inverse())


def test_verification_recovers_the_drift_between_the_ends_from_an_exact_model():
    check, truth = _revisit()
    assert check.accepted, check.reason
    # a robust scale of twice the median residual leaves a few exact points just outside it
    assert check.inliers > 0.9 and check.residual < 1e-6 and check.overlap > 0.9
    np.testing.assert_allclose(check.drift.matrix(), truth.matrix(), atol=1e-6)


def test_verification_rejects_a_model_that_misplaces_the_revisit():
    check, _ = _revisit(shift_b=3.0)
    assert not check.accepted and check.reason.startswith("overlap"), check.reason


@pytest.mark.parametrize("options, words", [
    (["--loop-similarity", "0.9"], ["--loop-similarity", "only apply with --loop-closure"]),
    (["--loop-closure", "--loop-min-gap", "5", "--window", "8"], ["--loop-min-gap 5", "at least the window"]),
    (["--loop-closure", "--save", "depth,conf"], ["loop closure", "--save depth,conf,images"]),
])
def test_loop_options_are_refused_in_one_line_before_anything_is_written(video, tmp_path, capsys, options, words):
    from loger3d.cli import main

    from .conftest import one_line_error

    assert main(["reconstruct", video, "-o", str(tmp_path / "out"), "--model", "seeded:tiny", *options]) == 2
    one_line_error(capsys, *words)
    assert not (tmp_path / "out").exists()


def test_loop_closure_on_several_devices_is_refused_before_the_folder_is_made(tiny_model, video, tmp_path):
    with pytest.raises(RunError, match="one device"), torch.no_grad():
        reconstruct(video, tmp_path / "out", tiny_model, settings(video, loop_closure=LOOPS), devices=["cpu", "cpu"])
    assert not (tmp_path / "out").exists()


def test_the_viewer_shows_the_uncorrected_trajectory_and_the_accepted_loops(tiny_model, video, tmp_path, monkeypatch):
    from loger3d.viewer import load_scene

    monkeypatch.setattr(closer_module, "verify_loop", accept_everything)
    run(video, tmp_path / "loops", tiny_model, loop_closure=LOOPS)
    scene = load_scene(tmp_path / "loops", max_points=1000)
    report = json.loads((tmp_path / "loops" / LOOPS_FILE).read_text())
    assert scene.loops.shape == (report["accepted"], 2, 3) and report["accepted"] > 0
    assert scene.uncorrected.shape == scene.trajectory.shape
    assert not np.allclose(scene.uncorrected, scene.trajectory)
    run(video, tmp_path / "plain", tiny_model)
    plain = load_scene(tmp_path / "plain", max_points=1000)
    assert plain.loops.shape == (0, 2, 3) and plain.uncorrected.shape == (0, 3)


def test_the_command_line_summary_says_what_loop_closure_did(video, tmp_path, capsys):
    from loger3d.cli import main

    assert main(["reconstruct", video, "-o", str(tmp_path / "out"), "--model", "seeded:tiny", "--window", "8",
                 "--overlap", "2", "--resolution", "112x84", "--loop-closure", "--loop-min-gap", "10",
                 "--loop-similarity", "-1"]) == 0
    report = json.loads((tmp_path / "out" / LOOPS_FILE).read_text())
    line = [s for s in capsys.readouterr().out.splitlines() if s.startswith("loop closure:")]
    assert line == [line[0]] and f"{report['verified']} candidates verified, {report['accepted']} accepted" in line[0]
