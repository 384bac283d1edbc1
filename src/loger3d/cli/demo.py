"""``loger3d demo``: the shipped sample through the shipped model, then scored (``loger3d.demo``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .reconstruct import run as run_reconstruct

_DEMO_HELP = """\
Reconstruct the sample video shipped in the package with the small model shipped in the package,
then score the camera trajectory against the sample's ground truth. Offline, on the CPU in well
under a minute (about 20 s on two cores): a first run that checks the installation and shows what
'reconstruct' writes.

It runs exactly 'loger3d reconstruct' (model tiny_synthetic: window 10, overlap 2, SE(3) chaining;
input size 224x126, the video's own), so OUT holds the usual outputs (trajectory_tum.txt,
trajectory_kitti.txt, cloud.ply, intrinsics.txt, colmap/, transforms.json, images/, frames/,
run.json), and then demo_score.json: the trajectory's ATE (Sim(3)-aligned, in metres and in
percent of the path length) and RPE between consecutive frames, as 'loger3d eval traj' computes
them. A summary with those numbers and the next commands to try is printed at the end.

The sample (loger3d/assets/sample/ in the package: video.mp4, groundtruth_tum.txt, intrinsics.txt,
README.txt) is 200 frames, 20 s at 10 fps, of a synthetic terrain walk never seen in training. The
model is a 4.9 M-parameter LoGeR trained for 35 minutes on synthetic videos: its score shows that
the pipeline works, not LoGeR's accuracy. For real videos use 'reconstruct' with --model loger.

Exit status as for reconstruct: 0 done; 2 a problem with OUT or the options (one line says which);
130 interrupted (continue with --resume, or start again with --force).
"""

_DEMO_EPILOG = """\
examples:
  loger3d demo                           # writes loger3d_demo/
  loger3d demo -o /tmp/demo --force      # replace an earlier demo there
  loger3d demo --align none              # link chunks through the memory alone (LoGeR's default)
"""


def add_parser(commands: argparse._SubParsersAction) -> None:
    demo = commands.add_parser("demo", help="reconstruct the shipped sample video with the shipped model, offline, "
                                            "and score it against the ground truth",
                               description=_DEMO_HELP, epilog=_DEMO_EPILOG,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
    demo.add_argument("-o", "--output", default="loger3d_demo", metavar="OUT",
                      help="output folder, new or empty (default: loger3d_demo)")
    demo.add_argument("--force", action="store_true",
                      help="replace an earlier demo in OUT (a folder holding anything else is never replaced)")
    demo.add_argument("--resume", action="store_true", help="continue an interrupted demo in OUT")
    demo.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto, CUDA when present)")
    demo.add_argument("--align", choices=("none", "se3", "sim3"),
                      help="chaining of chunks (default: se3, which measured best for this model)")
    demo.add_argument("-q", "--quiet", action="store_true",
                      help="no progress bar or summary (the score is still written to OUT/demo_score.json)")
    demo.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """``demo``: ``reconstruct`` on the shipped sample with the shipped model, then the score (see ``loger3d.demo``)."""
    from ..demo import MODEL, SAMPLE_RESOLUTION, SAMPLE_VIDEO, SCORE_FILE, prepare_output, score_run

    out = Path(args.output)
    if not args.resume:
        prepare_output(out, args.force)
    argv = ["reconstruct", str(SAMPLE_VIDEO), "-o", str(out), "--model", MODEL, "--resolution", SAMPLE_RESOLUTION,
            "--device", args.device, *(["--align", args.align] if args.align else []),
            *(["--resume"] if args.resume else []), *(["-q"] if args.quiet else [])]
    from . import build_parser

    status = run_reconstruct(build_parser().parse_args(argv))
    if status != 0:
        return status
    score = score_run(out)
    if not args.quiet:
        print(f"trajectory vs the sample's ground truth (Sim(3)-aligned, {score['num_poses']} poses, "
              f"{score['path_length']:.1f} m path):\n"
              f"  ATE RMSE {score['ate_rmse']:.2f} m ({score['ate_percent_of_path']:.1f} % of the path); RPE per "
              f"frame {score['rpe_trans_rmse']:.3f} m, {score['rpe_rot_rmse']:.2f} deg\n"
              f"  a small, briefly trained demo model: this shows the pipeline, not LoGeR's accuracy\n"
              f"outputs in {out}/: trajectory_tum.txt, cloud.ply, colmap/, transforms.json, ... (score: {SCORE_FILE})\n"
              f"next:\n"
              f"  loger3d view {out}          # explore it in the browser (pip install 'loger3d[viewer]')\n"
              f"  loger3d reconstruct your_video.mp4 -o out/ --model loger    # LoGeR itself: a 5 GB download "
              f"once, a GPU advised")
    return 0
