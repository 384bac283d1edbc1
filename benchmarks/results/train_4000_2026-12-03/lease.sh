#!/bin/bash
# One device call of run.yaml (issue 18), from the repository root, on a machine held warm between calls (it
# keeps /tmp/run_4000 and the compile caches):
#   [TESTS="pytest node ids"] bash benchmarks/results/train_4000_2026-12-03/lease.sh MINUTES
# TESTS run first, under a SIGINT limit (pytest then still reports what failed). Training resumes from the
# run's checkpoint when there is one, through benchmarks/compile_cache.py (the artifacts come back in $OUT when
# they fit, for a later lease to carry as .scratch/compile_cache.bin). Each call returns the metrics, the loss
# plot and the weights so far in fp16 (the 57 MB checkpoint cannot travel back).
set -o pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD/src:$PYTHONPATH
RUN=/tmp/run_4000
CONFIG=benchmarks/results/train_4000_2026-12-03/run.yaml
CACHE=/tmp/compile_cache.bin
[ -n "$1" ] || { echo "usage: $0 MINUTES"; exit 2; }
date -u
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
[ -f "$CACHE" ] || [ ! -f .scratch/compile_cache.bin ] || cp .scratch/compile_cache.bin "$CACHE"
if [ -n "$TESTS" ]; then
  timeout -s INT "${TEST_LIMIT:-150}" python -m pytest -q -rfE -p no:cacheprovider $TESTS > "$OUT/pytest.log" 2>&1
  echo "tests: exit $?; $(tail -1 "$OUT/pytest.log")"
  date -u
fi
python benchmarks/compile_cache.py "$CACHE" -m loger3d train "$CONFIG" -o "$RUN" --resume --max-minutes "$1" \
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
