"""load_xmc against sklearn's svmlight reader and the C writer; Dataset wrapping."""
import numpy as np
import pytest
import scipy.sparse as sp

import sparrow

LINES = [
    "3,7 0:1.5 4:2 9:0.25",
    "5 2:1",
    " 1:3 8:-1",           # no labels
    "0,1,2,9 0:0.5 3:1 4:1 6:2",
    "4 9:1e-3",
]


def write(path, lines, header=None):
    with open(path, "w") as f:
        if header:
            f.write(header + "\n")
        f.write("\n".join(lines) + "\n")


def test_load_xmc_matches_sklearn(tmp_path):
    from sklearn.datasets import load_svmlight_file
    plain = tmp_path / "plain.txt"
    write(plain, LINES)
    X, Y = sparrow.load_xmc(plain)
    Xs, ys = load_svmlight_file(str(plain), multilabel=True, zero_based=True, n_features=10)
    assert X.shape == (5, 10) and Y.shape == (5, 10)
    assert isinstance(X, sp.csr_matrix) and isinstance(Y, sp.csr_matrix)
    np.testing.assert_allclose(X.toarray(), Xs.toarray(), rtol=1e-6)
    assert [sorted(int(v) for v in r) for r in ys] == [Y.indices[Y.indptr[i]:Y.indptr[i + 1]].tolist()
                                                       for i in range(5)]
    # With the XMC header: the same matrices, widths from the header.
    xmc = tmp_path / "xmc.txt"
    write(xmc, LINES, header="5 12 11")
    X2, Y2 = sparrow.load_xmc(xmc)
    assert X2.shape == (5, 12) and Y2.shape == (5, 11)
    np.testing.assert_array_equal(X2.toarray()[:, :10], X.toarray())
    np.testing.assert_array_equal(Y2.toarray()[:, :10], Y.toarray())


def test_load_xmc_round_trips_through_c_writer(tmp_path):
    from conftest import make_xmc
    X, Y = make_xmc(200, seed=3)
    path = tmp_path / "d.txt"
    sparrow.Dataset(X, Y).write(path)
    X2, Y2 = sparrow.load_xmc(path)
    assert X2.shape == X.shape and Y2.shape == Y.shape
    np.testing.assert_allclose(X2.toarray(), X.toarray(), rtol=1e-6)
    assert (Y2 != Y).nnz == 0


def test_load_xmc_one_based(tmp_path):
    path = tmp_path / "one.txt"
    write(path, ["1 1:2 3:4", "0 2:1"])
    X, _ = sparrow.load_xmc(path, one_based=True)
    np.testing.assert_array_equal(X.toarray(), [[2, 0, 4], [0, 1, 0]])


def write_sparse_file(path, M):
    """The XMC repository's split-format writer, as pyxclib's write_sparse_file writes:
    a header "rows cols", then each row's "idx:val" pairs (an empty line for an empty row)."""
    M = sp.csr_matrix(M)
    with open(path, "w") as f:
        f.write("%d %d\n" % M.shape)
        for i in range(M.shape[0]):
            lo, hi = M.indptr[i], M.indptr[i + 1]
            f.write(" ".join("%d:%r" % (j, float(v)) for j, v in zip(M.indices[lo:hi], M.data[lo:hi])) + "\n")


