"""The end of a run with loop closure: the corrected trajectory, cloud and exports, and what was found.

What it writes, and in which order (a run killed at any point resumes to the same files, see
:func:`discard_loop_outputs`):

    trajectory_{tum,kitti}_uncorrected.txt   the trajectories as the stream made them (copies)
    loops/corrections.npz                    a Sim(3) per frame; FrameStore readers apply it
    trajectory_{tum,kitti}.txt               rewritten with the corrected poses
    loops/loops.json                         every candidate verified, the verdicts, the graph

The frame store itself is never rewritten: its readers apply the corrections, so the cloud, the
exports, the viewer and ``loger3d export`` all see the corrected run. When no loop is accepted
nothing is corrected and every output is the one a run without loop closure writes.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from ..loop.closer import LoopCloser
from ..sinks.cloud import VoxelCloud
from ..sinks.corrections import CORRECTIONS_FILE, remove_corrections, write_corrections
from ..sinks.store import FrameStore
from ..sinks.trajectory import TrajectoryWriter, write_kitti, write_tum
from ..util.atomic import atomic_write, make_folder, write_json
from .exports import rebuild_cloud
from .settings import RunSettings

__all__ = ["LOOPS_FILE", "UNCORRECTED_FILES", "close_loops", "discard_loop_outputs"]

LOOPS_FILE = Path("loops") / "loops.json"
UNCORRECTED_FILES = {name: name.replace(".txt", "_uncorrected.txt") for name in TrajectoryWriter.FILES}


def close_loops(out: Path, closer: LoopCloser, settings: RunSettings) -> tuple[VoxelCloud | None, dict]:
    """Verify what is left, solve, and write the corrected run; returns the corrected cloud (``None``
    when nothing was corrected: the live cloud stands) and the summary for run.json."""
    closer.verify_ready(closer.frames_seen, final=True)
    corrections, report = closer.solve()
    cloud = None
    if corrections is not None:
        _, _, raw_poses, _ = FrameStore(out, corrected=False).read_poses()
        for name, kept in UNCORRECTED_FILES.items():
            atomic_write(out / kept, lambda path, source=out / name: shutil.copyfile(source, path))
        write_corrections(out, corrections)
        _, timestamps, poses, _ = FrameStore(out).read_poses()
        write_tum(out / TrajectoryWriter.FILES[0], timestamps, poses)
        write_kitti(out / TrajectoryWriter.FILES[1], poses)
        report["largest_shift_m"] = float(np.linalg.norm(poses[:, :3, 3] - raw_poses[:, :3, 3], axis=1).max())
        cloud = rebuild_cloud(out, settings.conf_threshold, settings.edge_rtol, settings.voxel_size,
                              settings.max_points, settings.cloud_stride)
    make_folder(out / LOOPS_FILE.parent)
    write_json(out / LOOPS_FILE, report)
    summary = {key: report[key] for key in ("candidates", "verified", "accepted")}
    summary["corrected"] = corrections is not None
    return cloud, summary


def discard_loop_outputs(out: Path) -> None:
    """Before a resume: put back the uncorrected trajectories and drop the corrections and the report, so that
    the run continues from what the stream wrote."""
    for name, kept in UNCORRECTED_FILES.items():
        if (out / kept).exists():
            os.replace(out / kept, out / name)
    remove_corrections(out)
    (out / LOOPS_FILE).unlink(missing_ok=True)
    if (out / CORRECTIONS_FILE).parent.is_dir() and not any((out / CORRECTIONS_FILE).parent.iterdir()):
        (out / CORRECTIONS_FILE).parent.rmdir()
