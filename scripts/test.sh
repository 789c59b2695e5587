#!/usr/bin/env bash
# The whole test suite: install what is missing, build with warnings as errors, run
# every test program (ctest: C unit tests, the PyTorch comparison, the end-to-end CLI test).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
cd build
ctest --output-on-failure --timeout 600
