"""Data: reading XMC / svmlight files into scipy CSR matrices, and handing scipy CSR
(or numpy dense) matrices to the library without per-row copies."""
import ctypes
import os

import numpy as np
import scipy.sparse as sp

from . import _lib
from .errors import check

_FORMATS = {"auto": 0, "xmc": 1, "svmlight": 2}


def _array(ptr, n, dtype):
    """A numpy copy of n elements of a C array (one memcpy, not a per-row loop)."""
    if n == 0:
        return np.zeros(0, dtype=dtype)
    buf = (ctypes.c_char * (n * np.dtype(dtype).itemsize)).from_address(ptr)
    return np.frombuffer(buf, dtype=dtype).copy()


def load_xmc(path, format="auto", one_based=False, n_features=0, n_labels=0, labels=None):
    """Reads an Extreme Classification Repository file (header "N D L", then
    "l1,l2 f:v f:v" lines) or an svmlight/libsvm file with the C reader.

    labels: the repository's split format, features in path (trn_X_Xf.txt: header
    "N D", one line of "f:v" pairs per point) and labels in this file (trn_X_Y.txt:
    header "N L", "l:w" pairs; every listed label counts, its weight must be positive).
    A split features file read without labels gives points without labels.

    Returns (X, Y): X a scipy.sparse.csr_matrix (N, D) of float32 features, Y a
    csr_matrix (N, L) of float32 ones, one per label of each point. Errors (a missing
    file, a malformed line) raise sparrow.errors.SparrowError subclasses whose message
    names the file and line. n_features / n_labels > 0 fix the widths (ids must be
    below them), as the C reader's options do. X.sparrow_one_based is the id base the
    file was read with: a model fit on this X records it, as `sparrow train` does, so
    that `sparrow eval` / `predict` of such files read them the same way without
    --one-based (a slice or copy of X drops it: its points are no longer the file's)."""
    if format not in _FORMATS:
        raise ValueError("format must be one of %s, got %r" % (sorted(_FORMATS), format))
    opts = _lib.spr_read_options_default()
    opts.format = _FORMATS[format]
    opts.one_based = 1 if one_based else 0
    opts.n_features = int(n_features)
    opts.n_labels = int(n_labels)
    handle = ctypes.c_void_p()
    if labels is not None:
        check(_lib.spr_dataset_read_split(os.fsencode(path), os.fsencode(labels), ctypes.byref(opts),
                                          None, None, ctypes.byref(handle)))
    else:
        check(_lib.spr_dataset_read(os.fsencode(path), ctypes.byref(opts), ctypes.byref(handle)))
    try:
        v = _lib.spr_dataset_get_view(handle)
        n = v.n_points
        fptr = _array(v.feature_indptr, n + 1, np.int64)
        lptr = _array(v.label_indptr, n + 1, np.int64)
        nnz, nl = int(fptr[-1]), int(lptr[-1])
        X = sp.csr_matrix((_array(v.feature_values, nnz, np.float32),
                           _array(v.feature_indices, nnz, np.int32), fptr),
                          shape=(n, v.n_features))
        Y = sp.csr_matrix((np.ones(nl, dtype=np.float32), _array(v.labels, nl, np.int32), lptr),
                          shape=(n, v.n_labels))
    finally:
        _lib.spr_dataset_free(handle)
    X.sparrow_one_based = bool(one_based)  # the file's id base: Model.fit records it
    return X, Y


def load_filter(path, n_points, n_labels=0):
    """Reads a filter file of the XMC repository (filter_labels_test.txt: a line
    "POINT LABEL" per pair, 0-based ids) with the C reader: a CSR (n_points, n_labels)
    of float32 ones, row i the labels to leave out of point i's ranking (Model.evaluate
    and Model.predict's exclude). n_points (the data's) and n_labels (the model's; 0:
    the largest + 1) bound the ids; errors name the file and line."""
    handle = ctypes.c_void_p()
    check(_lib.spr_dataset_read_filter(os.fsencode(path), int(n_points), int(n_labels), ctypes.byref(handle)))
    try:
        v = _lib.spr_dataset_get_view(handle)
        n = v.n_points
        lptr = _array(v.label_indptr, n + 1, np.int64)
        nl = int(lptr[-1])
        E = sp.csr_matrix((np.ones(nl, dtype=np.float32), _array(v.labels, nl, np.int32), lptr),
                          shape=(n, v.n_labels))
    finally:
        _lib.spr_dataset_free(handle)
    return E


def exclusions(E, n_points, n_labels):
    """A Dataset (no features) whose labels are E's: the C side of an exclude argument.
    E: a (n_points, <= n_labels) CSR / dense 0-1 matrix, or a list of label-id lists."""
    rows = E.shape[0] if hasattr(E, "shape") else len(E)
    if rows != n_points:
        raise ValueError("exclude has %d rows, the data %d points (one row of labels to leave out "
                         "per point)" % (rows, n_points))
    return Dataset(sp.csr_matrix((n_points, 0), dtype=np.float32), E, 0, n_labels)


