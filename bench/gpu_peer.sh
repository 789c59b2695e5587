#!/usr/bin/env bash
# Time to the same P@1 on a GPU machine: PyTorch on its GPU (float32 and TF32) against
# sparrow sampled on the same machine's CPU cores, same data and network (README.md,
# "Against PyTorch on a GPU"). One command:
#   bash bench/gpu_peer.sh [OUT_DIR]          (default out/gpu)
# It makes the amazon670k data in DATA (default /tmp/a670) if missing, then runs
# bench/time_to_p1.py with DEVICE=cuda and all CPU threads, and a sparrow thread sweep.
# Environment: SPARROW (a sparrow binary; default build/sparrow, built if missing),
# TORCH_PYTHON (an interpreter with CUDA PyTorch; default python3), SUBSET (training
# points, default all 490,449), EVAL (test points, 2000), EPOCHS (1), EVAL_EVERY (100
# batches), THREAD_SWEEP ("1 2 4 8 16" capped at the CPU count), LIMIT_S (seconds the
# comparison may take before it is stopped, default 1800).
# The training files are written under OUT_DIR (hundreds of MB); the tables are
# OUT_DIR/results.md and results.json, the curves OUT_DIR/time_to_p1.png.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-out/gpu}
mkdir -p "$out"
export SPARROW=${SPARROW:-$PWD/build/sparrow}
[ -x "$SPARROW" ] || bash scripts/build.sh || exit 1
data=${DATA:-/tmp/a670}
[ -s "$data/train.txt" ] || "$SPARROW" gen --preset amazon670k --out "$data" --quiet || exit 1
command -v nvidia-smi >/dev/null && nvidia-smi >"$out/nvidia-smi.txt" 2>&1
n=$(nproc)
sweep=""
for t in 1 2 4 8 16 32 64; do [ "$t" -le "$n" ] && sweep="$sweep $t"; done
TRAIN=$data/train.txt TEST=$data/test.txt SUBSET=${SUBSET:-490449} EVAL=${EVAL:-2000} \
    EPOCHS=${EPOCHS:-1} EVAL_EVERY=${EVAL_EVERY:-100} DEVICE=cuda THREADS=$n \
    TORCH_PYTHON=${TORCH_PYTHON:-python3} THREAD_SWEEP=${THREAD_SWEEP:-$sweep} \
    PYTHONUNBUFFERED=1 timeout "${LIMIT_S:-1800}" python3 bench/time_to_p1.py "$out"
