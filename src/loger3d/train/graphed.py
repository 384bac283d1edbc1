"""A training micro-step replayed as one CUDA graph: the forward and backward of a whole sequence in one launch.

Why: the curriculum's later stages cut a sequence into 12–20 chunks, and a chunk's forward and backward issue
about 5,500 kernels whatever the micro-batch, so the host, not the GPU, bounds the step
(benchmarks/results/train_throughput). Recorded once per shape, a micro-step's tens of thousands of kernels
replay with one launch.

How: the first micro-step of a shape (frames, micro-batch, size, window, overlap, accumulation, loss settings)
runs eagerly on a side stream, so that kernels compile and libraries initialise outside any capture; the next
one records the graph; every later one copies its batch into the graph's input tensors and replays it. The
gradients come from ``torch.autograd.grad`` inside the graph and are added into ``.grad`` tensors that persist
across steps, so accumulation over micro-steps is explicit and ``.grad`` never points into a graph's memory.
A parameter that no micro-step of a step reached keeps ``grad = None``, as in the eager step, so the optimiser
skips it alike. The balanced translation and rotation weights enter the graph as device scalars, refilled
before each replay: a rebalance changes their values, not the graph. All graphs share one memory pool (they
never run at once); each keeps the activations of one micro-step beside the memory of eager passes (warm-ups,
the balance's gradient measurements), so where memory is short, pair graphs with activation checkpointing or a
smaller micro-batch.

The graph replays the eager step's kernels on the same inputs, so its losses and gradients are the eager
step's, up to the rounding of the GPU's atomic additions, which already differs between two eager runs
(tests/test_graphed.py, benchmarks/graphed_parity.py).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..errors import LogerError
from .clip import Clip
from .losses import ChunkLoss, LossConfig

__all__ = ["GraphCaptureError", "GraphedMicroSteps", "micro_step_key"]

_INPUTS = ("images", "depth", "valid", "intrinsics", "poses")
_BALANCED = ("trans_weight", "rot_weight")


def micro_step_key(batch: Clip, window: int, overlap: int, accumulation: int, loss_cfg: LossConfig) -> tuple:
    """What a recorded micro-step is specific to: the batch's shapes and dtypes, the chunking, the gradient
    scale and the loss settings other than the balanced weights (those are graph inputs)."""
    shapes = tuple((tuple(getattr(batch, k).shape), getattr(batch, k).dtype) for k in _INPUTS)
    settings = dataclasses.astuple(dataclasses.replace(loss_cfg, **dict.fromkeys(_BALANCED, 0.0)))
    return shapes, window, overlap, accumulation, settings


class GraphCaptureError(LogerError, RuntimeError):
    """A micro-step that could not be recorded as a CUDA graph; the message says what to change."""


@dataclass
class _Recorded:
    """One shape's graph: its input tensors, the device scalars of the balanced weights, its outputs."""

    graph: torch.cuda.CUDAGraph
    inputs: dict[str, torch.Tensor]
    weights: dict[str, torch.Tensor]
    stats: dict[str, torch.Tensor | float]


