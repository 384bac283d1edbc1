"""The ``loger3d`` command line: one function per subcommand, all wired in :func:`build_parser`.

    python -m loger3d convert loger loger_bf16.safetensors --dtype bf16
    python -m loger3d --version

Errors a user can cause print ``loger3d: error: <one line>`` on stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__

__all__ = ["build_parser", "main"]

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
