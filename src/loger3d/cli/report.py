"""What the commands print: one-line errors, the line for an interruption, status lines before the first chunk,
and the progress bar."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Iterator


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


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Ctrl-C and SIGTERM that arrive inside the block take effect as it ends, through the handlers in force.

    For importing native libraries: PyTorch's import calls Python from C++, where a ``KeyboardInterrupt`` cannot
    be caught and aborts the process (``terminate called after throwing ... error_already_set``, exit -6).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    previous = {number: signal.signal(number, lambda signum, frame: held.append(signum))
                for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        if held:
            signal.raise_signal(held[0])
