"""Moved: the reconstruct job now lives in :mod:`loger3d.run` (``from loger3d.run import reconstruct``).

This name stays for code written against loger3d 0.1.
"""

from .run import RUN_FILE, RunError, RunSettings, export_run, reconstruct, write_exports

__all__ = ["RUN_FILE", "RunError", "RunSettings", "export_run", "reconstruct", "write_exports"]
