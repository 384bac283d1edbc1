#!/bin/bash
# Stage 1 of tiny_synthetic end to end, and one step's clips rendered alone: before (36c9b47's src, carried as
# .scratch/base/src), after (this tree) and the renderer at eb9bcfa (.scratch/mid/src: rotations and pairs only).
export PYTHONUNBUFFERED=1
cd benchmarks
nvidia-smi --query-gpu=name,memory.used,utilization.gpu --format=csv
for v in base:../.scratch/base/src new:../src; do
  name=${v%%:*}; path=${v#*:}
  date -u; echo "== stage 1 $name"
  PYTHONPATH=$path timeout 165 python train_profile.py tiny_synthetic --stage 1 --warmup 40 --timed 40 --steps 4 --json $OUT/stage1_$name.json --trace $OUT/trace_stage1_$name.json.gz 2>&1 | grep -v USDT | tail -8
done
for v in new:../src base:../.scratch/base/src mid:../.scratch/mid/src; do
  name=${v%%:*}; path=${v#*:}
  date -u; echo "== render 64x48 $name"
  PYTHONPATH=$path timeout 85 python worlds_speed.py --device cuda --step-clips 64 --clip-frames 48 --repeats 3 --compiled --profile --json $OUT/render_64x48_$name.json 2>&1 | grep -v Warning | tail -2 | cut -c1-1200
done
date -u; ls -la $OUT
