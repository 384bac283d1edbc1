#!/bin/bash
# The memory's horizon (issue 18): held-out worlds longer than training ever saw, scored without resets, with
# and without SE(3) chaining, for each model given, as many runs as SECONDS allow (shortest worlds first).
#   bash benchmarks/results/train_graphs/run_2026-12-03/horizon.sh SECONDS OUT_DIR MODEL...
# FRAMES (default "1000 5000") and WORLDS (first seeds, default "700 701 702": the indoor, street and terrain
# walks) choose the runs; ALIGNS (default "none se3") the chaining. One JSON a run in OUT_DIR.
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD/src:$PYTHONPATH
end=$((SECONDS + $1)); out=$2; shift 2
mkdir -p "$out"
for frames in ${FRAMES:-1000 5000}; do
  for first in ${WORLDS:-700 701 702}; do
    for model in "$@"; do
      [ $SECONDS -lt $end ] || break 3
      name=$(basename "$model" .safetensors)_${frames}_${first}
      [ -f "$out/$name.json" ] && continue
      start=$SECONDS
      timeout $((end - SECONDS)) python benchmarks/heldout_ate.py --model "$model" --worlds 1 --first "$first" \
        --frames "$frames" --aligns ${ALIGNS:-none se3} --json "$out/$name.json" 2>&1 | grep "% of" | grep -v mean
      echo "$name: $((SECONDS - start)) s"
    done
  done
done
