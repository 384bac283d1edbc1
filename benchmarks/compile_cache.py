"""Run a Python module or script with ``torch.compile``'s caches carried in one file between machines.

Each device lease starts on a fresh machine, so the fast path compiles from nothing every time: 150 s at the
first stage-1 step of ``loger3d train``, 112 s at stage 2 (``results/train_rot3_2026-12-02``). This wrapper
loads CACHE (PyTorch's portable cache artifacts: the compiled graphs and kernels) before the target starts,
and after it ends, however it ends, writes back to CACHE, atomically, what it loaded and what this process
compiled: the file grows into the union of every run's compiles. The file
is small enough to carry to the next lease (5.4 MB for the tiny model's compiled training step on a CPU).
On the CPU it took the first compiled step from 163–164 s to 109–118 s (``results/compile_cache``); Dynamo still traces
every graph.

A cache holds generated code that runs when it is used: load only a file you made yourself. This is a
benchmark tool for that reason, not part of loger3d. Subprocesses of the target (``ablation.py --parallel``,
``train_end_to_end.py``) neither read nor write it.

    python benchmarks/compile_cache.py cache.bin -m loger3d train my.yaml -o runs/a --set train.fast_path=true
    python benchmarks/compile_cache.py cache.bin benchmarks/train_throughput.py --variants mb64-fast-fused
"""

from __future__ import annotations

import argparse
import os
import runpy
import sys

import torch


def load(path: str) -> bool:
    """Load the artifacts in ``path`` into this process's compile caches; False when there is no file."""
    if not os.path.exists(path):
        return False
    with open(path, "rb") as f:
        blob = f.read()
    torch.compiler.load_cache_artifacts(blob)
    keep(blob)
    return True


def keep(blob: bytes) -> None:
    """Count the loaded artifacts as this process's own, so that ``save`` writes them back even where unused.

    PyTorch saves only the artifacts a process compiled or hit: a call that trains stage 3 alone would write a
    file without the stages before it. Kept, the file is the union of every call's compiles, and the next lease
    finds them all. (PyTorch's private cache registry; on a PyTorch without it, only this process's are saved.)
    """
    from torch.compiler._cache import CacheArtifactManager as manager

    if not hasattr(manager, "_seen_artifacts"):
        print("compile cache: this PyTorch saves only what this process compiled", file=sys.stderr)
        return
    for kind, artifacts in (manager.deserialize(blob) or {}).items():
        for artifact in artifacts:
            if artifact not in manager._seen_artifacts:
                manager._new_cache_artifacts[kind].append(artifact)
                manager._seen_artifacts.add(artifact)


def save(path: str) -> int:
    """Write the artifacts this process loaded (``keep``) and compiled to ``path`` (whole or not at all); their
    size, 0 when none."""
    saved = torch.compiler.save_cache_artifacts()
    if saved is None:
        return 0
    blob = saved[0]
    partial = f"{path}.partial"
    with open(partial, "wb") as f:
        f.write(blob)
    os.replace(partial, path)
    return len(blob)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cache", help="the artifacts file: read when it exists, written when the target ends")
    parser.add_argument("target", nargs=argparse.REMAINDER,
                        help="a script and its arguments, or -m, a module and its arguments (as python takes them)")
    args = parser.parse_args()
    # The remainder swallows everything after the cache, "-m" included, so the module is picked out of it here.
    args.module = args.target[1] if len(args.target) >= 2 and args.target[0] == "-m" else None
    if args.module:
        args.target = args.target[2:]
    elif not args.target or args.target[0].startswith("-"):
        parser.error("give a script, or -m and a module")
    loaded = load(args.cache)
    print(f"compile cache: {'loaded ' + args.cache if loaded else 'none yet at ' + args.cache}", file=sys.stderr)
    try:
        if args.module:
            sys.argv = [args.module, *args.target]
            runpy.run_module(args.module, run_name="__main__", alter_sys=True)
        else:
            sys.argv = list(args.target)
            runpy.run_path(args.target[0], run_name="__main__")
    finally:
        size = save(args.cache)
        print(f"compile cache: wrote {size / 1e6:.1f} MB to {args.cache}" if size else
              "compile cache: nothing compiled, nothing written", file=sys.stderr)


if __name__ == "__main__":
    main()
