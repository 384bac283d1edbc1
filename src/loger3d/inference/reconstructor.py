"""Streaming reconstruction: frames in, finished frames out, with memory that does not grow.

The driver cuts the stream into the same chunks as ``plan_windows`` without knowing its length:
a chunk runs as soon as ``window`` frames are buffered, or at ``finish()`` with what is left.
After a chunk, its first ``window - overlap`` frames are final; its last ``overlap`` frames are
held back, because the next chunk (if any) predicts them again and its prediction wins
(ARCHITECTURE.md §9.3). Between chunks the driver keeps only the ``ChunkMemory``, the aligner's
anchor, the images of the overlap frames and the held-back predictions; its state can be saved
after any chunk and loaded to resume, with results identical to an uninterrupted run.

A chunk is aligned on the model's device as soon as it is launched (the alignment needs only the
previous chunk's anchor, already there), then on a GPU copied to pinned host memory on a side
stream; it is handed out only once the next chunk has been launched, so that the copies and the
host's work overlap the next chunk's compute and nothing between two chunks waits for the GPU.
``flush()`` finalises the chunk in flight (``finish()`` does it too); ``state_dict()`` needs a
flushed stream.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..errors import InputError
from ..model.align import ALIGN_MODES, ChunkAligner, ChunkTransform
from ..model.memory import ChunkMemory
from ..model.outputs import ChunkPrediction
from ..model.recurrence import ChunkRecurrence, MemoryPolicy
from ..model.windows import frame_roles
from ..util.atomic import write_safetensors
from ..util.workers import Handoff
from .offload import to_host
from .pipeline import LayerPipeline, parse_devices

__all__ = ["FinishedFrames", "Reconstructor"]

_PRED_KEYS = ("local_points", "conf", "camera_poses", "points", "descriptors")


@dataclass
class FinishedFrames:
    """Frames ``[start, start + n)`` of the stream, final: ``prediction`` is ``[B, n, ...]``.

    ``transform`` is the alignment applied to the chunk they come from (``None`` when off).
    """

    start: int
    chunk_index: int
    prediction: ChunkPrediction
    transform: ChunkTransform | None

    @property
    def stop(self) -> int:
        return self.start + self.prediction.num_frames


@dataclass
class _InFlight:
    """A chunk launched but not finalised: where it sits, and its outputs (a host copy in progress) or,
    in a layer pipeline, the handoff that will give them."""

    index: int
    start: int
    size: int
    last: bool
    prediction: ChunkPrediction | None = None
    transform: ChunkTransform | None = None
    copied: torch.cuda.Event | None = None
    handoff: Handoff | None = None

    def outputs(self) -> tuple[ChunkPrediction, ChunkTransform | None]:
        """The chunk's aligned outputs, waiting for them if needed."""
        if self.handoff is not None:
            self.prediction, self.transform, self.copied = self.handoff.result()
        if self.copied is not None:
            self.copied.synchronize()
        return self.prediction, self.transform


