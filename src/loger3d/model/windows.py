"""Cutting a sequence into overlapping chunks, and which frames of each chunk are kept.

Rules of the official release (ARCHITECTURE.md §4.2, §9.1, §9.3):
- ``window <= 0`` or ``window >= n``: one chunk over everything, nothing dropped.
- otherwise chunks start every ``window - overlap`` frames and stop after the first that reaches
  the end; every chunk but the last drops its last ``overlap`` frames when merging, so each
  overlap frame is taken from the later chunk.
- inside a chunk the first ``overlap`` frames get pe token 0 ("seen in the previous chunk"), the
  next ``window - 2·overlap`` token 1, the rest (up to ``overlap``) token 2.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError

__all__ = ["Window", "plan_windows", "pe_token_counts", "frame_roles"]


@dataclass(frozen=True)
class Window:
    """Chunk ``index`` covers frames ``[start, end)``; frames ``[start, keep_end)`` go to the output."""

    index: int
    start: int
    end: int
    keep_end: int

    @property
    def size(self) -> int:
        return self.end - self.start


def _check(window: int, overlap: int) -> None:
    if overlap < 0:
        raise InputError(f"overlap must be >= 0, got {overlap}")
    if window > 0 and overlap >= window:
        raise InputError(f"overlap ({overlap}) must be smaller than the window ({window})")


def plan_windows(n: int, window: int, overlap: int) -> list[Window]:
    """The chunks of an ``n``-frame sequence, in processing order."""
    if n <= 0:
        raise InputError("cannot plan windows for an empty sequence")
    _check(window, overlap)
    if window <= 0 or window >= n:
        return [Window(0, 0, n, n)]
    windows = []
    start = 0
    while True:
        end = min(start + window, n)
        last = end == n
        windows.append(Window(len(windows), start, end, end if last else end - overlap))
        if last:
            return windows
        start += window - overlap


def pe_token_counts(n: int, window: int, overlap: int) -> tuple[int, int, int]:
    """How many frames of an ``n``-frame chunk get pe token 0, 1 and 2.

    ``window <= 0`` (one chunk over the whole sequence) counts as ``window = n``; the official
    release fails with a reshape error there unless ``n <= 2·overlap``.
    """
    if window <= 0:
        window = n
    n0 = min(overlap, n)
    n1 = min(max(window - 2 * overlap, 0), n - n0)
    n2 = max(min(overlap, n, n - n0 - n1), 0)
    if n0 + n1 + n2 != n:
        raise InputError(f"a chunk of {n} frames does not fit window {window} with overlap {overlap}")
    return n0, n1, n2


def frame_roles(n: int, window: int, overlap: int) -> list[int]:
    """The pe token index (0, 1, 2) of every frame of an ``n``-frame chunk."""
    n0, n1, n2 = pe_token_counts(n, window, overlap)
    return [0] * n0 + [1] * n1 + [2] * n2
