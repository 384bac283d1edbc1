"""The ``eval`` subcommand: ``loger3d eval BENCHMARK ...``, one sub-subcommand per scorer.

:func:`add_eval_parser` adds ``eval`` to the main parser's subcommands and returns the
sub-subcommand collection, so that further scorers (``eval kitti``, ``eval vbr``, ...) can be
added next to ``traj`` with ``runners.add_parser(...).set_defaults(func=...)``. Each runner's
``func(args)`` returns the exit status, as the main command line expects.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["add_parser"]

_TRAJ_HELP = """\
Score an estimated camera trajectory against ground truth: ATE (absolute translation error), RPE
(relative pose error, translation and rotation) and, when the ground-truth path has a 100 m
stretch, the KITTI odometry devkit's segment errors (t_err in %, r_err in deg/100 m). TUM files
pair by timestamp (nearest within --max-diff seconds, as evo), KITTI files by line. One alignment
of the estimate comes first and every metric is computed on the aligned estimate:
  sim3    Umeyama with scale (default; monocular estimates have an arbitrary scale)
  se3     Umeyama without scale (metric estimates)
  origin  first estimated pose moved onto the first ground-truth pose (drift from the start)
  none    as it is
Definitions follow evo and the KITTI devkit; docs/evaluation.md gives the formulas.
"""

_TRAJ_EPILOG = """\
examples:
  loger3d eval traj --gt 00.txt --est run/trajectory_kitti.txt
  loger3d eval traj --gt groundtruth.txt --est run/trajectory_tum.txt --align se3 --json
  loger3d eval traj --gt gt.txt --est est.txt --delta 10 --delta-unit m --plot top.png
