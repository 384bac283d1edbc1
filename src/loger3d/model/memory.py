"""ChunkMemory: the explicit state that links consecutive chunks.

Per TTT layer the fast weights ``(w0, w1, w2)`` after the last chunk's update (``None``: the
layer's initial parameters), per SWA layer the keys and values of the last chunk's tokens
(``None``: no previous chunk). Nothing else flows between chunks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from ..errors import InputError
from ..util.atomic import write_safetensors

__all__ = ["FastWeights", "KVCache", "ChunkMemory"]


@dataclass
class FastWeights:
    """One TTT layer's fast weights, one problem per (batch, head), batch-major.

    w0, w2: ``[B*heads, d, dh]``; w1: ``[B*heads, dh, d]``; fp32 in every precision mode.
    """

    w0: torch.Tensor
    w1: torch.Tensor
    w2: torch.Tensor

    def map(self, fn) -> FastWeights:
        return FastWeights(fn(self.w0), fn(self.w1), fn(self.w2))


@dataclass
class KVCache:
    """One SWA layer's keys (q/k-normed and rotated) and values: ``[B, heads, N*T, D]``."""

    k: torch.Tensor
    v: torch.Tensor

    def map(self, fn) -> KVCache:
        return KVCache(fn(self.k), fn(self.v))


@dataclass
class ChunkMemory:
    fast_weights: list[FastWeights | None]
    kv_caches: list[KVCache | None]
    chunks_seen: int = 0

    @classmethod
    def empty(cls, num_ttt_layers: int, num_swa_layers: int) -> ChunkMemory:
        return cls([None] * num_ttt_layers, [None] * num_swa_layers, 0)

    def reset_fast_weights(self) -> ChunkMemory:
        """TTT states back to the layers' parameters; SWA caches are kept (official semantics)."""
        return ChunkMemory([None] * len(self.fast_weights), list(self.kv_caches), self.chunks_seen)

    def _map(self, fn) -> ChunkMemory:
        return ChunkMemory(
            [s.map(fn) if s is not None else None for s in self.fast_weights],
            [c.map(fn) if c is not None else None for c in self.kv_caches],
            self.chunks_seen,
        )

    def detach(self) -> ChunkMemory:
        """Cut the autograd history (truncated back-propagation through chunks)."""
        return self._map(torch.Tensor.detach)

    def to(self, device: torch.device | str) -> ChunkMemory:
        return self._map(lambda t: t.to(device))

    @property
    def nbytes(self) -> int:
        total = 0
        for s in self.fast_weights:
            if s is not None:
                total += sum(t.numel() * t.element_size() for t in (s.w0, s.w1, s.w2))
        for c in self.kv_caches:
            if c is not None:
                total += sum(t.numel() * t.element_size() for t in (c.k, c.v))
        return total

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Flat tensors, enough to rebuild the memory exactly (see ``from_state_dict``)."""
        out = {
            "layout": torch.tensor([len(self.fast_weights), len(self.kv_caches)]),
            "chunks_seen": torch.tensor(self.chunks_seen),
        }
        for i, s in enumerate(self.fast_weights):
            if s is not None:
                out.update({f"fast_weights.{i}.w0": s.w0, f"fast_weights.{i}.w1": s.w1,
                            f"fast_weights.{i}.w2": s.w2})
        for i, c in enumerate(self.kv_caches):
            if c is not None:
                out.update({f"kv_caches.{i}.k": c.k, f"kv_caches.{i}.v": c.v})
        return out

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor]) -> ChunkMemory:
        try:
            num_ttt, num_swa = (int(x) for x in state["layout"])
            memory = cls.empty(num_ttt, num_swa)
            memory.chunks_seen = int(state["chunks_seen"])
        except KeyError as e:
            raise InputError(f"not a ChunkMemory state: missing {e}") from None
        for i in range(num_ttt):
            if f"fast_weights.{i}.w0" in state:
                memory.fast_weights[i] = FastWeights(*(state[f"fast_weights.{i}.{n}"] for n in ("w0", "w1", "w2")))
        for i in range(num_swa):
            if f"kv_caches.{i}.k" in state:
                memory.kv_caches[i] = KVCache(state[f"kv_caches.{i}.k"], state[f"kv_caches.{i}.v"])
        return memory

    def save(self, path: str | os.PathLike) -> None:
        """Write to a safetensors file atomically (a temporary file, then a rename)."""
        write_safetensors(path, {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()})

    @classmethod
    def load(cls, path: str | os.PathLike, device: torch.device | str = "cpu") -> ChunkMemory:
        from safetensors.torch import load_file

        return cls.from_state_dict(load_file(os.fspath(path), device=str(device)))
