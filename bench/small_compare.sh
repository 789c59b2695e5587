#!/usr/bin/env bash
# Sampled against --dense on the `small` preset, same seed and epochs (issue 2, item 1),
# plus the majority-label baseline: prints a Markdown table and writes summary.json.
# Usage: bench/small_compare.sh [OUT_DIR]   (EPOCHS=5, SPARSITY=0.05, THREADS=0: all)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-out/bench_small}
epochs=${EPOCHS:-5}
sparsity=${SPARSITY:-0.05}
threads=${THREADS:-0}
mkdir -p "$out"
bash scripts/build.sh
S=build/sparrow
[ -f out/small/train.txt ] || $S gen --preset small --out out/small --seed 1
for mode in dense sampled; do
  flag=--dense
  [ $mode = sampled ] && flag="--sparsity $sparsity"
  $S train --train out/small/train.txt --test out/small/test.txt --epochs "$epochs" --seed 1 \
    --threads "$threads" $flag --sparsity "$sparsity" --metrics "$out/$mode.jsonl" --quiet > "$out/$mode.txt"
done
/usr/bin/python3 - "$out" <<'PY'
import json, sys
from collections import Counter
out = sys.argv[1]
def labels(path):
    with open(path) as f:
        next(f)
        for line in f:
            tok = line.split(" ", 1)[0]
            yield [int(x) for x in tok.split(",")] if tok and ":" not in tok else []
freq = Counter(l for ls in labels("out/small/train.txt") for l in ls)
top = freq.most_common(1)[0][0]
test = list(labels("out/small/test.txt"))
base = sum(top in ls for ls in test) / len(test)
# The first line is the run header ({"run": ...}): evaluations are the lines with a step.
rows = {m: [r for r in map(json.loads, open(f"{out}/{m}.jsonl")) if "step" in r] for m in ("dense", "sampled")}
print("| mode | epoch | P@1 | P@3 | P@5 | samples/s | active out |")
print("|---|---|---|---|---|---|---|")
for m, rs in rows.items():
    for r in rs:
        print(f"| {m} | {r['epoch']} | {r['p_at_1']:.4f} | {r['p_at_3']:.4f} | {r['p_at_5']:.4f} | "
              f"{r['samples_per_second']:.0f} | {r['active_out']:.0f} |")
d, s = rows["dense"][-1], rows["sampled"][-1]
summary = {"epochs": d["epoch"], "dense_p_at_1": d["p_at_1"], "sampled_p_at_1": s["p_at_1"],
           "p_at_1_gap": d["p_at_1"] - s["p_at_1"], "majority_label": top, "majority_p_at_1": base,
           "speedup_per_sample": s["samples_per_second"] / d["samples_per_second"]}
print(json.dumps(summary, indent=1))
json.dump(summary, open(f"{out}/summary.json", "w"), indent=1)
PY