class GraphedMicroSteps:
    """``run(batch, window, overlap, accumulation, loss_cfg)`` adds one micro-step's gradients, divided by
    ``accumulation``, into the parameters' ``.grad`` and returns its stats (device tensors, as the objective's).

    ``objective(images, gt_points, gt_poses, valid, window, overlap) -> (loss, stats)`` is the unwrapped
    ``SequenceObjective``; ``chunk_loss`` is its ``ChunkLoss`` (its ``cfg`` is set here); ``autocast()`` the
    trainer's precision context. Call ``begin_step()`` before a step's first micro-step and ``end_step()``
    before the optimiser reads the gradients.
    """

    def __init__(self, objective: Callable, chunk_loss: ChunkLoss, params: list[torch.nn.Parameter],
                 autocast: Callable, device: torch.device) -> None:
        self.objective = objective
        self.chunk_loss = chunk_loss
        self.params = params
        self.autocast = autocast
        self.device = device
        self.stream = torch.cuda.Stream(device)
        self.pool = torch.cuda.graph_pool_handle()
        self.recorded: dict[tuple, _Recorded] = {}
        # Indices of the parameters a shape's backward reaches, learnt by its eager warm-up (so: the warmed shapes)
        self.reached: dict[tuple, list[int]] = {}
        self.grads: dict[int, torch.Tensor] = {}  # the persistent .grad of every parameter ever reached
        self._used: set[int] = set()

    def begin_step(self) -> None:
        for g in self.grads.values():
            g.zero_()
        self._used = set()

    def end_step(self) -> None:
        """``.grad`` as the eager step leaves it: the accumulated sum where reached this step, else None."""
        for i, p in enumerate(self.params):
            p.grad = self.grads[i] if i in self._used else None

    def run(self, batch: Clip, window: int, overlap: int, accumulation: int,
            loss_cfg: LossConfig) -> dict[str, torch.Tensor | float]:
        key = micro_step_key(batch, window, overlap, accumulation, loss_cfg)
        if key not in self.reached:
            return self._eager(batch, window, overlap, accumulation, loss_cfg, key)
        recorded = self.recorded.get(key)
        if recorded is None:
            recorded = self.recorded[key] = self._record(batch, window, overlap, accumulation, loss_cfg, key)
        for name, tensor in recorded.inputs.items():
            tensor.copy_(getattr(batch, name))
        for name, scalar in recorded.weights.items():
            scalar.fill_(getattr(loss_cfg, name))
        recorded.graph.replay()
        self._used.update(self.reached[key])
        return recorded.stats

    # ------------------------------------------------------------------ the micro-step itself
    def _forward_backward(self, inputs: dict[str, torch.Tensor], window: int, overlap: int, accumulation: int,
                          loss_cfg: LossConfig, key: tuple) -> dict[str, torch.Tensor | float]:
        """Loss, gradients and their accumulation into the persistent ``.grad`` tensors, on the current stream."""
        clip = Clip(*(inputs[k] for k in _INPUTS))
        kept, self.chunk_loss.cfg = self.chunk_loss.cfg, loss_cfg
        try:
            with self.autocast():
                loss, stats = self.objective(clip.images, clip.local_points, clip.poses, clip.valid, window,
                                             overlap)
        finally:
            self.chunk_loss.cfg = kept
        warm_up = key not in self.reached
        asked = [i for i, p in enumerate(self.params) if p.requires_grad] if warm_up else self.reached[key]
        grads = torch.autograd.grad(loss / accumulation, [self.params[i] for i in asked], allow_unused=True)
        if warm_up:  # learn which parameters the backward reaches; they get persistent .grad tensors
            self.reached[key] = [i for i, g in zip(asked, grads) if g is not None]
            for i in self.reached[key]:
                self.grads.setdefault(i, torch.zeros_like(self.params[i]))
        reached = self.reached[key]
        torch._foreach_add_([self.grads[i] for i in reached], [g for g in grads if g is not None])
        return stats

    def _eager(self, batch: Clip, window: int, overlap: int, accumulation: int, loss_cfg: LossConfig,
               key: tuple) -> dict[str, torch.Tensor | float]:
        """A shape's first micro-step, eagerly on the side stream (as capturing needs its warm-up)."""
        inputs = {k: getattr(batch, k) for k in _INPUTS}
        self.stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(self.stream):
            stats = self._forward_backward(inputs, window, overlap, accumulation, loss_cfg, key)
        torch.cuda.current_stream(self.device).wait_stream(self.stream)
        for tensor in inputs.values():
            tensor.record_stream(self.stream)
        self._used.update(self.reached[key])
        return stats

    def _record(self, batch: Clip, window: int, overlap: int, accumulation: int, loss_cfg: LossConfig,
                key: tuple) -> _Recorded:
        """Capture the micro-step on ``batch``'s shapes. Nothing runs: the caller replays it on ``batch``."""
        inputs = {k: torch.empty_like(getattr(batch, k)) for k in _INPUTS}
        weights = {k: torch.zeros((), dtype=torch.float32, device=self.device) for k in _BALANCED}
        graph_cfg = copy.copy(loss_cfg)  # the balanced weights as device scalars (no __post_init__ check)
        for name, scalar in weights.items():
            setattr(graph_cfg, name, scalar)
        graph = torch.cuda.CUDAGraph()
        self.stream.wait_stream(torch.cuda.current_stream(self.device))
        try:
            # thread_local: the data loader's thread keeps rendering (and allocating) on its own stream meanwhile
            with torch.cuda.graph(graph, pool=self.pool, stream=self.stream, capture_error_mode="thread_local"):
                stats = self._forward_backward(inputs, window, overlap, accumulation, graph_cfg, key)
        except torch.OutOfMemoryError:
            raise  # the trainer saves a checkpoint and says what to lower
        except RuntimeError as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise GraphCaptureError(f"a micro-step could not be recorded as a CUDA graph ({first}); "
                                    "train without train.cuda_graphs") from e
        torch.cuda.current_stream(self.device).wait_stream(self.stream)
        return _Recorded(graph, inputs, weights, stats)
