"""Timestamp association of image frames to ground-truth or depth samples, by the two rules the benchmarks use.

- ``nearest`` — evo's rule (``evo.core.sync.matching_time_indices``, the default of ``associate_trajectories``,
  max_diff 0.01 s): each image takes the reference sample nearest in time if it is at most ``max_diff`` away; on a
  tie the earlier sample wins; one sample may serve several images; images outside the reference's time span
  (± max_diff) get none. evo starts from whichever trajectory has fewer poses; readers always start from the images,
  which is the same thing whenever the reference is the denser stream (100 Hz mocap vs 30 Hz images on TUM/Bonn).
- ``greedy`` — the TUM benchmark's ``associate.py``, which the MonST3R/CUT3R/TTT3R/LoGeR preparation scripts call
  with max_diff 0.02 s: every pair strictly closer than ``max_diff``, taken by increasing time difference (ties by
  earlier image, then earlier sample), each image and each sample used at most once.

Both return ``(image_indices [K], reference_indices [K])`` int64, ordered by image. ``reference`` must be sorted
(readers sort it); ``stamps`` need not be.
"""

from __future__ import annotations

import numpy as np

from loger3d.eval.datasets.base import DatasetError

__all__ = ["RULES", "associate", "greedy_matches", "nearest_matches"]

RULES = {"nearest": 0.01, "greedy": 0.02}
"""Association rules and the max_diff (seconds) their reference tool uses by default."""


def associate(
    stamps: np.ndarray, reference: np.ndarray, rule: str, max_diff: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Matches by ``rule`` ("nearest" or "greedy") with ``max_diff`` seconds (None: the rule's default)."""
    if rule not in RULES:
        raise DatasetError(f"unknown association rule {rule!r}; use one of {', '.join(RULES)}")
    limit = RULES[rule] if max_diff is None else float(max_diff)
    if not limit >= 0:
        raise DatasetError(f"max_diff must be ≥ 0 seconds, got {max_diff!r}")
    match = nearest_matches if rule == "nearest" else greedy_matches
    return match(np.asarray(stamps, dtype=np.float64), _sorted(reference), limit)


def _sorted(reference: np.ndarray) -> np.ndarray:
    reference = np.asarray(reference, dtype=np.float64)
    if reference.size > 1 and np.any(np.diff(reference) < 0):
        raise DatasetError("reference timestamps are not sorted; sort the ground truth by time first")
    return reference


def nearest_matches(stamps: np.ndarray, reference: np.ndarray, max_diff: float) -> tuple[np.ndarray, np.ndarray]:
    """evo's nearest-within-``max_diff`` rule (module docstring), with evo's comparisons in the same order."""
    empty = np.empty(0, dtype=np.int64)
    if stamps.size == 0 or reference.size == 0:
        return empty, empty
    upper = np.minimum(np.searchsorted(reference, stamps, side="right"), reference.size - 1)
    diff_upper = reference[upper] - stamps
    diff_lower = np.where(upper > 0, stamps - reference[np.maximum(upper - 1, 0)], np.inf)
    take_upper = (diff_upper <= max_diff) & (diff_upper < diff_lower)
    take_lower = ~take_upper & (diff_lower <= max_diff) & (diff_lower <= diff_upper)
    in_span = (stamps >= reference[0] - max_diff) & (stamps <= reference[-1] + max_diff)
    keep = in_span & (take_upper | take_lower)
    chosen = np.where(take_upper, upper, upper - 1)
    return np.flatnonzero(keep).astype(np.int64), chosen[keep].astype(np.int64)


def greedy_matches(stamps: np.ndarray, reference: np.ndarray, max_diff: float) -> tuple[np.ndarray, np.ndarray]:
    """TUM ``associate.py``'s greedy one-to-one rule (module docstring)."""
    first = np.searchsorted(reference, stamps - max_diff, side="left")
    last = np.searchsorted(reference, stamps + max_diff, side="right")
    counts = last - first
    image = np.repeat(np.arange(stamps.size), counts)
    sample = np.concatenate([np.arange(a, b) for a, b in zip(first, last)]) if image.size else image
    diff = np.abs(stamps[image] - reference[sample])
    close = diff < max_diff
    image, sample, diff = image[close], sample[close], diff[close]
    order = np.lexsort((reference[sample], stamps[image], diff))
    used_image, used_sample = set(), set()
    pairs = []
    for i, j in zip(image[order].tolist(), sample[order].tolist()):
        if i not in used_image and j not in used_sample:
            used_image.add(i)
            used_sample.add(j)
            pairs.append((i, j))
    pairs.sort()
    out = np.array(pairs, dtype=np.int64).reshape(-1, 2)
    return out[:, 0].copy(), out[:, 1].copy()
