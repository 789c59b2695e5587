"""A process forked after sparrow ran its threads (multiprocessing's "fork" start method,
Python's default on Linux before 3.14; a preforking server such as gunicorn) predicts and
trains, on one thread, with the parent's answers. It used to hang for good in its first
parallel region, waiting for the parent's GNU OpenMP workers, which a fork does not copy."""
import multiprocessing

import numpy as np
import pytest

import sparrow
from conftest import make_xmc


def child(model, X, Y, out):
    ids, _ = model.predict(X, k=3, threads=2)
    model.fit(X, Y, epochs=1, quiet=True)  # trains too, the threads argument at its default
    out.put(ids.tolist())


def test_forked_child_predicts_and_trains():
    X, Y = make_xmc(400, seed=3)
    model = sparrow.Model(X.shape[1], Y.shape[1], hidden=32, sparsity=0.5, seed=1)
    model.fit(X, Y, epochs=1, quiet=True, threads=2)  # the parent's threads run
    ids, _ = model.predict(X, k=3, threads=2)
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    p = ctx.Process(target=child, args=(model, X, Y, out))
    p.start()
    p.join(60)
    hung = p.is_alive()
    if hung:
        p.kill()
        p.join()
    assert not hung, "the forked child hung (GNU OpenMP after fork)"
    assert p.exitcode == 0
    assert np.array_equal(np.array(out.get(timeout=10)), ids)
    # and the parent keeps training on its threads
    model.fit(X, Y, epochs=1, quiet=True, threads=2)
