"""What one chunk carries from one part of the model to the next.

``LoGeR.forward_chunk`` runs a chunk through the model's units in order (the encoder, each
decoder block with the memory layer after it, the heads); a layer pipeline runs the same units
split into stages on several devices, and this is what crosses from one stage to the next.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

from .outputs import ChunkPrediction

__all__ = ["ChunkActivations"]


@dataclass
class ChunkActivations:
    """One chunk between two units.

    images  ``[B, N, 3, H, W]`` (float in [0, 1] or uint8) until the encoder has run, then ``None``
    roles   ``[N]`` each frame's pe-token role (host tensor; see ``model.windows.frame_roles``)
    tokens  ``[B*N, T, C]`` decoder tokens after the last unit run (T = special + patch tokens;
            the global blocks view them as ``[B, N*T, C]``, the memory layers as ``[B, N, T, C]``)
    hidden  the outputs of the last two decoder blocks, ``[B*N, T, C]`` each: the heads' input
    descriptors  ``[B, N, C_enc]`` float32 unit-norm mean encoder patch token per frame (place recognition)
    ttt_gates, swa_gates  each memory layer's mean |gate| so far (scalars)
    prediction  the heads' output, once they have run
    """

    images: torch.Tensor | None
    roles: torch.Tensor
    batch: int
    frames: int
    height: int
    width: int
    tokens: torch.Tensor | None = None
    hidden: list[torch.Tensor] = field(default_factory=list)
    descriptors: torch.Tensor | None = None
    ttt_gates: list[torch.Tensor] = field(default_factory=list)
    swa_gates: list[torch.Tensor] = field(default_factory=list)
    prediction: ChunkPrediction | None = None

    def to(self, device: torch.device | str, non_blocking: bool = False) -> ChunkActivations:
        """Every tensor on ``device`` (the roles stay on the host)."""
        def move(t):
            return t.to(device, non_blocking=non_blocking) if t is not None else None

        return replace(self, images=move(self.images), tokens=move(self.tokens), descriptors=move(self.descriptors),
                       hidden=[move(t) for t in self.hidden], ttt_gates=[move(t) for t in self.ttt_gates],
                       swa_gates=[move(t) for t in self.swa_gates],
                       prediction=replace(self.prediction, **{k: move(v) for k, v in self.prediction.items()})
                       if self.prediction is not None else None)

    def tensors(self) -> list[torch.Tensor]:
        """Every device tensor held (to mark them as used by another stream)."""
        out = [t for t in (self.images, self.tokens, self.descriptors) if t is not None]
        out += self.hidden + self.ttt_gates + self.swa_gates
        if self.prediction is not None:
            out += [v for _, v in self.prediction.items()]
        return out

