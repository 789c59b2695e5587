#!/usr/bin/env bash
# A model of LABELS outputs (17M by default: the users' 10^7 scale, 2.2e9 parameters with
# BF16 weights and moments) through everything around training: making it, 5 batches,
# the save, the file's size, `info --verify`, and `eval` of 10 points (loaded for
# inference), each with its wall time, CPU time and peak resident memory. Needs about
# 21 GB of memory and 17 GB of disk under DIR. Run from the repository root:
#   LABELS=17000000 DIR=/tmp/big bash bench/big_model.sh [path/to/sparrow]
# The files are left in DIR (delete them after: 17 GB each); the figures of session 30
# are in bench/results/s30-2026-12-08/README.txt. Each step's line: its name, then
# /usr/bin/time's "wall user sys maxrss".
set -eu
BIN=${1:-build/sparrow}
LABELS=${LABELS:-17000000}
DIR=${DIR:-/tmp/big}
mkdir -p "$DIR"
timed() { # NAME CMD...: runs CMD, prints NAME and its times; its own output to DIR/NAME.log
    local name=$1
    shift
    /usr/bin/time -f "$name wall %e s, user %U s, sys %S s, maxrss %M KB" -o "$DIR/$name.time" "$@" \
        >"$DIR/$name.log" 2>&1 || { echo "$name failed: $(tail -3 "$DIR/$name.log")" >&2; exit 1; }
    cat "$DIR/$name.time"
}
[ -s "$DIR/train.txt" ] ||
    "$BIN" gen --preset amazon670k --labels "$LABELS" --train-points 20000 --test-points 1000 --out "$DIR" >/dev/null
(head -1 "$DIR/test.txt" | awk '{print 10, $2, $3}'; sed -n 2,11p "$DIR/test.txt") >"$DIR/t10.txt"
sparsity=$(awk -v l="$LABELS" 'BEGIN {printf "%.12g", 3350 / l}') # 3,350 active, as bench/ab_sweep.sh
timed train "$BIN" train --train "$DIR/train.txt" --batch 256 --threads 2 --seed 1 --sparsity "$sparsity" \
    --bf16-weights --max-batches 5 --save "$DIR/model"
grep -E "samples/s|saved" "$DIR/train.log" | tail -2
echo "file: $(stat -c %s "$DIR/model") bytes"
timed verify "$BIN" info --model "$DIR/model" --verify
timed eval10 "$BIN" eval --model "$DIR/model" --test "$DIR/t10.txt"
tail -1 "$DIR/eval10.log"
