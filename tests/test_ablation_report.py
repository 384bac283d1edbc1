"""benchmarks/ablation.py's reports: ``join`` puts runs scored in several calls (or on several devices) into one
report and refuses reports scored otherwise; ``summarise``, ``table`` and ``plot`` give each seed's mean over worlds,
the mean over seeds and the spread (docs/ablation.md is written from them)."""

import argparse
import json
import sys
from pathlib import Path

import pytest

WORLDS = ["indoor-walk", "street-drive"]
LINE = [3.0, 5.0]  # the straight line's % of path on WORLDS


@pytest.fixture()
def ablation(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parent.parent / "benchmarks"))
    import ablation

    return ablation


def report(path: Path, device: str, scores: dict[tuple[str, int, str], list[float]], line=LINE, window=10) -> str:
    """An eval report of ``scores``: (variant, seed, chaining) -> % of path on each of WORLDS."""
    rows = [{"frames": 1000, "world": world, "world_seed": 600 + i, "variant": variant, "train_seed": seed,
             "align": align, "ate_pct_path": value, "device": device}
            for (variant, seed, align), values in scores.items()
            for i, (world, value) in enumerate(zip(WORLDS, values))]
    lines = [{"frames": 1000, "world": w, "world_seed": 600 + i, "ate_pct_path": v}
             for i, (w, v) in enumerate(zip(WORLDS, line))]
    runs = sorted({f"{v}-seed{s}" for v, s, _ in scores})
    path.write_text(json.dumps({
        "benchmark": "memory ablation (cut)", "date": "2026-12-04T00:00:00+00:00", "device": device,
        "command": "ablation.py eval", "frames": [1000], "worlds": len(WORLDS), "window": window, "overlap": 2,
        "size": "224x126", "runs": runs, "train": {r: {} for r in runs}, "training": {r: {} for r in runs},
        "straight_line": lines, "rows": rows, "summary": {}}))
    return str(path)


def test_join_keeps_each_run_from_its_latest_report_and_summarises_per_seed(ablation, tmp_path, monkeypatch,
                                                                              capsys):
    first = report(tmp_path / "a.json", "H200", {("hybrid", 0, "se3"): [1.0, 2.0], ("hybrid", 0, "none"): [9.0, 11.0],
                                                 ("no_memory", 0, "se3"): [2.0, 4.0]})
    second = report(tmp_path / "b.json", "cpu", {("hybrid", 1, "se3"): [2.0, 3.0], ("no_memory", 0, "se3"): [3.0, 3.0]})
    joined = tmp_path / "joined.json"
    monkeypatch.setattr(sys, "argv", ["ablation.py", "join", first, second, "--json", str(joined)])
    ablation.join(argparse.Namespace(reports=[first, second], json=str(joined)))
    out = json.loads(joined.read_text())
    assert out["runs"] == ["hybrid-seed0", "hybrid-seed1", "no_memory-seed0"]
    assert out["device"] == "H200, cpu"
    no_memory = [r for r in out["rows"] if r["variant"] == "no_memory"]
    assert [r["ate_pct_path"] for r in no_memory] == [3.0, 3.0] and {r["device"] for r in no_memory} == {"cpu"}
    summary = out["summary"]
    assert summary["hybrid/se3/1000"] == {"mean": 2.0, "lowest": 1.5, "highest": 2.5,
                                          "per_seed": {"0": 1.5, "1": 2.5}, "seeds": 2, "worlds": 2}
    assert summary["hybrid/none/1000"]["mean"] == 10.0 and summary["hybrid/none/1000"]["seeds"] == 1
    assert summary["no_memory/se3/1000"]["mean"] == 3.0
    assert summary["straight_line/-/1000"]["mean"] == 4.0
    assert list(summary) == ["hybrid/none/1000", "hybrid/se3/1000", "no_memory/se3/1000", "straight_line/-/1000"]

    capsys.readouterr()
    ablation.table(argparse.Namespace(json=str(joined)))
    lines = capsys.readouterr().out.splitlines()
    assert "| hybrid | se3 | 1000 | 1.50 % | 2.50 % | **2.00 %** | 1.00 |" in lines
    assert "| no memory | se3 | 1000 | 3.00 % | – | **3.00 %** | – |" in lines
    assert "| hybrid | se3 | 1.50 | 2.50 |" in lines  # per world, the mean over seeds

    chart = tmp_path / "chart.png"
    ablation.plot(argparse.Namespace(json=str(joined), plot=str(chart), title="shared first stage"))
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("other", [{"window": 12}, {"line": [3.0, 6.0]}])
def test_join_refuses_reports_scored_otherwise(ablation, tmp_path, other):
    """Another window (a protocol setting) or other straight-line scores (other worlds, or other code) cannot be
    joined: the means would mix two tests."""
    first = report(tmp_path / "a.json", "H200", {("hybrid", 0, "se3"): [1.0, 2.0]})
    second = report(tmp_path / "b.json", "cpu", {("hybrid", 1, "se3"): [2.0, 3.0]}, **other)
    with pytest.raises(SystemExit, match="score every run with the same"):
        ablation.join(argparse.Namespace(reports=[first, second], json=str(tmp_path / "joined.json")))
    assert not (tmp_path / "joined.json").exists()


