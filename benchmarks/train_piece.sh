#!/bin/bash
# One device call of a training run in pieces (issue 18), from the repository root:
#   [TESTS="pytest node ids"] [RUN=/tmp/train_run] bash benchmarks/train_piece.sh CONFIG MINUTES [TRAIN OPTIONS]
# (TRAIN OPTIONS go to loger3d train as they are: --stop-at 4380, --set train.checkpoint_every=100, ...)
# A machine held warm between calls keeps $RUN (checkpoint and compile caches) in /tmp. A run can also go on in a
# later lease, on a fresh machine: each call returns the checkpoint in parts of 15 MB (a file coming back is at
# most 16 MiB) with their SHA-256; put together at home (and checked against checkpoint.sha256),
#   cat <files_at>/checkpoint.pt.part-* > ck.pt && cp <files_at>/metrics.jsonl .
# they go back in parts, a call each (the 57 MB checkpoint and the working tree do not fit in one call's 64 MiB):
#   bash benchmarks/carry_parts.sh split checkpoint.pt=ck.pt metrics.jsonl=metrics.jsonl
# then this command once a part, carry [".scratch/carry_parts/K"], on a machine held warm; calls before the last
# part stop at once, the last unpacks them into $RUN and the run resumes there.
# A compile cache carried as compile_cache.bin.gz (see ablation_piece.sh) is put in place as for the ablation.
# TESTS run first, under a SIGINT limit (pytest then still reports what failed). Training runs through
# benchmarks/compile_cache.py, with SIGINT GRACE seconds (90) after MINUTES (device_piece.sh, `within`). Each call
# returns the metrics, the loss plot and the weights so far in fp16.
set -o pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD/src:$PYTHONPATH
source benchmarks/device_piece.sh
CONFIG=$1 MINUTES=$2
shift 2
RUN=${RUN:-/tmp/train_run}
[ -f "$CONFIG" ] && [ -n "$MINUTES" ] || { echo "usage: $0 CONFIG MINUTES [TRAIN OPTIONS]"; exit 2; }
date -u
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
bash benchmarks/carry_parts.sh gather "$RUN"
case $? in 0) ;; 3) exit 0 ;; *) exit 1 ;; esac  # 3: parts still to come in the next call
install_carried_cache "$RUN"
if [ -n "$TESTS" ]; then
  timeout -s INT "${TEST_LIMIT:-150}" python -m pytest -q -rfE -p no:cacheprovider $TESTS > "$OUT/pytest.log" 2>&1
  echo "tests: exit $?; $(tail -1 "$OUT/pytest.log")"
  date -u
fi
within "$MINUTES" python benchmarks/compile_cache.py "$CACHE" -m loger3d train "$CONFIG" -o "$RUN" --resume \
  --max-minutes "$MINUTES" --quiet "$@" 2>&1 \
  | grep -v "UserWarning\|rms_norm\|warnings.warn\|return node.target\|FutureWarning\|  check(" | tail -8
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
