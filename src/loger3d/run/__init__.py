"""The reconstruct job and its output folder: settings, the loop, the writer thread, checkpoints, exports."""

from .exports import EXPORT_FORMATS, export_run, rebuild_cloud, write_exports
from .folder import CHECKPOINT_FILE, RUN_FILE
from .job import build_sinks, reconstruct
from .settings import DEFAULT_SAVE, SAVE_CHOICES, RunError, RunSettings, parse_save

__all__ = ["CHECKPOINT_FILE", "DEFAULT_SAVE", "EXPORT_FORMATS", "RUN_FILE", "SAVE_CHOICES", "RunError", "RunSettings",
           "build_sinks", "export_run", "parse_save", "rebuild_cloud", "reconstruct", "write_exports"]
