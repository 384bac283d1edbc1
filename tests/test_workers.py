"""The run loop's background helpers: ordered_map (decoding ahead on threads), SerialWorker (the writer) and
group_frames (chunks stacked ahead of the model)."""

import os
import sys
import threading
import time

import numpy as np
import pytest
import torch

from loger3d.sources import Frame, group_frames, open_source
from loger3d.util.workers import BACKGROUND_NICE, SerialWorker, ordered_map


def test_ordered_map_keeps_the_order_of_the_items():
    def slow_for_early(i):
        time.sleep(0.002 * (10 - i % 10))  # early items finish last
        return i * i

    assert list(ordered_map(slow_for_early, range(40), workers=4, ahead=8)) == [i * i for i in range(40)]
    assert list(ordered_map(slow_for_early, range(5), workers=1, ahead=1)) == [i * i for i in range(5)]


def test_ordered_map_raises_at_the_failing_item_after_the_ones_before():
    def fail_at_7(i):
        if i == 7:
            raise ValueError("item 7 is bad")
        return i

    got = []
    with pytest.raises(ValueError, match="item 7"):
        for value in ordered_map(fail_at_7, range(20), workers=3, ahead=6):
            got.append(value)
    assert got == list(range(7))


def test_ordered_map_stays_bounded_and_stops_when_closed():
    started = []

    def record(i):
        started.append(i)
        return i

    results = ordered_map(record, range(1000), workers=2, ahead=4)
    assert next(results) == 0
    time.sleep(0.05)
    assert len(started) <= 5  # at most `ahead` in flight beyond what was consumed
    results.close()
    assert len(started) <= 6 and not any(t.name.startswith("loger3d-decode") for t in threading.enumerate())


def test_serial_worker_runs_in_order_and_hands_back_the_first_error():
    done = []
    worker = SerialWorker(depth=2)
    for i in range(5):
        worker.submit(done.append, i)
    worker.drain()
    assert done == [0, 1, 2, 3, 4]

    def fail():
        raise OSError("disk full")

    worker.submit(fail)
    worker.submit(done.append, 99)  # not run: a later task never runs after an error
    with pytest.raises(OSError, match="disk full"):
        worker.drain()
    assert 99 not in done
    worker.close()


@pytest.mark.parametrize("threads", [1, 3])
def test_image_folder_decoded_on_threads_gives_the_same_frames(tmp_path, threads):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(9):
        Image.fromarray(rng.integers(0, 255, (30, 44, 3), dtype=np.uint8)).save(tmp_path / f"f{i}.png")
    one = [f.image for f in open_source(str(tmp_path), resolution=(28, 28), decode_threads=1).frames(prefetch=0)]
    many = list(open_source(str(tmp_path), resolution=(28, 28), decode_threads=threads).frames(skip=2))
    assert [f.index for f in many] == list(range(2, 9)) and [f.name for f in many] == [f"f{i}" for i in range(2, 9)]
    for a, b in zip(one[2:], many):
        assert (a == b.image).all()


def _frames(n: int, size: int = 4) -> list[Frame]:
    return [Frame(i, i, float(i), f"f{i}", np.full((size, size, 3), i, np.uint8)) for i in range(n)]


def test_group_frames_follows_the_stream_and_stacks_each_push():
    groups = list(group_frames(iter(_frames(12)), first=5, step=3))
    assert [[f.index for f in g.frames] for g in groups] == [[0, 1, 2, 3, 4], [5, 6, 7], [8, 9, 10], [11]]
    for g in groups:
        assert g.images.dtype == torch.uint8 and g.images.shape == (len(g.frames), 3, 4, 4)
        assert torch.equal(g.images[:, 0, 0, 0], torch.tensor([f.index for f in g.frames], dtype=torch.uint8))


def test_group_frames_carries_resumed_frames_as_metadata_only():
    # resumed with frames 2 and 3 already in the stream's buffer: the first push needs 3 more frames
    groups = list(group_frames(iter(_frames(10)[2:]), first=3, step=3, pushed=4))
    assert [[f.index for f in g.frames] for g in groups] == [[2, 3, 4, 5, 6], [7, 8, 9]]
    assert groups[0].images[:, 0, 0, 0].tolist() == [4, 5, 6]
    # nothing left to push after the resumed frames: metadata only
    (only,) = group_frames(iter(_frames(4)[2:]), first=3, step=3, pushed=4)
    assert [f.index for f in only.frames] == [2, 3] and only.images is None
    with pytest.raises(ValueError, match="group sizes"):
        next(group_frames(iter(_frames(2)), first=0, step=3))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="thread priorities are a Linux feature")
def test_helper_threads_run_below_the_model():
    def priority() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    seen = []
    worker = SerialWorker(name="probe")
    worker.submit(lambda: seen.append(priority()))
    worker.drain()
    worker.close()
    assert seen == [min(priority() + BACKGROUND_NICE, 19)]


def test_bounded_queue_holds_the_producer_at_its_depth_and_lets_it_stop():
    from loger3d.util.workers import BoundedQueue, StopFlag

    items = BoundedQueue(depth=2)
    stop = StopFlag()
    put = []

    def produce():
        for i in range(5):
            if not items.put(i, stop):
                return
            put.append(i)

    producer = threading.Thread(target=produce)
    producer.start()
    time.sleep(0.2)
    assert put == [0, 1]  # two wait; the producer is held at the third
    assert items.get() == 0
    deadline = time.monotonic() + 5
    while len(put) < 3 and time.monotonic() < deadline:
        time.sleep(0.001)
    assert put == [0, 1, 2]  # one taken, one more in
    stop.set()
    producer.join(5)
    assert not producer.is_alive() and put == [0, 1, 2]  # stopped while held: nothing more put
    assert [items.get(), items.get()] == [1, 2]
