#!/usr/bin/env bash
# Session 9: BASE, a build of a7561b1 (session 8's last tree), against NEW, session 9's tree
# (the fused deferred output step), on the sweep's 20,000-point epoch, 3 interleaved rounds:
# bench/ab_sweep.sh (since session 10; the same runs). Run from the repository root after
# bash scripts/build.sh. Output: ab_fused.txt's lines.
BASE=${BASE:-/tmp/s9_base/b/sparrow} NEW=${NEW:-build/sparrow} ROUNDS=${ROUNDS:-3} \
  exec bash bench/ab_sweep.sh
