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
