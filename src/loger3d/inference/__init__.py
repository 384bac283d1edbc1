"""Running the model over sequences: window planning, chunk alignment, streaming, whole-sequence inference, and
the layer pipeline that runs one stream over several devices."""

from .align import ChunkAligner, ChunkTransform
from .pipeline import LayerPipeline, parse_devices, plan_stages, unit_costs
from .reconstructor import FinishedFrames, Reconstructor
from .sequence import run_sequence
from .windows import Window, frame_roles, pe_token_counts, plan_windows

__all__ = ["ChunkAligner", "ChunkTransform", "FinishedFrames", "LayerPipeline", "Reconstructor", "run_sequence",
           "Window", "frame_roles", "parse_devices", "pe_token_counts", "plan_stages", "plan_windows", "unit_costs"]
