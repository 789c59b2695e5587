#!/usr/bin/env bash
# Session 10: the sweep's 20,000-point epoch (bench/peers.py's files under /tmp/sweep,
# made by make_sweep.sh), BASE (a build of 1e8fbbc, session 9's last tree) against NEW (this
# tree: the grouped output forward), float and --bf16-weights, 100K, 670K and 2M labels, 3,350
# active outputs, ROUNDS interleaved rounds. Run from the repository root after
# bash scripts/build.sh. Output: one line per run.
set -u
BASE=${BASE:-/tmp/s10_base_sparrow}
NEW=${NEW:-build/sparrow}
ROUNDS=${ROUNDS:-3}
LABELS=${LABELS:-"100000 670091 2000000"}
run() { # name bin L extra...
  local name=$1 bin=$2 L=$3; shift 3
  local sp; sp=$(python3 -c "print(3350/$L)")
  rm -f /tmp/fp.jsonl
  $bin train --train /tmp/sweep/train_20000_1000_$L.txt --batch 256 --threads 2 --seed 1 --sparsity $sp --lr 1e-3 --metrics /tmp/fp.jsonl --quiet "$@" >/dev/null 2>&1
  python3 -c "
import json; d=[json.loads(l) for l in open('/tmp/fp.jsonl')][-1]
print('$name L=$L train=%.3f rehash=%.3f opt=%.3f rest=%.3f loss=%.5f' % (d['train_seconds'], d['rehash_seconds'], d['optimizer_seconds'], d['train_seconds'] - d['rehash_seconds'] - d['optimizer_seconds'], d['loss']))"
}
gcc -O2 -fopenmp bench/stream.c -o /tmp/stream
echo "stream before: $(/tmp/stream)"
for r in $(seq "$ROUNDS"); do
  for L in $LABELS; do
    run base-float $BASE $L; run new-float $NEW $L
    run base-bf16 $BASE $L --bf16-weights; run new-bf16 $NEW $L --bf16-weights
  done
done
echo "stream after: $(/tmp/stream)"
