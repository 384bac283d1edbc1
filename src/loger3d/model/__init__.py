"""The LoGeR network and its parts, and the loop that runs a whole sequence through it."""

from .activations import ChunkActivations
from .align import ALIGN_MODES, ChunkAligner, ChunkTransform
from .loger import LoGeR
from .memory import ChunkMemory, FastWeights, KVCache
from .outputs import ChunkPrediction, Prediction
from .recurrence import ChunkRecurrence, MemoryPolicy
from .sequence import SequenceChunk, run_chunks, run_sequence
from .windows import Window, frame_roles, pe_token_counts, plan_windows

__all__ = ["ALIGN_MODES", "LoGeR", "ChunkActivations", "ChunkAligner", "ChunkMemory", "ChunkRecurrence",
           "ChunkTransform", "FastWeights", "KVCache", "MemoryPolicy", "ChunkPrediction", "Prediction",
           "SequenceChunk", "Window", "frame_roles", "pe_token_counts", "plan_windows", "run_chunks", "run_sequence"]
