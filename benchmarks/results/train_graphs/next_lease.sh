#!/bin/bash
# The next lease's training of next_run.yaml, in calls of at most 10 minutes on one machine held warm between them
# (it keeps /tmp while the next call comes within its idle time). Run from the repository root on the device:
#   bash benchmarks/results/train_graphs/next_lease.sh piece [MINUTES]   train on (resuming), MINUTES default 8.3
#   bash benchmarks/results/train_graphs/next_lease.sh finish [SECONDS] score the finished run on the GPU: held-out
#        1,000-frame worlds, then as many of the longer ones (5,000 and 10,000 frames) as SECONDS (default 240) allow
# The first piece runs tests/test_graphed.py on the GPU first and stops if it fails.
# Each call leaves in $OUT what the next session needs, at most eight files of at most 16 MiB: the metrics, the
# loss plot, the weights so far in fp16 (about 10 MB; the fp32 export is 20: a lost machine loses only the
# optimiser's state, as the 57 MB checkpoint cannot travel back up beside the repository), and with `finish` the
# held-out scores.
set -o pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD/src:$PYTHONPATH
RUN=${RUN:-/tmp/graphs_run}
CONFIG=${CONFIG:-benchmarks/results/train_graphs/next_run.yaml}
case "$1" in
  piece)
    nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
    if [ ! -f "$RUN/checkpoint.pt" ]; then  # first piece: the graphed steps must record, se3 chaining included
      python -m pytest -q -p no:cacheprovider tests/test_graphed.py > "$OUT/pytest_graphed.log" 2>&1
      status=$?
      tail -3 "$OUT/pytest_graphed.log"
      [ $status = 0 ] || { echo "tests/test_graphed.py failed on this GPU: not training"; exit 1; }
    fi
    python -m loger3d train "$CONFIG" -o "$RUN" --resume --max-minutes "${2:-8.3}" --quiet 2>&1 \
      | grep -v "UserWarning\|rms_norm" | tail -20
    python - "$RUN/metrics.jsonl" <<'PY'
import json, sys
records = [json.loads(line) for line in open(sys.argv[1])]
last = records[-1]
print(f"at step {last['step']}: stage {last['stage'] + 1}, loss {last['total']:.4f}, "
      f"{last['frames_per_s']:.0f} frames/s, skipped steps {last.get('skipped_steps', 0):.0f}")
PY
    weights=$RUN/model.safetensors; [ -f "$weights" ] || weights=$RUN/checkpoint.pt
    python -m loger3d convert "$weights" "$OUT/model_fp16.safetensors" --dtype fp16 --force | tail -1
    cp "$RUN/metrics.jsonl" "$RUN/loss.png" "$OUT/" ;;
  finish)
    test -f "$RUN/model.safetensors" || { echo "the run has not finished: run 'piece' again"; exit 1; }
    python -m loger3d convert "$RUN/model.safetensors" "$OUT/model_fp16.safetensors" --dtype fp16 --force
    python benchmarks/heldout_ate.py --model "$RUN/model.safetensors" --first 700 --aligns se3 none \
      --json "$OUT/heldout_step_final.json" 2>&1 | grep -v "UserWarning\|rms_norm" | tail -14
    mkdir -p /tmp/horizon; end=$((SECONDS + ${2:-240}))  # the memory's horizon: the same model on longer worlds, without resets
    for frames in 5000 10000; do
      for first in 700 701 702; do
        [ $SECONDS -lt $end ] || break 2
        timeout $((end - SECONDS)) python benchmarks/heldout_ate.py --model "$RUN/model.safetensors" --worlds 1 \
          --first $first --frames $frames --aligns se3 none --json "/tmp/horizon/${frames}_${first}.json" 2>&1 \
          | grep "% of" | head -2
      done
    done
    python -c "import glob, json, sys; json.dump([json.load(open(p)) for p in sorted(glob.glob('/tmp/horizon/*.json'))], sys.stdout)" \
      > "$OUT/horizon.json"
    cp "$RUN/metrics.jsonl" "$RUN/loss.png" "$RUN/config.yaml" "$OUT/" ;;
  *)
    echo "usage: $0 piece [MINUTES] | finish"; exit 2 ;;
esac
