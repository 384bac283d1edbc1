"""Ctrl-C at any point of the main thread's talk with the run's helper threads leaves them working.

Python raises ``KeyboardInterrupt`` in the main thread between any two bytecodes, also inside the
standard library's Python code: an interrupted ``queue.Queue.put`` could leave the writer thread
asleep beside a queued call (the run then hung at its end, waiting for that call), an interrupted
``Thread.is_alive`` could mark a running thread finished. These tests send SIGINT at every
function call and return, one after another, of the main thread's side (a profile hook does it),
then check that the helpers still run every call in order and that waiting for them ends.
"""

import signal
import sys
import threading
import time

import pytest
import torch

from loger3d.sources import Prefetcher
from loger3d.util.workers import Handoff, SerialWorker

pytestmark = pytest.mark.usefixtures("python_sigint")  # conftest: Python's Ctrl-C handler, main thread only

#: how long a wait that must end may take before the test calls it a hang (seconds)
HANG = 10.0


def interrupted_at(call, event: int) -> bool:
    """Run ``call()`` with SIGINT sent at its ``event``-th call or return (Python or C); True when the signal was
    sent, whether ``call`` then raised ``KeyboardInterrupt`` (there, or where a block that holds signals back
    ends) or not (a callback whose exceptions Python prints and drops took it), False when ``call`` finished
    with fewer events."""
    seen = 0
    armed = True

    def hook(frame, kind, arg):
        nonlocal seen, armed
        if armed:
            seen += 1
            if seen == event:
                armed = False
                signal.raise_signal(signal.SIGINT)  # Python's handler raises here, or the one in force records it

    sys.setprofile(hook)
    try:
        call()
    except KeyboardInterrupt:
        pass
    finally:
        armed = False
        sys.setprofile(None)
    return seen >= event


def ends(call) -> bool:
    """Whether ``call()``, run on a helper thread so that a hang fails the test rather than stopping it, returns
    within ``HANG`` seconds."""
    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(HANG)
    return not thread.is_alive()


@pytest.fixture
def thread_errors(monkeypatch):
    """Exceptions that end a helper thread (which Python would only print)."""
    errors = []
    monkeypatch.setattr(threading, "excepthook", errors.append)
    return errors


def every_event(call_at, stride: int = 1):
    """``call_at(event)`` for event 1, 1 + stride, 1 + 2 stride, ... until the call has fewer events; how many
    events were tried."""
    event, tried = 1, 0
    while call_at(event):
        tried += 1
        event += stride
        assert event < 10_000
    return tried


@pytest.mark.parametrize("step", ["submit", "drain"])
def test_serial_worker_survives_an_interrupt_anywhere_in_submit_and_drain(step, thread_errors):
    def interrupt(event: int) -> bool:
        done = []
        worker = SerialWorker(depth=2)
        worker.submit(time.sleep, 0.002)
        worker.submit(done.append, 0)
        worker.submit(done.append, 1)  # the queue is full: submit waits for room
        call = (lambda: worker.submit(done.append, 2)) if step == "submit" else worker.drain
        hit = interrupted_at(call, event)

        def go_on():
            worker.submit(done.append, 3)
            worker.drain()
            worker.close()

        assert ends(go_on), f"the worker hangs after an interrupt at event {event} of {step}"
        assert done in ([0, 1, 2, 3], [0, 1, 3]) if step == "submit" else done == [0, 1, 3], (event, done)
        return hit

    assert every_event(interrupt) > 5
    assert not thread_errors


def test_prefetcher_survives_an_interrupt_anywhere_in_next_and_close(thread_errors):
    def interrupt_next(event: int) -> bool:
        items = Prefetcher(iter(range(50)), depth=2)
        assert next(items) == 0
        hit = interrupted_at(lambda: next(items), event)
        rest = []
        assert ends(lambda: rest.extend(items)), f"the prefetcher hangs after an interrupt at event {event} of next"
        # the item taken when the interrupt came may be gone; the others come, in order
        assert rest in (list(range(1, 50)), list(range(2, 50))), (event, rest[:3])
        assert ends(items.close)
        return hit

    def interrupt_close(event: int) -> bool:
        items = Prefetcher(iter(int, 1), depth=2)  # endless: the producer waits for room when closed
        assert next(items) == 0
        hit = interrupted_at(items.close, event)
        assert ends(items.close), f"close hangs after an interrupted close (event {event})"
        return hit

    assert every_event(interrupt_next) > 2
    assert every_event(interrupt_close) > 2
    assert not thread_errors


def test_handoff_result_survives_an_interrupt_anywhere():
    def interrupt(event: int) -> bool:
        handoff = Handoff()
        waiting = threading.Timer(0.002, handoff.set_result, args=("chunk",))
        waiting.start()
        hit = interrupted_at(handoff.result, event)
        got = []
        assert ends(lambda: got.append(handoff.result()))
        assert got == ["chunk"]
        return hit

    assert every_event(interrupt) > 2

    failed = Handoff()
    failed.set_exception(OSError("disk full"))
    with pytest.raises(OSError, match="disk full"):
        failed.result()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # a signal in a GC callback
def test_batch_loader_closes_after_an_interrupt_in_get(thread_errors):
    from loger3d.train.loader import BatchLoader

    from .test_clip_batches import _loader_setup

    def interrupt(event: int) -> bool:
        mixture, curriculum = _loader_setup()  # a closed loader closes its mixture too
        loader = BatchLoader(mixture, curriculum, lambda step: [[0, 1]], torch.device("cpu"), start=0, ahead=1)
        hit = interrupted_at(lambda: loader.get(0, 0), event)
        assert ends(loader.close), f"close hangs after an interrupt at event {event} of get"
        return hit

    assert every_event(interrupt, stride=9) > 10  # every 9th of its 200-odd events: each try builds a world
    assert not thread_errors


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # a signal in a GC callback
def test_checkpoint_writer_survives_an_interrupt_anywhere_in_save_and_join(tmp_path, thread_errors):
    """A Ctrl-C in ``save`` (which waits for the write before it, copies the state and starts the writer) or in
    ``join`` leaves no half-written checkpoint, and the next save and wait work."""
    from loger3d.train.checkpoint_writer import CheckpointWriter

    state = {"model": {"w": torch.arange(4096.0)}, "step": 7}

    def intact(path) -> bool:
        saved = torch.load(path, weights_only=True)
        return saved["step"] == 7 and torch.equal(saved["model"]["w"], state["model"]["w"])

    def interrupt(event: int) -> bool:
        folder = tmp_path / str(event)
        folder.mkdir()
        writer = CheckpointWriter()
        writer.save(folder / "before.pt", state)  # a write in flight: the next save waits for it
        hit = interrupted_at(lambda: (writer.save(folder / "interrupted.pt", state), writer.join()), event)
        assert ends(writer.wait), f"waiting for the writer hangs after an interrupt at event {event}"
        writer.save(folder / "after.pt", state)
        assert ends(writer.wait)
        written = sorted(p.name for p in folder.iterdir())
        assert written in (["after.pt", "before.pt"], ["after.pt", "before.pt", "interrupted.pt"]), (event, written)
        assert all(intact(folder / name) for name in written), event
        return hit

    assert every_event(interrupt) > 5
    assert not thread_errors
