"""``loger3d export OUT --format ...``: a run's exports rebuilt from its frame store (``run.export_run``)."""

from __future__ import annotations

import argparse


def add_parser(commands: argparse._SubParsersAction) -> None:
    exp = commands.add_parser("export", help="write COLMAP, nerfstudio, PLY or GLB exports of a finished run",
                              description="Rebuild exports from a run's stored frames (e.g. with another "
                                          "confidence threshold or voxel size).")
    exp.add_argument("run", metavar="OUT", help="a folder written by 'loger3d reconstruct'")
    exp.add_argument("--format", action="append", choices=("colmap", "nerfstudio", "ply", "glb"), required=True,
                     help="export format (repeat for several)")
    exp.add_argument("--conf-threshold", type=float, help="minimum confidence (default: the run's)")
    exp.add_argument("--voxel-size", type=float, help="voxel size (default: the run's)")
    exp.add_argument("--edge-rtol", type=float,
                     help="drop pixels whose 3x3 depth range exceeds this fraction of their depth (default: the "
                          "run's; 0 keeps edges)")
    exp.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """``export OUT --format ...``: rebuild exports from a run's frame store."""
    from ..run import export_run

    for path in export_run(args.run, args.format, conf_threshold=args.conf_threshold, voxel_size=args.voxel_size,
                           edge_rtol=args.edge_rtol):
        print(f"wrote {path}")
    return 0
