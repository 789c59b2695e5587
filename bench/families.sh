#!/usr/bin/env bash
# Hash families on the `small` preset (issue 3): for each family with its default K and
# L, train at the same sparsity, seed and epochs as a --dense run, then report P@1,
# samples/s, mean active neurons, table memory, the top-10 sampling recall, and sparse
# against exact inference. Prints a Markdown table; writes OUT/families.json.
# Usage: bench/families.sh [OUT_DIR]   (EPOCHS=5 SPARSITY=0.01 SELECTS="topk rank" by default)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-out/bench_families}
epochs=${EPOCHS:-5}
sparsity=${SPARSITY:-0.01}
families=${FAMILIES:-"simhash dwta wta doph"}
selects=${SELECTS:-"topk rank"}
mkdir -p "$out"
bash scripts/build.sh
S=build/sparrow
[ -f out/small/train.txt ] || $S gen --preset small --out out/small --seed 1
run() { # name, extra train options...
  local name=$1; shift
  $S train --train out/small/train.txt --test out/small/test.txt --epochs "$epochs" --seed 1 \
    --sparsity "$sparsity" --metrics "$out/$name.jsonl" --save "$out/$name.spr" --quiet "$@" \
    > /dev/null
}
[ -f "$out/dense.jsonl" ] || run dense --dense
for sel in $selects; do
  for f in $families; do
    n=$f-$sel
    run "$n" --hash "$f" --select "$sel"
    $S info --model "$out/$n.spr" --json > "$out/$n.info.json"
    $S eval --model "$out/$n.spr" --test out/small/test.txt --recall 10 | tail -n 1 > "$out/$n.exact.json"
    $S eval --model "$out/$n.spr" --test out/small/test.txt --sparse-inference | tail -n 1 > "$out/$n.sparse.json"
  done
done
/usr/bin/python3 - "$out" "$families" "$selects" <<'PY'
import json, sys
out, families, selects = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
last = lambda p: [json.loads(l) for l in open(p)][-1]
dense = last(f"{out}/dense.jsonl")
rows = []
print(f"dense: P@1 {dense['p_at_1']:.4f}, {dense['samples_per_second']:.0f} samples/s\n")
print("| family | select | K | L | mean active | P@1 | P@1 - dense | samples/s | table MB | top-10 recall | sparse P@1 | exact eval s | sparse eval s |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for f, sel in [(f, s) for s in selects for f in families]:
    n = f"{f}-{sel}"
    m, info = last(f"{out}/{n}.jsonl"), json.load(open(f"{out}/{n}.info.json"))
    ex, sp = json.load(open(f"{out}/{n}.exact.json")), json.load(open(f"{out}/{n}.sparse.json"))
    lay = info["layers"][-1]
    r = {"family": f, "select": sel, "k": lay["effective_k"], "l": lay["hash_l"], "active": m["active_out"],
         "p_at_1": m["p_at_1"], "gap": m["p_at_1"] - dense["p_at_1"], "sps": m["samples_per_second"],
         "table_mb": info["table_bytes"] / 1e6, "recall10": ex["sampling_recall_at_10"],
         "sparse_p_at_1": sp["p_at_1"], "exact_s": ex["seconds"], "sparse_s": sp["seconds"]}
    rows.append(r)
    print(f"| {f} | {sel} | {r['k']} | {r['l']} | {r['active']:.0f} | {r['p_at_1']:.4f} | {r['gap']:+.4f} | "
          f"{r['sps']:.0f} | {r['table_mb']:.2f} | {r['recall10']:.3f} | {r['sparse_p_at_1']:.4f} | "
          f"{r['exact_s']:.2f} | {r['sparse_s']:.2f} |")
json.dump({"dense": dense, "families": rows}, open(f"{out}/families.json", "w"), indent=1)
PY