def test_load_xmc_split_format(tmp_path):
    """trn_X_Xf.txt + trn_X_Y.txt read to the matrices of the single XMC file; label
    weights (here not 1) are dropped; the features file alone has no labels."""
    xmc = tmp_path / "xmc.txt"
    write(xmc, LINES, header="5 12 11")
    X, Y = sparrow.load_xmc(xmc)
    Yw = Y.copy()
    Yw.data = np.arange(1, Yw.nnz + 1, dtype=np.float32) * 0.5
    write_sparse_file(tmp_path / "trn_X_Xf.txt", X)
    write_sparse_file(tmp_path / "trn_X_Y.txt", Yw)
    X2, Y2 = sparrow.load_xmc(tmp_path / "trn_X_Xf.txt", labels=tmp_path / "trn_X_Y.txt")
    assert X2.shape == X.shape and Y2.shape == Y.shape
    assert (X2 != X).nnz == 0 and (Y2 != Y).nnz == 0
    assert sparrow.Dataset(X2, Y2).digest() == sparrow.Dataset(X, Y).digest()
    X3, Y3 = sparrow.load_xmc(tmp_path / "trn_X_Xf.txt")
    assert (X3 != X).nnz == 0 and Y3.nnz == 0
    Yw.data[0] = 0.0  # a listed label without weight is refused, by file and line
    write_sparse_file(tmp_path / "bad_Y.txt", Yw)
    with pytest.raises(sparrow.BadInputError) as e:
        sparrow.load_xmc(tmp_path / "trn_X_Xf.txt", labels=tmp_path / "bad_Y.txt")
    assert "bad_Y.txt: row 1 (line 2)" in str(e.value)


def test_load_errors_name_file_and_line(tmp_path):
    with pytest.raises(sparrow.SparrowIOError) as e:
        sparrow.load_xmc(tmp_path / "missing.txt")
    assert "missing.txt" in str(e.value)
    bad = tmp_path / "bad.txt"
    write(bad, ["1 0:1", "2 3:x"])
    with pytest.raises(sparrow.BadInputError) as e:
        sparrow.load_xmc(bad)
    assert "bad.txt:2" in str(e.value)
    with pytest.raises(ValueError):
        sparrow.load_xmc(bad, format="csv")


def test_dataset_wraps_without_copying():
    from conftest import make_xmc
    X, Y = make_xmc(50, seed=4)
    X = X.astype(np.float32)
    d = sparrow.Dataset(X, Y)
    # float32 CSR with sorted indices: the data and index arrays are used in place.
    assert d.X.data is X.data and d.X.indices.__array_interface__["data"] == X.indices.__array_interface__["data"]
    assert d._keep[2].__array_interface__["data"][0] == X.data.__array_interface__["data"][0]


def test_generate_is_the_cli_generator(tmp_path):
    import subprocess
    from conftest import ROOT
    train, test = sparrow.generate("tiny", tmp_path / "py", seed=7)
    cli = tmp_path / "cli"
    subprocess.run([f"{ROOT}/build/sparrow", "gen", "--preset", "tiny", "--out", str(cli),
                    "--seed", "7"], check=True, capture_output=True)
    assert open(train, "rb").read() == open(cli / "train.txt", "rb").read()
    assert open(test, "rb").read() == open(cli / "test.txt", "rb").read()
    with pytest.raises(sparrow.BadInputError, match="preset"):
        sparrow.generate("huge", tmp_path / "x")
    # the preset's shape at other sizes: the same bytes as gen's size options
    sizes = dict(n_train=300, n_test=40, n_features=700, n_labels=5000, labels_per_point=2.5,
                 nnz_per_point=9)
    train, test = sparrow.generate("tiny", tmp_path / "py2", seed=3, **sizes)
    subprocess.run([f"{ROOT}/build/sparrow", "gen", "--preset", "tiny", "--out", str(tmp_path / "cli2"),
                    "--seed", "3", "--train-points", "300", "--test-points", "40", "--features", "700",
                    "--labels", "5000", "--labels-per-point", "2.5", "--nnz-per-point", "9"],
                   check=True, capture_output=True)
    assert open(train, "rb").read() == open(tmp_path / "cli2" / "train.txt", "rb").read()
    assert open(test, "rb").read() == open(tmp_path / "cli2" / "test.txt", "rb").read()
    X, Y = sparrow.load_xmc(train)
    assert X.shape == (300, 700) and Y.shape == (300, 5000)
    assert 2.0 < Y.nnz / 300 < 3.0 and 6 < X.nnz / 300 < 12, (Y.nnz / 300, X.nnz / 300)
    with pytest.raises(sparrow.BadInputError, match="labels_per_point must be in"):
        sparrow.generate("tiny", tmp_path / "x", labels_per_point=0.5)
