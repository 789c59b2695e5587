"""A process forked after sparrow ran its threads (multiprocessing's "fork" start method,
Python's default on Linux before 3.14; a preforking server such as gunicorn) predicts and
trains on all its threads, with the parent's answers. It used to hang for good in its
first parallel region, waiting for the parent's GNU OpenMP workers, which a fork does not
copy."""
import ctypes
import multiprocessing

import numpy as np
import pytest

import sparrow
from conftest import make_xmc


def threads_started(n):
    """spr_threads_start(n): the threads the library's calls run on."""
    return ctypes.CDLL(sparrow.library_path).spr_threads_start(n)


def child(model, X, Y, out):
    ids, _ = model.predict(X, k=3, threads=2)
    model.fit(X, Y, epochs=1, quiet=True)  # trains too, the threads argument at its default
    out.put((ids.tolist(), threads_started(2)))


def run_forked(target, *args):
    """Runs target(*args, queue) in a forked process: what it put on the queue, or an
    assertion error if it hung (60 s) or failed."""
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    p = ctx.Process(target=target, args=args + (out,))
    p.start()
    p.join(60)
    hung = p.is_alive()
    if hung:
        p.kill()
        p.join()
    assert not hung, "the forked child hung (GNU OpenMP after fork)"
    assert p.exitcode == 0
    return out.get(timeout=10)


def test_forked_child_predicts_and_trains():
    X, Y = make_xmc(400, seed=3)
    model = sparrow.Model(X.shape[1], Y.shape[1], hidden=32, sparsity=0.5, seed=1)
    model.fit(X, Y, epochs=1, quiet=True, threads=2)  # the parent's threads run
    ids, _ = model.predict(X, k=3, threads=2)
    child_ids, child_threads = run_forked(child, model, X, Y)
    assert np.array_equal(np.array(child_ids), ids)
    assert child_threads == 2  # all its threads, not one
    # and the parent keeps training on its threads
    model.fit(X, Y, epochs=1, quiet=True, threads=2)


def child_fits(X, Y, out):
    model = sparrow.Model(X.shape[1], Y.shape[1], hidden=16, sparsity=0.5, seed=2)
    model.fit(X, Y, epochs=1, quiet=True, threads=2)
    out.put(threads_started(2))


def test_forked_child_after_torch_threads():
    """The parent ran only PyTorch's OpenMP threads (the same libgomp), never sparrow's:
    the child's first sparrow region hung there too."""
    torch = pytest.importorskip("torch")
    X, Y = make_xmc(200, seed=4)
    was = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        a = torch.randn(2000, 2000)
        (torch.relu(a) * 2 + a.exp()).sum()  # intra-op parallel: torch's OpenMP workers
    finally:
        torch.set_num_threads(was)
    assert run_forked(child_fits, X, Y) == 2  # all its threads