def _real(dtype):
    """Whether features of this dtype are real numbers (bool: a binary bag of words)."""
    return any(np.issubdtype(dtype, t) for t in (np.floating, np.integer, np.bool_))


def as_features(X, n_features=None):
    """X as a canonical float32 CSR matrix (a dense numpy array or another scipy format
    is converted once; a float32 CSR with sorted indices is used as it is). A sparse X
    may be narrower than n_features (an svmlight file's width is its largest id); a
    dense one has a column per feature: another width is a different feature space."""
    if sp.issparse(X):
        X = X.tocsr()
    else:
        X = np.asarray(X)
        if X.ndim != 2:
            raise ValueError("X must be 2-D (points, features), got shape %s" % (X.shape,))
        if n_features is not None and X.shape[1] != n_features:
            raise ValueError("X has %d columns, the model %d features: a dense X has one "
                             "column per feature" % (X.shape[1], n_features))
        if not _real(X.dtype):
            raise TypeError("X must hold numbers, got dtype %s" % X.dtype)
        X = sp.csr_matrix(X.astype(np.float32, copy=False))
    if X.dtype != np.float32:
        if not _real(X.dtype):
            raise TypeError("X must hold numbers, got dtype %s" % X.dtype)
        X = X.astype(np.float32)
    if not X.has_canonical_format:
        X = X.copy()
        X.sum_duplicates()  # also sorts the indices
    if n_features is not None and X.shape[1] > n_features:
        raise ValueError("X has %d features, the model %d" % (X.shape[1], n_features))
    return X


def binary_labels(Y, n_labels=None):
    """A scipy sparse or dense 2-D label matrix as a canonical CSR holding a 1 for each
    label: a stored 0 is not a label, a whole number above 1 is a label repeated (as
    scipy sums duplicates); any other value (the -1 of a +-1 encoding, a weight such as
    0.5, NaN) is refused naming its place, since sparrow's targets are binary and the
    matrix's nonzeros were once taken as labels whatever their value.
    A single column where n_labels (the model's) is above 1, or holding values above 1,
    is refused too: it is a column of label ids (y.reshape(-1, 1), a DataFrame's
    df[["label"]]), which as a matrix would make every point's label 0."""
    Y = Y.tocsr() if sp.issparse(Y) else sp.csr_matrix(np.asarray(Y))
    if Y.ndim == 2 and Y.shape[1] == 1 and Y.shape[0] and (
            (n_labels or 0) > 1 or (Y.nnz and np.max(Y.data) > 1)):
        raise ValueError("labels of shape %s: a column of label ids? Pass them 1-D "
                         "(y.ravel()); a label matrix has one column per label%s"
                         % (Y.shape, " (the model has %d)" % n_labels if n_labels else ""))
    d = np.asarray(Y.data, dtype=np.float64)
    bad = ~np.isfinite(d) | (d < 0) | (d != np.round(d))
    if bad.any():
        k = int(np.argmax(bad))
        row = int(np.searchsorted(Y.indptr, k, side="right") - 1)
        raise ValueError("label values must be 0 or 1 (binary relevance; a whole number counts "
                         "a repeated label), got %r at point %d, label %d"
                         % (Y.data[k].item(), row, int(Y.indices[k])))
    Y = Y.astype(np.float32)  # a copy: the caller's matrix is left alone
    Y.eliminate_zeros()
    Y.sum_duplicates()
    Y.data[:] = 1.0
    return Y


