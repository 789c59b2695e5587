#!/usr/bin/env bash
# SimHash projection density (--simhash-one-in S: each entry non-zero one time in S):
# what it costs in quality and what it saves in hashing time.
#   1. `small` preset (5,000 labels), 5 epochs at 1%, L 50, 2 threads: P@1 and the top-10
#      sampling recall (`sparrow eval --recall 10`) for each S and seed;
#   2. amazon670k, a 100,000-point training subset and 2,000 test points (bench/peers.py's
#      subset, random seed 1), 2 epochs, batch 256, sparsity 0.005: P@1 / P@5 for each S
#      and seed (AMAZON_SEEDS; AMAZON_SEEDS="" skips it);
#   3. 2M labels, --bf16-weights, the sweep's 20,000-point epoch (bench/peers.py's files):
#      rehash and epoch seconds for each S, ROUNDS interleaved rounds (SWEEP=0 skips it).
# Prints one line per run; writes OUT/results.txt.
# Usage: bench/simhash_density.sh [OUT_DIR]   (DENSITIES="3 6 11" SEEDS="1 2 3" by default)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-out/simhash_density}
densities=${DENSITIES:-"3 6 11"}
seeds=${SEEDS:-"1 2 3"}
amazon_seeds=${AMAZON_SEEDS-"1 2"}
sweep=${SWEEP:-1}
rounds=${ROUNDS:-2}
PY=/usr/bin/python3
mkdir -p "$out"
[ -x build/sparrow ] || bash scripts/build.sh
S=$PWD/build/sparrow
res=$out/results.txt
: > "$res"
say() { echo "$*" | tee -a "$res"; }
last() { $PY -c "import json,sys; d=[json.loads(l) for l in open(sys.argv[1])][-1]; print(' '.join('%s=%s' % (k, d[k]) for k in sys.argv[2:]))" "$@"; }

[ -f out/small/train.txt ] || $S gen --preset small --out out/small --seed 1 >/dev/null
say "# small preset, 5 epochs, 1%, L 50, 2 threads"
for seed in $seeds; do
  for s in $densities; do
    n=$out/small_s${s}_seed$seed
    $S train --train out/small/train.txt --test out/small/test.txt --epochs 5 --seed "$seed" \
      --sparsity 0.01 --threads 2 --simhash-one-in "$s" --metrics "$n.jsonl" --save "$n.spr" --quiet >/dev/null 2>"$n.err"
    rec=$($S eval --model "$n.spr" --test out/small/test.txt --recall 10 | tail -n 1 |
          $PY -c "import json,sys; print('%.3f' % json.load(sys.stdin)['sampling_recall_at_10'])")
    say "small one_in=$s seed=$seed $(last "$n.jsonl" p_at_1 p_at_5 rehash_seconds train_seconds) recall10=$rec"
  done
done

if [ -n "$amazon_seeds" ]; then
  [ -f /tmp/a670/train.txt ] || $S gen --preset amazon670k --out /tmp/a670 >/dev/null
  (cd bench && SUBSET=100000 EVAL=2000 $PY -c "import peers; peers.subset_files()" /tmp/ttp)
  say "# amazon670k, 100,000 training points, 2 epochs, 2,000 test points, batch 256, 2 threads"
  for seed in $amazon_seeds; do
    for s in $densities; do
      n=$out/a670_s${s}_seed$seed
      $S train --train /tmp/ttp/train_100000_2000_orig.txt --test /tmp/ttp/test_100000_2000_orig.txt \
        --batch 256 --threads 2 --seed "$seed" --sparsity 0.005 --lr 1e-3 --epochs 2 \
        --simhash-one-in "$s" --metrics "$n.jsonl" --quiet >/dev/null 2>"$n.err"
      say "amazon670k one_in=$s seed=$seed $(last "$n.jsonl" p_at_1 p_at_5 rehash_seconds train_seconds)"
    done
  done
fi

if [ "$sweep" != 0 ]; then
  tr=/tmp/sweep/train_20000_1000_2000000.txt
  if [ ! -f "$tr" ]; then
    [ -f /tmp/a670/train.txt ] || $S gen --preset amazon670k --out /tmp/a670 >/dev/null
    (cd bench && SUBSET=20000 EVAL=1000 $PY -c "import peers; peers.subset_files(2000000)" /tmp/sweep)
  fi
  say "# 2M labels, --bf16-weights, 20,000-point epoch, 3,350 active, batch 256, 2 threads"
  for r in $(seq "$rounds"); do
    for s in $densities; do
      n=$out/sweep_s${s}_r$r
      $S train --train "$tr" --batch 256 --threads 2 --seed 1 --sparsity 0.001675 --lr 1e-3 \
        --bf16-weights --simhash-one-in "$s" --metrics "$n.jsonl" --quiet >/dev/null 2>"$n.err"
      say "2M one_in=$s round=$r $(last "$n.jsonl" train_seconds rehash_seconds optimizer_seconds loss)"
    done
  done
fi
