#!/bin/bash
# The memory's horizon (issue 18): held-out worlds longer than training ever saw, scored without resets, with
# and without SE(3) chaining, for each model given, as many runs as SECONDS allow (shortest worlds first).
#   bash benchmarks/results/train_graphs/run_2026-12-03/horizon.sh SECONDS OUT_DIR MODEL...
# FRAMES (default "1000 5000") the lengths; WORLDS (default 3) worlds from seed 1e9 + FIRST (default 700): the
# family x trajectory pairs in turn, so 3 are the indoor, street and terrain walks; ALIGNS (default "none se3")
# the chaining. One JSON a model and length in OUT_DIR.
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD/src:$PYTHONPATH
end=$((SECONDS + $1)); out=$2; shift 2
mkdir -p "$out"
for frames in ${FRAMES:-1000 5000}; do
  for model in "$@"; do
    [ $SECONDS -lt $end ] || break 2
    name=$(basename "$model" .safetensors)_${frames}_${FIRST:-700}x${WORLDS:-3}
    [ -f "$out/$name.json" ] && continue
    start=$SECONDS
    timeout $((end - SECONDS)) python benchmarks/heldout_ate.py --model "$model" --worlds "${WORLDS:-3}" \
      --first "${FIRST:-700}" --frames "$frames" --aligns ${ALIGNS:-none se3} --json "$out/$name.json" 2>&1 \
      | grep --line-buffered "% of" | grep -v mean
    echo "$name: $((SECONDS - start)) s"
  done
done
