"""The ``loger3d`` command line: one module per command, each with its ``add_parser`` and a ``run(args)`` that
calls the library (which never sees argparse).

    loger3d demo                       # the shipped sample through the shipped model, scored
    loger3d reconstruct video.mp4 -o out/
    loger3d export out/ --format glb
    loger3d convert loger loger_bf16.safetensors --dtype bf16

Exit status: 0 success; 2 a problem with the input, the options or the output folder (one line
on stderr: ``loger3d: error: ...``); 3 out of GPU memory; 4 an output could not be written (disk
full, no permission); 130 interrupted (Ctrl-C), 143 terminated (SIGTERM): finished chunks are
kept, resume with --resume. Errors users cause are ``LogerError``s (one line, their exit status);
anything else, a plain ``ValueError`` from numpy, PyTorch or a check of loger3d's own invariants included,
is a bug and shows its traceback. An ``OSError`` is one line too (exit 2): a file to read that is missing,
unreadable or a folder is the user's environment, not a bug, and the many readers (open, PIL, PyAV, numpy)
name the file in it; a failed write is already an ``OutputError``.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading
from collections.abc import Sequence

from .. import __version__
from ..errors import LogerError
from ..util.signals import signals_held
from .report import StopSignals, error, forget_caught_interrupt, stop_status, stop_word

__all__ = ["COMMANDS", "build_parser", "main"]

#: The command modules, in the order ``--help`` lists them; each has ``add_parser(commands)``.
COMMANDS = ("convert", "reconstruct", "demo", "export", "view", "eval", "train", "info")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser: every module of :data:`COMMANDS` adds its subcommand."""
    parser = argparse.ArgumentParser(
        prog="loger3d",
        description="Tools for LoGeR, long-video 3D reconstruction (hybrid TTT + sliding-window memory).",
        epilog="example: python -m loger3d convert loger loger_bf16.safetensors --dtype bf16\n"
               "run 'loger3d COMMAND --help' for the options of a command",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"loger3d {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f".{name}", __name__).add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return the exit status (see the module docstring); Ctrl-C or SIGTERM at any
    point, start-up included, ends in one line."""
    stops = StopSignals()
    previous = {}
    try:  # the handlers are installed inside: Ctrl-C may arrive while they are
        if threading.current_thread() is threading.main_thread():
            previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, stops.on_sigterm)
            previous[signal.SIGINT] = signal.signal(signal.SIGINT, stops.on_sigint)
        return _run(argv)
    except (KeyboardInterrupt, Exception) as raised:  # any error after a signal is the signal's doing
        stop = raised if isinstance(raised, KeyboardInterrupt) else stops.received
        if stop is None:
            raise
        error(stop_word(stop))
        return stop_status(stop)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        forget_caught_interrupt()


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
        with signals_held():  # every command needs PyTorch; its import must not be interrupted midway
            import torch  # noqa: F401
        return args.func(args)
    except LogerError as e:  # the message names the problem and the fix; the class gives the exit status
        error(e)
        return e.exit_code
    except OSError as e:  # a file to read that is missing or unreadable (writes are OutputErrors, above)
        return error(e)
