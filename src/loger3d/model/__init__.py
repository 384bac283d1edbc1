"""The LoGeR network and its parts."""

from .loger import LoGeR
from .memory import ChunkMemory, FastWeights, KVCache
from .outputs import ChunkPrediction, Prediction

__all__ = ["LoGeR", "ChunkMemory", "FastWeights", "KVCache", "ChunkPrediction", "Prediction"]
