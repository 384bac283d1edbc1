"""One video on several devices: the model's units cut into stages, chunks flowing through them.

The memory of a decoder layer for chunk m depends only on that layer for chunk m-1 and on the
layers below it for chunk m (ARCHITECTURE.md §8). So the units of ``LoGeR`` (encoder, decoder
blocks with their memory layers, heads) can be cut into consecutive stages, each on its own
device with its layers' weights and memory, and the chunks pass through as a wavefront: stage 2
works on chunk m while stage 1 works on chunk m+1. Every unit computes what it computes on one
device, and the tensors that cross a boundary are copied exactly, so the outputs are those of
one device.

Each stage runs on its own host thread with its own CUDA stream, so that a synchronising call in
one stage (the camera head's SVD) never stops the others from queueing work. A chunk crosses a
boundary as a ``ChunkActivations`` copied on the receiving device's transfer stream; the
receiving stage waits for that copy with a CUDA event. The last stage aligns the chunk (the
aligner sees the chunks in order) and copies its outputs to pinned host memory.

    pipeline = LayerPipeline(model, ["cuda:0", "cuda:1"], aligner)
    handoff = pipeline.submit(index, images, roles, reset=False)  # returns at once
    pred, transform, copied = handoff.result()                     # host tensors; wait on `copied`

The main thread talks to the stage threads only through ``SimpleQueue``s, ``Handoff``s and
``HelperThread``s, which Ctrl-C cannot leave half done (``util.workers``), so an interrupted run stops cleanly.
"""

from __future__ import annotations

import contextlib
import queue
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..errors import InputError
from ..model.activations import ChunkActivations
from ..model.align import ChunkAligner
from ..model.blocks import Attention, pinned_attention, resolve_backends
from ..model.memory import ChunkMemory
from ..util.workers import Handoff, HelperThread
from .offload import to_host

__all__ = ["LayerPipeline", "parse_devices", "plan_stages", "unit_costs"]

# Measured on an H100 (docs/performance.md): cuBLAS GEMMs ~690 TFLOP/s, cuDNN attention ~410: an
# attention FLOP costs about 1.7 GEMM FLOPs of time.
_ATTENTION_WEIGHT = 690 / 410


def parse_devices(spec: str | Sequence[str | torch.device]) -> list[torch.device]:
    """``"cuda:0,cuda:1"``, ``"all"`` (every visible GPU) or a list: the devices of a layer pipeline."""
    if isinstance(spec, str):
        if spec.strip() == "all":
            if not torch.cuda.is_available():
                raise InputError("--devices all needs CUDA GPUs; none is visible")
            return [torch.device("cuda", i) for i in range(torch.cuda.device_count())]
        spec = [part.strip() for part in spec.split(",") if part.strip()]
    devices = []
    for item in spec:
        try:
            device = torch.device(item)
        except RuntimeError:
            raise InputError(f"not a device: {item!r}; give devices such as cuda:0,cuda:1 or 'all'") from None
        if device.type == "cuda":
            if device.index is None:
                raise InputError(f"give each GPU with its index (cuda:0, cuda:1, ...), not {item!r}")
            if not torch.cuda.is_available() or device.index >= torch.cuda.device_count():
                count = torch.cuda.device_count() if torch.cuda.is_available() else 0
                raise InputError(f"{item} is not available: {count} CUDA device(s) visible")
        devices.append(device)
    if not devices:
        raise InputError("no devices given; give devices such as cuda:0,cuda:1 or 'all'")
    return devices


