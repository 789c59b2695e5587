#!/usr/bin/env bash
# Session 10: BASE, a build of 1e8fbbc (session 9's last tree), against NEW, this tree (the
# output forward in row order), on the sweep's 20,000-point epoch, 3 interleaved rounds.
# Run from the repository root after bash scripts/build.sh. Output: ab_grouped.txt's lines.
BASE=${BASE:-/tmp/s10_base_sparrow} NEW=${NEW:-build/sparrow} ROUNDS=${ROUNDS:-3} \
  exec bash bench/ab_sweep.sh
