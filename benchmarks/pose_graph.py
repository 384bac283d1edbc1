"""Time of loop closure's pose-graph solve (``loop.graph.solve_pose_graph``) on long runs, on the CPU.

A run of ``--chunks`` chunks with a random per-chunk Sim(3) drift (a small bias plus noise, the case of
tests/test_loop_graph.py's scaling test) and ``--loops`` exact loop edges between chunks 50–1,500 apart; the
solve is timed ``--repeats`` times. Also reported: the iterations and the largest loop misfit left.

    python benchmarks/pose_graph.py --json benchmarks/results/pose_graph/pose_graph_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone

import numpy as np

from loger3d.loop.graph import LoopEdge, solve_pose_graph
from loger3d.loop.sim3 import Sim3


def case(chunks: int, loops: int, seed: int) -> tuple[list[LoopEdge], list[Sim3]]:
    rng = np.random.default_rng(seed)
    steps = np.array([0, np.radians(0.005), 0, 0.002, 0, 0, 0.0001]) + rng.normal(size=(chunks, 7)) * np.array(
        [np.radians(0.03)] * 3 + [0.005] * 3 + [0.0005])
    drifts = [Sim3.identity()]
    for step in steps[1:]:
        drifts.append(drifts[-1].compose(Sim3.from_vector(step)))
    edges = []
    for a in rng.integers(0, chunks - 200, loops):
        b = int(min(a + rng.integers(50, 1500), chunks - 1))
        edges.append(LoopEdge(int(a), b, drifts[a].compose(drifts[b].inverse())))
    return edges, drifts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, nargs="*", default=[300, 3000, 10000])
    parser.add_argument("--loops", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", required=True)
    args = parser.parse_args()
    rows = []
    for chunks in args.chunks:
        edges, _ = case(chunks, args.loops, seed=14)
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            solution = solve_pose_graph(chunks, edges)
            times.append(time.perf_counter() - start)
        misfit = max(np.linalg.norm(solution.corrections[e.b].inverse().compose(
            solution.corrections[e.a].compose(e.drift)).translation) for e in edges)
        rows.append({"chunks": chunks, "loops": len(edges), "seconds_min": min(times), "seconds_median":
                     float(np.median(times)), "iterations": solution.iterations, "largest_misfit_m": float(misfit)})
        print(json.dumps(rows[-1]), flush=True)
    report = {"benchmark": "pose_graph", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "device": f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)",
              "python": platform.python_version(), "numpy": np.__version__, "command": " ".join(sys.argv),
              "rows": rows}
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
