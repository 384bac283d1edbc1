"""``eval traj``: association as evo, files scored as evo scores them, the JSON line, errors and the plot."""

import argparse
import copy
import json

import numpy as np
import pytest

from loger3d.eval.cli import add_eval_parser
from loger3d.eval.traj import associate_timestamps, detect_format, load_trajectory_pair, score_trajectory
from loger3d.sinks.trajectory import write_kitti, write_tum

from .test_eval_metrics import noisy_estimate, smooth_trajectory, straight_track

evo_metrics = pytest.importorskip("evo.core.metrics")
from evo import main_ape, main_rpe  # noqa: E402
from evo.core import sync  # noqa: E402
from evo.core import trajectory as evo_trajectory  # noqa: E402
from evo.tools import file_interface  # noqa: E402


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="loger3d")
    add_eval_parser(top.add_subparsers(dest="command"))
    return top


def run(argv: list[str], capsys) -> tuple[int, str]:
    args = parser().parse_args(["eval", "traj", *argv])
    code = args.func(args)
    return code, capsys.readouterr().out


def evo_trajectory_at(stamps: np.ndarray, poses: np.ndarray):
    return evo_trajectory.PoseTrajectory3D(poses_se3=list(poses), timestamps=stamps)


@pytest.mark.parametrize(
    ("n_gt", "n_est", "shuffle"), [(400, 250, False), (250, 400, False), (300, 300, False), (400, 250, True)]
)
def test_association_equals_evo(n_gt, n_est, shuffle):
    rng = np.random.default_rng(n_gt + n_est)
    gt_stamps = np.sort(rng.uniform(0, 20, n_gt))
    est_stamps = np.sort(rng.uniform(-1, 21, n_est))
    est_stamps[::7] = gt_stamps[rng.integers(0, n_gt, len(est_stamps[::7]))] + rng.uniform(-0.012, 0.012)
    if shuffle:
        gt_stamps = rng.permutation(gt_stamps)  # unsorted: evo falls back to a linear search
    gt_poses, est_poses = smooth_trajectory(n_gt, seed=1), smooth_trajectory(n_est, seed=2)
    gt_idx, est_idx = associate_timestamps(gt_stamps, est_stamps)
    ref, est = sync.associate_trajectories(evo_trajectory_at(gt_stamps, gt_poses),
                                           evo_trajectory_at(est_stamps, est_poses))
    assert len(gt_idx) == ref.num_poses > 10
    np.testing.assert_array_equal(gt_stamps[gt_idx], ref.timestamps)
    np.testing.assert_array_equal(est_stamps[est_idx], est.timestamps)
    np.testing.assert_array_equal(gt_poses[gt_idx], np.array(ref.poses_se3))


def test_association_tie_goes_to_the_earlier_stamp_as_evo():
    gt_stamps = np.array([0.0, 1.0, 1.01, 2.0])
    est_stamps = np.array([1.005])  # equidistant from 1.0 and 1.01 (up to rounding, as in evo)
    ref, _ = sync.associate_trajectories(evo_trajectory_at(gt_stamps, smooth_trajectory(4)),
                                         evo_trajectory_at(est_stamps, smooth_trajectory(1)))
    assert gt_stamps[associate_timestamps(gt_stamps, est_stamps)[0]].tolist() == ref.timestamps.tolist()
    with pytest.raises(ValueError, match="no timestamps match"):
        associate_timestamps(gt_stamps, est_stamps + 100)


def evo_scores(ref, est, align: str) -> dict[str, float]:
    """ATE and RPE (1 frame) statistics from evo's own pipeline, each on a fresh copy of the estimate."""
    options = {"sim3": {"align": True, "correct_scale": True}, "se3": {"align": True}}[align]
    scores = {}
    ape = main_ape.ape(ref, copy.deepcopy(est), evo_metrics.PoseRelation.translation_part, **options)
    scores.update({"ate_rmse": ape.stats["rmse"], "ate_mean": ape.stats["mean"], "ate_max": ape.stats["max"]})
    for name, relation in (("trans", evo_metrics.PoseRelation.translation_part),
                           ("rot", evo_metrics.PoseRelation.rotation_angle_deg)):
        rpe = main_rpe.rpe(ref, copy.deepcopy(est), relation, delta=1,
                           delta_unit=evo_metrics.Unit.frames, **options)
        scores.update({f"rpe_{name}_rmse": rpe.stats["rmse"], f"rpe_{name}_mean": rpe.stats["mean"]})
    return scores


