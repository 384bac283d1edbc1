#!/bin/bash
# Large files to the device in several calls: a call carries at most 64 MiB, working tree included (about 20 MiB),
# and one training checkpoint of the `tiny` preset is 57 MB. From the repository root:
#   at home:    bash benchmarks/carry_parts.sh split NAME=PATH...
#   on device:  bash benchmarks/carry_parts.sh gather DIR      (ablation_piece.sh and train_piece.sh do this first)
# `split` puts one tar of the PATHs (a file or a folder each, stored under NAME) in parts under
# .scratch/carry_parts/1, 2, ..., each folder small enough to travel with the working tree, each with the manifest
# (every part's SHA-256). Carry one folder a call, carry [".scratch/carry_parts/K"], K = 1, 2, ..., on one machine held
# warm: it goes back 30 s after a call ends, and with it what the earlier calls left in /tmp.
# `gather` keeps what this call carried in /tmp/stash; once every part the manifest names is there and intact, it
# unpacks the tar into DIR, once: parts carried again later are ignored (they would undo the progress since).
# Exit status: 0 nothing pending (unpacked, or nothing carried), 3 parts still missing (call again carrying the
# next), 2 bad usage.
# CARRY_STASH and CARRY_PART_BYTES replace /tmp/stash and the part size (tests/test_carry_parts.py).
set -o pipefail
STASH=${CARRY_STASH:-/tmp/stash}
PARTS=.scratch/carry_parts
case $1 in
  split)
    shift
    [ $# -gt 0 ] || { echo "usage: $0 split NAME=PATH..."; exit 2; }
    tree=$(git ls-files -z | xargs -0 -r stat -c %s | awk '{s += $1} END {print s + 0}')
    part=${CARRY_PART_BYTES:-$(( 64 * 1048576 - tree - 3 * 1048576 ))}  # a call's room, 3 MiB to spare
    [ "$part" -gt 0 ] || { echo "the working tree alone fills a call's 64 MiB"; exit 2; }
    staging=$(mktemp -d)
    trap 'rm -rf "$staging"' EXIT
    names=()
    for pair in "$@"; do
      name=${pair%%=*} path=${pair#*=}
      [ "$name" != "$pair" ] && [ -e "$path" ] || { echo "$pair: give NAME=PATH with an existing PATH"; exit 2; }
      ln -s "$(realpath "$path")" "$staging/$name" && names+=("$name")
    done
    rm -rf "$PARTS" && mkdir -p "$PARTS"
    tar chf - -C "$staging" "${names[@]}" | split -b "$part" -d - "$staging/carry.tar.part-" || exit 1
    (cd "$staging" && sha256sum carry.tar.part-*) > "$staging/carry.manifest"
    k=0
    for piece in "$staging"/carry.tar.part-*; do
      k=$((k + 1)) && mkdir -p "$PARTS/$k" && mv "$piece" "$PARTS/$k/" && cp "$staging/carry.manifest" "$PARTS/$k/"
    done
    echo "$k parts of at most $part bytes in $PARTS/1..$k: carry one a call, in order, on a machine held warm"
    ;;
  gather)
    DIR=$2
    [ -n "$DIR" ] || { echo "usage: $0 gather DIR"; exit 2; }
    if compgen -G "$PARTS/*/carry.manifest" > /dev/null; then
      manifest=$(ls "$PARTS"/*/carry.manifest | head -1)
      if grep -qxF "$(sha256sum < "$manifest")" "$STASH/unpacked" 2> /dev/null; then
        echo "the carried parts were unpacked by an earlier call: not again (that would undo its progress)"
        exit 0
      fi
      mkdir -p "$STASH" && cp "$PARTS"/*/* "$STASH/"
    fi
    [ -f "$STASH/carry.manifest" ] || exit 0
    total=$(wc -l < "$STASH/carry.manifest")
    if ! (cd "$STASH" && sha256sum --quiet --status -c carry.manifest 2> /dev/null); then
      have=$(cd "$STASH" && sha256sum -c carry.manifest 2> /dev/null | grep -c ': OK$')
      echo "carried parts: $have of $total here; call again carrying the next"
      exit 3
    fi
    parts=$(cut -c67- "$STASH/carry.manifest")  # the manifest's parts in order, not stale ones of an older split
    mkdir -p "$DIR" && (cd "$STASH" && cat $parts) | tar xf - -C "$DIR" || exit 1
    sha256sum < "$STASH/carry.manifest" >> "$STASH/unpacked"
    rm -f "$STASH"/carry.*
    echo "unpacked the $total carried parts into $DIR"
    ;;
  *)
    echo "usage: $0 split NAME=PATH... | gather DIR"
    exit 2
    ;;
esac
