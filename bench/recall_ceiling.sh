#!/usr/bin/env bash
# The top-10 recall each hash family's similarity measure allows at best, on a trained
# model (README, "Hash families"): trains the small preset at 1% (SimHash, 5 epochs)
# unless MODEL is given, dumps its output layer and 300 test hidden vectors, ranks.
# Usage: bench/recall_ceiling.sh [OUT_DIR]   (MODEL=path to use an existing model)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-out/bench_recall_ceiling}
mkdir -p "$out"
bash scripts/build.sh
S=build/sparrow
[ -f out/small/train.txt ] || $S gen --preset small --out out/small --seed 1
model=${MODEL:-$out/model.spr}
[ -f "$model" ] || $S train --train out/small/train.txt --epochs 5 --seed 1 --sparsity 0.01 \
    --save "$model" --quiet >/dev/null
# the static library needs MPI's libraries where CMake built it with MPI (the default)
mpi_link=
if grep -q '^SPR_HAVE_MPI:INTERNAL=ON' build/CMakeCache.txt; then mpi_link=$(mpicc --showme:link); fi
gcc -std=gnu11 -O2 -fopenmp -Iinclude -Isrc bench/dump_output_layer.c build/libsparrow_static.a -lm \
    $mpi_link -o "$out/dump_output_layer"
"$out/dump_output_layer" "$model" out/small/test.txt 300 "$out" >/dev/null
/usr/bin/python3 bench/recall_ceiling.py "$out"
