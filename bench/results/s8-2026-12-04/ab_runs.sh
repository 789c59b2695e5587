#!/usr/bin/env bash
# Session 8: the sweep's 20,000-point epoch (bench/peers.py's files, SUBSET=20000 EVAL=1000, under
# /tmp/sweep), interleaved runs of three arms: "old" (OLD, a build of b041378: w16, mw16, vw16 in
# three arrays, SimHash 1 in 3), "new3" (NEW with --simhash-one-in 3) and "new" (NEW's defaults:
# SimHash 1 in sqrt(128) = 11). ab_runs.txt was measured with NEW built from the tree while it
# also held the interleaved BF16 rows (interleaved_bf16_rows.patch, reverted for no gain here):
# there "new3" is the interleaved rows alone, "new" both changes.
# Run from the repository root after bash scripts/build.sh. Output: one line per run.
set -u
OLD=${OLD:-/tmp/old_b/sparrow}
NEW=${NEW:-build/sparrow}
ROUNDS=${ROUNDS:-3}
LABELS=${LABELS:-"100000 2000000"}
MODES=${MODES:-"float --bf16-weights"}
run() { # name bin L threads maxb extra...
  local name=$1 bin=$2 L=$3 th=$4 maxb=$5; shift 5
  local sp; sp=$(python3 -c "print(3350/$L)")
  local mb=(); [ "$maxb" != 0 ] && mb=(--max-batches $maxb)
  rm -f /tmp/fm.jsonl
  local t0; t0=$(date +%s.%N)
  $bin train --train /tmp/sweep/train_20000_1000_$L.txt --batch 256 --threads $th --seed 1 --sparsity $sp --lr 1e-3 --metrics /tmp/fm.jsonl --quiet "${mb[@]}" "$@" >/dev/null 2>&1
  local wall; wall=$(python3 -c "import time; print('%.2f' % (time.time() - $t0))")
  python3 -c "
import json; d=[json.loads(l) for l in open('/tmp/fm.jsonl')][-1]
print('$name L=$L threads=$th wall=$wall train=%.3f sps=%.1f rehash=%.3f opt=%.3f opt_rows=%.0f opt_gbps=%.2f loss=%.5f' % (d['train_seconds'], d['samples_per_second'], d['rehash_seconds'], d['optimizer_seconds'], d.get('optimizer_rows_per_step',0), d.get('optimizer_gb_per_s',0), d['loss']))"
}
gcc -O2 -fopenmp bench/stream.c -o /tmp/stream
echo "stream before: $(/tmp/stream)"
for r in $(seq $ROUNDS); do
  for L in $LABELS; do
    for mode in $MODES; do
      m=(); [ "$mode" != float ] && m=($mode)
      run "old$mode" $OLD $L 2 0 "${m[@]}"
      run "new3$mode" $NEW $L 2 0 "${m[@]}" --simhash-one-in 3
      run "new$mode" $NEW $L 2 0 "${m[@]}"
    done
  done
done
echo "stream after: $(/tmp/stream)"
