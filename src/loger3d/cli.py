"""The ``loger3d`` command line: one function per subcommand, all wired in :func:`build_parser`.

    loger3d reconstruct video.mp4 -o out/
    loger3d export out/ --format glb
    loger3d convert loger loger_bf16.safetensors --dtype bf16

Exit status: 0 success; 2 a problem with the input, the options or the output folder (one line
on stderr: ``loger3d: error: ...``); 3 out of GPU memory; 130 interrupted (resume with --resume).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__

__all__ = ["build_parser", "main", "CHECKPOINT_DEFAULTS"]

#: Per checkpoint: window, overlap, alignment of the paper / official scripts. Pi3 runs as the
#: paper's Pi3-Chunk baseline (chunks chained by Sim(3)).
CHECKPOINT_DEFAULTS = {
    "loger": (32, 3, "none"),
    "loger_star": (64, 3, "se3"),
    "pi3": (32, 3, "sim3"),
    "tiny": (8, 2, "none"),
}

_RECONSTRUCT_HELP = """\
Reconstruct a video, an image folder, a glob or a list of images: camera trajectory, per-frame
depth, confidence, local point maps and intrinsics, a fused point cloud, COLMAP and nerfstudio
exports. Frames stream through the model one chunk at a time, so memory does not grow with the
length of the video. Every finished chunk is on disk; after Ctrl-C or a crash, run the same
command with --resume to continue where it stopped.

