# Session 27: builds of three revisions at 2M labels (runs as bench/ab_sweep.sh does):
# /tmp/w189a3db = git worktree add /tmp/w189a3db 189a3db (session 16), /tmp/wd839251 =
# d839251 (session 24), each built with cmake -DCMAKE_BUILD_TYPE=Release --target sparrow_cli;
# /tmp/stream = gcc -O2 -fopenmp bench/stream.c -o /tmp/stream. Run from the repository root.
# name bin L extra...
run() {
  local name=$1 bin=$2 L=$3; shift 3
  local sp; sp=$(python3 -c "print(3350/$L)")
  rm -f /tmp/ab3.jsonl
  $bin train --train /tmp/sweep/train_20000_1000_$L.txt --batch 256 --threads 2 --seed 1 --sparsity $sp --lr 1e-3 --metrics /tmp/ab3.jsonl --quiet "$@" >/dev/null 2>&1
  python3 -c "
import json; d=[json.loads(l) for l in open('/tmp/ab3.jsonl')][-1]
print('$name L=$L train=%.3f rehash=%.3f opt=%.3f rest=%.3f loss=%.5f' % (d['train_seconds'], d['rehash_seconds'], d['optimizer_seconds'], d['train_seconds'] - d['rehash_seconds'] - d['optimizer_seconds'], d['loss']))"
}
echo "stream before: $(/tmp/stream)"
for r in 1 2; do for L in ${LABELS:-2000000}; do
  run s16 /tmp/w189a3db/build/sparrow $L $S16ARGS
  run s24-lazy /tmp/wd839251/build/sparrow $L --init-std 0.01 --lazy-adam
  run head-lazy /work/main/build/sparrow $L --init-std 0.01 --lazy-adam
  run head /work/main/build/sparrow $L
done; done
echo "stream after: $(/tmp/stream)"