@pytest.mark.parametrize("align", ["sim3", "se3"])
def test_tum_files_scored_as_evo_scores_them(tmp_path, capsys, align):
    rng = np.random.default_rng(5)
    gt = smooth_trajectory(600, seed=5)
    gt_stamps = 100.0 + np.arange(600) / 30.0
    keep = np.sort(rng.choice(600, 450, replace=False))  # the estimate skips frames, stamps jitter by ±4 ms
    est = noisy_estimate(gt, seed=6)[keep]
    est_stamps = gt_stamps[keep] + rng.uniform(-0.004, 0.004, len(keep))
    write_tum(tmp_path / "gt.txt", gt_stamps, gt)
    write_tum(tmp_path / "est.txt", est_stamps, est)
    code, out = run(["--gt", str(tmp_path / "gt.txt"), "--est", str(tmp_path / "est.txt"), "--align", align,
                     "--json"], capsys)
    result = json.loads(out.strip().splitlines()[-1])
    ref, est_traj = sync.associate_trajectories(file_interface.read_tum_trajectory_file(tmp_path / "gt.txt"),
                                                file_interface.read_tum_trajectory_file(tmp_path / "est.txt"))
    assert code == 0 and result["num_poses"] == ref.num_poses == 450 and result["format"] == "tum"
    for key, value in evo_scores(ref, est_traj, align).items():
        assert result[key] == pytest.approx(value, rel=1e-6), key


def test_kitti_files_scored_as_evo_scores_them_with_segment_errors(tmp_path, capsys):
    gt = smooth_trajectory(900, seed=7, speed=1.0)  # over 1 km: KITTI segments fit
    write_kitti(tmp_path / "gt.txt", gt)
    write_kitti(tmp_path / "est.txt", noisy_estimate(gt, seed=8))
    code, out = run(["--gt", str(tmp_path / "gt.txt"), "--est", str(tmp_path / "est.txt"), "--json"], capsys)
    result = json.loads(out.strip().splitlines()[-1])
    ref = file_interface.read_kitti_poses_file(tmp_path / "gt.txt")
    est = file_interface.read_kitti_poses_file(tmp_path / "est.txt")
    for key, value in evo_scores(ref, est, "sim3").items():
        assert result[key] == pytest.approx(value, rel=1e-6), key
    assert result["align"] == "sim3" and result["scale"] == pytest.approx(1 / 0.37, rel=0.2)
    assert result["kitti_segments"] > 100 and 0 < result["kitti_t_err"] and 0 < result["kitti_r_err"]


def test_json_keys_and_short_trajectory_has_no_kitti_keys(tmp_path, capsys):
    gt = smooth_trajectory(80, seed=9)  # about 45 m of path
    write_kitti(tmp_path / "gt.txt", gt)
    write_kitti(tmp_path / "est.txt", noisy_estimate(gt))
    _, out = run(["--gt", str(tmp_path / "gt.txt"), "--est", str(tmp_path / "est.txt"), "--json",
                  "--delta", "2", "--delta-unit", "m"], capsys)
    result = json.loads(out.strip().splitlines()[-1])
    for key in ("ate_rmse", "ate_mean", "rpe_trans_rmse", "rpe_rot_rmse", "num_poses", "align", "scale"):
        assert key in result
    assert result["path_length"] < 100 and not any(key.startswith("kitti_") for key in result)
    assert result["rpe_delta"] == 2.0 and result["rpe_delta_unit"] == "m"


def test_text_report_and_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    gt = straight_track(300, spacing=0.5)
    gt[:, 2, 3] = np.sin(np.arange(300) / 20.0)  # not a line, so Umeyama is determined
    est = gt.copy()
    est[:, :3, 3] *= 2.0
    write_tum(tmp_path / "gt.txt", np.arange(300.0), gt)
    write_tum(tmp_path / "est.txt", np.arange(300.0), est)
    code, out = run(["--gt", str(tmp_path / "gt.txt"), "--est", str(tmp_path / "est.txt"), "--plot",
                     str(tmp_path / "top.png")], capsys)
    assert code == 0
    assert "ATE (m)" in out and "RPE rot (deg)" in out and "scale 0.5" in out and "KITTI segments (" in out
    assert (tmp_path / "top.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_input_errors(tmp_path):
    gt = smooth_trajectory(50)
    write_kitti(tmp_path / "gt.txt", gt)
    write_kitti(tmp_path / "short.txt", gt[:40])
    write_tum(tmp_path / "est.txt", np.arange(50.0), gt)
    (tmp_path / "bad.txt").write_text("1 2 3\n")
    with pytest.raises(ValueError, match="same length"):
        load_trajectory_pair(tmp_path / "gt.txt", tmp_path / "short.txt")
    with pytest.raises(ValueError, match="different formats"):
        load_trajectory_pair(tmp_path / "gt.txt", tmp_path / "est.txt")
    with pytest.raises(ValueError, match="neither TUM"):
        detect_format(tmp_path / "bad.txt")
    with pytest.raises(ValueError, match="collinear"):
        score_trajectory(straight_track(50), straight_track(50), "sim3")
    assert score_trajectory(straight_track(50), straight_track(50), "origin").metrics["ate_max"] == 0.0


def test_eval_without_a_benchmark_prints_usage(capsys):
    args = parser().parse_args(["eval"])
    assert args.func(args) == 2
    assert "traj" in capsys.readouterr().err