def unit_costs(model, height: int, width: int, frames: int) -> list[float]:
    """An estimate of each unit's time for a chunk of ``frames`` frames of ``height``×``width``:
    its multiply-adds, attention weighted by its lower throughput. Used to balance the stages."""
    cfg = model.config
    p = cfg.patch_size
    patches = (height // p) * (width // p)
    n = frames
    te = patches + 1 + cfg.enc_registers  # encoder tokens per frame
    t = patches + cfg.num_special_tokens  # decoder tokens per frame
    a = _ATTENTION_WEIGHT

    def block(dim: float, tokens: int, context: int, mlp_ratio: float) -> float:
        gemm = tokens * (4 + 2 * mlp_ratio) * dim * dim
        return gemm + a * 2 * tokens * context * dim

    encoder = cfg.enc_depth * block(cfg.enc_dim, n * te, te, cfg.enc_mlp_ratio)
    ttt_hidden = cfg.ttt_head_dim * cfg.ttt_inter_multi
    heads_ttt = cfg.dec_dim // cfg.ttt_head_dim
    # projections in and out, the fast-weight MLP applied once and differentiated for the update (~3x)
    ttt = n * t * (4 * cfg.dec_dim ** 2 + 3 * 3 * cfg.ttt_head_dim * ttt_hidden * heads_ttt)
    swa = block(cfg.dec_dim, n * t, 2 * n * t, cfg.ttt_inter_multi)
    head = n * t * 2 * cfg.dec_dim * cfg.head_dim + cfg.head_depth * block(cfg.head_dim, n * t, t, cfg.head_mlp_ratio)
    costs = []
    for kind, i in model.units:
        if kind == "encoder":
            costs.append(encoder)
        elif kind == "block":
            costs.append(block(cfg.dec_dim, n * t, t if i % 2 == 0 else n * t, cfg.dec_mlp_ratio))
        elif kind == "ttt":
            costs.append(ttt)
        elif kind == "swa":
            costs.append(swa)
        else:
            costs.append(3 * head)
    return [float(c) for c in costs]


def plan_stages(costs: Sequence[float], parts: int) -> list[range]:
    """Cut units ``0..len(costs)-1`` into ``parts`` consecutive non-empty stages with the smallest
    largest stage cost (exact, by dynamic programming)."""
    n = len(costs)
    if not 1 <= parts <= n:
        raise InputError(f"cannot cut {n} units into {parts} stages: give at most {n} devices")
    prefix = [0.0]
    for c in costs:
        prefix.append(prefix[-1] + c)
    inf = float("inf")
    # best[k][i]: the smallest largest stage cost of the first i units cut into k stages
    best = [[inf] * (n + 1) for _ in range(parts + 1)]
    cut = [[0] * (n + 1) for _ in range(parts + 1)]
    best[0][0] = 0.0
    for k in range(1, parts + 1):
        for i in range(k, n + 1):
            for j in range(k - 1, i):
                value = max(best[k - 1][j], prefix[i] - prefix[j])
                if value < best[k][i]:
                    best[k][i], cut[k][i] = value, j
    stages, i = [], n
    for k in range(parts, 0, -1):
        j = cut[k][i]
        stages.append(range(j, i))
        i = j
    return stages[::-1]


@dataclass
class _Job:
    """One chunk on its way through the stages."""

    index: int
    acts: ChunkActivations
    reset: bool
    ready: torch.cuda.Event | None  # the chunk's tensors are on this stage's device once this fires
    result: Handoff


class _Stage:
    def __init__(self, device: torch.device, units: range) -> None:
        self.device = device
        self.units = units
        cuda = device.type == "cuda"
        self.stream = torch.cuda.Stream(device=device) if cuda else None
        self.transfers = torch.cuda.Stream(device=device) if cuda else None  # incoming copies
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.memory: ChunkMemory | None = None
        self.thread: HelperThread | None = None


class LayerPipeline:
    """Chunks of one stream through the model's units cut into stages on ``devices``.

    Args:
        model: a ``LoGeR`` in eval mode (inference only); its units are moved to the stages' devices.
        devices: one device per stage (at least two; the same device may repeat).
        aligner: the stream's ``ChunkAligner``, applied by the last stage in chunk order.
        split: the first unit of each stage after the first (``len(devices) - 1`` increasing
            numbers in ``1..num_units-1``); default: balanced by ``unit_costs`` for the first
            chunk's size.
    """

    def __init__(self, model, devices: Sequence[torch.device | str], aligner: ChunkAligner,
                 split: Sequence[int] | None = None) -> None:
        devices = [torch.device(d) for d in devices]
        if len(devices) < 2:
            raise ValueError("a layer pipeline needs at least two devices; use the model directly on one")
        if model.training:
            raise InputError("the layer pipeline runs inference only; call model.eval() first")
        self.model = model
        self.devices = devices
        self.aligner = aligner
        self._split = None if split is None else self._check_split(split)
        self.stages: list[_Stage] = []
        self._error: BaseException | None = None
        self._pending_memory: ChunkMemory | None = None
        self._copy_stream = torch.cuda.Stream(device=devices[-1]) if devices[-1].type == "cuda" else None
        self._attention = contextlib.ExitStack()
        # until the first chunk fixes the plan: the first units where the stream's images go
        self._place(self._split or self._balanced_split(280, 504, 32))
        weakref.finalize(self, LayerPipeline._stop, self.stages, self._attention)

    # ------------------------------------------------------------------ planning
    def _check_split(self, split: Sequence[int]) -> list[int]:
        split = [int(s) for s in split]
        n = self.model.num_units
        if len(split) != len(self.devices) - 1 or split != sorted(set(split)) or \
                (split and (split[0] < 1 or split[-1] > n - 1)):
            raise InputError(f"split must be {len(self.devices) - 1} increasing unit numbers in 1..{n - 1}, "
                             f"got {split}")
        return split

    def _balanced_split(self, height: int, width: int, frames: int) -> list[int]:
        stages = plan_stages(unit_costs(self.model, height, width, frames), len(self.devices))
        return [s.start for s in stages[1:]]

    def _place(self, split: list[int]) -> None:
        bounds = [0, *split, self.model.num_units]
        self.stages[:] = [_Stage(d, range(a, b)) for d, a, b in zip(self.devices, bounds[:-1], bounds[1:])]
        self.model.place_units([s.device for s in self.stages for _ in s.units])
        self.plan = [s.units for s in self.stages]

    @property
    def depth(self) -> int:
        """Chunks the pipeline holds at once (one per stage)."""
        return len(self.devices)

    # ------------------------------------------------------------------ running
    def _start(self, acts: ChunkActivations) -> None:
        """At the first chunk: fix the plan for its size, fix the attention kernels, start the threads."""
        if self._split is None:
            split = self._balanced_split(acts.height, acts.width, acts.frames)
            if split != [s.units.start for s in self.stages[1:]]:
                self._place(split)
        modules = [m for m in self.model.modules() if isinstance(m, Attention)]
        backends = {m.backends for m in modules}
        if len(backends) == 1:  # the fast path sets one choice for every layer
            self._attention.enter_context(pinned_attention(*resolve_backends(self.model.compute_dtype,
                                                                             backends.pop())))
        memory = self._pending_memory or self.model.new_memory()
        self._pending_memory = None
        self._distribute(memory)
        for k, stage in enumerate(self.stages):
            following = self.stages[k + 1] if k + 1 < len(self.stages) else None
            stage.thread = HelperThread(self._work, stage, following, name=f"loger3d-stage{k}")
            stage.thread.start()

    def submit(self, index: int, images: torch.Tensor, roles: Sequence[int], reset: bool) -> Handoff:
        """Queue chunk ``index`` (images on the first stage's device or the host); returns at once.

        The handoff gives ``(prediction, transform, copied)`` on the host (see ``offload.to_host``).
        ``reset``: reset the fast weights before this chunk.
        """
        acts = self.model.begin_chunk(images, roles)
        if self.stages[0].thread is None:
            self._start(acts)
        ready = None
        if acts.images.device.type == "cuda":  # queued on this thread's stream: the first stage waits for it
            ready = torch.cuda.Event()
            ready.record(torch.cuda.current_stream(acts.images.device))
        result: Handoff = Handoff()
        self.stages[0].inbox.put(_Job(index, acts, reset, ready, result))
        return result

    def _work(self, stage: _Stage, following: _Stage | None) -> None:
        """A stage's thread: take a chunk, run its units, pass it on (or finish it, in the last stage)."""
        streams = torch.cuda.stream(stage.stream) if stage.stream is not None else contextlib.nullcontext()
        with torch.no_grad(), streams:
            while True:
                job: _Job | None = stage.inbox.get()
                if job is None:
                    return
                if self._error is not None:  # an earlier chunk failed: the memory is not valid any more
                    job.result.set_exception(self._error)
                    continue
                try:
                    self._run(stage, following, job)
                except BaseException as error:
                    self._error = error
                    job.result.set_exception(error)

    def _run(self, stage: _Stage, following: _Stage | None, job: _Job) -> None:
        acts = job.acts
        if job.ready is not None:
            stage.stream.wait_event(job.ready)
            for tensor in acts.tensors():
                tensor.record_stream(stage.stream)  # made on another stream, used on this one
        if job.reset:
            stage.memory = stage.memory.reset_fast_weights()
        acts, stage.memory = self.model.run_units(acts, stage.memory, stage.units)
        if following is None:
            pred, transform = self.aligner(job.index, acts.prediction)
            job.result.set_result(to_host(pred, transform, self._copy_stream))
            return
        ready = None
        if following.transfers is not None:
            following.transfers.wait_stream(stage.stream)  # also when both stages share a device (no copy)
            with torch.cuda.stream(following.transfers):
                acts = acts.to(following.device, non_blocking=True)
                ready = torch.cuda.Event()
                ready.record(following.transfers)
        else:
            acts = acts.to(following.device)
        following.inbox.put(_Job(job.index, acts, job.reset, ready, job.result))

    # ------------------------------------------------------------------ memory
    def _owner(self) -> tuple[list[_Stage], list[_Stage]]:
        """The stage that holds each TTT slot and each SWA slot."""
        ttt = [None] * len(self.model.ttt_layers)
        swa = [None] * len(self.model.swa_layers)
        for stage in self.stages:
            for unit in stage.units:
                t, s = self.model.unit_memory_slots(unit)
                for j in t:
                    ttt[j] = stage
                for j in s:
                    swa[j] = stage
        return ttt, swa

    def _distribute(self, memory: ChunkMemory) -> None:
        ttt, swa = self._owner()
        for stage in self.stages:
            stage.memory = ChunkMemory(
                [m.map(lambda t, d=stage.device: t.to(d)) if m is not None and ttt[j] is stage else None
                 for j, m in enumerate(memory.fast_weights)],
                [c.map(lambda t, d=stage.device: t.to(d)) if c is not None and swa[j] is stage else None
                 for j, c in enumerate(memory.kv_caches)],
                memory.chunks_seen)

    def memory(self, chunks_seen: int) -> ChunkMemory | None:
        """The whole memory after the last chunk (``None`` before any); only when no chunk is in flight."""
        if self.stages[0].thread is None:
            return self._pending_memory
        ttt, swa = self._owner()
        for stage in self.stages:
            if stage.stream is not None:
                stage.stream.synchronize()
        return ChunkMemory([ttt[j].memory.fast_weights[j] for j in range(len(ttt))],
                           [swa[j].memory.kv_caches[j] for j in range(len(swa))], chunks_seen)

    def load_memory(self, memory: ChunkMemory) -> None:
        """Continue from ``memory`` (a resumed stream), before or between chunks."""
        if self.stages[0].thread is None:
            self._pending_memory = memory
        else:
            self._distribute(memory)

    def pause(self, chunks_seen: int) -> None:
        """Stop the stage threads, keeping the memory (on its devices) for the next chunk, if any.

        Call when no chunk is in flight (a stream's end); the next ``submit`` starts them again.
        """
        if self.stages[0].thread is not None:
            self._pending_memory = self.memory(chunks_seen)
        self.close()
        for stage in self.stages:
            stage.thread = None

    def close(self) -> None:
        """Stop the stage threads (after the chunks already queued) and release the attention choice."""
        LayerPipeline._stop(self.stages, self._attention)

    @staticmethod
    def _stop(stages: list[_Stage], attention: contextlib.ExitStack) -> None:
        for stage in stages:
            if stage.thread is not None and not stage.thread.finished:
                stage.inbox.put(None)
                stage.thread.wait()
        attention.close()
