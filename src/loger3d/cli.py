"""The ``loger3d`` command line: one function per subcommand, all wired in :func:`build_parser`.

    loger3d demo                       # the shipped sample through the shipped model, scored
    loger3d reconstruct video.mp4 -o out/
    loger3d export out/ --format glb
    loger3d convert loger loger_bf16.safetensors --dtype bf16

Exit status: 0 success; 2 a problem with the input, the options or the output folder (one line
on stderr: ``loger3d: error: ...``); 3 out of GPU memory; 4 an output could not be written (disk
full, no permission); 130 interrupted (Ctrl-C), 143 terminated (SIGTERM): finished chunks are
kept, resume with --resume.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from . import __version__
from .errors import LogerError, OutputError

__all__ = ["build_parser", "main"]

_RECONSTRUCT_HELP = """\
Reconstruct a video, an image folder, a glob or a list of images: camera trajectory, per-frame
depth, confidence, local point maps and intrinsics, a fused point cloud, COLMAP and nerfstudio
exports. Frames stream through the model one chunk at a time, so memory does not grow with the
length of the video. Every finished chunk is on disk; after Ctrl-C or a crash, run the same
command with --resume to continue where it stopped.

Defaults per model (its card, 'loger3d info' lists them; the paper's settings):
{defaults}
For videos over about 1,000 frames the paper resets the fast weights every 5 chunks:
--reset-every 5.

Input frames are resized like the official demo (about 255,000 pixels, sides multiples of 14,
LANCZOS) unless --resolution or --max-pixels says otherwise.
"""

def _card_lines() -> str:
    from .weights.registry import MODEL_CARDS

    return "\n".join(f"  {c.name:14s} {_describe_card(c)}" for c in MODEL_CARDS.values())


def _describe_card(card) -> str:
    size = f", at most {card.training_size[0]}x{card.training_size[1]}" if card.training_size else ""
    return (f"window {card.window}, overlap {card.overlap}, align {card.align}{size}, edge-rtol {card.edge_rtol}")


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
Hugging Face cache; tiny_synthetic, shipped in the package) or a local .pt/.pth/.bin/.safetensors
file. The preset is inferred from the keys and shapes (and checked), the floating-point weights are
cast to --dtype, and the output is written atomically with the preset recorded in its metadata.
Safetensors files load fast and without unpickling (no code can run on load); bf16/fp16 halve
the size.
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
    from .sources.preprocess import parse_resolution

    return list(parse_resolution(text))


def cmd_reconstruct(args: argparse.Namespace) -> int:
    """``reconstruct INPUT -o OUT``: see ``loger3d.run.reconstruct``."""
    import torch

    from .run import RunSettings, parse_save, reconstruct
    from .run.compile_cache import FAST_MIN_FRAMES, use_compile_cache
    from .run.folder import check_folder
    from .run.job import open_run_source
    from .weights import model_from_spec, resolve_device
    from .weights.registry import OFFICIAL_DEMO_PIXELS, card_for, preset_card

    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads {args.threads}: give at least 1")
        torch.set_num_threads(args.threads)
    save = parse_save(args.save)
    devices = None
    if args.devices is not None:
        from .inference.pipeline import parse_devices

        devices = parse_devices(args.devices)
        if args.device != "auto":
            raise ValueError("give either --device or --devices, not both")
        args.device = str(devices[0])
    resolve_device(args.device)
    known = card_for(args.model)  # a name, or a file that carries its card: known before the model is loaded
    # Everything the user gave is checked before the model is loaded (or downloaded).
    settings = RunSettings(
        input=[str(p) for p in args.input], model=args.model,
        # until the model's defaults are known, only what was given is checked
        window=args.window if args.window is not None else max(32, (args.overlap or 0) + 1),
        overlap=args.overlap if args.overlap is not None else 0,
        align=args.align or "none", reset_every=args.reset_every,
        start=args.start, end=args.end, stride=args.stride, fps=args.fps,
        resolution=_parse_size(args.resolution) if args.resolution else None,
        max_pixels=args.max_pixels if args.max_pixels is not None else
        (known.max_pixels if known else OFFICIAL_DEMO_PIXELS),
        save=save, store_precision="float32" if args.float32 else "float16", conf_threshold=args.conf_threshold,
        edge_rtol=args.edge_rtol if args.edge_rtol is not None else 0.03,
        cloud_stride=args.cloud_stride, voxel_size=args.voxel_size, max_points=args.max_points)
    settings.check()
    check_folder(Path(args.output), args.resume)
    source = open_run_source(settings.input[0] if len(settings.input) == 1 else settings.input, settings)
    _status(args, _describe_size(source, settings, known is not None and known.training_size is not None
                                 and args.max_pixels is None))
    _status(args, f"loading model {args.model} ...")
    model, dtype = model_from_spec(args.model, args.device, args.dtype)
    card = known or preset_card(model.config.name)
    settings = replace(settings, window=args.window if args.window is not None else card.window,
                       overlap=args.overlap if args.overlap is not None else card.overlap,
                       align=args.align or card.align,
                       edge_rtol=args.edge_rtol if args.edge_rtol is not None else card.edge_rtol, dtype=dtype).check()
    if args.fast is None:  # on CUDA, for runs long enough to repay the compilation
        frames = source.num_frames
        settings.fast = model.image_mean.device.type == "cuda" and (frames is None or frames >= FAST_MIN_FRAMES)
    else:
        settings.fast = args.fast
    if settings.fast:
        cache = use_compile_cache()
        model.set_fast_path()
        _status(args, f"fast path on: the first chunk compiles the model (about a minute; 15 s with the "
                      f"compile cache in {cache} warm)")
    bar = None if args.quiet else _ProgressBar()
    try:
        run = reconstruct(source, args.output, model, settings, resume=args.resume, progress=bar,
                          checkpoint_every=args.checkpoint_every, keep_state=args.keep_state, devices=devices)
    except KeyboardInterrupt as stop:
        print(f"loger3d: {_stop_word(stop)}; finished chunks are saved in {args.output}: run the same command with "
              f"--resume to continue", file=sys.stderr)
        return _stop_status(stop)
    except OutputError as e:
        _error(f"{e}; finished chunks are kept in {args.output}: run the same command with --resume once it can be "
               "written")
        return e.exit_code
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


def _describe_size(source, settings, model_budget: bool) -> str:
    """The line saying what size the frames go to the model at, and why."""
    (w, h), (ow, oh) = source.size, source.original_size
    if settings.resolution:
        why = "--resolution"
    elif model_budget:
        why = f"automatic: at most {settings.max_pixels} pixels, the model's training size; --resolution to change"
    else:
        why = f"automatic: about {settings.max_pixels} pixels as the official demo; --resolution or --max-pixels " \
              "to change"
    verb = "upscaled" if w * h > ow * oh else "resized" if (w, h) != (ow, oh) else "kept"
    return f"frames {ow}x{oh} {verb} to {w}x{h} ({why})"


def _status(args: argparse.Namespace, message: str) -> None:
    """A line about what happens before the first chunk (the progress bar starts with it)."""
    if not args.quiet:
        print(message, file=sys.stderr, flush=True)


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
model is a 4.9 M-parameter LoGeR trained for 770 steps on synthetic videos: its score shows that
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


def cmd_demo(args: argparse.Namespace) -> int:
    """``demo``: ``reconstruct`` on the shipped sample with the shipped model, then the score (see ``loger3d.demo``)."""
    from .demo import MODEL, SAMPLE_RESOLUTION, SAMPLE_VIDEO, SCORE_FILE, prepare_output, score_run

    out = Path(args.output)
    if not args.resume:
        prepare_output(out, args.force)
    argv = ["reconstruct", str(SAMPLE_VIDEO), "-o", str(out), "--model", MODEL, "--resolution", SAMPLE_RESOLUTION,
            "--device", args.device, *(["--align", args.align] if args.align else []),
            *(["--resume"] if args.resume else []), *(["-q"] if args.quiet else [])]
    status = cmd_reconstruct(build_parser().parse_args(argv))
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
    from .run import export_run

    for path in export_run(args.run, args.format, conf_threshold=args.conf_threshold, voxel_size=args.voxel_size,
                           edge_rtol=args.edge_rtol):
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
    from .weights import cached_path, shipped_path
    from .weights.registry import MODEL_CARDS, preset_card

    print(f"loger3d {__version__}, torch {torch.__version__}, python {platform.python_version()}")
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            print(f"cuda:{i} {p.name}, {p.total_memory / 2**30:.1f} GiB")
    else:
        print("no CUDA device: running on the CPU (slow for the full-size models)")
    for card in MODEL_CARDS.values():
        if card.hub:
            path = cached_path(card.name)
            where = f"{card.hub}: {path if path else 'not cached (downloaded on first use)'}"
        else:
            where = f"shipped with loger3d: {shipped_path(card.name)}"
        print(f"model  {card.name} (preset {card.preset}, licence: {card.licence}) {where}\n"
              f"       {card.about}\n       reconstruct defaults: {_describe_card(card)}")
    for name in PRESETS:
        print(f"preset {name:10s} reconstruct defaults (a checkpoint without a card): "
              f"{_describe_card(preset_card(name))}")
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
                              description=_RECONSTRUCT_HELP.format(defaults=_card_lines()), epilog=_RECONSTRUCT_EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    rec.add_argument("input", nargs="+", metavar="INPUT",
                     help="a video file, a folder of images, a glob ('frames/*.png') or several image paths")
    rec.add_argument("-o", "--output", required=True, metavar="OUT", help="output folder (new, or with --resume)")
    rec.add_argument("--model", default="loger",
                     help="loger | loger_star | pi3 | tiny_synthetic | a .pt/.safetensors checkpoint (default: loger)")
    rec.add_argument("--window", type=int, help="frames per chunk (default: per checkpoint, see above)")
    rec.add_argument("--overlap", type=int, help="frames shared by consecutive chunks (default: 3)")
    rec.add_argument("--align", choices=("none", "se3", "sim3"), help="chaining of chunks (default: per checkpoint)")
    rec.add_argument("--reset-every", type=int, default=0, metavar="K",
                     help="reset the fast weights every K chunks (paper: 5 for long videos; default 0: never)")
    rec.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps (default: auto: CUDA when "
                                                      "PyTorch sees a GPU)")
    rec.add_argument("--devices", metavar="LIST",
                     help="run the model over several GPUs as a layer pipeline (cuda:0,cuda:1 or all): each GPU holds "
                          "a stage of consecutive layers and their memory, chunks overlap in time, outputs equal one "
                          "GPU's (instead of --device)")
    rec.add_argument("--dtype", default="auto", choices=("auto", "fp32", "bf16", "fp16"),
                     help="weights precision (default: bf16 on CUDA, fp32 on CPU)")
    fast = rec.add_mutually_exclusive_group()
    fast.add_argument("--fast", dest="fast", action="store_true", default=None,
                      help="faster kernels: cuDNN attention and compiled blocks (about 1.7x; outputs within the "
                           "tolerance in docs/performance.md). Default: on for CUDA runs of 3,000 frames or more, "
                           "which repay the first chunk's compilation (about a minute; 15 s with the cache warm)")
    fast.add_argument("--no-fast", dest="fast", action="store_false", help="the eager kernels, whatever the length")
    rec.add_argument("--threads", type=int, metavar="N",
                     help="CPU threads of the model (default: PyTorch's choice, one per core)")
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
    sel.add_argument("--max-pixels", type=int,
                     help="pixel budget of the automatic size (default: 255000, as the official demo; for "
                          "tiny_synthetic its training size, 224x126)")
    outp = rec.add_argument_group("outputs")
    outp.add_argument("--save", default="depth,conf,images", metavar="LIST",
                      help="per-frame data to keep: depth, conf, points (local point maps) in frames/, images (JPEG "
                           "in images/), comma-separated, or all / none (default: depth,conf,images, about 1 MB a "
                           "frame at 924x266; poses, intrinsics and the fused cloud are always written)")
    outp.add_argument("--float32", action="store_true",
                      help="keep depth, confidence and points in float32, the model's outputs bit for bit (default: "
                           "float16 depth and points, 8-bit confidence)")
    outp.add_argument("--keep-state", action="store_true",
                      help="keep the resume state (state/) after the run completes (default: removed)")
    outp.add_argument("--conf-threshold", type=float, default=0.1,
                      help="minimum confidence (0-1) of a pixel in the fused cloud (default: 0.1)")
    outp.add_argument("--edge-rtol", type=float,
                      help="drop pixels whose 3x3 depth range exceeds this fraction of their depth (default: 0.03 "
                           "as the official demo; 0.1 for tiny_synthetic; 0 keeps edges)")
    outp.add_argument("--cloud-stride", type=int, default=2,
                      help="fuse every N-th pixel row and column into the cloud (default: 2; 1 uses all)")
    outp.add_argument("--voxel-size", type=float, help="voxel size of the fused cloud (default: automatic)")
    outp.add_argument("--max-points", type=int, default=5_000_000, help="upper bound on the fused cloud's size")
    rec.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    rec.set_defaults(func=cmd_reconstruct)

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
    demo.set_defaults(func=cmd_demo)

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


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that a run stops as on Ctrl-C (finished chunks kept)."""


def _on_sigterm(signum, frame) -> None:
    raise Terminated()


def _stop_word(stop: KeyboardInterrupt) -> str:
    return "terminated" if isinstance(stop, Terminated) else "interrupted"


def _stop_status(stop: KeyboardInterrupt) -> int:
    return 143 if isinstance(stop, Terminated) else 130


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return the exit status (see the module docstring); Ctrl-C or SIGTERM at any
    point, start-up included, ends in one line."""
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if in_main_thread else None
    try:
        return _run(argv)
    except KeyboardInterrupt as stop:
        _error(_stop_word(stop))
        return _stop_status(stop)
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


def _run(argv: Sequence[str] | None) -> int:
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
    except LogerError as e:  # the message names the problem and the fix; the class gives the exit status
        _error(e)
        return e.exit_code
    except (ValueError, OSError) as e:  # what the libraries raise for input they refuse, a missing file
        return _error(e)
