"""Benchmark runners end to end on fake dataset trees (tiny preset, seeded weights)."""

import json

import numpy as np

from loger3d.cli import main

from .test_eval_datasets import _kitti, _tum

TINY = ["--model", "seeded:tiny", "--resolution", "28x28", "--window", "4", "--overlap", "1"]


def test_kitti_benchmark_scores_reuses_and_reports(tmp_path, capsys):
    gt = _kitti(tmp_path / "kitti", n=9)
    out = tmp_path / "out"
    assert main(["eval", "kitti", "--data", str(tmp_path / "kitti"), "--out", str(out), "--sequences", "00",
                 *TINY]) == 0
    assert "| 00 |" in capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    row = results["sequences"][0]
    assert row["sequence"] == "00" and row["frames"] == 9 and row["num_poses"] == 9
    assert row["ate_rmse"] >= 0 and "rpe_rot_rmse" in row and row["align"] == "sim3"
    assert row["protocol"]["reset_every"] == 5  # the official KITTI setting, recorded
    assert results["mean"]["ate_rmse"] == row["ate_rmse"]
    assert (out / "plots" / "00_top.png").exists() and (out / "plots" / "00_ate.png").exists()
    run = json.loads((out / "runs" / "00" / "run.json").read_text())
    assert run["settings"]["reset_every"] == 5 and run["settings"]["window"] == 4
    # The estimate scored is the run's own trajectory, paired frame by frame with the ground truth.
    from loger3d.eval.traj import score_trajectory
    from loger3d.sinks.trajectory import read_kitti

    est = read_kitti(out / "runs" / "00" / "trajectory_kitti.txt")
    assert np.isclose(score_trajectory(gt, est).metrics["ate_rmse"], row["ate_rmse"])
    stamp = (out / "runs" / "00" / "run.json").stat().st_mtime_ns
    assert main(["eval", "kitti", "--data", str(tmp_path / "kitti"), "--out", str(out), "--sequences", "00",
                 *TINY]) == 0
    assert (out / "runs" / "00" / "run.json").stat().st_mtime_ns == stamp  # finished: not run again


def test_tum_benchmark_with_depth(tmp_path, capsys):
    _tum(tmp_path / "tum", n=12)
    out = tmp_path / "out"
    assert main(["eval", "tum", "--data", str(tmp_path / "tum"), "--out", str(out), "--depth", *TINY]) == 0
    row = json.loads((out / "results.json").read_text())["sequences"][0]
    assert 0 <= row["depth"]["abs_rel"] and 0 <= row["depth"]["delta1"] <= 1
    assert "AbsRel" in (out / "results.md").read_text()