with --json the last line of standard output is one JSON object (keys: ate_rmse, ate_mean,
rpe_trans_rmse, rpe_rot_rmse, kitti_t_err, kitti_r_err, num_poses, align, scale, ...)
"""


def add_parser(commands: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """Add ``eval`` (with ``eval traj``) to ``commands``; return the collection of ``eval``'s sub-subcommands."""
    evaluate = commands.add_parser(
        "eval",
        help="score results against ground truth (trajectories, ...)",
        description="Score reconstruction results against ground truth. Run 'loger3d eval BENCHMARK --help' "
        "for the options of one.",
    )
    runners = evaluate.add_subparsers(dest="eval_command", metavar="BENCHMARK")
    evaluate.set_defaults(func=lambda args: _usage(evaluate))

    traj = runners.add_parser(
        "traj",
        help="ATE, RPE and KITTI segment errors of a trajectory file (TUM or KITTI)",
        description=_TRAJ_HELP,
        epilog=_TRAJ_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    traj.add_argument("--gt", required=True, metavar="FILE", help="ground-truth trajectory (TUM or KITTI)")
    traj.add_argument("--est", required=True, metavar="FILE", help="estimated trajectory (same format)")
    traj.add_argument(
        "--format",
        choices=("auto", "tum", "kitti"),
        default="auto",
        help="file format (default: auto, from the number of values a line: 8 TUM, 12 KITTI)",
    )
    traj.add_argument(
        "--align",
        choices=("sim3", "se3", "origin", "none"),
        default="sim3",
        help="alignment of the estimate before all metrics (default: sim3)",
    )
    traj.add_argument(
        "--n-align",
        type=int,
        metavar="N",
        help="fit the sim3/se3 alignment on the first N matched poses only (default: all)",
    )
    traj.add_argument("--delta", type=float, default=1, help="RPE pair spacing (default: 1)")
    traj.add_argument(
        "--delta-unit",
        choices=("f", "m"),
        default="f",
        help="unit of --delta: f frames, m metres of travelled path (default: f)",
    )
    traj.add_argument(
        "--all-pairs",
        action="store_true",
        help="RPE over every pair at --delta, not consecutive non-overlapping pairs (evo --all_pairs)",
    )
    traj.add_argument(
        "--pairs-from",
        choices=("gt", "est"),
        default="gt",
        help="trajectory whose path picks RPE pairs for --delta-unit m (default: gt; evo's "
        "default is est, its --pairs_from_reference is gt)",
    )
    traj.add_argument(
        "--max-diff",
        type=float,
        default=0.01,
        metavar="SECONDS",
        help="largest timestamp difference of a TUM match (default: 0.01, as evo)",
    )
    traj.add_argument("--json", action="store_true", help="print one JSON object (the last line of output)")
    traj.add_argument(
        "--plot",
        metavar="FILE.png",
        help="save a top view (x-z) of both trajectories, coloured by ATE (needs matplotlib)",
    )
    traj.set_defaults(func=_run_traj)
    _add_benchmarks(runners)
    return runners


_BENCHMARK_HELP = """\
Reconstruct every sequence of a benchmark with the streaming pipeline and score it against the
ground truth. Frames, strides, window, overlap and reset follow the LoGeR paper's protocol for
the dataset and checkpoint unless overridden (the protocol is recorded in results.json). A
sequence already finished in OUT is not run again; an interrupted one resumes.

OUT receives runs/<sequence>/ (the usual reconstruct outputs), results.json, results.md and
plots/<sequence>_top.png (top view, coloured by error) and plots/<sequence>_ate.png.
"""


def _add_benchmarks(runners: argparse._SubParsersAction) -> None:
    from ..eval.datasets import DATASETS

    for name, reader in DATASETS.items():
        bench = runners.add_parser(
            name, help=f"reconstruct and score {reader.title}", description=_BENCHMARK_HELP,
            epilog=f"example:\n  loger3d eval {name} --data /data/{name} --model loger --out eval_{name}/\n"
                   f"expected layout: {reader.layout}",
            formatter_class=argparse.RawDescriptionHelpFormatter)
        bench.add_argument("--data", required=True, metavar="DIR", help=f"root of the {reader.title} tree")
        bench.add_argument("--model", default="loger", help="loger | loger_star | pi3 | a checkpoint path")
        bench.add_argument("--out", required=True, metavar="OUT", help="folder for runs, results and plots")
        bench.add_argument("--sequences", nargs="+", metavar="SEQ", help="only these sequences")
        bench.add_argument("--window", type=int, help="override the protocol's window")
        bench.add_argument("--overlap", type=int, help="override the protocol's overlap")
        bench.add_argument("--align", choices=("none", "se3", "sim3"), help="override the chunk chaining")
        bench.add_argument("--reset-every", type=int, help="override the protocol's reset_every")
        bench.add_argument("--start", type=int, help="override the protocol's first frame")
        bench.add_argument("--stride", type=int, help="override the protocol's frame stride")
        bench.add_argument("--max-frames", type=int, help="override the protocol's frame limit")
        bench.add_argument("--resolution", metavar="WxH", help="model input size (default: the demo's rule)")
        bench.add_argument("--eval-align", choices=("sim3", "se3", "origin", "none"), default="sim3",
                           help="trajectory alignment before scoring (default: sim3)")
        bench.add_argument("--depth", action="store_true", help="also score video depth (datasets with depth)")
        bench.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
        bench.add_argument("--devices", metavar="LIST",
                           help="spread the sequences over several devices, one process each: 'all' (every CUDA "
                                "GPU) or a comma list such as cuda:0,cuda:1; metrics equal a one-device run's")
        bench.add_argument("--dtype", default="auto", choices=("auto", "fp32", "bf16", "fp16"))
        bench.add_argument("--fast", action="store_true",
                           help="the fast path (cuDNN attention, compiled layers; docs/performance.md): faster on a "
                                "GPU, outputs within its measured tolerance rather than the reference numerics")
        bench.add_argument("--loop-closure", action="store_true",
                           help="close loops in each run with the default settings (docs/loop-closure.md); the "
                                "scores are those of the corrected trajectories")
        bench.set_defaults(func=_run_benchmark, benchmark=name)


def _parse_devices(text: str) -> list[str]:
    """``all`` → every CUDA device; otherwise a comma list (``cuda:0,cuda:1``; ``cpu,cpu`` runs two CPU workers)."""
    import torch

    from ..errors import InputError

    if text == "all":
        count = torch.cuda.device_count()
        if count == 0:
            raise InputError("--devices all needs CUDA GPUs and none is visible; use --device cpu")
        return [f"cuda:{i}" for i in range(count)]
    devices = [d.strip() for d in text.split(",") if d.strip()]
    for d in devices:
        if d != "cpu" and not (d.startswith("cuda") and d[4:] in ("", *(f":{i}" for i in range(64)))):
            raise InputError(f"--devices: {d!r} is not cpu, cuda or cuda:N")
        if d.startswith("cuda") and not torch.cuda.is_available():
            raise InputError(f"--devices: {d} asked for but no CUDA device is visible")
    if not devices:
        raise InputError("--devices needs at least one device")
    return devices


def _run_benchmark(args: argparse.Namespace) -> int:
    from ..eval.runner import run_benchmark
    from ..sources.preprocess import parse_resolution
    from ..weights import model_from_spec, resolve_device
    from ..weights.devices import auto_dtype

    devices = _parse_devices(args.devices) if args.devices else None
    for device in devices or [args.device]:  # a bad device fails before any worker starts
        resolve_device(device)
    if devices is not None and len(devices) > 1:
        model = None  # each worker loads its own copy
        dtype = args.dtype if args.dtype != "auto" else auto_dtype(resolve_device(devices[0]))
    else:
        model, dtype = model_from_spec(args.model, devices[0] if devices else args.device, args.dtype)
    options = {"window": args.window, "overlap": args.overlap, "align": args.align, "reset_every": args.reset_every,
               "start": args.start, "stride": args.stride, "max_frames": args.max_frames,
               "resolution": parse_resolution(args.resolution) if args.resolution else None,
               "eval_align": args.eval_align, "depth": args.depth, "fast": args.fast,
               "loop_closure": args.loop_closure}
    run_benchmark(args.benchmark, args.data, model, args.model, args.out, dtype=dtype, sequences=args.sequences,
                  options=options, devices=devices)
    print((Path(args.out) / "results.md").read_text(), end="")
    return 0


def _run_traj(args: argparse.Namespace) -> int:
    from ..eval.traj import run_traj

    return run_traj(args)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2
