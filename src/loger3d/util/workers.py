"""Background work for the run loop: an ordered single-thread worker and an ordered thread pool.

Both bound how much work waits (back-pressure on the producer) and hand the first error of the
background work back to the producer, at the point where it next talks to them.
"""

from __future__ import annotations

import contextlib
import os
import queue
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

__all__ = ["SerialWorker", "background_priority", "ordered_map"]

T = TypeVar("T")
R = TypeVar("R")


#: how much lower than the model's thread the run's helper threads are scheduled (Linux nice levels)
BACKGROUND_NICE = 10


def background_priority() -> None:
    """Schedule the calling thread below the model's (Linux; elsewhere nothing changes).

    When decoding and writing share a few cores with the model's parallel regions, a helper that
    preempts one of the model's threads stalls all of them at the region's barrier; at a lower
    priority the helpers take the cores the model leaves and rarely interrupt it.
    """
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError):  # a thread may lower, never raise, its own priority
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(os.getpriority(os.PRIO_PROCESS, tid) + BACKGROUND_NICE, 19))


class SerialWorker:
    """Runs submitted calls in order on one thread, so that the model does not wait for the disk.

    At most ``depth`` calls wait; the first error is raised in the producer at its next
    ``submit`` or ``drain``, and no later call runs after it.
    """

    def __init__(self, depth: int = 2, name: str = "loger3d-worker") -> None:
        self._tasks: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def _work(self) -> None:
        background_priority()
        while True:
            task = self._tasks.get()
            try:
                if task is None:
                    return
                if self._error is None:
                    fn, args = task
                    fn(*args)
            except BaseException as e:  # handed to the producer
                self._error = e
            finally:
                self._tasks.task_done()

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        self._raise()
        self._tasks.put((fn, args))

    def drain(self, raise_errors: bool = True) -> None:
        """Wait until every submitted call has run."""
        self._tasks.join()
        if raise_errors:
            self._raise()

    def close(self) -> None:
        if self._thread.is_alive():
            self._tasks.put(None)
            self._thread.join()


def ordered_map(fn: Callable[[T], R], items: Iterable[T], workers: int, ahead: int) -> Iterator[R]:
    """``map(fn, items)`` computed by ``workers`` threads, at most ``ahead`` results in advance, in order.

    For work that releases the GIL (image decoding, compression). An error of ``fn`` is raised
    when its item's turn comes, after the results before it; closing the iterator cancels the rest.
    """
    if workers <= 1:
        yield from map(fn, items)
        return
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="loger3d-decode",
                              initializer=background_priority)
    pending: deque[Future] = deque()
    try:
        source = iter(items)
        for item in source:
            pending.append(pool.submit(fn, item))
            if len(pending) >= ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
