#!/usr/bin/env bash
# Installs what building and testing sparrow needs on Debian 12, skipping what is there.
# Idempotent; needs root (or sudo) only when something is missing.
set -euo pipefail

# clang-14 + libclang-rt-14-dev (the libFuzzer and sanitizer runtimes; only a
# recommendation of clang, so named here) + libomp-14-dev (OpenMP for clang) build the
# fuzz targets; valgrind runs the tool in scripts/test.sh. libcjson-dev: the tool reads
# train --config files with it; python3-matplotlib draws `sparrow plot`; pkg-config and
# man-db: the install test compiles against sparrow.pc and renders the man page.
# openmpi-bin + libopenmpi-dev: model-parallel training over MPI ranks (optional for a
# build, used by the tests).
need=()
# libopenblas0-pthread (PyTorch's BLAS) and libtcmalloc-minimal4: the peer benchmark
# bench/peers.sh (../shared/BENCHMARKING.md). python3-scipy, python3-sklearn,
# python3-pytest: the Python package and its tests (Debian's interpreter runs them: no
# download); dataset-fashion-mnist: examples/03_fashion_mnist.py.
for pkg in gcc make cmake python3 python3-numpy python3-torch \
    clang-14 libclang-rt-14-dev libomp-14-dev valgrind \
    libcjson-dev python3-matplotlib pkg-config man-db openmpi-bin libopenmpi-dev \
    libopenblas0-pthread libtcmalloc-minimal4 \
    python3-scipy python3-sklearn python3-pytest dataset-fashion-mnist; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if ((${#need[@]})); then
  echo "setup: installing ${need[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
