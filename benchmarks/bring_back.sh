#!/bin/bash
# A file too large for one call's return brings itself home over several calls (a call returns at most 8 files of
# 16 MiB, 64 MiB in all). On the device, from the repository root, once a call on a machine held warm:
#   bash benchmarks/bring_back.sh PATH          (e.g. /tmp/compile_cache.bin, for the next lease)
# The first call gzips PATH to /tmp/bring/NAME.gz (again whenever PATH has changed since) and cuts it in 15 MB
# parts; each call puts into $OUT the next parts that fit beside what $OUT already holds, with NAME.gz.sha256.
# At home, once every part is back:
#   cat <files_at of each call>/NAME.gz.part-* > NAME.gz && sha256sum -c NAME.gz.sha256   (names in order)
# Exit status: 0 every part sent, 3 parts still to send (call again), 2 bad usage.
# BRING_DIR, BRING_PART_BYTES and BRING_ROOM replace /tmp/bring, the part size and $OUT's room in bytes
# (tests/test_bring_back.py).
set -o pipefail
SRC=$1
[ -f "$SRC" ] && [ -n "$OUT" ] && [ -d "$OUT" ] || { echo "usage: OUT=DIR $0 PATH (an existing file)"; exit 2; }
DIR=${BRING_DIR:-/tmp/bring} PART=${BRING_PART_BYTES:-15000000} ROOM=${BRING_ROOM:-$((64 * 1048576 - 65536))}
name=$(basename "$SRC")
packed=$DIR/$name.gz sent=$DIR/$name.sent
mkdir -p "$DIR"
if [ ! -f "$packed" ] || [ "$SRC" -nt "$packed" ]; then
  rm -f "$packed" "$packed".part-* "$sent"
  gzip -1 -c "$SRC" > "$packed.partial" && mv "$packed.partial" "$packed" || exit 1
  (cd "$DIR" && split -b "$PART" -d "$name.gz" "$name.gz.part-" && sha256sum "$name.gz" > "$name.gz.sha256") || exit 1
  touch "$sent"
  echo "$name: $(stat -c %s "$SRC") bytes, $(stat -c %s "$packed") gzipped, in $(ls "$packed".part-* | wc -l) parts"
fi
cp "$DIR/$name.gz.sha256" "$OUT/"
for piece in "$packed".part-*; do
  grep -qxF "$(basename "$piece")" "$sent" && continue
  used=$(du -cb "$OUT" | tail -1 | cut -f1) files=$(find "$OUT" -type f | wc -l)
  [ $((used + $(stat -c %s "$piece"))) -le "$ROOM" ] && [ "$files" -lt 8 ] || break
  cp "$piece" "$OUT/" && basename "$piece" >> "$sent"
done
total=$(ls "$packed".part-* | wc -l) done=$(wc -l < "$sent")
if [ "$done" -lt "$total" ]; then
  echo "$name.gz: $done of $total parts sent; call again for the rest"
  exit 3
fi
echo "$name.gz: all $total parts sent"