class Reconstructor:
    """Runs ``model.forward_chunk`` over a stream of frames.

    Args:
        model: a ``LoGeR`` (any preset).
        window, overlap: chunk length and frames shared by consecutive chunks (window > overlap >= 0).
        align: ``none`` | ``se3`` | ``sim3`` chaining of chunks.
        reset_every: reset the fast weights before every ``reset_every``-th chunk (0: never).
        offload: move each chunk's prediction to the CPU (detached) as soon as it is computed;
            ``False`` keeps it on the device with its autograd graph (training).
        devices: two or more devices (``"cuda:0,cuda:1"``, ``"all"`` or a list) to run the model as a
            layer pipeline (``inference.pipeline``): its units are moved there, chunks overlap in
            time, the outputs are those of one device. ``None`` (or one device): the model where it is.
        split: with ``devices``, the first unit of each stage after the first (default: balanced).
    """

    def __init__(self, model, window: int, overlap: int, align: str = "none", reset_every: int = 0,
                 offload: bool = True, devices: str | Sequence[str | torch.device] | None = None,
                 split: Sequence[int] | None = None) -> None:
        if window <= 0:
            raise InputError(f"streaming needs a window of at least 1 frame, got {window}")
        if not 0 <= overlap < window:
            raise InputError(f"overlap must be in [0, window), got overlap {overlap} with window {window}")
        if align not in ALIGN_MODES:
            raise InputError(f"align must be one of {', '.join(ALIGN_MODES)}, not {align!r}")
        self.model = model
        self.window = window
        self.overlap = overlap
        self.align = align
        self.reset_every = max(int(reset_every), 0)
        self.offload = offload
        self.aligner = ChunkAligner(align, self.reset_every, overlap)
        self.recurrence = ChunkRecurrence(model, MemoryPolicy(self.reset_every), inference=offload)
        self.chunks_run = 0
        self.frames_pushed = 0
        self._buffer: torch.Tensor | None = None  # [B, n, 3, H, W] frames the next chunk starts with
        self._buffer_start = 0  # stream position of the buffer's first frame
        self._processed = 0  # frames [0, _processed) have been through a chunk
        self._held: ChunkPrediction | None = None  # predictions of the last chunk's overlap frames
        self._gate_sums = torch.zeros(2, dtype=torch.float64)  # mean |gate| summed over chunks: TTT, SWA
        self._gate_counts = torch.zeros(2, dtype=torch.int64)
        self._inflight: deque[_InFlight] = deque()
        self._finished = 0  # frames handed out as final
        self._copy_stream: torch.cuda.Stream | None = None
        self.pipeline: LayerPipeline | None = None
        if devices is not None:
            devices = parse_devices(devices)
            if len(devices) > 1:
                if not offload:
                    raise InputError("the layer pipeline runs inference only (offload=True)")
                self.pipeline = LayerPipeline(model, devices, self.aligner, split)
            elif devices[0] != model.image_mean.device:
                raise InputError(f"the model is on {model.image_mean.device}, not on {devices[0]}; move it there "
                                 "first (one device runs the model where it is)")

    # ------------------------------------------------------------------ streaming
    @property
    def memory(self) -> ChunkMemory | None:
        """The memory after the last chunk (on one device; a layer pipeline keeps it in its stages)."""
        return self.recurrence.memory

    @property
    def frames_finished(self) -> int:
        """Frames already handed out as final."""
        return self._finished

    @property
    def frames_until_chunk(self) -> int:
        """How many more frames make the buffer a full chunk (push that many to run one)."""
        return self.window - (self._buffer.shape[1] if self._buffer is not None else 0)

    def push(self, images: torch.Tensor) -> list[FinishedFrames]:
        """Add frames ``[n, 3, H, W]`` (or ``[B, n, 3, H, W]``) in [0, 1]; returns the frames finished by them."""
        if images.dim() == 4:
            images = images.unsqueeze(0)
        if images.dim() != 5 or images.shape[2] != 3:
            raise InputError(f"frames must be [n, 3, H, W] or [B, n, 3, H, W], got {tuple(images.shape)}")
        if self._buffer is not None and self._buffer.device != images.device:  # a resumed buffer, or a device change
            self._buffer = self._buffer.to(images.device)
        if self._buffer is not None and (images.shape[0] != self._buffer.shape[0]
                                         or images.shape[3:] != self._buffer.shape[3:]):
            raise InputError(f"frames of size {tuple(images.shape[3:])} (batch {images.shape[0]}) do not match the "
                             f"stream's {tuple(self._buffer.shape[3:])} (batch {self._buffer.shape[0]})")
        self._buffer = images if self._buffer is None else torch.cat([self._buffer, images], dim=1)
        self.frames_pushed += images.shape[1]
        done = []
        while self._buffer.shape[1] >= self.window:
            done += self._run_chunk(self._buffer[:, :self.window], last=False)
            self._buffer = self._buffer[:, self.window - self.overlap:]
            self._buffer_start += self.window - self.overlap
        return done

    def finish(self) -> list[FinishedFrames]:
        """End of the stream: run the last, shorter chunk if frames are waiting, release held frames."""
        done = []
        if self.frames_pushed > self._processed:
            done += self._run_chunk(self._buffer, last=True)
        done += self.flush()
        if self._held is not None:
            done.append(self._release_held())
        self._buffer = None
        if self.pipeline is not None:  # its threads stop; the memory stays
            self.pipeline.pause(self.chunks_run)
        return done

    def flush(self) -> list[FinishedFrames]:
        """Finalise the chunks in flight, if any (waits for their outputs)."""
        done = []
        while self._inflight:
            done += self._finalise(self._inflight.popleft())
        return done

    def close(self) -> None:
        """Stop a layer pipeline's threads (``finish`` does it too); nothing to do on one device."""
        if self.pipeline is not None:
            self.pipeline.close()

    def _run_chunk(self, images: torch.Tensor, last: bool) -> list[FinishedFrames]:
        """Launch a chunk, then finalise the chunks before it that no longer need to stay in flight
        (one on one device: the previous chunk is handed out while the device works on this one)."""
        index = self.chunks_run
        n = images.shape[1]
        roles = frame_roles(n, self.window, self.overlap)
        chunk = _InFlight(index, self._buffer_start, n, last)
        if self.pipeline is not None:
            chunk.handoff = self.pipeline.submit(index, images, roles, self.recurrence.policy.resets_before(index))
        else:
            pred, transform = self.aligner(index, self.recurrence(images, roles))
            if self.offload:
                if self._copy_stream is None and pred.camera_poses.device.type == "cuda":
                    self._copy_stream = torch.cuda.Stream(device=pred.camera_poses.device)
                pred, transform, chunk.copied = to_host(pred.detach(), transform, self._copy_stream)
            chunk.prediction, chunk.transform = pred, transform
        self._inflight.append(chunk)
        self.chunks_run += 1
        self._processed = self._buffer_start + n
        in_flight = self.pipeline.depth if self.pipeline is not None else 1
        done = []
        while len(self._inflight) > in_flight:
            done += self._finalise(self._inflight.popleft())
        return done

    def _finalise(self, chunk: _InFlight) -> list[FinishedFrames]:
        pred, transform = chunk.outputs()
        for slot, gate in enumerate((pred.ttt_gate, pred.swa_gate)):
            if gate is not None:
                self._gate_sums[slot] += float(gate)
                self._gate_counts[slot] += 1
        n = chunk.size
        keep = n if chunk.last else n - self.overlap
        self._held = None if chunk.last or keep == n else pred.frames(keep, n)
        self._held_start = chunk.start + keep
        self._held_transform = transform
        self._held_chunk = chunk.index
        self._finished += keep
        return [FinishedFrames(chunk.start, chunk.index, pred.frames(0, keep), transform)]

    def _release_held(self) -> FinishedFrames:
        held, self._held = self._held, None
        self._finished += held.num_frames
        return FinishedFrames(self._held_start, self._held_chunk, held, self._held_transform)

    # ------------------------------------------------------------------ statistics
    @property
    def mean_gates(self) -> tuple[float | None, float | None]:
        """Mean over chunks of the mean |gate| of the TTT and of the SWA layers (official statistics)."""
        return tuple(float(s / c) if c else None for s, c in zip(self._gate_sums, self._gate_counts))

    # ------------------------------------------------------------------ resume
    def state_dict(self) -> dict[str, torch.Tensor]:
        """Everything needed to continue after the last chunk, as CPU tensors (call ``flush()`` first)."""
        if self._inflight:
            raise RuntimeError("a chunk is still in flight: call flush() and hand out its frames before saving")
        state = {
            "settings": torch.tensor([self.window, self.overlap, ALIGN_MODES.index(self.align), self.reset_every]),
            "counters": torch.tensor([self.chunks_run, self.frames_pushed, self._buffer_start, self._processed,
                                      self._finished]),
            "gate_sums": self._gate_sums, "gate_counts": self._gate_counts,
        }
        memory = self.pipeline.memory(self.chunks_run) if self.pipeline is not None else self.memory
        if memory is not None:
            state.update({f"memory.{k}": v for k, v in memory.state_dict().items()})
        if self._buffer is not None:
            state["buffer"] = self._buffer
        state.update({f"aligner.{k}": v for k, v in self.aligner.state_dict().items()})
        if self._held is not None:
            state.update({f"held.{k}": getattr(self._held, k) for k in _PRED_KEYS
                          if getattr(self._held, k) is not None})
            state["held_meta"] = torch.tensor([self._held_start, self._held_chunk])
            if self._held_transform is not None:
                t = self._held_transform
                state.update({"held_transform.rotation": t.rotation, "held_transform.translation": t.translation,
                              "held_transform.scale": t.scale})
        # Cloned: some entries are views of others (the anchor is a held frame), and files need owners.
        return {k: v.detach().cpu().clone(memory_format=torch.contiguous_format) for k, v in state.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        settings = [int(x) for x in state["settings"]]
        mine = [self.window, self.overlap, ALIGN_MODES.index(self.align), self.reset_every]
        if settings != mine:
            saved = f"window {settings[0]}, overlap {settings[1]}, align {ALIGN_MODES[settings[2]]}, " \
                    f"reset_every {settings[3]}"
            raise InputError(f"the saved state was made with {saved}; resume with the same settings")
        # the aligner works where the heads are; held frames are on the host when offloaded
        device = self.model.unit_device(self.model.num_units - 1)
        held_device = torch.device("cpu") if self.offload else device
        (self.chunks_run, self.frames_pushed, self._buffer_start, self._processed,
         self._finished) = (int(x) for x in state["counters"])
        self._gate_sums = state["gate_sums"].clone()
        self._gate_counts = state["gate_counts"].clone()
        memory = {k[len("memory."):]: v for k, v in state.items() if k.startswith("memory.")}
        memory = ChunkMemory.from_state_dict(memory).to(self.model.image_mean.device) if memory else None
        self.recurrence.memory, self.recurrence.chunks_run = memory, self.chunks_run
        if self.pipeline is not None and memory is not None:
            self.pipeline.load_memory(memory)
            self.recurrence.memory = None
        self._buffer = state.get("buffer")
        self.aligner.load_state_dict({k[len("aligner."):]: v.to(device) for k, v in state.items()
                                      if k.startswith("aligner.")})
        self._held = None
        if "held_meta" in state:
            self._held = ChunkPrediction(**{k: state[f"held.{k}"].to(held_device) for k in _PRED_KEYS
                                            if f"held.{k}" in state})
            self._held_start, self._held_chunk = (int(x) for x in state["held_meta"])
            self._held_transform = None
            if "held_transform.rotation" in state:
                self._held_transform = ChunkTransform(*(state[f"held_transform.{k}"].to(held_device)
                                                        for k in ("rotation", "translation", "scale")))

    def save(self, path: str | os.PathLike, state: dict[str, torch.Tensor] | None = None) -> None:
        """Write the state (``state_dict()`` now, or one taken earlier) to a safetensors file atomically."""
        write_safetensors(path, self.state_dict() if state is None else state)

    def load(self, path: str | os.PathLike) -> None:
        from safetensors.torch import load_file

        self.load_state_dict(load_file(os.fspath(path)))
