#!/bin/bash
# One call of this lease (issue 18), from the repository root on the device; a machine held warm between calls
# keeps /tmp/long_run:
#   bash benchmarks/results/train_long_2026-12-03/lease.sh first 8.3   # GPU tests of the renderer, then train
#   bash benchmarks/results/train_long_2026-12-03/lease.sh piece 9.2   # resume the run
# The renderer's GPU tests (compiled intersections and shading against eager) had not run on a GPU before; a
# failure is reported, not fatal: training only needs the renders to be right, which the CPU tests check.
export PYTHONUNBUFFERED=1
here=benchmarks/results/train_long_2026-12-03
if [ "$1" = first ]; then
  date -u
  PYTHONPATH=$PWD/src timeout 150 python -m pytest -q -p no:cacheprovider tests/test_clip_batches.py \
    > "$OUT/pytest_clip_batches.log" 2>&1
  tail -3 "$OUT/pytest_clip_batches.log"
fi
date -u
CONFIG=$here/next_run.yaml RUN=/tmp/long_run bash benchmarks/results/train_graphs/next_lease.sh piece "${2:-9.0}"
date -u
