"""Holding Ctrl-C and SIGTERM back for a short block of the main thread, where they would otherwise raise at any
bytecode."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

__all__ = ["signals_held"]

#: the signals a run stops on
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Ctrl-C and SIGTERM that arrive inside the block take effect as it ends, through the handlers in force.

    For code that an exception must not cut in two: PyTorch's import calls Python from C++, where a
    ``KeyboardInterrupt`` cannot be caught and aborts the process (``terminate called after throwing ...
    error_already_set``, exit -6); ``Thread.start`` interrupted while it waits for the new thread can leave a
    lock held that the new thread then waits for forever. Outside the main thread (where no handler runs) and
    under handlers that Python did not install, the block runs as it is.
    """
    previous = {number: signal.getsignal(number) for number in STOP_SIGNALS}
    if threading.current_thread() is not threading.main_thread() or None in previous.values():
        yield
        return
    held: list[int] = []
    try:
        for number in STOP_SIGNALS:
            signal.signal(number, lambda signum, frame: held.append(signum))
        yield
    finally:
        _restore(list(previous.items()))
        if held:
            signal.raise_signal(held[0])


def _restore(handlers: list[tuple[int, object]]) -> None:
    """Put every handler back, even when one put back raises for a signal that arrives meanwhile."""
    if handlers:
        (number, handler), rest = handlers[0], handlers[1:]
        try:
            signal.signal(number, handler)
        finally:
            _restore(rest)
