"""Background work for the run loop, and how the main thread talks to it safely under Ctrl-C.

``SerialWorker`` runs calls in order on one thread (the writer), ``ordered_map`` on a pool (decoding); both bound
how much work waits and hand the first error back to the producer where it next talks to them.

Ctrl-C raises ``KeyboardInterrupt`` in the main thread between any two bytecodes, the standard library's Python
code included. ``queue.Queue``, ``threading.Event``, ``Future`` and ``Thread.join`` count, wake and release in
such code, and an interrupt inside it can leave a helper asleep beside queued work, a count wrong, a lock held,
or a running thread marked finished: the run then hangs where it should stop and save its chunks. So what the
main thread touches is made of ``queue.SimpleQueue`` and lock calls, which are written in C and happen whole or
not at all: ``Latch`` (a one-shot signal), ``Handoff`` (one result), ``HelperThread`` (a thread to wait for),
``StopFlag`` and ``BoundedQueue``. ``tests/test_interrupt_safety.py`` sends SIGINT at every
call and return of the main thread's side of ``SerialWorker``, ``Prefetcher``, ``Handoff``, the trainer's
``CheckpointWriter`` and (every ninth) its ``BatchLoader``, and checks that the helpers go on.
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
from typing import Any, Generic, TypeVar

from .signals import signals_held

__all__ = ["BoundedQueue", "Handoff", "HelperThread", "Latch", "SerialWorker", "StopFlag", "background_priority",
           "ordered_map"]

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


#: the longest a producer held back by a full ``BoundedQueue`` sleeps before it looks again (seconds): it is woken
#: as soon as an item is taken, so this only bounds the wait when a wake-up was lost to an interrupt, or for a stop
ROOM_WAIT_S = 0.05


class StopFlag:
    """A request that a helper thread stop: set by the main thread in one step, read by the helper."""

    def __init__(self) -> None:
        self.requested = False

    def set(self) -> None:
        self.requested = True


class BoundedQueue:
    """At most ``depth`` items waiting between one producer and one consumer, either of them the main thread.

    Built from two ``SimpleQueue``s, the items and a wake-up token per item taken, so each side only makes C
    calls that an interrupt cannot leave half done; a token lost to one costs the producer ``ROOM_WAIT_S``.
    """

    def __init__(self, depth: int) -> None:
        if depth < 1:
            raise ValueError(f"queue depth must be >= 1, got {depth}")
        self.depth = depth
        self._items: queue.SimpleQueue = queue.SimpleQueue()
        self._taken: queue.SimpleQueue = queue.SimpleQueue()

    def put(self, item: object, stop: StopFlag | None = None) -> bool:
        """Put ``item`` once fewer than ``depth`` wait; False, with nothing put, when ``stop`` comes first."""
        with contextlib.suppress(queue.Empty):
            while True:  # tokens of items taken earlier: the count below already shows them
                self._taken.get_nowait()
        while self._items.qsize() >= self.depth:
            if stop is not None and stop.requested:
                return False
            with contextlib.suppress(queue.Empty):
                self._taken.get(timeout=ROOM_WAIT_S)
        if stop is not None and stop.requested:
            return False
        self._items.put(item)
        return True

    def put_now(self, item: object) -> None:
        """Put ``item`` whatever the count (a control item: a marker, the end)."""
        self._items.put(item)

    def get(self) -> Any:
        item = self._items.get()
        self._taken.put(None)
        return item

    def clear(self) -> None:
        """Drop what waits (the producer has stopped)."""
        with contextlib.suppress(queue.Empty):
            while True:
                self._items.get_nowait()


class Latch:
    """A one-shot signal from a helper thread to the main thread that Ctrl-C cannot break (unlike
    ``threading.Event``): the waiter only takes and gives back a C lock, and ``set`` flags before it releases."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()
        self._set = False

    def set(self) -> None:
        """Release every waiter; call once, from the helper thread."""
        self._set = True
        self._lock.release()

    def is_set(self) -> bool:
        return self._set

    def wait(self) -> None:
        """Block until set."""
        if not self._set:
            self._lock.acquire()
            self._lock.release()  # for the next waiter


class HelperThread:
    """A thread that the main thread starts and waits for safely under Ctrl-C.

    Keep the object before calling ``start``: ``start`` holds signals back while ``Thread.start`` runs (an
    interrupt inside it can leave a lock held that the new thread then waits for forever) and marks the thread
    started in the same block, so ``wait`` waits exactly when there is a thread to wait for.
    """

    def __init__(self, target: Callable[..., Any], *args: Any, name: str, daemon: bool = True) -> None:
        self._thread = threading.Thread(target=self._run, args=(target, args), name=name, daemon=daemon)
        self._finished = Latch()
        self.started = False

    def start(self) -> None:
        with signals_held():
            self._thread.start()
            self.started = True

    def _run(self, target: Callable[..., Any], args: tuple) -> None:
        try:
            target(*args)
        finally:
            self._finished.set()

    def wait(self) -> None:
        """Block until the thread's target has returned (at once if it never started)."""
        if self.started:
            self._finished.wait()

    @property
    def finished(self) -> bool:
        return self._finished.is_set()

    def is_current(self) -> bool:
        return threading.current_thread() is self._thread


class Handoff(Generic[T]):
    """One result (or error) passed from a helper thread to the main thread: ``result()`` waits for it.

    The part of ``concurrent.futures.Future`` a producer-consumer pair needs, on a :class:`Latch`
    instead of a Python-level condition that Ctrl-C in ``result()`` can leave locked.
    """

    def __init__(self) -> None:
        self._ready = Latch()
        self._value: T | None = None
        self._error: BaseException | None = None

    def set_result(self, value: T) -> None:
        self._value = value
        self._ready.set()

    def set_exception(self, error: BaseException) -> None:
        self._error = error
        self._ready.set()

    def result(self) -> T:
        self._ready.wait()
        if self._error is not None:
            raise self._error
        return self._value


class SerialWorker:
    """Runs submitted calls in order on one thread, so that the model does not wait for the disk.

    At most ``depth`` calls wait; the first error is raised in the producer at its next
    ``submit`` or ``drain``, and no later call runs after it. The producer may be interrupted
    anywhere (see the module docstring); ``drain`` waits for a latch queued behind the calls.
    """

    def __init__(self, depth: int = 2, name: str = "loger3d-worker") -> None:
        self._tasks = BoundedQueue(depth)
        self._error: BaseException | None = None
        self._closed = False
        HelperThread(self._work, name=name).start()

    def _work(self) -> None:
        background_priority()
        while True:
            task = self._tasks.get()
            if task is None:
                return
            if isinstance(task, Latch):  # a producer waits for this point of the queue
                task.set()
                continue
            if self._error is None:
                fn, args = task
                try:
                    fn(*args)
                except BaseException as e:  # handed to the producer
                    self._error = e

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        self._raise()
        if self._closed:
            raise RuntimeError("submit to a closed SerialWorker")
        self._tasks.put((fn, args))

    def drain(self, raise_errors: bool = True) -> None:
        """Wait until every submitted call has run."""
        if not self._closed:
            reached = Latch()
            self._tasks.put_now(reached)
            reached.wait()
        if raise_errors:
            self._raise()

    def close(self) -> None:
        """Run what was submitted, then stop the thread."""
        if not self._closed:
            self.drain(raise_errors=False)
            self._closed = True
            self._tasks.put_now(None)


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
