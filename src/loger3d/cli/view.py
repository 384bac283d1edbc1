"""``loger3d view OUT``: a run in the browser (``loger3d.viewer``)."""

from __future__ import annotations

import argparse
import sys


def add_parser(commands: argparse._SubParsersAction) -> None:
    view = commands.add_parser(
        "view", help="explore a run in the browser: cloud, cameras, trajectory, per-frame image and depth",
        description="Serve a run in a web viewer (needs viser: pip install 'loger3d[viewer]'): the point cloud\n"
                    "with a confidence slider, camera frustums and the trajectory, and a frame scrubber showing\n"
                    "each frame's image and depth. Long runs are subsampled (--max-points, --max-frustums) so the\n"
                    "page stays responsive. Listens on 127.0.0.1 (this machine only) unless --host says otherwise.",
        epilog="examples:\n  loger3d view walk/                 # then open http://127.0.0.1:8080\n"
               "  loger3d view walk/ --port 9000 --max-points 500000\n"
               "a run on a remote machine: start 'loger3d view OUT' there, forward the port with\n"
               "'ssh -L 8080:127.0.0.1:8080 HOST' and open http://127.0.0.1:8080 here",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    view.add_argument("run", metavar="OUT", help="a folder written by 'loger3d reconstruct'")
    view.add_argument("--host", default="127.0.0.1",
                      help="address to listen on (default: 127.0.0.1; 0.0.0.0 exposes the run to the network)")
    view.add_argument("--port", type=int, default=8080, help="port (default: 8080; the next free one if taken)")
    view.add_argument("--max-points", type=int, default=2_000_000, metavar="N",
                      help="points sent to the browser, a seeded random sample of the frames (default: 2000000)")
    view.add_argument("--max-frustums", type=int, default=300, metavar="N",
                      help="camera frustums drawn, evenly spaced along the run (default: 300)")
    view.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """``view OUT``: serve the run in the browser until Ctrl-C; see ``loger3d.viewer``."""
    import time

    from ..viewer import is_loopback, serve

    print(f"loading {args.run} ...")
    server = serve(args.run, host=args.host, port=args.port, max_points=args.max_points,
                   max_frustums=args.max_frustums)
    if not is_loopback(args.host):
        print(f"loger3d: warning: serving on {args.host}: anyone who can reach this machine can view the run",
              file=sys.stderr)
    print(f"viewing {args.run} at http://{args.host}:{server.get_port()} (Ctrl-C to stop)")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    finally:
        server.stop()
