#!/usr/bin/env bash
# Session 9: 1 and 2 threads alternating, 670K, 30 batches, float, 3 pairs: bench/threads.sh
# (since session 10; the same runs). Output: threads.txt's lines.
PAIRS=${PAIRS:-3} exec bash bench/threads.sh
