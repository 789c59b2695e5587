#!/usr/bin/env bash
# sparrow against PyTorch (and ThirdAI where it runs), one command:
#   bash bench/peers.sh [OUT_DIR]            (default out/peers)
# Needs the packages scripts/setup.sh installs (OpenBLAS, tcmalloc, matplotlib) and the
# data: TRAIN=... TEST=... (default /tmp/a670/{train,test}.txt; make them with
# `build/sparrow gen --preset amazon670k --out DIR`). Options (environment): BATCHES (100),
# SLOW_BATCHES (4: PyTorch without tcmalloc, sparrow --dense), SUBSET (60000 training
# points), EVAL (2000 test points), THREADS (all), SPARSITY (0.005), LABELS (sweep:
# "10000 100000 670091 2000000"), SWEEP=0 to skip it, SWEEP_BATCHES (0: one epoch of the
# subset, rehashes included), SWEEP_SLOW, SPARROW_ARGS (extra sparrow train options),
# INIT_STD (0.1: every system's initial weights ~ N(0, INIT_STD^2)),
# SWEEP_TORCH_MAX, SWEEP_ACTIVE (3350 active outputs at every size; 0: SPARSITY), SWEEP_BF16
# (0: no --bf16-weights runs in the sweep), SYSTEMS (subset of the names in bench/peers.py), VENV_TORCH (a venv
# with PyPI torch: by default ~/.cache/sparrow/venv-torch, made on first use with the
# python3 first on PATH and `pip install torch numpy`, a few GB once; VENV_TORCH=none
# skips that peer), VENV_THIRDAI (a venv with thirdai).
# On a GPU machine: `python3 bench/torch_peer.py --device cuda ...` is the GPU peer.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
# The current PyTorch release from PyPI (issue 4's second PyTorch peer; with MKL it was the
# faster CPU configuration on the Intel machine of sessions 7-10): made once, then reused.
if [ "${VENV_TORCH:-}" = none ]; then
  unset VENV_TORCH
else
  VENV_TORCH=${VENV_TORCH:-$HOME/.cache/sparrow/venv-torch}
  if ! "$VENV_TORCH/bin/python" -c 'import torch, numpy' 2>/dev/null; then
    echo "peers.sh: installing PyPI's torch into $VENV_TORCH (once; a few GB)" >&2
    if ! { python3 -m venv "$VENV_TORCH" && "$VENV_TORCH/bin/pip" install -q torch numpy; }; then
      echo "peers.sh: no PyPI torch (pip failed): the pytorch-pypi peer is skipped" >&2
      VENV_TORCH=
    fi
  fi
  export VENV_TORCH
fi
exec /usr/bin/python3 bench/peers.py "${1:-out/peers}"
