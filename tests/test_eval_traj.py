"""``eval traj``: association as evo, files scored as evo scores them, the JSON line, errors and the plot."""

import argparse
import copy
import json

import numpy as np
import pytest

from loger3d.cli import main
from loger3d.cli.eval import add_parser as add_eval_parser
from loger3d.errors import InputError
from loger3d.eval.traj import associate_timestamps, detect_format, load_trajectory_pair, score_trajectory
from loger3d.sinks.trajectory import write_kitti, write_tum

from .test_eval_metrics import (
    MOVE,
    line_ate_by_hand,
    noisy_estimate,
    smooth_trajectory,
    straight_line_pair,
    straight_track,
)

evo_metrics = pytest.importorskip("evo.core.metrics")
from evo import main_ape, main_rpe  # noqa: E402
from evo.core import sync  # noqa: E402
from evo.core import trajectory as evo_trajectory  # noqa: E402
from evo.core.geometry import GeometryException  # noqa: E402
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
    with pytest.raises(ValueError, match="collinear"):  # an exact line along x: evo refuses it too
        score_trajectory(straight_track(50), straight_track(50), "sim3")
    assert score_trajectory(straight_track(50), straight_track(50), "origin").metrics["ate_max"] == 0.0


def replace_value(path, pose: int, column: int, text: str) -> int:
    """Put ``text`` in place of number ``column`` of the ``pose``-th pose line of a file; return its line number."""
    lines = path.read_text().splitlines(keepends=True)
    numbers = [i for i, line in enumerate(lines) if line.strip() and not line.startswith("#")]
    index = numbers[pose]
    values = lines[index].split()
    values[column] = text
    lines[index] = " ".join(values) + "\n"
    path.write_text("".join(lines))
    return index + 1


def main_error(argv: list[str], capsys) -> str:
    """The one stderr line of ``loger3d`` refusing ``argv`` (exit status 2, no traceback)."""
    code = main(["eval", "traj", *argv])
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in captured.err, captured.err
    assert lines[0].startswith("loger3d: error: ")
    return lines[0]


@pytest.mark.parametrize(
    ("fmt", "which", "pose", "column", "text"),
    [
        ("tum", "est", 15, 3, "nan"),  # a position
        ("tum", "gt", 0, 6, "NaN"),  # a quaternion, on the first pose
        ("tum", "est", 39, 0, "inf"),  # a timestamp, on the last pose
        ("kitti", "est", 16, 3, "nan"),
        ("kitti", "gt", 7, 11, "-inf"),
        ("kitti", "est", 20, 0, "1e999"),  # overflows to inf
    ],
)
def test_a_non_finite_number_is_named_by_file_and_line(tmp_path, capsys, fmt, which, pose, column, text):
    gt = smooth_trajectory(40, seed=3)
    paths = {"gt": tmp_path / f"gt_{fmt}.txt", "est": tmp_path / f"trajectory_{fmt}.txt"}
    for name, poses in (("gt", gt), ("est", noisy_estimate(gt))):
        if fmt == "tum":
            write_tum(paths[name], np.arange(40.0), poses)
        else:
            write_kitti(paths[name], poses)
    line = replace_value(paths[which], pose, column, text)
    assert line == pose + (2 if fmt == "tum" else 1)  # TUM files begin with a '#' header
    message = main_error(["--gt", str(paths["gt"]), "--est", str(paths["est"])], capsys)
    expected = f"{paths[which]}:{line}: not a finite number ({text!r}): remove or repair that line"
    assert message == f"loger3d: error: {expected}"


