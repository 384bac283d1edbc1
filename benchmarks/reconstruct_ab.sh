#!/usr/bin/env bash
# Whole `reconstruct` runs of two source trees, alternated, on one input: host-side changes A/B on one machine.
#   bash benchmarks/reconstruct_ab.sh OLD_SRC NEW_SRC VIDEO REPS [reconstruct options...]
# Prints one JSON line per run: tree, rep, wall seconds, and run.json's timings.
set -euo pipefail
old=$1 new=$2 video=$3 reps=$4
shift 4
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for rep in $(seq 1 "$reps"); do
  for tree in old new; do
    src=$old; [ "$tree" = new ] && src=$new
    start=$(date +%s.%N)
    PYTHONPATH=$src python -m loger3d reconstruct "$video" -o "$out/$tree$rep" --quiet "$@"
    end=$(date +%s.%N)
    python -c "import json, sys; t = json.load(open(sys.argv[1]))['timings']
print(json.dumps({'tree': sys.argv[2], 'rep': int(sys.argv[3]), 'wall_s': round(float(sys.argv[5]) - float(sys.argv[4]), 2), **t}))" \
      "$out/$tree$rep/run.json" "$tree" "$rep" "$start" "$end"
  done
done
