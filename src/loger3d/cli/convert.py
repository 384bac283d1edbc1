"""``loger3d convert IN OUT.safetensors``: a checkpoint (alias or file) as safetensors (``weights.convert``)."""

from __future__ import annotations

import argparse
from pathlib import Path

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


def add_parser(commands: argparse._SubParsersAction) -> None:
    convert = commands.add_parser(
        "convert", help="convert a checkpoint (alias, .pt or .safetensors) to .safetensors in fp32/fp16/bf16",
        description=_CONVERT_HELP, epilog=_CONVERT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    convert.add_argument("input", metavar="IN", help="alias (loger, loger_star, pi3) or a .pt/.pth/.bin/.safetensors")
    convert.add_argument("output", metavar="OUT.safetensors", help="the .safetensors file to write")
    convert.add_argument("--dtype", choices=("fp32", "fp16", "bf16"), default="fp32",
                         help="precision of the floating-point weights (default: fp32; image_mean/std stay fp32)")
    convert.add_argument("--force", action="store_true", help="replace OUT if it already exists")
    convert.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """``convert IN OUT.safetensors``: see ``loger3d.weights.convert``."""
    from ..weights import convert

    preset = convert(args.input, args.output, dtype=args.dtype, overwrite=args.force)
    size = Path(args.output).stat().st_size / 1e9
    print(f"wrote {args.output} (preset {preset}, {args.dtype}, {size:.2f} GB)")
    return 0
