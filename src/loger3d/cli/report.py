"""What the commands print: one-line errors, the line for an interruption, status lines before the first chunk,
and the progress bar."""

from __future__ import annotations

import argparse
import sys


def status(args: argparse.Namespace, message: str) -> None:
    """A line about what happens before the first chunk (the progress bar starts with it)."""
    if not args.quiet:
        print(message, file=sys.stderr, flush=True)


class ProgressBar:
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


def error(message: object) -> int:
    print(f"loger3d: error: {' '.join(str(message).split())}", file=sys.stderr)
    return 2


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that a run stops as on Ctrl-C (finished chunks kept)."""


class StopSignals:
    """Ctrl-C and SIGTERM while a command runs: each raises in the main thread (``KeyboardInterrupt``,
    :class:`Terminated`), and the last one is remembered, because code that catches exceptions broadly can turn
    it into another (a Ctrl-C while numpy is imported surfaces as an ``ImportError``)."""

    def __init__(self) -> None:
        self.received: KeyboardInterrupt | None = None

    def on_sigint(self, signum, frame) -> None:
        self.received = KeyboardInterrupt()
        raise self.received

    def on_sigterm(self, signum, frame) -> None:
        self.received = Terminated()
        raise self.received


def stop_word(stop: KeyboardInterrupt) -> str:
    return "terminated" if isinstance(stop, Terminated) else "interrupted"


def stop_status(stop: KeyboardInterrupt) -> int:
    return 143 if isinstance(stop, Terminated) else 130


def forget_caught_interrupt() -> None:
    """Let ``python -m loger3d`` exit with the status the command returned after a Ctrl-C it caught.

    CPython marks a ``KeyboardInterrupt`` that leaves code run from a string (``exec(text)``: dataclasses build
    their methods so while modules import) as unhandled, and ``-m`` then ends the process by SIGINT (exit -2)
    instead of 130, though the interruption was caught and reported. Running any string clears the mark.
    """
    exec("None")
