#!/usr/bin/env bash
# Session 10 (session 9's script, this tree): 1 and 2 threads alternating, 670K labels (the sweep's 20,000-point file), 30
# batches of 256, 3,350 active outputs (--sparsity 0.005), float, PAIRS pairs, this tree.
# Run from the repository root after bash scripts/build.sh. Output: one line per run.
set -u
BIN=${BIN:-build/sparrow}
PAIRS=${PAIRS:-3}
for p in $(seq "$PAIRS"); do
  for t in 1 2; do
    rm -f /tmp/th.jsonl
    $BIN train --train /tmp/sweep/train_20000_1000_670091.txt --batch 256 --threads $t --seed 1 \
      --sparsity 0.005 --lr 1e-3 --max-batches 30 --metrics /tmp/th.jsonl --quiet >/dev/null 2>&1
    python3 -c "
import json; d=[json.loads(l) for l in open('/tmp/th.jsonl')][-1]
print('threads=$t sps=%.1f train=%.3f loss=%.5f' % (d['samples_per_second'], d['train_seconds'], d['loss']))"
  done
done
