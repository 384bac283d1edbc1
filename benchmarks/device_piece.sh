# Sourced by ablation_piece.sh and train_piece.sh: what a device call of a training in pieces does in either.
CACHE=/tmp/compile_cache.bin

# DIR: a compile cache carried into DIR as compile_cache.bin.gz goes in place, unless this machine has its own.
install_carried_cache() {
  if [ -f "$1/compile_cache.bin.gz" ]; then
    [ -f "$CACHE" ] || gunzip -c "$1/compile_cache.bin.gz" > "$CACHE"
    rm "$1/compile_cache.bin.gz"
  fi
}

# MINUTES COMMAND...: run COMMAND, a training given MINUTES, with SIGINT GRACE seconds (default 90) after them and
# SIGKILL 60 s later. The trainer stops between steps once its minutes have passed and does not begin a stage it
# has no time to compile, but a call that still ran past its limit would be killed, and the machine's state with
# it (2026-12-04): on SIGINT the training saves its last completed checkpoint and ends, and the call keeps the time
# to return what it made.
within() {
  local hard
  hard=$(awk -v m="$1" -v g="${GRACE:-90}" 'BEGIN {printf "%d", m * 60 + g}')
  shift
  timeout -s INT -k 60 "$hard" "$@"
}
