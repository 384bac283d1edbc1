#!/bin/bash
# The next lease's calls for next_run.yaml (issue 18), from the repository root on the device, on one machine held
# warm between calls (it keeps /tmp/long_run and the compile caches):
#   bash benchmarks/results/train_long_2026-12-03/next_lease.sh piece MINUTES [STOP_AT]
# The first call (no checkpoint yet) runs the GPU tests first, each file under its own limit and interrupted with
# SIGINT, so that pytest still reports what failed (this lease's log was cut off by a plain timeout). Training
# runs through benchmarks/compile_cache.py: torch.compile's artifacts are loaded from .scratch/compile_cache.bin
# when a call carries it (carry [".scratch/compile_cache.bin"]) and come back in $OUT for the next session (a
# fresh machine spent about 200 s before its first logged step in this lease). Each call returns the metrics,
# the loss plot and the weights so far in fp16 (the 57 MB checkpoint cannot travel back).
set -o pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD/src:$PYTHONPATH
RUN=${RUN:-/tmp/long_run}
CONFIG=${CONFIG:-benchmarks/results/train_long_2026-12-03/next_run.yaml}
CACHE=/tmp/compile_cache.bin
[ "$1" = piece ] || { echo "usage: $0 piece MINUTES [STOP_AT]"; exit 2; }
date -u
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
[ -f "$CACHE" ] || [ ! -f .scratch/compile_cache.bin ] || cp .scratch/compile_cache.bin "$CACHE"
if [ ! -f "$RUN/checkpoint.pt" ]; then
  for tests in tests/test_graphed.py tests/test_clip_batches.py; do
    timeout -s INT 240 python -m pytest -q -rfE -p no:cacheprovider "$tests" > "$OUT/pytest_$(basename "$tests" .py).log" 2>&1
    echo "$tests: exit $?; $(tail -1 "$OUT/pytest_$(basename "$tests" .py).log")"
  done
  date -u
fi
stop=${3:+--stop-at $3}
python benchmarks/compile_cache.py "$CACHE" -m loger3d train "$CONFIG" -o "$RUN" --resume --max-minutes "$2" $stop \
  --quiet 2>&1 | grep -v "UserWarning\|rms_norm\|warnings.warn\|return node.target" | tail -8
python - "$RUN/metrics.jsonl" <<'PY'
import json, sys
last = [json.loads(line) for line in open(sys.argv[1])][-1]
print(f"at step {last['step']}: stage {last['stage'] + 1}, loss {last['total']:.4f}, "
      f"{last['frames_per_s']:.0f} frames/s, skipped steps {last.get('skipped_steps', 0):.0f}")
PY
weights=$RUN/model.safetensors; [ -f "$weights" ] || weights=$RUN/checkpoint.pt
python -m loger3d convert "$weights" "$OUT/model_fp16.safetensors" --dtype fp16 --force | tail -1
cp "$RUN/metrics.jsonl" "$RUN/loss.png" "$OUT/"
[ "$(stat -c %s "$CACHE" 2>/dev/null || echo 0)" -lt 16000000 ] && cp "$CACHE" "$OUT/compile_cache.bin"
date -u