def test_unknown_tree_is_a_one_line_error(tmp_path, capsys):
    assert main(["eval", "kitti", "--data", str(tmp_path / "nothing"), "--out", str(tmp_path / "o"), *TINY]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "KITTI" in err[0]


def test_sevenscenes_scores_the_reconstruction(tmp_path):
    """A fake 7-Scenes sequence of a textured wall with full depth: Acc/Comp/NC are computed."""
    from PIL import Image

    from loger3d.sinks.trajectory import quaternion_to_rotation

    folder = tmp_path / "7s" / "chess" / "seq-01"
    folder.mkdir(parents=True)
    h, w = 48, 64
    rng = np.random.default_rng(0)
    for i in range(8):
        stem = folder / f"frame-{i:06d}"
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(f"{stem}.color.png")
        Image.fromarray(np.full((h, w), 2000 + 10 * i, dtype=np.uint16)).save(f"{stem}.depth.proj.png")
        pose = np.eye(4)
        pose[:3, :3] = quaternion_to_rotation(np.array([0.0, 0.02 * i, 0.0, 1.0]))
        pose[:3, 3] = [0.05 * i, 0.01 * i * i, 0.02 * np.sin(i)]
        np.savetxt(f"{stem}.pose.txt", pose)
    (tmp_path / "7s" / "chess" / "TestSplit.txt").write_text("sequence1\n")
    out = tmp_path / "out"
    assert main(["eval", "7scenes", "--data", str(tmp_path / "7s"), "--out", str(out), "--stride", "1", *TINY]) == 0
    rec = json.loads((out / "results.json").read_text())["sequences"][0]["reconstruction"]
    assert {"acc", "comp", "chamfer", "nc"} <= rec.keys()
    assert all(np.isfinite(rec[k]) for k in ("acc", "comp", "chamfer", "nc")) and 0 <= rec["nc"] <= 1
    assert "Chamfer" in (out / "results.md").read_text()


def test_sequences_sharded_over_two_workers_score_like_one(tmp_path, capsys):
    """``--devices cpu,cpu``: two worker processes share the sequences; the metrics equal a one-device run's."""
    import shutil

    _kitti(tmp_path / "kitti", n=7)
    for part in ("sequences/00", "poses/00.txt"):  # a second sequence with ground truth
        src = tmp_path / "kitti" / part
        dst = tmp_path / "kitti" / part.replace("00", "01")
        shutil.copytree(src, dst) if src.is_dir() else shutil.copy(src, dst)
    runs = {}
    for label, extra in (("one", []), ("two", ["--devices", "cpu,cpu"])):
        assert main(["eval", "kitti", "--data", str(tmp_path / "kitti"), "--out", str(tmp_path / label),
                     "--sequences", "00", "01", *TINY, *extra]) == 0
        runs[label] = json.loads((tmp_path / label / "results.json").read_text())
    capsys.readouterr()
    assert [r["sequence"] for r in runs["two"]["sequences"]] == ["00", "01"]
    assert runs["one"]["sequences"] == runs["two"]["sequences"] and runs["one"]["mean"] == runs["two"]["mean"]
    assert main(["eval", "kitti", "--data", str(tmp_path / "kitti"), "--out", str(tmp_path / "x"),
                 "--devices", "gpu7", *TINY]) == 2
    assert "--devices" in capsys.readouterr().err


def test_fast_path_benchmark_is_recorded(tmp_path, capsys):
    """``--fast``: the runs use the fast path and say so; a later run without it refuses to mix."""
    _kitti(tmp_path / "kitti", n=6)
    out = tmp_path / "out"
    args = ["eval", "kitti", "--data", str(tmp_path / "kitti"), "--out", str(out), "--sequences", "00", *TINY]
    assert main([*args, "--fast"]) == 0
    run = json.loads((out / "runs" / "00" / "run.json").read_text())
    assert run["status"] == "complete" and run["settings"]["fast"] is True
    assert json.loads((out / "results.json").read_text())["sequences"][0]["frames"] == 6
    capsys.readouterr()
    assert main(args) == 2
    assert "other settings" in capsys.readouterr().err


def test_protocol_windows_and_chaining_follow_the_model_card(monkeypatch):
    """The per-model window of a protocol is looked up by the card's protocol name; the chaining is the card's."""
    from dataclasses import replace

    from loger3d.eval.runner import protocol_settings
    from loger3d.weights.registry import MODEL_CARDS

    protocol = {"window": {"LoGeR": 32, "LoGeR*": 64}, "overlap": 3, "reset_every": 5}
    assert protocol_settings(protocol, "loger") == (32, 3, 5, "none")
    assert protocol_settings(protocol, "loger_star") == (64, 3, 5, "se3")
    assert protocol_settings(protocol, "pi3") == (32, 3, 5, "sim3")  # not named by the paper: the first window
    monkeypatch.setitem(MODEL_CARDS, "loger", replace(MODEL_CARDS["loger"], protocol_name="LoGeR*", align="sim3"))
    assert protocol_settings(protocol, "loger") == (64, 3, 5, "sim3")


def test_loop_closure_benchmark_closes_loops_in_each_run(tmp_path, capsys):
    """``--loop-closure``: each run keeps its images for verification and reports its loops; scores come from
    the (corrected) frame store."""
    _kitti(tmp_path / "kitti", n=6)
    out = tmp_path / "out"
    assert main(["eval", "kitti", "--data", str(tmp_path / "kitti"), "--out", str(out), "--sequences", "00", *TINY,
                 "--loop-closure"]) == 0
    run = json.loads((out / "runs" / "00" / "run.json").read_text())
    assert run["settings"]["loop_closure"]["similarity"] == 0.8 and "images" in run["settings"]["save"]
    assert run["loops"] == {"candidates": 0, "verified": 0, "accepted": 0, "corrected": False}
    assert json.loads((out / "runs" / "00" / "loops" / "loops.json").read_text())["accepted"] == 0
    assert json.loads((out / "results.json").read_text())["sequences"][0]["frames"] == 6
