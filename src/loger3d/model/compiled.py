"""torch.compile for the fast path, shared by every layer of a kind.

A layer's forward function (not the module) is compiled once; its parameters enter the graph
as inputs, so the 36 decoder blocks, the encoder's and the heads' blocks reuse the same
compiled code wherever their structure agrees. Token counts are marked dynamic so that frame
attention, chunk attention and a shorter last chunk do not each trigger a new compilation.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import torch

__all__ = ["compiled", "mark_dynamic"]

_COMPILED: dict[tuple[Callable, bool], Callable] = {}


# One layer function has a dozen variants (frame or chunk attention, with or without the previous
# chunk, first chunk or not, each image size): past PyTorch's default of 8 it would quietly fall
# back to eager, so the limit is raised for the process.
_RECOMPILE_LIMIT = 64


# Dynamo refuses to enter compiled code on one thread while it traces on another (the tracing flag is
# process-wide), and a layer pipeline runs the stages on several threads: every call of compiled code
# holds this lock. Calls only queue GPU work (no call waits for the GPU), so stages still overlap.
_CALL_LOCK = threading.RLock()


def compiled(fn: Callable, dynamic: bool = False, cuda_graphs: bool = False) -> Callable:
    """The compiled version of ``fn`` (compiled on first use, then cached for the process).

    bf16 intermediates are rounded where eager rounds them (``emulate_precision_casts``), so that
    the compiled layers follow the eager numerics as closely as fusion allows. ``dynamic``: every size
    symbolic from the first compilation (for functions whose sizes change on every call); otherwise
    only the dimensions ``mark_dynamic`` names. Any compiled code of the process, a training step's
    renderer on its own thread included, goes through here: see ``_CALL_LOCK``. ``cuda_graphs``: on CUDA
    the compiled code is also recorded and replayed as CUDA graphs (inductor's CUDA graph trees, what
    ``mode="reduce-overhead"`` selects), one launch per call instead of one per kernel; for steps of fixed
    shapes whose caller marks each step with ``torch.compiler.cudagraph_mark_step_begin()``.
    """
    key = (fn, cuda_graphs)
    if key not in _COMPILED:
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, _RECOMPILE_LIMIT)
        options = {"emulate_precision_casts": True, "triton.cudagraphs": cuda_graphs}
        compiled_fn = torch.compile(fn, dynamic=dynamic, options=options)

        def call(*args, **kwargs):
            with _CALL_LOCK:
                return compiled_fn(*args, **kwargs)

        _COMPILED[key] = call
    return _COMPILED[key]


def mark_dynamic(tensor: torch.Tensor, *dims: int) -> None:
    """Let ``dims`` of ``tensor`` stay symbolic in the compiled graph (a hint, never an error)."""
    for dim in dims:
        torch._dynamo.maybe_mark_dynamic(tensor, dim)
