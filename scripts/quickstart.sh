#!/usr/bin/env bash
# The main job: install what is missing, build, generate the `small` synthetic data set,
# train the sampled network on it, report P@1/P@5 and samples per second, and draw the
# learning curves into out/small/curve.png.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
mkdir -p out
[ -f out/small/train.txt ] || build/sparrow gen --preset small --out out/small --seed 1
build/sparrow train --train out/small/train.txt --test out/small/test.txt \
  --epochs "${EPOCHS:-5}" --sparsity 0.05 --metrics out/small/metrics.jsonl --save out/small/model.spr
# The learning curves of that run (P@1, P@5 and loss against time and epochs).
build/sparrow plot out/small/metrics.jsonl --out out/small/curve.png
