"""Running the model over sequences: window planning, chunk alignment, streaming and whole-sequence inference."""

from .align import ChunkAligner, ChunkTransform
from .reconstructor import FinishedFrames, Reconstructor
from .sequence import run_sequence
from .windows import Window, frame_roles, pe_token_counts, plan_windows

__all__ = ["ChunkAligner", "ChunkTransform", "FinishedFrames", "Reconstructor", "run_sequence", "Window",
           "frame_roles", "pe_token_counts", "plan_windows"]
