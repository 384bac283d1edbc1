"""The LoGeR network and its parts."""

from .activations import ChunkActivations
from .loger import LoGeR
from .memory import ChunkMemory, FastWeights, KVCache
from .outputs import ChunkPrediction, Prediction
from .recurrence import ChunkRecurrence, MemoryPolicy

__all__ = ["LoGeR", "ChunkActivations", "ChunkMemory", "ChunkRecurrence", "FastWeights", "KVCache", "MemoryPolicy",
           "ChunkPrediction", "Prediction"]
