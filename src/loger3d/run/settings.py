"""What decides a run's outputs: recorded in run.json and compared when a run resumes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import LogerError
from ..sinks.cloud import MIN_POINTS

if TYPE_CHECKING:
    from ..loop.closer import LoopOptions

__all__ = ["RunError", "RunSettings", "check_cloud_options", "SAVE_CHOICES", "DEFAULT_SAVE", "parse_save"]

SAVE_CHOICES = ("depth", "conf", "points", "images")
"""Per-frame data a run can keep: depth maps, confidence maps and local point maps in the frame store
(``frames/``), the frames as JPEG (``images/``). Poses, intrinsics and the fused cloud are always written."""
DEFAULT_SAVE = ("depth", "conf", "images")


class RunError(LogerError, ValueError):
    """A problem with the output folder or the run's settings; one line with the fix."""


def check_cloud_options(conf_threshold: float, edge_rtol: float, cloud_stride: int = 1,
                        voxel_size: float | None = None, max_points: int = MIN_POINTS) -> None:
    """Raise ``RunError`` naming the first fused-cloud option out of its range."""
    _raise_first(_cloud_option_problems(conf_threshold, edge_rtol, cloud_stride, voxel_size, max_points))


def _cloud_option_problems(conf_threshold: float, edge_rtol: float, cloud_stride: int, voxel_size: float | None,
                           max_points: int) -> list[tuple[bool, str]]:
    return [
        (0.0 <= conf_threshold < 1.0, f"--conf-threshold {conf_threshold}: give a confidence in [0, 1) (e.g. 0.1)"),
        (edge_rtol >= 0, f"--edge-rtol {edge_rtol}: give 0 (keep edges) or a positive fraction"),
        (cloud_stride >= 1, f"--cloud-stride {cloud_stride}: give 1 or more"),
        (voxel_size is None or voxel_size > 0, f"--voxel-size {voxel_size}: give a positive size, or leave it out "
                                               "for the automatic one"),
        (max_points >= MIN_POINTS, f"--max-points {max_points}: give {MIN_POINTS} or more"),
    ]


def _raise_first(problems: list[tuple[bool, str]]) -> None:
    for ok, message in problems:
        if not ok:
            raise RunError(message)


def parse_save(text: str) -> list[str]:
    """``--save`` values: a comma-separated subset of :data:`SAVE_CHOICES`, ``all`` or ``none``."""
    words = [w.strip() for w in text.split(",") if w.strip()]
    if words == ["none"]:
        return []
    if words == ["all"]:
        return list(SAVE_CHOICES)
    unknown = [w for w in words if w not in SAVE_CHOICES]
    if unknown or not words:
        raise RunError(f"--save {text!r}: choose from {', '.join(SAVE_CHOICES)} (comma-separated), 'all' or 'none'")
    return [w for w in SAVE_CHOICES if w in words]


@dataclass
class RunSettings:
    """Everything that decides a run's outputs (compared on ``--resume``)."""

    input: list[str]
    model: str
    window: int
    overlap: int
    align: str = "none"
    reset_every: int = 0
    dtype: str = "fp32"
    fast: bool = False
    start: int = 0
    end: int | None = None
    stride: int = 1
    fps: float | None = None
    resolution: list[int] | None = None
    max_pixels: int = 255000
    save: list[str] = field(default_factory=lambda: list(DEFAULT_SAVE))
    store_precision: str = "float16"
    conf_threshold: float = 0.1
    edge_rtol: float = 0.03
    cloud_stride: int = 2
    voxel_size: float | None = None
    max_points: int = 5_000_000
    loop_closure: dict | None = None  # LoopOptions.to_dict(); None: off

    def check(self) -> RunSettings:
        """Raise ``RunError`` naming the first option out of its range (before anything is loaded or written)."""
        problems = [
            (self.window >= 1, f"--window {self.window}: give at least 1 frame"),
            (0 <= self.overlap < self.window, f"--overlap {self.overlap}: give 0 to window - 1 "
                                              f"({self.window - 1}) frames"),
            (self.reset_every >= 0, f"--reset-every {self.reset_every}: give 0 (never) or a positive number of "
                                    "chunks"),
            *_cloud_option_problems(self.conf_threshold, self.edge_rtol, self.cloud_stride, self.voxel_size,
                                    self.max_points),
        ]
        _raise_first(problems)
        if self.loop_closure is not None:
            missing = [s for s in ("depth", "conf", "images") if s not in self.save]
            if missing:
                raise RunError(f"loop closure reads back each frame's depth, confidence and image, but --save leaves "
                               f"out {', '.join(missing)}: add them (--save depth,conf,images)")
            self.loop_options()
        return self

    def loop_options(self) -> LoopOptions | None:
        """The run's ``loop.LoopOptions`` (checked, window defaults filled in); ``None`` when loop closure is off."""
        if self.loop_closure is None:
            return None
        from ..loop.closer import LoopOptions

        return LoopOptions.from_dict(self.loop_closure).resolved(self.window)

    @property
    def store_fields(self) -> tuple[str, ...]:
        """What the frame store keeps (the ``save`` entries other than images)."""
        return tuple(s for s in self.save if s != "images")
