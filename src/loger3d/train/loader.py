"""The training step's data, drawn ahead of the optimiser: micro-batches in the order the trainer takes them.

Micro-batch ``m`` of step ``t`` is a pure function of ``(t, slots of m)`` (``ClipMixture.sample_batch``), so
drawing it early changes nothing but when the work happens. On a GPU one background thread renders the next
micro-batch on its own CUDA stream while the current one trains (the renderer launches its kernels between the
model's), and tells the worlds' builders which worlds the steps after will need. On a CPU the batch is drawn
when asked by default: there is no idle device to fill, only cores the step already uses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields

import torch

from ..util.workers import BoundedQueue, HelperThread, StopFlag
from .clip import Clip, stack_clips
from .curriculum import Curriculum
from .mixture import ClipMixture

__all__ = ["BatchLoader"]

PREFETCH_STEPS = 2
"""Steps ahead whose worlds the sources may start building."""


class BatchLoader:
    """``get(step, micro)`` returns micro-batch ``micro`` of ``step`` as one stacked ``Clip`` on ``device``.

    Calls must come in order from ``start``: step by step, micro-batch by micro-batch (the trainer's order).
    ``micro_batches(step)`` are the step's global-batch slots, one list per micro-batch.
    ``ahead``: micro-batches drawn in advance by the background thread (0: drawn when asked); default 1 on a
    CUDA ``device`` and 0 on a CPU.
    """

    def __init__(self, mixture: ClipMixture, curriculum: Curriculum, micro_batches: Callable[[int], list[list[int]]],
                 device: torch.device, start: int, ahead: int | None = None) -> None:
        self.mixture = mixture
        self.curriculum = curriculum
        self.micro_batches = micro_batches
        self.device = device
        self.ahead = ahead if ahead is not None else int(device.type == "cuda")
        self._next = (start, 0)
        self._announced = start  # steps below this have had their worlds announced
        # the trainer's thread, where Ctrl-C raises anywhere, touches only what util.workers makes safe against it
        self._queue = BoundedQueue(max(1, self.ahead))
        self._stop = StopFlag()
        self._thread: HelperThread | None = None
        self._stream = torch.cuda.Stream(device) if self.ahead and device.type == "cuda" else None

    def get(self, step: int, micro: int) -> Clip:
        if (step, micro) != self._next:
            raise RuntimeError(f"micro-batches must be taken in order: asked for {(step, micro)}, next is {self._next}")
        self._next = self._after(step, micro)
        if not self.ahead:
            self._announce(step)
            return self._draw(step, micro)
        if self._thread is None:
            self._thread = HelperThread(self._produce, step, micro, name="loger3d-batches")
            self._thread.start()
        _, batch, ready = self._queue.get()
        if isinstance(batch, BaseException):
            raise batch
        if self._stream is None:
            return batch
        current = torch.cuda.current_stream(self.device)
        current.wait_event(ready)
        for f in fields(batch):
            value = getattr(batch, f.name)
            if isinstance(value, torch.Tensor):
                value.record_stream(current)  # its memory is in use on this stream until the step is done
        return batch

    def close(self) -> None:
        """Stop drawing ahead (what was drawn is dropped) and let the sources shut their workers down."""
        self._stop.set()
        if self._thread is not None:
            self._thread.wait()  # the batch in hand is finished, then the thread ends
            self._thread = None
            self._queue.clear()
        self.mixture.close()

    def _after(self, step: int, micro: int) -> tuple[int, int]:
        return (step, micro + 1) if micro + 1 < len(self.micro_batches(step)) else (step + 1, 0)

    def _draw(self, step: int, micro: int) -> Clip:
        stage, _ = self.curriculum.at(step)
        return stack_clips(self.mixture.sample_batch(step, self.micro_batches(step)[micro], stage.frames,
                                                     self.device))

    def _announce(self, step: int) -> None:
        """Tell the sources which clips the next ``PREFETCH_STEPS`` steps will draw (each step once)."""
        last = min(step + PREFETCH_STEPS, self.curriculum.total_steps - 1)
        for ahead in range(max(self._announced, step + 1), last + 1):
            slots = [s for micro in self.micro_batches(ahead) for s in micro]
            self.mixture.prefetch(ahead, slots, self.curriculum.at(ahead)[0].frames)
        self._announced = max(self._announced, last + 1)

    def _produce(self, step: int, micro: int) -> None:
        try:
            if self._stream is not None:
                torch.cuda.set_device(self.device)
            while not self._stop.requested and step < self.curriculum.total_steps:
                self._announce(step)
                self._queue.put(((step, micro), *self._draw_on_side_stream(step, micro)), self._stop)
                step, micro = self._after(step, micro)
        except BaseException as e:  # handed to the trainer at its next get
            self._queue.put(((step, micro), e, None), self._stop)

    def _draw_on_side_stream(self, step: int, micro: int) -> tuple[Clip, torch.cuda.Event | None]:
        """The batch, and on a GPU the event that marks it ready on the side stream."""
        if self._stream is None:
            return self._draw(step, micro), None
        with torch.cuda.stream(self._stream):
            batch = self._draw(step, micro)
            ready = torch.cuda.Event()
            ready.record(self._stream)
        return batch, ready
