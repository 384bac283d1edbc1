"""``loger3d demo``: the sample video shipped in the package through the shipped model, then scored.

The point is a first run that needs nothing: no download, no GPU, well under a minute on a laptop
CPU, and a number that says the pipeline works (the camera trajectory against the sample's ground
truth). The model is small and briefly trained (README, "The shipped model"), so the score shows
the pipeline, not LoGeR's accuracy.

    assets/sample/video.mp4             the frames (H.264, 10 fps)
    assets/sample/groundtruth_tum.txt   camera-to-world ground truth, timestamps = video times
    assets/sample/intrinsics.txt        the pinhole camera that rendered it
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from .eval.traj import load_trajectory_pair, score_trajectory
from .run import RUN_FILE, RunError
from .util.atomic import write_json
from .weights.registry import MODEL_CARDS

__all__ = ["MODEL", "SAMPLE_DIR", "SAMPLE_VIDEO", "SAMPLE_GT", "SAMPLE_RESOLUTION", "SCORE_FILE",
           "prepare_output", "score_run"]

MODEL = "tiny_synthetic"
SAMPLE_DIR = Path(__file__).parent / "assets" / "sample"
SAMPLE_VIDEO = SAMPLE_DIR / "video.mp4"
SAMPLE_GT = SAMPLE_DIR / "groundtruth_tum.txt"
#: The video's own size, which is also the model's training size (its card's).
SAMPLE_RESOLUTION = "x".join(map(str, MODEL_CARDS[MODEL].training_size))
SCORE_FILE = "demo_score.json"


def _is_demo(out: Path) -> bool:
    """Whether ``out`` holds a run of this demo (finished or not): the only kind ``--force`` may delete."""
    try:
        settings = json.loads((out / RUN_FILE).read_text())["settings"]
        return settings["model"] == MODEL and [Path(p).name for p in settings["input"]] == [SAMPLE_VIDEO.name]
    except (OSError, ValueError, KeyError, TypeError):
        return False


def prepare_output(out: Path, force: bool) -> None:
    """Leave ``out`` absent or empty; an earlier demo there is removed only with ``force``, anything else never."""
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return
    if not out.is_dir():
        raise RunError(f"output {out} is a file; choose a folder with -o")
    if not _is_demo(out):
        raise RunError(f"output folder {out} exists and holds something other than a loger3d demo; "
                       f"choose a new folder with -o")
    if not force:
        raise RunError(f"output folder {out} already holds a demo; pass --force to replace it, or choose "
                       f"another folder with -o")
    shutil.rmtree(out)


def score_run(out: Path) -> dict:
    """Score ``out/trajectory_tum.txt`` against the sample's ground truth and write ``out/demo_score.json``.

    Sim(3) alignment, as for any monocular method (the scale of a single video is unknown);
    ATE in metres and in percent of the ground-truth path, RPE between consecutive frames.
    """
    gt, est, info = load_trajectory_pair(SAMPLE_GT, out / "trajectory_tum.txt")
    metrics = score_trajectory(gt, est, "sim3").metrics
    score = {"model": MODEL, "sample": SAMPLE_VIDEO.name, **info, **metrics,
             "ate_percent_of_path": 100.0 * metrics["ate_rmse"] / metrics["path_length"]}
    write_json(out / SCORE_FILE, score)
    return score
