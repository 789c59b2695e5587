"""pytest set-up: import sparrow from this source tree (python/), which finds the library
in build/ (scripts/build.sh), unless an installed package is asked for with
SPARROW_TEST_INSTALLED=1."""
import os
import sys

import numpy as np
import pytest
import scipy.sparse as sp

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if not os.environ.get("SPARROW_TEST_INSTALLED"):
    sys.path.insert(0, os.path.join(ROOT, "python"))


def make_xmc(n, n_features=300, n_labels=20, seed=0, nnz=12):
    """A small learnable multi-label set: each label owns a sparse prototype, a point
    takes 1-3 labels and draws its features from their prototypes plus noise."""
    rng = np.random.default_rng(seed)
    protos = [rng.choice(n_features, 10, replace=False) for _ in range(n_labels)]
    rows, cols, vals, ly = [], [], [], []
    for i in range(n):
        labels = sorted(rng.choice(n_labels, rng.integers(1, 4), replace=False).tolist())
        feats = set()
        while len(feats) < nnz:
            if rng.random() < 0.8:
                feats.add(int(rng.choice(protos[labels[rng.integers(len(labels))]])))
            else:
                feats.add(int(rng.integers(n_features)))
        for f in feats:
            rows.append(i), cols.append(f), vals.append(float(rng.random() + 0.5))
        ly.append(labels)
    X = sp.csr_matrix((np.array(vals, np.float32), (rows, cols)), shape=(n, n_features))
    X.sort_indices()
    indptr = np.zeros(n + 1, np.int64)
    indptr[1:] = np.cumsum([len(l) for l in ly])
    Y = sp.csr_matrix((np.ones(indptr[-1], np.float32), np.concatenate(ly), indptr),
                      shape=(n, n_labels))
    return X, Y


@pytest.fixture(scope="session")
def xmc_data():
    X, Y = make_xmc(1200, seed=1)
    return X[:1000], Y[:1000], X[1000:], Y[1000:]
