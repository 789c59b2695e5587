#!/usr/bin/env bash
# Session 8 (the same Intel machine as session 7; SimHash 1 in 11 by default), on the sweep files of bench/peers.py
# (SUBSET=20000 EVAL=1000 under /tmp/sweep). Output: one line per run.
# Run from the repository root after bash scripts/build.sh; the sweep files come from bench/peers.py (SUBSET=20000 EVAL=1000 OUT=/tmp/sweep).
set -u
NEW=${NEW:-build/sparrow}
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
echo "# sweep: 20,000-point epoch, 3350 active, batch 256, 2 threads, 3 interleaved rounds"
for r in 1 2 3; do
  run sweep-float $NEW 100000 2 0
  run sweep-float $NEW 2000000 2 0
  run sweep-bf16 $NEW 100000 2 0 --bf16-weights
  run sweep-bf16 $NEW 2000000 2 0 --bf16-weights
done
echo "stream mid: $(/tmp/stream)"
echo "# threads: 670K labels, 30 batches, 1 and 2 threads, 3 pairs"
for r in 1 2 3; do
  run threads $NEW 670091 1 30
  run threads $NEW 670091 2 30
done
echo "stream after: $(/tmp/stream)"
