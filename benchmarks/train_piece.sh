#!/bin/bash
# One device call of a training run in pieces (issue 18), from the repository root:
#   [TESTS="pytest node ids"] [RUN=/tmp/train_run] bash benchmarks/train_piece.sh CONFIG MINUTES [TRAIN OPTIONS]
# (TRAIN OPTIONS go to loger3d train as they are: --stop-at 4380, --set train.checkpoint_every=100, ...)
# A machine held warm between calls keeps $RUN (checkpoint and compile caches) in /tmp. A run can also go on in a
# later lease, on a fresh machine: each call returns the checkpoint in parts of 15 MB (a file coming back is at
# most 16 MiB) with their SHA-256; put together at home,
#   cat <files_at>/checkpoint.pt.part-* > .scratch/carry/checkpoint.pt && cp <files_at>/metrics.jsonl .scratch/carry/
# (and checked against checkpoint.sha256), they travel with the next call as carry [".scratch/carry"] (64 MiB at
# most: the tiny model's 57 MB checkpoint fits) and the run resumes from them when $RUN has no checkpoint.
# TESTS run first, under a SIGINT limit (pytest then still reports what failed). Training runs through
# benchmarks/compile_cache.py. Each call returns the metrics, the loss plot and the weights so far in fp16.
set -o pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD/src:$PYTHONPATH
CONFIG=$1 MINUTES=$2
shift 2
RUN=${RUN:-/tmp/train_run}
CACHE=/tmp/compile_cache.bin
[ -f "$CONFIG" ] && [ -n "$MINUTES" ] || { echo "usage: $0 CONFIG MINUTES [TRAIN OPTIONS]"; exit 2; }
date -u
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
if [ ! -f "$RUN/checkpoint.pt" ] && [ -f .scratch/carry/checkpoint.pt ]; then
  mkdir -p "$RUN" && cp .scratch/carry/checkpoint.pt .scratch/carry/metrics.jsonl "$RUN/"
  echo "resuming from the carried checkpoint ($(sha256sum < "$RUN/checkpoint.pt" | cut -c1-16))"
fi
if [ -n "$TESTS" ]; then
  timeout -s INT "${TEST_LIMIT:-150}" python -m pytest -q -rfE -p no:cacheprovider $TESTS > "$OUT/pytest.log" 2>&1
  echo "tests: exit $?; $(tail -1 "$OUT/pytest.log")"
  date -u
fi
python benchmarks/compile_cache.py "$CACHE" -m loger3d train "$CONFIG" -o "$RUN" --resume --max-minutes "$MINUTES" \
  --quiet "$@" 2>&1 | grep -v "UserWarning\|rms_norm\|warnings.warn\|return node.target\|FutureWarning\|  check(" | tail -8
python - "$RUN/metrics.jsonl" <<'PY'
import json, sys
last = [json.loads(line) for line in open(sys.argv[1])][-1]
print(f"at step {last['step']}: stage {last['stage'] + 1}, loss {last['total']:.4f}, "
      f"{last['frames_per_s']:.0f} frames/s, skipped steps {last.get('skipped_steps', 0):.0f}")
PY
weights=$RUN/model.safetensors; [ -f "$weights" ] || weights=$RUN/checkpoint.pt
python -m loger3d convert "$weights" "$OUT/model_fp16.safetensors" --dtype fp16 --force | tail -1
cp "$RUN/metrics.jsonl" "$RUN/loss.png" "$OUT/"
split -b 15000000 -d "$RUN/checkpoint.pt" "$OUT/checkpoint.pt.part-"
sha256sum < "$RUN/checkpoint.pt" > "$OUT/checkpoint.sha256"
date -u
