#!/bin/bash
# One device call of the memory ablation with a shared first stage (issue 18), from the repository root:
#   [ABL=/tmp/ablation] [SEED=0] [BRING=run] [PARALLEL=2] [SET="section.key=value ..."] [SCORE=home] \
#       bash benchmarks/ablation_piece.sh CONFIG START MINUTES VARIANT...
# (SET: overrides of CONFIG for every run, e.g. SET=train.align=none with ABL=/tmp/ablation_align_none: memory
# stages trained without SE(3) chaining; give such runs their own ABL.)
# (PARALLEL=2 on a machine of two GPUs: two runs at once, one a GPU; their compiles are not cached across calls.)
# CONFIG: the base training config; START: a checkpoint.pt of a run of CONFIG and SEED within its one-chunk stages
# (or, for the hybrid, anywhere: the same run, continued). `ablation.py train --memory cut` trains the VARIANTs in
# turn, each begun as START, for MINUTES in all; runs resume where they stopped (a machine held warm keeps $ABL in
# /tmp). START is copied to $ABL/start-seed$SEED.pt on first use, so later calls on that machine need not name it.
# Checkpoints (57 MB) do not fit in one call with the working tree: at home put START, as start-seed$SEED.pt, and
# unfinished runs' folders in parts (`bash benchmarks/carry_parts.sh split start-seed0.pt=PATH ttt_only-seed0=DIR`)
# and carry one part a call (carry [".scratch/carry_parts/K"]), the same command each time: calls before the last
# part only keep what they carried and stop; the last unpacks everything into $ABL and trains.
# Runs keep their weights at the end of each stage (train.keep_stage_weights: the training horizon grows from stage
# to stage). Each finished run is scored on the GPU at once (`ablation.py eval`: nine held-out worlds, without and
# with SE(3) chaining) and comes back as <run>.tar in 15 MB parts: its weights in fp16 (final and per stage), log,
# variant.json and scores (at home `cat <files_at>/<run>.tar.part-* | tar x -C runs/`). SCORE=home leaves the
# scoring (over a minute of the call: 61-77 s of model passes alone) to the CPU at home: put the run's
# model_fp16.safetensors as DIR/<run>/model.safetensors beside its variant.json, then `ablation.py eval --config
# CONFIG --out DIR --seeds SEED --variants VARIANT --json eval.json` (fp16 weights on the CPU: seed 1's hybrid so
# scored agrees with the GPU's fp32 within 0.04 points a world and 0.01 in the means:
# results/ablation_shared/eval_hybrid-seed1_cpu.json).
# A call brings back at most 8 files and 64 MiB, so an unfinished run comes back only when asked (BRING=<run>,
# e.g. ttt_only-seed0; the last call of a lease): its folder without weights files as <run>.partial.tar in 15 MB
# parts, with its checkpoint's SHA-256 (at home `cat <files_at>/<run>.partial.tar.part-* | tar x -C DIR`, then
# carried in parts as above). Its stage weights so far, in fp16, come back beside it when there is room, else stay
# in /tmp/back/<run>/ for the next call on that machine to return (`cp /tmp/back/<run>/*.safetensors $OUT/`);
# converted once, they go into the finished run's tar as they are.
# The compile cache (/tmp/compile_cache.bin, every compile of the machine's calls) can go to the next lease too, or a
# fresh machine compiles each stage again (246-319 s before a stage's first logged step): bring it home at the end of a lease
# (`bash benchmarks/bring_back.sh /tmp/compile_cache.bin`, once a call until it says all parts are sent) and carry
# it with the checkpoints as compile_cache.bin.gz (`carry_parts.sh split compile_cache.bin.gz=PATH ...`): it is
# put in place unless the machine has a cache of its own.
# GRACE seconds (90) after MINUTES the training gets SIGINT (benchmarks/device_piece.sh, `within`).
# BACK replaces /tmp/back, where returned runs are packed (tests/test_ablation_piece.py).
set -o pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD/src:$PYTHONPATH
source benchmarks/device_piece.sh
CONFIG=$1 START=$2 MINUTES=$3
shift 3
ABL=${ABL:-/tmp/ablation} SEED=${SEED:-0} BACK=${BACK:-/tmp/back}
[ -f "$CONFIG" ] && [ -n "$MINUTES" ] && [ $# -gt 0 ] || { echo "usage: $0 CONFIG START MINUTES VARIANT..."; exit 2; }
date -u
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
half() {  # WEIGHTS DEST: WEIGHTS in fp16 at DEST, converted once a machine
  [ -f "$2" ] || python -m loger3d convert "$1" "$2" --dtype fp16 --force | tail -1
}
bash benchmarks/carry_parts.sh gather "$ABL"
case $? in 0) ;; 3) exit 0 ;; *) exit 1 ;; esac  # 3: parts still to come in the next call
install_carried_cache "$ABL"
SHARED=$ABL/start-seed$SEED.pt
if [ ! -f "$SHARED" ] && [ -f "$START" ]; then
  mkdir -p "$ABL" && cp "$START" "$SHARED"
