#!/usr/bin/env bash
# 1 and 2 threads alternating on the label sweep's 670K file (/tmp/sweep, made by
# bench/ab_sweep.sh or bench/peers.sh), 30 batches of 256, 3,350 active outputs
# (--sparsity 0.005), float, PAIRS pairs; makes the file when missing (bench/peers.sh
# generates /tmp/a670 first). Issue 4 asks for 2 threads >= 1.7x one.
# Run from the repository root after bash scripts/build.sh. Output: one line per run.
set -u
BIN=${BIN:-build/sparrow}
PAIRS=${PAIRS:-3}
if [ ! -s /tmp/sweep/train_20000_1000_670091.txt ]; then # the sweep's subset of /tmp/a670
  mkdir -p /tmp/sweep
  SUBSET=20000 EVAL=1000 /usr/bin/python3 -c "
import sys; sys.argv = ['peers.py', '/tmp/sweep']; sys.path.insert(0, 'bench')
import peers; peers.subset_files(670091)" || exit 1
fi
for p in $(seq "$PAIRS"); do
  for t in 1 2; do
    rm -f /tmp/threads.jsonl
    $BIN train --train /tmp/sweep/train_20000_1000_670091.txt --batch 256 --threads $t --seed 1 \
      --sparsity 0.005 --lr 1e-3 --max-batches 30 --metrics /tmp/threads.jsonl --quiet >/dev/null 2>&1
    python3 -c "
import json; d=[json.loads(l) for l in open('/tmp/threads.jsonl')][-1]
print('threads=$t sps=%.1f train=%.3f loss=%.5f' % (d['samples_per_second'], d['train_seconds'], d['loss']))"
  done
done
