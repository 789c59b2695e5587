# A/B: session 10's final tree (b872af3) against this tree, 670K sweep file, 30 batches, float and BF16, interleaved
for r in 1 2 3; do
  for v in old new; do
    bin=/work/main/build/sparrow; [ $v = old ] && bin=/tmp/s10tree/build/sparrow
    for mode in float bf16; do
      extra=""; [ $mode = bf16 ] && extra="--bf16-weights"
      rm -f /tmp/ab670.jsonl
      $bin train --train /tmp/sweep/train_20000_1000_670091.txt --batch 256 --threads 2 --seed 1 --sparsity 0.005 --lr 1e-3 --max-batches 30 --metrics /tmp/ab670.jsonl --quiet $extra >/dev/null 2>&1
      python3 -c "
import json; d=[json.loads(l) for l in open('/tmp/ab670.jsonl')][-1]
print('$v $mode sps=%.1f train=%.3f opt=%.3f rehash=%.3f loss=%.5f' % (d['samples_per_second'], d['train_seconds'], d['optimizer_seconds'], d['rehash_seconds'], d['loss']))"
    done
  done
done
