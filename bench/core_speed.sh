#!/usr/bin/env bash
# Sampled against --dense on the amazon670k preset (issue 2's figures): one full sampled
# epoch (P@k on a fixed random subset of the test set, peak memory), then --dense over
# the first 50 batches (a full dense epoch would take hours), and the ratio per sample.
# Usage: bench/core_speed.sh [OUT_DIR]   (needs ~2 GB of disk for the data)
# DENSE=0 skips the dense run and reuses OUT_DIR/dense.* from an earlier run (its speed
# does not depend on the sampling options).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-out/bench_core}
data=${DATA:-out/amazon670k}
batch=${BATCH:-256}
sparsity=${SPARSITY:-0.005}
threads=${THREADS:-$(nproc)}
mkdir -p "$out"
bash scripts/build.sh
S=build/sparrow
[ -f "$data/train.txt" ] || $S gen --preset amazon670k --out "$data" --seed 1

common=(--train "$data/train.txt" --batch "$batch" --threads "$threads" --seed 1 --quiet)
/usr/bin/time -v $S train "${common[@]}" --test "$data/test.txt" --eval-max 10000 --epochs 1 \
  --sparsity "$sparsity" --metrics "$out/sampled.jsonl" 2> "$out/sampled.time" | tee "$out/sampled.txt"
if [ "${DENSE:-1}" != 0 ]; then
  /usr/bin/time -v $S train "${common[@]}" --dense --max-batches 50 \
    --metrics "$out/dense.jsonl" 2> "$out/dense.time" | tee "$out/dense.txt"
fi

/usr/bin/python3 - "$out" <<'PY'
import json, re, sys
out = sys.argv[1]
def last(p): return [json.loads(l) for l in open(p)][-1]
def rss(p): return int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", open(p).read()).group(1)) / 1e6
s, d = last(f"{out}/sampled.jsonl"), last(f"{out}/dense.jsonl")
r = {"sampled_samples_per_second": s["samples_per_second"], "sampled_epoch_seconds": s["train_seconds"],
     "sampled_p_at_1": s["p_at_1"], "sampled_p_at_5": s["p_at_5"], "sampled_active_out": s["active_out"],
     "sampled_peak_rss_gb": rss(f"{out}/sampled.time"),
     "dense_samples_per_second": d["samples_per_second"], "dense_batches": d["step"],
     "dense_peak_rss_gb": rss(f"{out}/dense.time")}
r["speedup_per_sample"] = r["sampled_samples_per_second"] / r["dense_samples_per_second"]
json.dump(r, open(f"{out}/summary.json", "w"), indent=1)
print(json.dumps(r, indent=1))
PY