fi
for variant in "$@"; do
  [ -f "$SHARED" ] || [ -f "$ABL/$variant-seed$SEED/checkpoint.pt" ] || {
    echo "$variant-seed$SEED has no checkpoint and there is no $START to begin it from: carry one"; exit 2; }
done
overrides=()
for pair in $SET; do overrides+=(--set "$pair"); done
within "$MINUTES" python benchmarks/compile_cache.py "$CACHE" benchmarks/ablation.py train --config "$CONFIG" \
  --memory cut --start "$SHARED" --seeds "$SEED" --variants "$@" --out "$ABL" --max-minutes "$MINUTES" \
  --set train.keep_stage_weights=true "${overrides[@]}" ${PARALLEL:+--parallel $PARALLEL --gpus $PARALLEL} 2>&1 \
  | grep -v "UserWarning\|rms_norm\|warnings.warn\|return node.target\|FutureWarning\|  check(" | tail -8
for variant in "$@"; do
  run=$variant-seed$SEED
  [ -f "$ABL/$run/metrics.jsonl" ] || continue
  python - "$ABL/$run/metrics.jsonl" "$run" <<'PY'
import json, sys
last = [json.loads(line) for line in open(sys.argv[1])][-1]
print(f"{sys.argv[2]} at step {last['step']}: stage {last['stage'] + 1}, loss {last['total']:.4f}, "
      f"{last['frames_per_s']:.0f} frames/s")
PY
  if [ -f "$ABL/$run/model.safetensors" ]; then
    mkdir -p "$BACK/$run"
    for weights in "$ABL/$run"/model*.safetensors; do
      half "$weights" "$BACK/$run/$(basename "$weights" .safetensors)_fp16.safetensors"
    done
    [ -f "$ABL/$run/eval.json" ] || [ "$SCORE" = home ] || python benchmarks/ablation.py eval --config "$CONFIG" \
      --out "$ABL" --seeds "$SEED" --variants "$variant" --json "$ABL/$run/eval.json" | tail -3
    cp "$ABL/$run/metrics.jsonl" "$ABL/$run/variant.json" "$BACK/$run/"
    [ ! -f "$ABL/$run/eval.json" ] || cp "$ABL/$run/eval.json" "$BACK/$run/"
    tar cf - -C "$BACK" "$run" | split -b 15000000 -d - "$OUT/$run.tar.part-"
  elif [ "$BRING" = "$run" ]; then
    tar cf - --exclude='*.safetensors' -C "$ABL" "$run" | split -b 15000000 -d - "$OUT/$run.partial.tar.part-"
    sha256sum < "$ABL/$run/checkpoint.pt" > "$OUT/$run.checkpoint.sha256"
    mkdir -p "$BACK/$run"
    for weights in "$ABL/$run"/model_step*.safetensors; do
      [ -f "$weights" ] || continue
      stage=$BACK/$run/$(basename "$weights" .safetensors)_fp16.safetensors  # the name the finished run packs
      half "$weights" "$stage"
      used=$(du -cb "$OUT" | tail -1 | cut -f1) files=$(ls "$OUT" | wc -l)
      if [ $((used + $(stat -c %s "$stage"))) -le $((64 * 1048576 - 65536)) ] && [ "$files" -lt 8 ]; then
        cp "$stage" "$OUT/$run.$(basename "$stage")"
      else
        echo "no room for $(basename "$stage") in this call: it stays in $BACK/$run/ for the next"
      fi
    done
  fi
done
date -u
