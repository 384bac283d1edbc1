"""Running the model over sequences: window planning, chunk alignment, whole-sequence inference."""

from .align import ChunkAligner, ChunkTransform
from .sequence import run_sequence
from .windows import Window, frame_roles, pe_token_counts, plan_windows

__all__ = ["ChunkAligner", "ChunkTransform", "run_sequence", "Window", "frame_roles", "pe_token_counts",
           "plan_windows"]
