#!/bin/bash
# What the next lease measures (issue 18), in one call of under 10 minutes on a warm machine; the copy of the
# code before the renderer's change travels as .scratch/base (carry it):
#   mkdir -p .scratch/base && git archive 36c9b47 src | tar -x -C .scratch/base
#   run: bash benchmarks/results/render_compiled_2026-12-03/next_lease.sh   carry: [".scratch/base"]
# 1. The GPU tests of compiled rendering and graphed training.
# 2. Stage 3 of tiny_synthetic (48 frames in 12 chunks, CUDA graphs), after and before: compiling and recording
#    the graphs of 12 chunks took more than 160 s on 2026-12-03, so each run gets 225 s. Worlds are built
#    beforehand as in stage1_*.json (a pool of 384).
export PYTHONUNBUFFERED=1
set -o pipefail
nvidia-smi --query-gpu=name,memory.used --format=csv
date -u
PYTHONPATH=src timeout 100 python -m pytest -q tests/test_clip_batches.py tests/test_graphed.py 2>&1 | tail -4
cd benchmarks || exit 1
POOL='data.sources=[{"kind":"synthetic","families":["indoor","street","terrain"],"trajectories":["walk","drive","orbit"],"num_worlds":384,"cache_size":4096,"world_length":600,"stride":[1,3],"workers":12,"compiled_shading":true}]'
for version in after:../src before:../.scratch/base/src; do
  name=${version%%:*}
  date -u; echo "== stage 3, $name"
  PYTHONPATH=${version#*:} timeout 225 python train_profile.py tiny_synthetic --stage 3 --set "$POOL" \
    --warmup 6 --timed 10 --steps 1 --json "$OUT/stage3_$name.json" 2>&1 | grep -v USDT | grep -iv warn | tail -6
done
date -u