def as_labels(Y, n_points, n_labels=None):
    """Labels as a CSR (n_points, L) whose column ids are each point's labels: from a
    CSR/sparse label matrix, a 1-D integer array (one label per point), a dense 0/1
    matrix, or a list of label lists."""
    if sp.issparse(Y):
        Y = binary_labels(Y, n_labels)
    elif isinstance(Y, (list, tuple)) and (len(Y) == 0 or not np.isscalar(Y[0])):
        indptr = np.zeros(len(Y) + 1, dtype=np.int64)
        indptr[1:] = np.cumsum([len(r) for r in Y])
        idx = np.fromiter((_lib.integer(l, "a label id") for r in Y for l in r), dtype=np.int64,
                          count=int(indptr[-1]))
        if idx.size and idx.min() < 0:
            raise ValueError("label ids must be >= 0, got %d" % idx.min())
        width = n_labels if n_labels is not None else (int(idx.max()) + 1 if idx.size else 0)
        if idx.size and idx.max() >= width:
            raise ValueError("label id %d out of range [0, %d)" % (idx.max(), width))
        Y = sp.csr_matrix((np.ones(idx.size, np.float32), idx, indptr), shape=(len(Y), width))
    else:
        Y = np.asarray(Y)
        if Y.ndim == 1:
            if not np.issubdtype(Y.dtype, np.integer):
                raise TypeError("1-D labels must be integer ids, got dtype %s" % Y.dtype)
            if Y.size and Y.min() < 0:
                raise ValueError("label ids must be >= 0, got %d" % Y.min())
            width = n_labels if n_labels is not None else (int(Y.max()) + 1 if Y.size else 0)
            if Y.size and Y.max() >= width:
                raise ValueError("label id %d out of range [0, %d)" % (Y.max(), width))
            Y = sp.csr_matrix((np.ones(Y.size, np.float32), Y.astype(np.int64),
                               np.arange(Y.size + 1)), shape=(Y.size, width))
        elif Y.ndim == 2:
            Y = binary_labels(Y, n_labels)
        else:
            raise ValueError("labels must be 1-D ids or a 2-D matrix, got shape %s" % (Y.shape,))
    if Y.shape[0] != n_points:
        raise ValueError("X has %d points but the labels %d" % (n_points, Y.shape[0]))
    if not Y.has_canonical_format:
        Y = Y.copy()
        Y.sum_duplicates()
    if n_labels is not None and Y.shape[1] > n_labels:
        raise ValueError("labels have %d columns, the model %d outputs" % (Y.shape[1], n_labels))
    return Y


class Dataset:
    """A C spr_dataset over the arrays of a feature CSR and a label CSR, without copying
    them (only int32 offsets are widened to the int64 the C API takes: O(points)).
    The numpy arrays are kept alive as long as this object."""

    def __init__(self, X, Y=None, n_features=None, n_labels=None):
        X = as_features(X, n_features)
        n = X.shape[0]
        if Y is None:
            Y = sp.csr_matrix((n, n_labels or 0), dtype=np.float32)
        Y = as_labels(Y, n, n_labels)
        self.X, self.Y = X, Y
        self._keep = [np.ascontiguousarray(X.indptr, dtype=np.int64),
                      np.ascontiguousarray(X.indices, dtype=np.int32),
                      np.ascontiguousarray(X.data, dtype=np.float32),
                      np.ascontiguousarray(Y.indptr, dtype=np.int64),
                      np.ascontiguousarray(Y.indices, dtype=np.int32)]
        view = _lib.DatasetView(n, X.shape[1], Y.shape[1], *[a.ctypes.data for a in self._keep])
        self._handle = ctypes.c_void_p()
        check(_lib.spr_dataset_wrap(ctypes.byref(view), ctypes.byref(self._handle)))
        self.n_points = n
        self._digest = None

    @property
    def handle(self):
        return self._handle

    def digest(self):
        """The library's 64-bit digest of the points' features and labels
        (spr_dataset_digest): the same as `sparrow info` shows for a model trained on
        the file these arrays were read from. Computed once (O(nnz)): the arrays are not
        to change under a Dataset."""
        if self._digest is None:
            self._digest = int(_lib.spr_dataset_digest(self._handle))
        return self._digest

    def write(self, path):
        """Writes the data set in XMC format with the C writer (atomically)."""
        check(_lib.spr_dataset_write(self._handle, os.fsencode(path)))

    def __del__(self):
        h = getattr(self, "_handle", None)
        if h:
            _lib.spr_dataset_free(h)
            self._handle = None


def generate(preset, out_dir, seed=1, threads=0, n_train=None, n_test=None, n_features=None,
             n_labels=None, labels_per_point=None, nnz_per_point=None):
    """Writes out_dir/train.txt and out_dir/test.txt: the synthetic data set of a preset
    ("tiny", "small", "amazon670k", "delicious200k", "wiki325k"), exactly what
    `sparrow gen --preset NAME --seed S` writes; the sizes given replace the preset's
    (gen's --train-points, --test-points, --features, --labels, --labels-per-point,
    --nnz-per-point). Returns the two paths."""
    cfg = _lib.SynthConfig()
    check(_lib.spr_synth_preset(str(preset).encode(), ctypes.byref(cfg)))
    for name, value in (("n_train", n_train), ("n_test", n_test), ("n_features", n_features),
                        ("n_labels", n_labels)):
        if value is not None:
            setattr(cfg, name, _lib.integer(value, name))
    for name, value in (("labels_per_point", labels_per_point), ("nnz_per_point", nnz_per_point)):
        if value is not None:
            setattr(cfg, name, float(value))
    os.makedirs(out_dir, exist_ok=True)
    train, test = os.path.join(out_dir, "train.txt"), os.path.join(out_dir, "test.txt")
    check(_lib.spr_synth_generate(ctypes.byref(cfg), _lib.integer(seed, "seed"), os.fsencode(train),
                                  os.fsencode(test), _lib.integer(threads, "threads")))
    return train, test
