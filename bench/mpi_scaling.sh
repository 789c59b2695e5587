#!/usr/bin/env bash
# The README's MPI scaling table on the amazon670k preset: the same sampled training
# (batch 256, output at 0.5%, 128 hidden) for MAX_BATCHES batches on
#   1 process x 1 thread, 1 process x 2 threads, 2 ranks x 1 thread (mpirun)
# each with samples/s, peak RSS per process, the model's bytes per rank, the time in
# collectives and the bytes per step (metrics JSONL and the per-rank lines).
# Usage: bench/mpi_scaling.sh DATA_DIR OUT_DIR   (DATA_DIR/train.txt, DATA_DIR/test.txt;
# generated with `sparrow gen --preset amazon670k --seed 1` if missing)
set -euo pipefail
data=${1:?data dir}
out=${2:?output dir}
batches=${MAX_BATCHES:-150}
S=${SPARROW:-build/sparrow}
mkdir -p "$out"
[ -f "$data/train.txt" ] || $S gen --preset amazon670k --out "$data" --seed 1
mpi=(mpirun --oversubscribe -np 2)
[ "$(id -u)" -ne 0 ] || mpi+=(--allow-run-as-root)
common=(--train "$data/train.txt" --test "$data/test.txt" --eval-max 2000 --batch 256
    --sparsity 0.005 --seed 1 --max-batches "$batches" --quiet)
run() { # NAME LAUNCHER... -- THREADS
    local name=$1 threads=$2
    shift 2
    /usr/bin/time -f "peak_rss_kb %M wall_s %e" "$@" "$S" train "${common[@]}" --threads "$threads" \
        --metrics "$out/$name.jsonl" >"$out/$name.txt" 2>"$out/$name.log"
    echo "== $name"
    cat "$out/$name.txt"
    grep -E "^rank|peak_rss_kb" "$out/$name.log" || true
    tail -1 "$out/$name.jsonl"
}
run one_t1 1
run one_t2 2
run two_ranks_t1 1 "${mpi[@]}"
