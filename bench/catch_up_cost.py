#!/usr/bin/python3
"""bench/catch_up_cost.py: what the end-of-epoch catch-up (spr_model_catch_up) costs.

For each label count L: trains on the label sweep's 20,000-point file (bench/ab_sweep.sh
makes /tmp/sweep/train_20000_1000_L.txt) with ab_sweep's settings (batch 256, sparsity
3350 / L, 2 threads, seed 1) for all but the epoch's last batch (so fit does not take
the owed steps itself), then times spr_model_catch_up, and a second call (nothing owed:
the scan of the rows' last steps alone), against the epoch's training time.

  SPARROW_LIB=build/libsparrow.so PYTHONPATH=python /usr/bin/python3 bench/catch_up_cost.py 670091 2000000
"""
import ctypes
import sys
import time

import sparrow
from sparrow import _lib


def main(labels):
    for L in labels:
        X, Y = sparrow.load_xmc("/tmp/sweep/train_20000_1000_%d.txt" % L)
        batches = -(-X.shape[0] // 256) - 1
        m = sparrow.Model(X.shape[1], L, hidden=(128,), sparsity=3350.0 / L, seed=1)
        hist = m.fit(X, Y, epochs=1, batch_size=256, threads=2, max_batches=batches, quiet=True)
        o = _lib.spr_train_options_default()
        o.threads = 2
        t0 = time.perf_counter()
        assert _lib.spr_model_catch_up(m._h(), ctypes.byref(o)) == 0
        t1 = time.perf_counter()
        assert _lib.spr_model_catch_up(m._h(), ctypes.byref(o)) == 0
        t2 = time.perf_counter()
        train = hist[-1]["train_seconds"]
        print("L=%d batches=%d train=%.3f catch_up=%.3f (%.1f%% of the training) again=%.3f"
              % (L, batches, train, t1 - t0, 100 * (t1 - t0) / train, t2 - t1), flush=True)


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [100000, 670091, 2000000])
