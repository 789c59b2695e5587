#!/usr/bin/env bash
# A/B of two builds of sparrow on the label sweep's 20,000-point epoch: BASE against NEW,
# float and --bf16-weights, at each of LABELS outputs with 3,350 active a sample (batch
# 256, 2 threads, seed 1), ROUNDS interleaved rounds, a STREAM copy before and after.
# Makes the sweep's files under /tmp/sweep first if they are missing (bench/peers.py's
# subset_files of /tmp/a670, which bench/peers.sh generates). Run from the repository root:
#   BASE=/path/to/old/sparrow NEW=build/sparrow ROUNDS=3 bash bench/ab_sweep.sh
# Output: one line per run (train, rehash and optimizer seconds, the rest, the final loss).
set -u
BASE=${BASE:?BASE=path of the build to compare against}
NEW=${NEW:-build/sparrow}
ROUNDS=${ROUNDS:-3}
LABELS=${LABELS:-"100000 670091 2000000"}
for L in $LABELS; do
  if [ ! -s /tmp/sweep/train_20000_1000_$L.txt ]; then
    mkdir -p /tmp/sweep
    SUBSET=20000 EVAL=1000 /usr/bin/python3 -c "
import sys; sys.argv = ['peers.py', '/tmp/sweep']; sys.path.insert(0, 'bench')
import peers; peers.subset_files($L)"
  fi
done
run() { # name bin L extra...
  local name=$1 bin=$2 L=$3; shift 3
  local sp; sp=$(python3 -c "print(3350/$L)")
  rm -f /tmp/ab_sweep.jsonl
  $bin train --train /tmp/sweep/train_20000_1000_$L.txt --batch 256 --threads 2 --seed 1 --sparsity $sp --lr 1e-3 --metrics /tmp/ab_sweep.jsonl --quiet "$@" >/dev/null 2>&1
  python3 -c "
import json; d=[json.loads(l) for l in open('/tmp/ab_sweep.jsonl')][-1]
print('$name L=$L train=%.3f rehash=%.3f opt=%.3f rest=%.3f loss=%.5f' % (d['train_seconds'], d['rehash_seconds'], d['optimizer_seconds'], d['train_seconds'] - d['rehash_seconds'] - d['optimizer_seconds'], d['loss']))"
}
gcc -O2 -fopenmp bench/stream.c -o /tmp/stream
echo "stream before: $(/tmp/stream)"
for r in $(seq "$ROUNDS"); do
  for L in $LABELS; do
    run base-float "$BASE" $L; run new-float "$NEW" $L
    run base-bf16 "$BASE" $L --bf16-weights; run new-bf16 "$NEW" $L --bf16-weights
  done
done
echo "stream after: $(/tmp/stream)"
