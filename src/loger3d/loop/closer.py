"""The loop closer of a run: sees finished frames as chunks finish, verifies candidates, solves at the end.

    observe(finished frames)  keyframe descriptors into the place index; candidates queued
    verify_ready(ready)       candidates whose frames are on disk: the model verifies them
    solve()                   the pose graph over chunks → a Sim(3) correction per frame

It keeps per frame only its cumulative path length (8 bytes), per keyframe its descriptor, and
per candidate a few numbers, so memory stays bounded by the video's length in small units; its
state goes into the run's checkpoint, and a resumed run verifies and solves exactly as an
uninterrupted one.
"""

from __future__ import annotations

import time
from array import array
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DamagedFileError, InputError
from ..sinks.corrections import FrameCorrections
from ..sinks.store import FrameStore
from .graph import LoopEdge, solve_pose_graph
from .places import PlaceIndex
from .sim3 import Sim3, from_vectors
from .verify import FramesNotReady, LoopCheck, VerifyOptions, read_end, verify_loop

__all__ = ["LoopCloser", "LoopOptions", "interpolate_corrections"]


@dataclass(frozen=True)
class LoopOptions:
    """Loop closure settings (recorded in run.json; docs/loop-closure.md explains each).

    similarity      standardised cosine a keyframe pair needs to become a candidate
    min_gap         frames between the two ends, at least (and at least the window)
    keyframe_every  every how many frames a frame is a keyframe (searched and searchable)
    spacing         candidates closer than this to a kept one, at both ends, are dropped (0: twice the window)
    end_frames      frames taken around each end for verification (0: half the window, so that the
                    verification window has the stream's chunk shape)
    robust_scale    the pose graph's Cauchy scale on loop edges, in standard deviations
    verify          when a verified candidate is accepted (``VerifyOptions``)
    """

    similarity: float = 0.8
    min_gap: int = 100
    keyframe_every: int = 2
    spacing: int = 0
    end_frames: int = 0
    robust_scale: float = 5.0
    verify: VerifyOptions = field(default_factory=VerifyOptions)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> LoopOptions:
        values = dict(values)
        unknown = set(values) - {f for f in cls.__dataclass_fields__}
        if unknown:
            raise InputError(f"unknown loop closure option(s) {', '.join(sorted(unknown))}")
        verify = VerifyOptions(**values.pop("verify", {}))
        return cls(**values, verify=verify)

    def resolved(self, window: int) -> LoopOptions:
        """The options with the window-dependent defaults filled in, checked."""
        options = LoopOptions(self.similarity, self.min_gap, self.keyframe_every, self.spacing or 2 * window,
                              self.end_frames or max(window // 2, 1), self.robust_scale, self.verify)
        problems = [
            (-1.0 <= options.similarity <= 1.0, f"--loop-similarity {options.similarity}: give a cosine in [-1, 1]"),
            (options.min_gap >= window, f"--loop-min-gap {options.min_gap}: give at least the window ({window} "
                                        "frames); nearer frames are in the same chunk"),
            (options.min_gap >= 2 * options.end_frames, f"--loop-min-gap {options.min_gap}: give at least twice "
                                                        f"the frames verified per end ({options.end_frames})"),
            (options.keyframe_every >= 1, f"loop keyframe_every {options.keyframe_every}: give 1 or more"),
            (options.spacing >= 1, f"loop spacing {options.spacing}: give 1 or more"),
            (1 <= options.end_frames and 2 * options.end_frames <= max(window, 2),
             f"loop end_frames {options.end_frames}: give 1 to half the window ({window // 2})"),
            (options.robust_scale > 0, f"loop robust_scale {options.robust_scale}: give a positive number"),
        ]
        for ok, message in problems:
            if not ok:
                raise InputError(message)
        options.verify.check()
        return options


class LoopCloser:
    """Loop closure alongside a streaming run in ``out`` (whose frame store and JPEGs it reads back).

    ``model`` is the run's model (verification runs it on fresh windows, without memory);
    ``window`` and ``overlap`` are the run's, which say which chunk finished each frame.
    """

    def __init__(self, model, out: Path, options: LoopOptions, window: int, overlap: int) -> None:
        self.model = model
        self.out = Path(out)
        self.store = FrameStore(out, corrected=False)  # one reader: its index grows with the run
        self.options = options.resolved(window)
        self.step = window - overlap
        self.places = PlaceIndex(self.options.min_gap, self.options.spacing)
        self.pending: list[LoopCheck] = []  # candidates waiting for their frames to be on disk
        self.checks: list[LoopCheck] = []  # verified, accepted or not, in the order verified
        self._recent: deque[tuple[int, int]] = deque()  # (a, b) of the candidates queued within `spacing` of b
        self.seconds = 0.0  # spent verifying and solving (reported, not part of the outputs)
        self._path = array("d")  # cumulative path length at each frame, metres of the run's world
        self._last_centre: np.ndarray | None = None
        self._last_chunk = -1

    @property
    def frames_seen(self) -> int:
        return len(self._path)

    def observe(self, finished: Sequence) -> None:
        """Finished frames (``inference.FinishedFrames``, in order, on the host) into the index; candidates queued."""
        for part in finished:
            pred = part.prediction
            if pred.descriptors is None:
                raise InputError("this model gives no frame descriptors, which loop closure needs")
            centres = pred.camera_poses[0, :, :3, 3].double().numpy()
            descriptors = pred.descriptors[0].float().numpy()
            self._last_chunk = max(self._last_chunk, part.chunk_index)
            for offset, frame in enumerate(range(part.start, part.stop)):
                if frame != len(self._path):
                    raise ValueError(f"frame {frame} observed out of order (expected {len(self._path)})")
                step = 0.0 if self._last_centre is None else float(np.linalg.norm(centres[offset] - self._last_centre))
                self._path.append((self._path[-1] if self._path else 0.0) + step)
                self._last_centre = centres[offset]
                if frame % self.options.keyframe_every == 0:
                    for found in self.places.query(frame, descriptors[offset], self.options.similarity):
                        self._queue(found.match, found.query, found.score)
                    self.places.add(frame, descriptors[offset])

    def verify_ready(self, ready: int, final: bool = False) -> int:
        """Verify the queued candidates whose frames are among the first ``ready`` on disk (all of them when
        ``final``: the run has ended and every frame is there); returns how many were verified."""
        started = time.perf_counter()
        waiting, done = [], 0
        for check in self.pending:
            ends = self._ends(check, ready, final)
            if ends is None:
                waiting.append(check)
                continue
            try:
                end_a, end_b = (read_end(self.store, indices) for indices in ends)
            except FramesNotReady:
                if final:  # every image was written before the run's end: one is missing
                    raise DamagedFileError(f"the images of frames {ends[0][0]}-{ends[1][-1]} are missing from "
                                           f"{self.out / 'images'}; loop closure needs them") from None
                waiting.append(check)  # its JPEGs are still being encoded: next time
                continue
            self.checks.append(verify_loop(self.model, end_a, end_b, check, self.options.verify))
            done += 1
        self.pending = waiting
        self.seconds += time.perf_counter() - started
        return done

    def solve(self) -> tuple[FrameCorrections | None, dict]:
        """The per-frame corrections from the accepted loops (``None`` without any) and the report for loops.json."""
        started = time.perf_counter()
        self.checks.sort(key=lambda c: (c.b, c.a))  # the order verified depends on the writer's pace; this does not
        accepted = [c for c in self.checks if c.accepted]
        report = {"options": self.options.to_dict(), "frames": self.frames_seen, "chunks": self._last_chunk + 1,
                  "candidates": len(self.checks) + len(self.pending), "verified": len(self.checks),
                  "accepted": len(accepted), "loops": [c.report() for c in self.checks], "graph": None}
        corrections = None
        if accepted:
            edges = [LoopEdge(c.node_a, c.node_b, c.drift) for c in accepted]
            solution = solve_pose_graph(self._last_chunk + 1, edges, robust_scale=self.options.robust_scale)
            corrections = interpolate_corrections(solution.corrections, self.frames_seen, self.step)
            weights = iter(solution.loop_weights.tolist())
            for entry in report["loops"]:
                entry["graph_weight"] = next(weights) if entry["accepted"] else None
            report["graph"] = {"nodes": self._last_chunk + 1, "iterations": solution.iterations,
                               "initial_cost": solution.initial_cost, "final_cost": solution.final_cost}
        self.seconds += time.perf_counter() - started
        return corrections, report

    # ------------------------------------------------------------------ internals
    def _queue(self, a: int, b: int, score: float) -> None:
        spacing = self.options.spacing
        while self._recent and b - self._recent[0][1] >= spacing:  # queries come in frame order
            self._recent.popleft()
        if any(abs(other - a) < spacing for other, _ in self._recent):
            return  # the same revisit, already queued
        self._recent.append((a, b))
        path = self._path[b] - self._path[a]
        self.pending.append(LoopCheck(a, b, self._node(a), self._node(b), score, path))

    def _node(self, frame: int) -> int:
        """The chunk that finished ``frame`` (the later chunk for overlap frames)."""
        return min(frame // self.step, max(self._last_chunk, 0))

    def _ends(self, check: LoopCheck, ready: int, final: bool) -> tuple[np.ndarray, np.ndarray] | None:
        n = self.options.end_frames
        ranges = []
        for centre in (check.a, check.b):
            start = max(centre - n // 2, 0)
            if start + n > ready:
                if not final:
                    return None
                start = max(ready - n, 0)
            ranges.append(np.arange(start, min(start + n, ready)))
        return ranges[0], ranges[1]

    # ------------------------------------------------------------------ resume
    def state_dict(self) -> dict[str, np.ndarray]:
        state = {f"places.{k}": v for k, v in self.places.state_dict().items()}
        state["path"] = np.frombuffer(self._path, np.float64).copy() if self._path else np.zeros(0)
        state["last"] = np.array([self._last_chunk, self.seconds], np.float64)
        if self._last_centre is not None:
            state["last_centre"] = np.asarray(self._last_centre, np.float64)
        for name, checks in (("checks", self.checks), ("pending", self.pending)):
            state[name] = np.stack([c.numbers() for c in checks]) if checks else np.zeros((0, LoopCheck.WIDTH))
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self.places.load_state_dict({k[len("places."):]: v for k, v in state.items() if k.startswith("places.")})
        self._path = array("d", np.asarray(state["path"], np.float64).tolist())
        self._last_chunk, self.seconds = int(state["last"][0]), float(state["last"][1])
        self._last_centre = np.asarray(state["last_centre"]) if "last_centre" in state else None
        verify = self.options.verify
        self.checks = [LoopCheck.from_numbers(row, verify) for row in np.asarray(state["checks"])]
        self.pending = [_unverified(row, verify) for row in np.asarray(state["pending"])]
        self._recent = deque(sorted(((c.a, c.b) for c in (*self.checks, *self.pending)), key=lambda ab: ab[1]))


def _unverified(row: np.ndarray, options: VerifyOptions) -> LoopCheck:
    check = LoopCheck.from_numbers(row, options)
    check.accepted, check.reason = False, ""
    return check


def interpolate_corrections(chunk_corrections: Sequence[Sim3], frames: int, step: int) -> FrameCorrections:
    """Per-frame corrections from per-chunk ones: each chunk's correction holds at the middle of the frames it
    finished, and frames between two middles blend the two (linearly in the Sim(3) vector, which is exact
    enough for the small changes between neighbouring chunks)."""
    vectors = np.stack([c.to_vector() for c in chunk_corrections])  # [K, 7]
    middles = np.arange(len(vectors)) * step + (step - 1) / 2
    frame = np.arange(frames, dtype=np.float64)
    blended = np.stack([np.interp(frame, middles, vectors[:, j]) for j in range(7)], axis=1)
    rotation, translation, scale = from_vectors(blended)
    return FrameCorrections(np.arange(frames, dtype=np.int64), scale.astype(np.float64), rotation, translation)