def write_log(path: Path, values: dict[int, float]) -> str:
    """A training log of one value of every loss term per logged step: {step: value}, stage 0 up to step 20."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"step": step, "stage": 0 if step <= 20 else 1, "global_points": value,
                                        "local_points": value, "rot": value, "trans": value, "ttt_gate": value,
                                        "swa_gate": value}) + "\n" for step, value in values.items()))
    return str(path)


def test_losses_averages_each_stage_end_and_names_runs_from_their_logs(ablation, tmp_path, capsys):
    """Each stage's last ``--last`` logged steps are averaged; a run is named by RUN=PATH, metrics_<run>.jsonl or
    its folder."""
    committed = write_log(tmp_path / "metrics_hybrid-seed1.jsonl", {10: 9.0, 15: 1.0, 20: 3.0, 25: 5.0, 30: 7.0})
    folder = write_log(tmp_path / "no_memory-seed1" / "metrics.jsonl", {10: 0.0, 15: 0.0, 20: 0.0, 25: 2.0})
    named = "ttt_only-seed1=" + write_log(tmp_path / "log.jsonl", {5: 4.0})
    ablation.losses(argparse.Namespace(reports=[committed, folder, named], last=2))
    lines = capsys.readouterr().out.splitlines()
    assert lines[2] == "| 1 | hybrid-seed1 | 15–20 | " + " | ".join(["2.0000"] * 6) + " |"
    assert lines[3] == "| 1 | no_memory-seed1 | 15–20 | " + " | ".join(["0.0000"] * 6) + " |"
    assert lines[4] == "| 1 | ttt_only-seed1 | 5–5 | " + " | ".join(["4.0000"] * 6) + " |"
    assert lines[5] == "| 2 | hybrid-seed1 | 25–30 | " + " | ".join(["6.0000"] * 6) + " |"
    assert lines[6] == "| 2 | no_memory-seed1 | 25–25 | " + " | ".join(["2.0000"] * 6) + " |"
    assert len(lines) == 7
    with pytest.raises(SystemExit, match="no training log"):
        ablation.losses(argparse.Namespace(reports=[str(tmp_path / "missing.jsonl")], last=2))


def test_paired_compares_a_seeds_runs_on_the_worlds_both_were_scored_on(ablation, tmp_path, capsys):
    """Eval reports and a heldout_ate.py report (RUN=PATH) gather per run; runs of different seeds are not paired,
    but two variants compared in two seeds get a pooled row; rows of another chaining or window are left out."""
    scored = report(tmp_path / "a.json", "cpu", {("hybrid", 1, "se3"): [1.0, 2.0], ("hybrid", 1, "none"): [9.0, 9.0],
                                                 ("no_memory", 1, "se3"): [2.0, 2.0], ("hybrid", 0, "se3"): [5.0, 5.0]})
    data = json.loads(Path(scored).read_text())
    for row in data["rows"]:
        row["rpe_rot_deg_8"] = {"hybrid": 1.0, "no_memory": 0.5}[row["variant"]]
    Path(scored).write_text(json.dumps(data))
    heldout = tmp_path / "heldout.json"
    heldout.write_text(json.dumps({"frames": 1000, "rows": [
        {"world_seed": 700, "window": 10, "align": "se3", "ate_pct_path": 4.0, "rpe_rot_deg_8": 2.0},
        {"world_seed": 701, "window": 12, "align": "se3", "ate_pct_path": 99.0, "rpe_rot_deg_8": 0.0}]}))
    hybrid_more = tmp_path / "heldout_hybrid.json"
    hybrid_more.write_text(json.dumps({"frames": 1000, "rows": [
        {"world_seed": 700, "window": 10, "align": "se3", "ate_pct_path": 1.0, "rpe_rot_deg_8": 2.0}]}))
    ablation.paired(argparse.Namespace(reports=[scored, f"no_memory-seed1={heldout}", f"hybrid-seed1={hybrid_more}"],
                                       align="se3", window=10))
    lines = capsys.readouterr().out.splitlines()
    # worlds 600, 601, 700: hybrid 1, 2, 1; no memory 2, 2, 4: differences 1, 0, 3 (mean 4/3, s.d. 1.53, s.e. 0.88)
    assert lines[2:] == ["| 1 | hybrid | no memory | 3 | 1.33 % | 2.67 % | +1.33 ± 0.88 | 2 | 0 |"]
    ablation.paired(argparse.Namespace(reports=[scored, f"no_memory-seed1={heldout}", f"hybrid-seed1={hybrid_more}",
                                                f"no_memory-seed0={heldout}", f"hybrid-seed0={hybrid_more}"],
                                       align="se3", window=10))
    lines = capsys.readouterr().out.splitlines()
    # seed 0 (its hybrid's worlds 600 and 601 unmatched) adds 1 against 4 at world 700: pooled differences 1, 0, 3, 3
    # (mean 1.75, s.d. 1.5, s.e. 0.75)
    assert lines[2:] == ["| 0 | hybrid | no memory | 1 | 1.00 % | 4.00 % | +3.00 ± nan | 1 | 0 |",
                         "| 1 | hybrid | no memory | 3 | 1.33 % | 2.67 % | +1.33 ± 0.88 | 2 | 0 |",
                         "| all (0, 1) | hybrid | no memory | 4 | 1.25 % | 3.00 % | +1.75 ± 0.75 | 3 | 0 |"]
    for wrong in [str(heldout), f"hybrid-seed1={scored}", f"hybrid={heldout}", f"memoryless-seed1={heldout}"]:
        with pytest.raises(SystemExit, match="paired:"):
            ablation.paired(argparse.Namespace(reports=[wrong], align="se3", window=10))
