"""Running an iterator ahead of its consumer in a thread, so that decoding overlaps the model."""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Iterator
from typing import Any, Generic, TypeVar

from ..util.workers import BoundedQueue, HelperThread, StopFlag, background_priority

__all__ = ["Prefetcher"]

T = TypeVar("T")


class _Failure:
    """What the producer thread sends when the wrapped iterator raised."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


_END = object()


def _produce(iterator: Iterator[Any], out: BoundedQueue, stop: StopFlag) -> None:
    """Thread body; it holds no reference to the Prefetcher, so dropping that one stops the thread."""
    background_priority()
    try:
        for item in iterator:
            if not out.put(item, stop):
                return
        out.put(_END, stop)
    except BaseException as e:  # handed to the consumer, raised there at the point of failure
        out.put(_Failure(e), stop)
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:  # a generator: runs its cleanup (closes the video) in this thread
            close()


class Prefetcher(Generic[T]):
    """Runs ``iterable`` in a daemon thread up to ``depth`` items ahead, so decoding overlaps the model.

    An exception of the iterable is raised by ``next()`` after the items produced before it.
    ``close()`` (also on ``with`` exit, when the prefetcher is garbage-collected, and at
    interpreter exit) stops the thread: it finishes the item in hand, then exits.

    The consumer is usually the main thread, where Ctrl-C raises at any bytecode: it touches only
    what ``util.workers`` makes safe against that (a ``SimpleQueue``, a ``HelperThread``).
    """

    def __init__(self, iterable: Iterable[T], depth: int = 8) -> None:
        if depth < 1:
            raise ValueError(f"prefetch depth must be >= 1, got {depth}")
        self._queue = BoundedQueue(depth)
        self._stop = StopFlag()
        self._done = False
        weakref.finalize(self, self._stop.set)
        self._thread = HelperThread(_produce, iter(iterable), self._queue, self._stop, name="loger3d-prefetch")
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
        if not self._thread.is_current():
            self._thread.wait()
        self._queue.clear()  # let go of frames already decoded

    def __enter__(self) -> Prefetcher[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


