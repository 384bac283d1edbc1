"""Running the model over streams: the streaming ``Reconstructor`` (bounded memory, resumable) and the layer
pipeline that runs one stream over several devices. Window planning, alignment and the whole-sequence loop
live with the model (``loger3d.model``)."""

from .offload import to_host
from .pipeline import LayerPipeline, parse_devices, plan_stages, unit_costs
from .reconstructor import FinishedFrames, Reconstructor

__all__ = ["FinishedFrames", "LayerPipeline", "Reconstructor", "parse_devices", "plan_stages", "to_host",
           "unit_costs"]
