#!/usr/bin/env bash
# The label sweep's files of bench/peers.py (SUBSET=20000 EVAL=1000, labels folded to
# 100K, 670,091 and 2M) under /tmp/sweep, from /tmp/a670 (bench/peers.sh makes it).
# Run from the repository root.
set -eu
mkdir -p /tmp/sweep
SUBSET=20000 EVAL=1000 /usr/bin/python3 -c "
import sys; sys.argv = ['peers.py', '/tmp/sweep']; sys.path.insert(0, 'bench')
import peers
for L in (100000, 670091, 2000000): print(peers.subset_files(L))"
