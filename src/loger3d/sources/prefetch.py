"""Running an iterator ahead of its consumer in a thread, so that decoding overlaps the model."""

from __future__ import annotations

import contextlib
import queue
import threading
import weakref
from collections.abc import Iterable, Iterator
from typing import Any, Generic, TypeVar

from ..util.workers import background_priority

__all__ = ["Prefetcher"]

T = TypeVar("T")


class _Failure:
    """What the producer thread sends when the wrapped iterator raised."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


_END = object()


def _put(out: queue.Queue, item: object, stop: threading.Event) -> bool:
    """Put ``item`` unless ``stop`` is set first; False when stopped (the consumer has gone)."""
    while not stop.is_set():
        try:
            out.put(item, timeout=0.05)
            return True
        except queue.Full:
            continue
    return False


def _produce(iterator: Iterator[Any], out: queue.Queue, stop: threading.Event) -> None:
    """Thread body; it holds no reference to the Prefetcher, so dropping that one stops the thread."""
    background_priority()
    try:
        for item in iterator:
            if not _put(out, item, stop):
                return
        _put(out, _END, stop)
    except BaseException as e:  # handed to the consumer, raised there at the point of failure
        _put(out, _Failure(e), stop)
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:  # a generator: runs its cleanup (closes the video) in this thread
            close()


class Prefetcher(Generic[T]):
    """Runs ``iterable`` in a daemon thread up to ``depth`` items ahead, so decoding overlaps the model.

    An exception of the iterable is raised by ``next()`` after the items produced before it.
    ``close()`` (also on ``with`` exit, when the prefetcher is garbage-collected, and at
    interpreter exit) stops the thread: it finishes the item in hand, then exits.
    """

    def __init__(self, iterable: Iterable[T], depth: int = 8) -> None:
        if depth < 1:
            raise ValueError(f"prefetch depth must be >= 1, got {depth}")
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._done = False
        self._thread = threading.Thread(target=_produce, args=(iter(iterable), self._queue, self._stop),
                                        name="loger3d-prefetch", daemon=True)
        weakref.finalize(self, self._stop.set)
        self._thread.start()

    def __iter__(self) -> Prefetcher[T]:
        return self

    def __next__(self) -> T:
        if self._done:
            raise StopIteration
        item = self._queue.get()
        if item is _END:
            self._done = True
            raise StopIteration
        if isinstance(item, _Failure):
            self.close()
            raise item.error
        return item

    def close(self) -> None:
        """Stop the producer thread and wait for it to finish the item in hand."""
        self._done = True
        self._stop.set()
        if threading.current_thread() is not self._thread:
            self._thread.join()
        with contextlib.suppress(queue.Empty):
            while True:  # let go of frames already decoded
                self._queue.get_nowait()

    def __enter__(self) -> Prefetcher[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


