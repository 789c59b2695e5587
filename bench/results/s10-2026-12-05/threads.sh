#!/usr/bin/env bash
# Session 10: bench/threads.sh with this tree, 3 pairs. Output: threads.txt's lines.
PAIRS=${PAIRS:-3} exec bash bench/threads.sh
