"""One chunk after another with the memory carried between them: the loop inference and training share.

The rules that shape the memory between chunks are one ``MemoryPolicy``: fast-weight resets (the
paper's long-video setting), truncated back-propagation (training) and cutting the SWA caches'
history. ``ChunkRecurrence`` applies them and runs ``LoGeR.forward_chunk``; the streaming
``Reconstructor``, the whole-sequence forward and the training objective all step through it,
and a layer pipeline applies the same policy in each of its stages.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..errors import InputError
from .memory import ChunkMemory
from .outputs import ChunkPrediction

__all__ = ["ChunkRecurrence", "MemoryPolicy"]


@dataclass(frozen=True)
class MemoryPolicy:
    """What happens to the memory before chunk ``k`` (0, 1, 2, ... of a stream).

    reset_every       reset the fast weights when ``k % reset_every == 0`` (k > 0; 0: never); the
                      SWA caches are kept, as in the official release
    truncate_every    cut the autograd history when ``k % truncate_every == 0`` (k > 0; 0: never)
    detach_swa_history  never back-propagate into an earlier chunk through the SWA caches
    """

    reset_every: int = 0
    truncate_every: int = 0
    detach_swa_history: bool = False

    def __post_init__(self) -> None:
        if self.reset_every < 0 or self.truncate_every < 0:
            raise InputError(f"reset_every and truncate_every must be >= 0, got {self.reset_every}, "
                             f"{self.truncate_every}")

    def resets_before(self, k: int) -> bool:
        return bool(self.reset_every) and k > 0 and k % self.reset_every == 0

    def apply(self, k: int, memory: ChunkMemory) -> ChunkMemory:
        """The memory chunk ``k`` starts from."""
        if self.resets_before(k):
            memory = memory.reset_fast_weights()
        if self.truncate_every and k > 0 and k % self.truncate_every == 0:
            memory = memory.detach()
        if self.detach_swa_history:
            memory = ChunkMemory(list(memory.fast_weights),
                                 [c.map(torch.Tensor.detach) if c is not None else None for c in memory.kv_caches],
                                 memory.chunks_seen)
        return memory


class ChunkRecurrence:
    """A model's memory across the chunks of one stream, shaped by ``policy``; each call runs the next chunk.

    ``memory`` is ``None`` before the first chunk; ``chunks_run`` counts the chunks (the policy's ``k``).
    ``inference=True`` detaches the memory as soon as a chunk is done, so that nothing holds its
    autograd graph even when gradients are on.
    """

    def __init__(self, model, policy: MemoryPolicy = MemoryPolicy(), inference: bool = False) -> None:
        self.model = model
        self.policy = policy
        self.inference = inference
        self.memory: ChunkMemory | None = None
        self.chunks_run = 0

    def __call__(self, images: torch.Tensor, frame_roles: Sequence[int] | torch.Tensor | None = None
                 ) -> ChunkPrediction:
        """Chunk ``images`` ``[B, N, 3, H, W]`` after the previous ones: its prediction (memory kept here)."""
        memory = self.policy.apply(self.chunks_run, self.memory) if self.memory is not None else None
        pred, self.memory = self.model.forward_chunk(images, memory, frame_roles)
        if self.inference:
            self.memory = self.memory.detach()
        self.chunks_run += 1
        return pred