Defaults per checkpoint (the paper's settings):
  loger       window 32, overlap 3, no alignment (the memory keeps one frame)
  loger_star  window 64, overlap 3, SE(3) chaining of chunks (LoGeR*)
  pi3         window 32, overlap 3, Sim(3) chaining (the paper's Pi3-Chunk baseline)
For videos over about 1,000 frames the paper resets the fast weights every 5 chunks:
--reset-every 5.

Input frames are resized like the official demo (about 255,000 pixels, sides multiples of 14,
LANCZOS) unless --resolution or --max-pixels says otherwise.
"""

_RECONSTRUCT_EPILOG = """\
examples:
  loger3d reconstruct walk.mp4 -o walk/
  loger3d reconstruct drive.mp4 -o drive/ --model loger_star --reset-every 5 --stride 2
  loger3d reconstruct frames/ -o out/ --resolution 504x280 --start 100 --end 2100
  loger3d reconstruct walk.mp4 -o walk/ --resume          # after an interruption

outputs in OUT/: trajectory_tum.txt, trajectory_kitti.txt, cloud.ply, intrinsics.txt,
colmap/, transforms.json, images/, frames/ (per-frame arrays), run.json
"""

_CONVERT_HELP = """\
Convert a checkpoint to .safetensors: an alias (loger, loger_star, pi3; downloaded into the
Hugging Face cache) or a local .pt/.pth/.bin/.safetensors file. The preset is inferred from
the keys and shapes (and checked), the floating-point weights are cast to --dtype, and the
output is written atomically with the preset recorded in its metadata. Safetensors files load
fast and without unpickling (no code can run on load); bf16/fp16 halve the size.
"""

_CONVERT_EPILOG = """\
examples:
  python -m loger3d convert loger loger.safetensors
  python -m loger3d convert ckpts/LoGeR_star/latest.pt loger_star_bf16.safetensors --dtype bf16
"""


def cmd_convert(args: argparse.Namespace) -> int:
    """``convert IN OUT.safetensors``: see ``loger3d.weights.convert``."""
    from .weights import convert

    preset = convert(args.input, args.output, dtype=args.dtype, overwrite=args.force)
    size = Path(args.output).stat().st_size / 1e9
    print(f"wrote {args.output} (preset {preset}, {args.dtype}, {size:.2f} GB)")
    return 0


def _parse_size(text: str) -> list[int]:
    from .io.preprocess import parse_resolution

    return list(parse_resolution(text))


def cmd_reconstruct(args: argparse.Namespace) -> int:
    """``reconstruct INPUT -o OUT``: see ``loger3d.pipeline.reconstruct``."""
    import torch

    from .pipeline import RunSettings, reconstruct
    from .weights import model_from_spec

    model, dtype = model_from_spec(args.model, args.device, args.dtype)
    preset = model.config.name
    window, overlap, align = CHECKPOINT_DEFAULTS.get(preset, (32, 3, "none"))
    settings = RunSettings(
        input=[str(p) for p in args.input], model=args.model,
        window=args.window if args.window is not None else window,
        overlap=args.overlap if args.overlap is not None else overlap,
        align=args.align or align, reset_every=args.reset_every, dtype=dtype,
        start=args.start, end=args.end, stride=args.stride, fps=args.fps,
        resolution=_parse_size(args.resolution) if args.resolution else None, max_pixels=args.max_pixels,
        store_dtype="float16" if args.float16 else "float32", conf_threshold=args.conf_threshold,
        edge_rtol=args.edge_rtol, cloud_stride=args.cloud_stride, voxel_size=args.voxel_size,
        max_points=args.max_points)
    source = settings.input[0] if len(settings.input) == 1 else settings.input
    bar = None if args.quiet else _ProgressBar()
    try:
        run = reconstruct(source, args.output, model, settings, resume=args.resume, progress=bar,
                          checkpoint_every=args.checkpoint_every)
    except KeyboardInterrupt:
        print(f"loger3d: interrupted; finished chunks are saved in {args.output}: run the same command with "
              f"--resume to continue", file=sys.stderr)
        return 130
    except torch.cuda.OutOfMemoryError:
        size = "x".join(map(str, settings.resolution)) if settings.resolution else "automatic size"
        print(f"loger3d: error: out of GPU memory with window {settings.window} at {size}; try a smaller "
              f"--window (e.g. {max(settings.overlap + 1, settings.window // 2)}) or --max-pixels 150000",
              file=sys.stderr)
        return 3
    finally:
        if bar is not None:
            bar.close()
    if not args.quiet:
        t = run["timings"]
        rate = t["frames_per_second"] or 0.0
        print(f"{run['frames']} frames in {t['total_s']:.1f} s ({rate:.2f} frames/s) -> {args.output}")
    return 0


class _ProgressBar:
    """tqdm over frames with rate and ETA (ETA only when the source knows its length)."""

    def __init__(self) -> None:
        self._bar = None

    def __call__(self, done: int, total: int | None) -> None:
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit="frame", dynamic_ncols=True, smoothing=0.1, initial=done)
        else:
            self._bar.update(done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def cmd_export(args: argparse.Namespace) -> int:
    """``export OUT --format ...``: rebuild exports from a run's frame store."""
    from .pipeline import export_run

    for path in export_run(args.run, args.format, conf_threshold=args.conf_threshold, voxel_size=args.voxel_size):
        print(f"wrote {path}")
    return 0


def cmd_view(args: argparse.Namespace) -> int:
    """``view OUT``: serve the run in the browser until Ctrl-C; see ``loger3d.viewer``."""
    import time

    from .viewer import is_loopback, serve

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


def cmd_info(args: argparse.Namespace) -> int:
    """``info``: versions, devices and cached weights."""
    import platform

    import torch

    from .config import PRESETS
    from .weights import ALIASES, cached_path

    print(f"loger3d {__version__}, torch {torch.__version__}, python {platform.python_version()}")
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            print(f"cuda:{i} {p.name}, {p.total_memory / 2**30:.1f} GiB")
    else:
        print("no CUDA device: running on the CPU (slow for the full-size models)")
    for name, (repo, file, _) in ALIASES.items():
        path = cached_path(name)
        print(f"weights {name:10s} {repo}/{file}: {path if path else 'not cached (downloaded on first use)'}")
    for name, cfg in PRESETS.items():
        window, overlap, align = CHECKPOINT_DEFAULTS.get(name, (cfg.default_window, cfg.default_overlap, "none"))
        print(f"preset {name:10s} reconstruct defaults: window {window}, overlap {overlap}, align {align}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; a new subcommand adds a subparser here with ``set_defaults(func=cmd_...)``."""
    parser = argparse.ArgumentParser(
        prog="loger3d",
        description="Tools for LoGeR, long-video 3D reconstruction (hybrid TTT + sliding-window memory).",
        epilog="example: python -m loger3d convert loger loger_bf16.safetensors --dtype bf16\n"
               "run 'loger3d COMMAND --help' for the options of a command",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"loger3d {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    convert = commands.add_parser(
        "convert", help="convert a checkpoint (alias, .pt or .safetensors) to .safetensors in fp32/fp16/bf16",
        description=_CONVERT_HELP, epilog=_CONVERT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    convert.add_argument("input", metavar="IN", help="alias (loger, loger_star, pi3) or a .pt/.pth/.bin/.safetensors")
    convert.add_argument("output", metavar="OUT.safetensors", help="the .safetensors file to write")
    convert.add_argument("--dtype", choices=("fp32", "fp16", "bf16"), default="fp32",
                         help="precision of the floating-point weights (default: fp32; image_mean/std stay fp32)")
    convert.add_argument("--force", action="store_true", help="replace OUT if it already exists")
    convert.set_defaults(func=cmd_convert)

    rec = commands.add_parser("reconstruct", help="reconstruct a video or image folder into an output folder",
                              description=_RECONSTRUCT_HELP, epilog=_RECONSTRUCT_EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    rec.add_argument("input", nargs="+", metavar="INPUT",
                     help="a video file, a folder of images, a glob ('frames/*.png') or several image paths")
    rec.add_argument("-o", "--output", required=True, metavar="OUT", help="output folder (new, or with --resume)")
    rec.add_argument("--model", default="loger",
                     help="loger | loger_star | pi3 | a .pt/.safetensors checkpoint (default: loger)")
    rec.add_argument("--window", type=int, help="frames per chunk (default: per checkpoint, see above)")
    rec.add_argument("--overlap", type=int, help="frames shared by consecutive chunks (default: 3)")
    rec.add_argument("--align", choices=("none", "se3", "sim3"), help="chaining of chunks (default: per checkpoint)")
    rec.add_argument("--reset-every", type=int, default=0, metavar="K",
                     help="reset the fast weights every K chunks (paper: 5 for long videos; default 0: never)")
    rec.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")
    rec.add_argument("--dtype", default="auto", choices=("auto", "fp32", "bf16", "fp16"),
                     help="weights precision (default: bf16 on CUDA, fp32 on CPU)")
    rec.add_argument("--resume", action="store_true", help="continue an interrupted run in OUT")
    rec.add_argument("--checkpoint-every", type=float, default=30.0, metavar="SECONDS",
                     help="save the resume state at most this often (default: 30; Ctrl-C always saves; a crash "
                          "loses at most this much work)")
    sel = rec.add_argument_group("frame selection and size")
    sel.add_argument("--start", type=int, default=0, help="first frame (Python slice semantics)")
    sel.add_argument("--end", type=int, help="stop before this frame")
    sel.add_argument("--stride", type=int, default=1, help="keep every STRIDE-th frame")
    sel.add_argument("--fps", type=float, help="resample a video to this frame rate first")
    sel.add_argument("--resolution", metavar="WxH", help="model input size, multiples of 14 (e.g. 504x280)")
    sel.add_argument("--max-pixels", type=int, default=255000,
                     help="pixel budget of the automatic size (default: 255000, as the official demo)")
    outp = rec.add_argument_group("outputs")
    outp.add_argument("--float16", action="store_true", help="store depth, confidence and points in float16")
    outp.add_argument("--conf-threshold", type=float, default=0.1,
                      help="minimum confidence (0-1) of a pixel in the fused cloud (default: 0.1)")
    outp.add_argument("--edge-rtol", type=float, default=0.03,
                      help="drop pixels whose 3x3 depth range exceeds this fraction of their depth, as the official "
                           "demo (default: 0.03; 0 keeps edges)")
    outp.add_argument("--cloud-stride", type=int, default=2,
                      help="fuse every N-th pixel row and column into the cloud (default: 2; 1 uses all)")
    outp.add_argument("--voxel-size", type=float, help="voxel size of the fused cloud (default: automatic)")
    outp.add_argument("--max-points", type=int, default=5_000_000, help="upper bound on the fused cloud's size")
    rec.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    rec.set_defaults(func=cmd_reconstruct)

    exp = commands.add_parser("export", help="write COLMAP, nerfstudio, PLY or GLB exports of a finished run",
                              description="Rebuild exports from a run's stored frames (e.g. with another "
                                          "confidence threshold or voxel size).")
    exp.add_argument("run", metavar="OUT", help="a folder written by 'loger3d reconstruct'")
    exp.add_argument("--format", action="append", choices=("colmap", "nerfstudio", "ply", "glb"), required=True,
                     help="export format (repeat for several)")
    exp.add_argument("--conf-threshold", type=float, help="minimum confidence (default: the run's)")
    exp.add_argument("--voxel-size", type=float, help="voxel size (default: the run's)")
    exp.set_defaults(func=cmd_export)

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
    view.set_defaults(func=cmd_view)

    from .eval.cli import add_eval_parser

    add_eval_parser(commands)

    from .train.cli import add_train_parser

    add_train_parser(commands)

    info = commands.add_parser("info", help="versions, devices, cached weights and presets")
    info.set_defaults(func=cmd_info)
    return parser


def _error(message: object) -> int:
    print(f"loger3d: error: {' '.join(str(message).split())}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return the exit status (0 success, 2 usage or input error)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version and usage errors: argparse has already printed
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return args.func(args)
    except (ValueError, OSError) as e:  # WeightsError is a ValueError; OSError covers missing files, disk full
        return _error(e)
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