def test_other_unreadable_lines_are_named_by_file_and_line(tmp_path, capsys):
    gt = smooth_trajectory(20, seed=4)
    write_tum(tmp_path / "gt.txt", np.arange(20.0), gt)
    write_tum(tmp_path / "est.txt", np.arange(20.0), gt)
    line = replace_value(tmp_path / "est.txt", 5, 2, "1.0.0")
    message = main_error(["--gt", str(tmp_path / "gt.txt"), "--est", str(tmp_path / "est.txt")], capsys)
    assert message.endswith(f"est.txt:{line}: not a number ('1.0.0'): remove or repair that line")
    write_tum(tmp_path / "est.txt", np.arange(20.0), gt)
    for column in (4, 5, 6, 7):
        line = replace_value(tmp_path / "est.txt", 9, column, "0")
    message = main_error(["--gt", str(tmp_path / "gt.txt"), "--est", str(tmp_path / "est.txt")], capsys)
    assert f"est.txt:{line}: the quaternion (qx qy qz qw) is zero" in message
    (tmp_path / "empty.txt").write_text("# timestamp tx ty tz qx qy qz qw\n")
    message = main_error(["--gt", str(tmp_path / "gt.txt"), "--est", str(tmp_path / "empty.txt"), "--format", "tum"],
                         capsys)
    assert message.endswith("empty.txt holds no poses: pass a TUM or KITTI trajectory file")


@pytest.mark.parametrize("align", ["sim3", "se3"])
@pytest.mark.parametrize("noise", [False, True])
def test_straight_line_files_are_scored_as_evo_scores_them(tmp_path, capsys, align, noise):
    move = MOVE if align == "sim3" else type(MOVE)(MOVE.rotation, MOVE.translation)
    gt, est, a, b, c = straight_line_pair(150, along=0.05 * noise, across=0.2 * noise, seed=11, move=move)
    stamps = 50.0 + np.arange(150) / 10.0
    write_tum(tmp_path / "gt.txt", stamps, gt)
    write_tum(tmp_path / "est.txt", stamps, est)
    code = main(["eval", "traj", "--gt", str(tmp_path / "gt.txt"), "--est", str(tmp_path / "est.txt"),
                 "--align", align, "--json"])
    out, err = capsys.readouterr()
    ref, est_traj = sync.associate_trajectories(file_interface.read_tum_trajectory_file(tmp_path / "gt.txt"),
                                                file_interface.read_tum_trajectory_file(tmp_path / "est.txt"))
    # The cross-covariance is rank 1 in exact arithmetic: whether its second singular value rounds above machine
    # epsilon depends on the BLAS build, and evo then refuses to align. Both tools must decide alike.
    try:
        expected = evo_scores(ref, est_traj, align)
    except GeometryException:
        assert code == InputError.exit_code and "collinear within machine precision" in err
        return
    result = json.loads(out.strip().splitlines()[-1])
    assert code == 0 and result["num_poses"] == 150
    by_hand = line_ate_by_hand(a, b, c, align == "sim3")
    if noise:
        assert result["ate_rmse"] == pytest.approx(np.sqrt(np.mean(by_hand**2)), rel=1e-8)
        assert result["ate_max"] == pytest.approx(by_hand.max(), rel=1e-8)
    else:
        assert result["ate_max"] < 1e-9 and result["rpe_trans_max"] < 1e-9
    for key, value in expected.items():
        assert result[key] == pytest.approx(value, rel=1e-6, abs=1e-12), key


def test_motionless_estimate_is_refused_in_one_line(tmp_path, capsys):
    gt = smooth_trajectory(30, seed=2)
    still = np.tile(np.eye(4), (30, 1, 1))
    still[:, :3, 3] = [0.5, -1.0, 2.0]
    write_kitti(tmp_path / "gt.txt", gt)
    write_kitti(tmp_path / "est.txt", still)
    message = main_error(["--gt", str(tmp_path / "gt.txt"), "--est", str(tmp_path / "est.txt")], capsys)
    assert "all 30 estimated positions to align are the same point (zero variance)" in message
    assert "use align 'origin' or 'none'" in message
    code = main(["eval", "traj", "--gt", str(tmp_path / "gt.txt"), "--est", str(tmp_path / "est.txt"),
                 "--align", "origin", "--json"])
    assert code == 0 and json.loads(capsys.readouterr().out.splitlines()[-1])["ate_max"] > 0


def test_eval_without_a_benchmark_prints_usage(capsys):
    args = parser().parse_args(["eval"])
    assert args.func(args) == 2
    assert "traj" in capsys.readouterr().err
