"""``loger3d reconstruct INPUT -o OUT``: a video or images through the model into a run folder (``run.reconstruct``)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from ..errors import InputError, OutputError
from .report import ProgressBar, error, status, stop_status, stop_word

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
    from ..weights.registry import MODEL_CARDS

    return "\n".join(f"  {c.name:14s} {c.describe()}" for c in MODEL_CARDS.values())


_RECONSTRUCT_EPILOG = """\
examples:
  loger3d reconstruct walk.mp4 -o walk/
  loger3d reconstruct drive.mp4 -o drive/ --model loger_star --reset-every 5 --stride 2
  loger3d reconstruct frames/ -o out/ --resolution 504x280 --start 100 --end 2100
  loger3d reconstruct walk.mp4 -o walk/ --resume          # after an interruption
  loger3d reconstruct orbit.mp4 -o orbit/ --loop-closure  # close loops when the camera comes back

outputs in OUT/: trajectory_tum.txt, trajectory_kitti.txt, cloud.ply, intrinsics.txt,
colmap/, transforms.json, images/, frames/ (per-frame arrays), run.json
"""


def add_parser(commands: argparse._SubParsersAction) -> None:
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
    loop = rec.add_argument_group("loop closure (docs/loop-closure.md)")
    loop.add_argument("--loop-closure", action="store_true",
                      help="find places the camera comes back to, verify each with the model and correct the "
                           "trajectory, depth and cloud with a Sim(3) pose graph; the uncorrected trajectories are "
                           "kept as trajectory_*_uncorrected.txt and loops/loops.json says what was found (needs "
                           "--save depth,conf,images; off by default)")
    loop.add_argument("--loop-similarity", type=float, metavar="COS",
                      help="how alike two keyframes must look to be verified as a loop: a standardised cosine "
                           "(default: 0.8; higher finds fewer loops and costs less)")
    loop.add_argument("--loop-min-gap", type=int, metavar="FRAMES",
                      help="frames between the two ends of a loop, at least (default: 100, and at least the window)")
    rec.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    rec.set_defaults(func=run)


def _loop_settings(args: argparse.Namespace) -> dict | None:
    """``RunSettings.loop_closure`` from the loop options given; ``None`` when loop closure is off."""
    from ..loop.closer import LoopOptions

    given = {"similarity": args.loop_similarity, "min_gap": args.loop_min_gap}
    if not args.loop_closure:
        named = [f"--loop-{k.replace('_', '-')}" for k, v in given.items() if v is not None]
        if named:
            raise InputError(f"{', '.join(named)} only apply with --loop-closure: add it, or leave them out")
        return None
    return LoopOptions.from_dict({k: v for k, v in given.items() if v is not None}).to_dict()


def _parse_size(text: str) -> list[int]:
    from ..sources.preprocess import parse_resolution

    return list(parse_resolution(text))


def run(args: argparse.Namespace) -> int:
    """``reconstruct INPUT -o OUT``: see ``loger3d.run.reconstruct``."""
    import torch

    from ..run import RunSettings, parse_save, reconstruct
    from ..run.compile_cache import FAST_MIN_FRAMES, use_compile_cache
    from ..run.folder import check_folder
    from ..run.job import open_run_source
    from ..weights import model_from_spec, resolve_device
    from ..weights.registry import OFFICIAL_DEMO_PIXELS, card_for, preset_card

    if args.threads is not None:
        if args.threads < 1:
            raise InputError(f"--threads {args.threads}: give at least 1")
        torch.set_num_threads(args.threads)
    save = parse_save(args.save)
    devices = None
    if args.devices is not None:
        from ..inference.pipeline import parse_devices

        devices = parse_devices(args.devices)
        if args.device != "auto":
            raise InputError("give either --device or --devices, not both")
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
    loop_closure = _loop_settings(args)
    if loop_closure is not None:  # checked against the window when it is known now; the rest in any case
        window = args.window or (known.window if known is not None else 1)
        replace(settings, window=window, overlap=min(settings.overlap, window - 1), loop_closure=loop_closure).check()
    check_folder(Path(args.output), args.resume)
    source = open_run_source(settings.input[0] if len(settings.input) == 1 else settings.input, settings)
    status(args, _describe_size(source, settings, known is not None and known.training_size is not None
                                 and args.max_pixels is None))
    status(args, f"loading model {args.model} ...")
    model, dtype = model_from_spec(args.model, args.device, args.dtype)
    card = known or preset_card(model.config.name)
    settings = replace(settings, window=args.window if args.window is not None else card.window,
                       overlap=args.overlap if args.overlap is not None else card.overlap,
                       align=args.align or card.align,
                       edge_rtol=args.edge_rtol if args.edge_rtol is not None else card.edge_rtol, dtype=dtype,
                       loop_closure=loop_closure).check()
    if args.fast is None:  # on CUDA, for runs long enough to repay the compilation
        frames = source.num_frames
        settings.fast = model.image_mean.device.type == "cuda" and (frames is None or frames >= FAST_MIN_FRAMES)
    else:
        settings.fast = args.fast
    if settings.fast:
        cache = use_compile_cache()
        model.set_fast_path()
        status(args, f"fast path on: the first chunk compiles the model (about a minute; 15 s with the "
                      f"compile cache in {cache} warm)")
    bar = None if args.quiet else ProgressBar()
    try:
        run = reconstruct(source, args.output, model, settings, resume=args.resume, progress=bar,
                          checkpoint_every=args.checkpoint_every, keep_state=args.keep_state, devices=devices)
    except KeyboardInterrupt as stop:
        print(f"loger3d: {stop_word(stop)}; finished chunks are saved in {args.output}: run the same command with "
              f"--resume to continue", file=sys.stderr)
        return stop_status(stop)
    except OutputError as e:
        error(f"{e}; finished chunks are kept in {args.output}: run the same command with --resume once it can be "
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
        loops = run.get("loops")
        if loops is not None:
            outcome = "the trajectory, depth and cloud are corrected" if loops["corrected"] else "nothing corrected"
            print(f"loop closure: {loops['verified']} candidates verified, {loops['accepted']} accepted, {outcome} "
                  f"({t.get('loop_closure_s', 0.0):.1f} s; details in {Path(args.output) / 'loops' / 'loops.json'})")
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
