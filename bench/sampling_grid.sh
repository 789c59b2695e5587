#!/usr/bin/env bash
# Choosing K, L and sparsity: P@1 and speed of sampled training on the `small` preset
# over a grid of sparsity x tables (K chosen by sparrow), a K sweep at one point, and
# the dense reference. Same seed, epochs and thread count for every run; prints a
# Markdown table (README, "Choosing K, L and sparsity").
# Usage: bench/sampling_grid.sh [OUT_DIR]   (EPOCHS=5, THREADS=1)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-out/bench_grid}
epochs=${EPOCHS:-5}
threads=${THREADS:-1}
mkdir -p "$out"
bash scripts/build.sh
S=build/sparrow
[ -f out/small/train.txt ] || $S gen --preset small --out out/small --seed 1 --quiet
run() { # NAME OPTIONS...
  local name=$1
  shift
  [ -f "$out/$name.jsonl" ] || $S train --train out/small/train.txt --test out/small/test.txt \
    --epochs "$epochs" --seed 1 --threads "$threads" --metrics "$out/$name.jsonl" \
    --save "$out/$name.spr" --quiet "$@" >/dev/null 2>"$out/$name.err"
  $S info --model "$out/$name.spr" --json >"$out/$name.info.json"
}
run dense --dense
for s in 0.01 0.05 0.2; do
  for l in 10 25 50; do run "s${s}_L${l}" --sparsity "$s" --tables "$l"; done
done
for k in 4 8; do run "s0.05_L50_K$k" --sparsity 0.05 --tables 50 --bits "$k"; done
/usr/bin/python3 - "$out" <<'PY'
import glob, json, os, sys
out = sys.argv[1]
def last(p): return [r for r in map(json.loads, open(p)) if "step" in r][-1]
dense = last(f"{out}/dense.jsonl")
print("| sparsity | L | K | P@1 | P@5 | active out | samples/s | vs dense |")
print("|---|---|---|---|---|---|---|---|")
print(f"| 1 (dense) | - | - | {dense['p_at_1']:.3f} | {dense['p_at_5']:.3f} | {dense['active_out']:.0f} | "
      f"{dense['samples_per_second']:.0f} | 1.0x |")
def key(p):
    c = json.loads(open(p).readline())["run"]["config"]
    return (c["sparsity"], c["tables"], c["bits"])
for p in sorted(glob.glob(f"{out}/s*.jsonl"), key=key):
    c = json.loads(open(p).readline())["run"]["config"]
    info = json.load(open(p[:-len(".jsonl")] + ".info.json"))
    layers = info.get("layers", [])
    k = layers[-1]["effective_k"] if layers else c["bits"]
    m = last(p)
    print(f"| {c['sparsity']:g} | {c['tables']} | {k}{'' if c['bits'] else ' (auto)'} | {m['p_at_1']:.3f} | "
          f"{m['p_at_5']:.3f} | {m['active_out']:.0f} | {m['samples_per_second']:.0f} | "
          f"{m['samples_per_second'] / dense['samples_per_second']:.1f}x |")
PY
