"""sparrow.Model: training, evaluation, prediction, save/load, errors, the GIL."""
import ctypes
import io
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import scipy.sparse as sp

import sparrow
from sparrow import _lib


def test_struct_layouts_match_the_library():
    c = _lib.spr_model_config_default(10, 20)
    assert (c.n_features, c.n_layers, c.layers[0].size, c.layers[1].size) == (10, 2, 128, 20)
    assert abs(c.layers[1].sparsity - 0.01) < 1e-7 and c.layers[1].hash_l == 50
    assert c.layers[1].bucket_capacity == 128 and abs(c.layers[1].random_fraction - 0.5) < 1e-7
    assert abs(c.init_std - 0.1) < 1e-7 and c.seed == 1
    assert c.bf16_state == 0 and c.bf16_weights == 0
    # bf16_weights is the last field: the library must see what ctypes writes there
    c.bf16_weights = 2
    assert _lib.spr_model_config_check(ctypes.byref(c)) != 0
    assert b"bf16_weights must be 0 or 1, got 2" in _lib.spr_last_error()
    c.bf16_weights = 0
    c.bf16_state = 2
    assert _lib.spr_model_config_check(ctypes.byref(c)) != 0
    assert b"bf16_state must be 0 or 1, got 2" in _lib.spr_last_error()
    c.bf16_state = 0
    # simhash_one_in is a layer's last field: a wrong LayerConfig size would move layer 1
    assert c.layers[0].simhash_one_in == 0 and c.layers[1].simhash_one_in == 0  # automatic
    c.layers[1].simhash_one_in = -1
    assert _lib.spr_model_config_check(ctypes.byref(c)) != 0
    assert b"layer 1: simhash_one_in must be in [0, 1024]" in _lib.spr_last_error()
    c.layers[1].simhash_one_in = 12
    assert _lib.spr_model_config_check(ctypes.byref(c)) == 0
    o = _lib.spr_train_options_default()
    assert (o.batch_size, o.rehash_first, o.rehash_max, o.rebuild_every) == (128, 50, 1000, 10)
    assert abs(o.lr - 1e-3) < 1e-9 and abs(o.beta2 - 0.999) < 1e-7 and o.clip_norm == 0.0
    assert o.random_pool == 0 and o.lazy_adam == 0  # Adam with catch-up
    # spr_model_info's last fields: an unsharded model holds all labels, rank 0 of 1
    m = sparrow.Model(10, 37, hidden=4, sparsity=1.0)
    i = _lib.spr_model_get_info(m._h())
    assert (i.label_lo, i.labels_total, i.rank, i.ranks) == (0, 37, 0, 1), (
        i.label_lo, i.labels_total, i.rank, i.ranks)
    # spr_data_note: set through ctypes, read back through ctypes (one_based its last field)
    _lib.spr_model_set_data_note(m._h(), ctypes.byref(_lib.DataNote(5, 2 ** 64 - 3, 1)))
    n = _lib.spr_model_get_data_note(m._h())
    assert (n.points, n.digest, n.one_based) == (5, 2 ** 64 - 3, 1)


def test_bf16_state_trains_saves_and_loads(xmc_data, tmp_path):
    X, Y, Xt, Yt = xmc_data
    m = sparrow.Model(X.shape[1], Y.shape[1], hidden=32, sparsity=0.3, tables=10, seed=3,
                      bf16_state=True)
    m.fit(X, Y, epochs=2, batch_size=32, lr=5e-3, quiet=True, threads=1)
    assert _lib.spr_model_get_config(m._h()).bf16_state == 1
    path = tmp_path / "bf16.bin"
    m.save(path)
    m2 = sparrow.Model.load(path)
    assert _lib.spr_model_get_config(m2._h()).bf16_state == 1
    np.testing.assert_array_equal(m2.predict(Xt, k=5)[0], m.predict(Xt, k=5)[0])
    assert m.evaluate(Xt, Yt)["p_at_1"] > 0.5


def test_simhash_one_in_trains_saves_and_loads(xmc_data, tmp_path):
    X, Y, Xt, Yt = xmc_data
    m = sparrow.Model(X.shape[1], Y.shape[1], hidden=32, sparsity=0.3, tables=10, seed=3,
                      simhash_one_in=12)
    assert m.config["layers"][1]["simhash_one_in"] == 12
    m.fit(X, Y, epochs=2, batch_size=32, lr=5e-3, quiet=True, threads=1)
    path = tmp_path / "s12.bin"
    m.save(path)
    m2 = sparrow.Model.load(path)
    assert m2.config["layers"][1]["simhash_one_in"] == 12
    np.testing.assert_array_equal(m2.predict(Xt, k=5)[0], m.predict(Xt, k=5)[0])
    assert m.evaluate(Xt, Yt)["p_at_1"] > 0.5
    with pytest.raises(sparrow.SparrowError, match="simhash_one_in must be in"):
        sparrow.Model(X.shape[1], Y.shape[1], simhash_one_in=1025)
    # 0 (the default): sqrt(fan-in) rounded, at least 3, chosen for the sampled layer only
    for hidden, want in ((128, 11), (8, 3), (400, 20)):
        layers = sparrow.Model(X.shape[1], Y.shape[1], hidden=hidden, sparsity=0.3).config["layers"]
        assert (layers[0]["simhash_one_in"], layers[1]["simhash_one_in"]) == (0, want), (hidden, layers)


def test_bf16_weights_trains_saves_loads_and_reads(xmc_data, tmp_path):
    X, Y, Xt, Yt = xmc_data
    m = sparrow.Model(X.shape[1], Y.shape[1], hidden=32, sparsity=0.3, tables=10, seed=3,
                      bf16_weights=True)
    assert m.config["bf16_weights"] and m.config["bf16_state"]
    m.fit(X, Y, epochs=2, batch_size=32, lr=5e-3, quiet=True, threads=1)
    w = m.weights(1)
    assert w.shape == (Y.shape[1], 32) and not w.flags.writeable
    # every weight is a BF16 value: its low 16 bits are zero
    assert not (w.view(np.uint32) & 0xFFFF).any() and np.abs(w).sum() > 0
    path = tmp_path / "bf16w.bin"
    m.save(path)
    m2 = sparrow.Model.load(path)
    assert m2.config["bf16_weights"]
    np.testing.assert_array_equal(m2.weights(1), w)
    np.testing.assert_array_equal(m2.predict(Xt, k=5)[0], m.predict(Xt, k=5)[0])
    assert m.evaluate(Xt, Yt)["p_at_1"] > 0.5


def test_load_for_inference_predicts_as_the_whole_model(xmc_data, tmp_path):
    X, Y, Xt, Yt = xmc_data
    m = sparrow.Model(X.shape[1], Y.shape[1], hidden=32, sparsity=0.3, tables=8, seed=5)
    m.fit(X[:96], Y[:96], epochs=1, batch_size=32, quiet=True, threads=1)
    path = str(tmp_path / "m.spr")
    m.save(path)
    whole = sparrow.Model.load(path)
    slim = sparrow.Model.load(path, inference=True)
    tabled = sparrow.Model.load(path, inference=True, tables=True)
    ids, scores = whole.predict(Xt, k=5, threads=1)
    for other in (slim, tabled):
        i2, s2 = other.predict(Xt, k=5, threads=1)
        assert (i2 == ids).all() and (s2.view(np.uint32) == scores.view(np.uint32)).all()
        a, b = other.evaluate(Xt, Yt, threads=1), whole.evaluate(Xt, Yt, threads=1)
        a.pop("seconds"), b.pop("seconds")
        assert a == b
    i3, s3 = tabled.predict(Xt, k=5, sparse=True, threads=1)
    i4, s4 = whole.predict(Xt, k=5, sparse=True, threads=1)
    assert (i3 == i4).all() and (s3.view(np.uint32) == s4.view(np.uint32)).all()
    assert slim.info["parameter_bytes"] * 2 < whole.info["parameter_bytes"]
    assert slim.info["table_bytes"] == 0 < tabled.info["table_bytes"]
    with pytest.raises(sparrow.BadInputError, match="LSH tables"):
        slim.predict(Xt, k=5, sparse=True)
    with pytest.raises(sparrow.BadInputError, match="loaded for inference"):
        slim.fit(X[:32], Y[:32], epochs=1, batch_size=32, quiet=True)
    with pytest.raises(sparrow.BadInputError, match="loaded for inference"):
        tabled.save(str(tmp_path / "again.spr"))
    assert not os.path.exists(str(tmp_path / "again.spr"))
    sparrow.Model.verify(path)
    with open(path, "r+b") as f:  # one byte of the weights' payload
        f.seek(os.path.getsize(path) // 3)
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ 0x40]))
    with pytest.raises(sparrow.BadInputError, match="checksum mismatch"):
        sparrow.Model.verify(path)


def test_fit_evaluate_predict_save_load(xmc_data, tmp_path):
    X, Y, Xt, Yt = xmc_data
    m = sparrow.Model(X.shape[1], Y.shape[1], hidden=64, sparsity=0.3, tables=10, seed=3)
    seen = []
    hist = m.fit(X, Y, epochs=4, batch_size=32, lr=5e-3, validation_data=(Xt, Yt),
                 callbacks=[seen.append], quiet=True, threads=1)
    assert len(hist) == 4 and seen == hist
    for key in ("epoch", "step", "train_seconds", "samples_per_second", "loss", "p_at_1",
                "p_at_3", "p_at_5", "ndcg_at_1", "ndcg_at_3", "ndcg_at_5", "active_out"):
        assert key in hist[-1], key
    assert hist[-1]["loss"] < hist[0]["loss"], (hist[0]["loss"], hist[-1]["loss"])
    assert hist[-1]["step"] == 4 * 32 and m.info["epoch"] == 4
    res = m.evaluate(Xt, Yt, k=(1, 3, 5))
    assert res["p_at_1"] > 0.6, res  # 20 labels, 1-3 per point: chance is ~0.1
    ids, scores = m.predict(Xt, k=5)
    assert ids.shape == (200, 5) and ids.dtype == np.int32 and scores.dtype == np.float32
    assert (np.diff(scores, axis=1) <= 0).all()
    # P@1 from predict agrees with evaluate
    hits = [ids[i, 0] in Yt.indices[Yt.indptr[i]:Yt.indptr[i + 1]] for i in range(200)]
    assert abs(np.mean(hits) - res["p_at_1"]) < 1e-9
    # nDCG@k against scikit-learn's ndcg_score on the same ranking: predict's top 5 get
    # the scores 5..1, every other label 0 (no ties within the top k <= 5)
    from sklearn.metrics import ndcg_score
    ranked = np.zeros((200, Yt.shape[1]))
    for r in range(5):
        ranked[np.arange(200), ids[:, r]] = 5 - r
    truth = Yt.toarray()
    for q in (1, 3, 5):
        want = ndcg_score(truth, ranked, k=q)
        assert abs(res["ndcg_at_%d" % q] - want) < 1e-9, (q, res["ndcg_at_%d" % q], want)
    assert res["ndcg_at_1"] == res["p_at_1"]
    # PSP@k and the propensities against the XMC repository's formulas, written out here
    A, B = 0.6, 2.6
    counts = np.diff(Y.tocsc().indptr)  # training points per label
    C = (np.log(Y.shape[0]) - 1) * (B + 1) ** A
    w = sparrow.inv_propensities(Y, a=A, b=B)
    np.testing.assert_allclose(w, 1 + C * (counts + B) ** -A, rtol=1e-12)
    # n_labels above Y's columns: the array has n_labels weights (it had Y's columns only)
    w2 = sparrow.inv_propensities(Y[:, :Y.shape[1] - 2], a=A, b=B, n_labels=Y.shape[1])
    assert w2.shape == (Y.shape[1],)
    np.testing.assert_allclose(w2[-2:], 1 + C * B ** -A, rtol=1e-12)
    with pytest.raises(sparrow.BadInputError, match="too large for a double"):  # was NaN weights
        sparrow.inv_propensities(Y, a=2000, b=1, n_labels=Y.shape[1] + 1)  # a label never seen
    res_ps = m.evaluate(Xt, Yt, inv_propensity=w)
    assert res_ps["p_at_5"] == res["p_at_5"]
    for q in (1, 3, 5):
        num = den = 0.0
        for i in range(200):
            labels = set(Yt.indices[Yt.indptr[i]:Yt.indptr[i + 1]].tolist())
            num += sum(w[l] for l in ids[i, :q] if l in labels)
            den += sum(sorted((w[l] for l in labels), reverse=True)[:q])
        assert abs(res_ps["psp_at_%d" % q] - num / den) < 1e-9, (q, res_ps, num / den)
    # PSnDCG@k (pyxclib's psndcg, written out): the mean over the points of the w-weighted
    # DCG@k of the ranking over the binary IDCG@k, over the same mean for each point's
    # labels ranked by w; points without labels add nothing
    gain = 1 / np.log2(np.arange(2, 7))
    for q in (1, 3, 5):
        num = den = 0.0
        for i in range(200):
            labels = set(Yt.indices[Yt.indptr[i]:Yt.indptr[i + 1]].tolist())
            if not labels:
                continue
            idcg = gain[:min(q, len(labels))].sum()
            num += sum(w[l] * gain[r] for r, l in enumerate(ids[i, :q]) if l in labels) / idcg
            best = sorted((w[l] for l in labels), reverse=True)[:q]
            den += sum(b * gain[r] for r, b in enumerate(best)) / idcg
        assert abs(res_ps["psndcg_at_%d" % q] - num / den) < 1e-9, (q, res_ps, num / den)
    assert res_ps["psndcg_at_1"] == pytest.approx(res_ps["psp_at_1"], abs=1e-12)
    with pytest.raises(ValueError, match="propensities"):
        m.evaluate(Xt, Yt, inv_propensity=w[:5])
    with pytest.raises(ValueError, match="must be 1-D"):
        m.evaluate(Xt, Yt, inv_propensity=w.reshape(-1, 1))
    w[3] = np.nan
    with pytest.raises(ValueError, match="label 3 must be finite and > 0"):
        m.evaluate(Xt, Yt, inv_propensity=w)
    path = tmp_path / "model.bin"
    m.save(path)
    m2 = sparrow.Model.load(path)
    ids2, scores2 = m2.predict(Xt, k=5)
    np.testing.assert_array_equal(ids2, ids)
    np.testing.assert_array_equal(scores2, scores)
    assert m2.info["steps"] == m.info["steps"]
    # dense numpy input gives the same predictions as CSR
    ids3, _ = m.predict(Xt.toarray(), k=5)
    np.testing.assert_array_equal(ids3, ids)
    # sparse inference runs and ranks real labels
    ids4, _ = m.predict(Xt, k=3, sparse=True)
    assert ids4.shape == (200, 3)


def test_evaluate_k_above_5(xmc_data, monkeypatch):
    """k > 5 (the library evaluates 1..5; the CLI's --k K re-predicts): rank_metrics on
    predict's top k, equal to the library's figures at k 1..5 (P@k, nDCG@k, PSP@k,
    PSnDCG@k), and at k 10 and 25 (past the 20 labels) to the definitions written out."""
    X, Y, Xt, Yt = xmc_data
    m = sparrow.Model(X.shape[1], Y.shape[1], hidden=32, sparsity=0.5, seed=3)
    m.fit(X, Y, epochs=2, batch_size=32, quiet=True, threads=1)
    w = sparrow.inv_propensities(Y)
    lib = m.evaluate(Xt, Yt, k=(1, 2, 3, 4, 5), inv_propensity=w)
    ids, _ = m.predict(Xt, k=5)
    ours = sparrow.model.rank_metrics(ids, Yt, (1, 2, 3, 4, 5), w)
    for name, value in ours.items():
        assert value == pytest.approx(lib[name], abs=1e-12), (name, value, lib[name])
    res = m.evaluate(Xt, Yt, k=(1, 10, 25), inv_propensity=w)
    assert res["p_at_1"] == lib["p_at_1"] and "p_at_5" not in res
    full, _ = m.predict(Xt, k=20)
    gain = 1 / np.log2(np.arange(2, 27))
    for q in (10, 25):
        p = nd = num = den = nd_num = nd_den = 0.0
        for i in range(Xt.shape[0]):
            labels = set(Yt.indices[Yt.indptr[i]:Yt.indptr[i + 1]].tolist())
            top = full[i, :q].tolist()
            p += sum(l in labels for l in top) / q
            best = sorted((w[l] for l in labels), reverse=True)[:q]
            num += sum(w[l] for l in top if l in labels)
            den += sum(best)
            if labels:
                idcg = gain[:min(q, len(labels))].sum()
                nd += sum(gain[r] for r, l in enumerate(top) if l in labels) / idcg
                nd_num += sum(w[l] * gain[r] for r, l in enumerate(top) if l in labels) / idcg
                nd_den += sum(b * gain[r] for r, b in enumerate(best)) / idcg
        n = Xt.shape[0]
        assert res["p_at_%d" % q] == pytest.approx(p / n, abs=1e-12)
        assert res["ndcg_at_%d" % q] == pytest.approx(nd / n, abs=1e-12)
        assert res["psp_at_%d" % q] == pytest.approx(num / den, abs=1e-12)
        assert res["psndcg_at_%d" % q] == pytest.approx(nd_num / nd_den, abs=1e-12)
    # past the 20 labels every true label is among the predictions: P@25 is |labels| / 25
    assert res["p_at_25"] == pytest.approx(np.diff(Yt.indptr).mean() / 25, abs=1e-12)
    # a chunk of points at a time (4096 in use; 64 here: 200 points in 4 chunks): the same
    monkeypatch.setattr(sparrow.model, "_EVAL_CHUNK", 64)
    chunked = m.evaluate(Xt, Yt, k=(1, 10, 25), inv_propensity=w)
    for name in res:
        if name != "seconds":
            assert chunked[name] == pytest.approx(res[name], abs=1e-12), name


def test_peek_is_the_loaded_info(xmc_data, tmp_path):
    """Model.peek: the loaded model's info (and sizes) from the small sections alone; a
    damaged weight is not read by peek, load still refuses it."""
    X, Y, _, _ = xmc_data
    m = sparrow.Model(X.shape[1], Y.shape[1], hidden=[16, 8], sparsity=0.5, seed=2, bf16_state=True)
    m.fit(X, Y, max_batches=3, quiet=True)
    path = tmp_path / "m.spr"
    m.save(path)
    want = dict(sparrow.Model.load(path).info, n_features=X.shape[1], n_labels=Y.shape[1], hidden=[16, 8],
                shards=0)
    assert sparrow.Model.peek(path) == want and want["training_set"]["points"] == X.shape[0]
    b = bytearray(path.read_bytes())
    b[len(b) // 2] ^= 0xFF
    path.write_bytes(bytes(b))
    assert sparrow.Model.peek(path)["steps"] == 3
    with pytest.raises(sparrow.BadInputError, match="checksum mismatch"):
        sparrow.Model.load(path)
    with pytest.raises(sparrow.SparrowIOError, match="cannot open"):
        sparrow.Model.peek(tmp_path / "missing.spr")


def test_settle_takes_the_owed_steps(xmc_data, tmp_path):
    """A model saved inside an epoch keeps its rows as they are and the Adam options they
    owe steps at: settle() takes them (the in-memory model's and the loaded file's alike,
    bit for bit), evaluate() and predict() settle first; lazy Adam owes nothing."""
    X, Y, Xt, Yt = xmc_data
    kw = dict(batch_size=64, threads=1, quiet=True, max_batches=3, lr=0.01, beta2=0.99)
    m = sparrow.Model(X.shape[1], Y.shape[1], hidden=16, sparsity=0.25, seed=3)
    m.fit(X, Y, **kw)
    path = tmp_path / "m.spr"
    m.save(path)
    a = sparrow.Model.load(path)
    stale = a.weights(0).copy()  # feature rows: 20 labels are all stepped every batch
    a.evaluate(Xt, Yt, threads=1)
    assert not np.array_equal(a.weights(0), stale)  # evaluate settled: rows moved
    b = sparrow.Model.load(path)
    b.predict(Xt[:5], threads=1)
    m.settle(threads=1)
    for layer in (0, 1):
        assert np.array_equal(b.weights(layer), a.weights(layer))
        assert np.array_equal(m.weights(layer), a.weights(layer))
    lazy = sparrow.Model(X.shape[1], Y.shape[1], hidden=16, sparsity=0.25, seed=3)
    lazy.fit(X, Y, lazy_adam=True, **kw)
    before = lazy.weights(0).copy()
    lazy.settle()
    assert np.array_equal(lazy.weights(0), before)


def test_fit_validation_after_a_stop_scores_the_settled_model(xmc_data):
    """fit's validation after a stop inside an epoch reads the rows that owe Adam steps as
    settle() leaves them, without writing them (spr_settled): the metrics are evaluate()'s
    after a settle, and the next fit continues byte for byte as one never validated."""
    X, Y, Xt, Yt = xmc_data
    kw = dict(batch_size=64, threads=1, quiet=True, lr=0.01, beta2=0.99)

    def model():
        return sparrow.Model(X.shape[1], Y.shape[1], hidden=16, sparsity=0.25, seed=3)

    m = model()
    hist = m.fit(X, Y, max_batches=3, validation_data=(Xt, Yt), **kw)
    plain = model()
    plain.fit(X, Y, max_batches=3, **kw)
    assert plain.to_bytes() == m.to_bytes()  # validating wrote nothing
    r = sparrow.Model.from_bytes(plain.to_bytes()).evaluate(Xt, Yt, threads=1)  # settles
    keys = [k for k in r if k.startswith(("p_at_", "ndcg_at_"))]
    assert len(keys) >= 6
    assert {k: hist[-1][k] for k in keys} == {k: r[k] for k in keys}
    m.fit(X, Y, **kw)
    plain.fit(X, Y, **kw)
    assert m.to_bytes() == plain.to_bytes()


def test_fit_continues_epochs_and_callback_stops(xmc_data):
    X, Y, _, _ = xmc_data
    m = sparrow.Model(X.shape[1], Y.shape[1], hidden=16, sparsity=0.5, tables=4)
    m.fit(X, Y, epochs=1, quiet=True)
    hist = m.fit(X, Y, epochs=3, quiet=True, callbacks=[lambda metrics: metrics["epoch"] == 2])
    assert [h["epoch"] for h in hist] == [1, 2]


def test_fit_continues_an_epoch_it_stopped_inside(xmc_data, monkeypatch):
    """A fit stopped inside an epoch (max_batches, KeyboardInterrupt) is continued by
    the next fit on the same data after the done batches: the model is byte for byte the
    one an uninterrupted fit makes. Other data or batch size start the epoch again."""
    import pickle
    X, Y, _, _ = xmc_data
    kw = dict(batch_size=128, threads=1, quiet=True)

    def model():
        return sparrow.Model(X.shape[1], Y.shape[1], hidden=16, sparsity=0.5, tables=4, seed=5)

    whole = model()
    whole.fit(X, Y, epochs=2, **kw)
    per_epoch = whole.info["steps"] // 2
    assert per_epoch == 8

    m = model()
    hist = m.fit(X, Y, epochs=2, max_batches=3, **kw)
    assert [(h["epoch"], h["partial_epoch"], h["step"]) for h in hist] == [(1, True, 3)]
    m.fit(X, Y, epochs=1, max_batches=2, **kw)
    hist = m.fit(X, Y, epochs=2, **kw)
    assert [(h["epoch"], h["partial_epoch"], h["step"]) for h in hist[2:]] == [(1, False, 8),
                                                                               (2, False, 16)]
    assert m.to_bytes() == whole.to_bytes()

    # KeyboardInterrupt after the 3rd batch: the batches done are counted from the steps.
    real, calls = _lib.spr_model_train_batch, []

    def interrupted(*args):
        status = real(*args)
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return status

    m = model()
    monkeypatch.setattr(_lib, "spr_model_train_batch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        m.fit(X, Y, epochs=2, **kw)
    monkeypatch.setattr(_lib, "spr_model_train_batch", real)
    assert m.info["steps"] == 3 and m.info["epoch"] == 0
    m = pickle.loads(pickle.dumps(m))  # a copy keeps the place too
    m.fit(X, Y, epochs=2, **kw)
    assert m.to_bytes() == whole.to_bytes()

    # max_batches reached at an epoch's end: the epoch counts, no empty entry after it
    m = model()
    hist = m.fit(X, Y, epochs=2, max_batches=per_epoch, **kw)
    assert [(h["epoch"], h["partial_epoch"]) for h in hist] == [(1, False)]
    assert m.info["epoch"] == 1

    # Another batch size goes on at the row where the first fit stopped.
    m = model()
    m.fit(X, Y, max_batches=3, **kw)
    hist = m.fit(X, Y, epochs=1, **dict(kw, batch_size=100))
    n = X.shape[0]
    assert m.info["samples"] == n and m.info["epoch"] == 1
    assert m.info["steps"] == 3 + -(-(n - 3 * 128) // 100) and not hist[-1]["partial_epoch"]

    # Other data (same shape), no shuffle: the epoch starts again.
    others = [(X[::-1], Y[::-1], kw), (X, Y, dict(kw, shuffle=False))]
    for Xo, Yo, kwo in others:
        m = model()
        m.fit(X, Y, max_batches=3, **kw)
        m.fit(Xo, Yo, epochs=1, **kwo)
        per = -(-X.shape[0] // kwo["batch_size"])
        assert m.info["steps"] == 3 + per and m.info["epoch"] == 1
    # ... and after load() (the model file has no batch size)
    m = model()
    m.fit(X, Y, max_batches=3, **kw)
    m = sparrow.Model.from_bytes(m.to_bytes())
    m.fit(X, Y, epochs=1, **kw)
    assert m.info["steps"] == 3 + per_epoch


def test_fit_save_every_and_resume(xmc_data, tmp_path):
    """save_every saves mid-run (steps or a time); a model loaded from such a save and
    fit with resume=True ends byte for byte as the uninterrupted fit (the kill-and-resume
    workflow of `sparrow train --save-every` / `--resume`)."""
    X, Y, _, _ = xmc_data
    kw = dict(batch_size=128, threads=1, quiet=True)
    path = str(tmp_path / "se.spr")

    def model():
        return sparrow.Model(X.shape[1], Y.shape[1], hidden=16, sparsity=0.5, tables=4, seed=5)

    whole = model()
    whole.fit(X, Y, epochs=2, **kw)
    m = model()  # "killed" after step 7: the file holds step 5
    m.fit(X, Y, epochs=2, max_batches=7, save_every=5, save_path=path, **kw)
    back = sparrow.Model.load(path)
    assert (back.info["steps"], back.info["samples"], back.info["epoch"]) == (5, 640, 0)
    back.fit(X, Y, epochs=2, resume=True, **kw)
    assert back.to_bytes() == whole.to_bytes()
    # trained at lr 0.01: resumed without lr, it continues at the model's (info["adam"])
    fast = model()
    fast.fit(X, Y, epochs=2, lr=0.01, **kw)
    model().fit(X, Y, epochs=2, lr=0.01, max_batches=7, save_every=5, save_path=path, **kw)
    back = sparrow.Model.load(path)
    assert back.info["adam"] == pytest.approx({"lr": 0.01, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8})
    back.fit(X, Y, epochs=2, resume=True, **kw)
    assert back.to_bytes() == fast.to_bytes()
    # at an epoch's last batch the save comes after the epoch is counted
    m = model()
    m.fit(X, Y, epochs=2, max_batches=12, save_every=8, save_path=path, **kw)
    assert (sparrow.Model.load(path).info["steps"], sparrow.Model.load(path).info["epoch"]) == (8, 1)
    # a time: saves about every batch, and saving changes nothing in the training
    m = model()
    os.unlink(path)
    m.fit(X, Y, epochs=2, save_every="0.0001s", save_path=path, **kw)
    assert m.to_bytes() == whole.to_bytes() and sparrow.Model.load(path).info["steps"] >= 1
    # refused before any training
    for bad in ("0m", "-1s", "1.5x", "s", "1e999h", 0, 2.5):
        with pytest.raises(ValueError, match="save_every"):
            m.fit(X, Y, save_every=bad, save_path=path, **kw)
    with pytest.raises(ValueError, match="save_every needs save_path"):
        m.fit(X, Y, save_every=5, **kw)
    fresh = model()
    with pytest.raises(sparrow.SparrowIOError, match="not a regular file"):
        fresh.fit(X, Y, save_every=5, save_path=str(tmp_path), **kw)
    assert fresh.info["steps"] == 0
    # resume=True with other data: the model's note of its training set (points and
    # digest) refuses it, whatever its size (a set of the same size was trained on)
    m = model()
    m.fit(X, Y, max_batches=5, save_every=5, save_path=path, **kw)
    note = sparrow.Model.load(path).info["training_set"]
    assert note == {"points": X.shape[0], "digest": sparrow.Dataset(X, Y).digest(), "one_based": False}
    with pytest.raises(ValueError, match=r"X is not the data the model was trained on \(100 points"):
        sparrow.Model.load(path).fit(X[:100], Y[:100], resume=True, **kw)
    X2 = X.copy()
    X2.data[0] += 1.0
    with pytest.raises(ValueError, match="X is not the data the model was trained on"):
        sparrow.Model.load(path).fit(X2, Y, resume=True, **kw)
    # a model without a note (saved before notes) is checked by its sample count alone
    older = model()
    older.fit(X, Y, max_batches=5, **kw)
    sparrow._lib.spr_model_set_data_note(older._h(), None)
    assert older.info["training_set"] is None
    with pytest.raises(ValueError, match="640 samples after 0 complete epochs do not fit the 100 points"):
        older.fit(X[:100], Y[:100], resume=True, **kw)


def test_fit_is_the_cli_train(tmp_path):
    """fit and `sparrow train` with the same options (one thread) write the very same model
    file: one epoch order (spr_epoch_order; fit shuffled with numpy before session 18), so
    a run saved inside an epoch by one continues exactly in the other, and fit's eval_max
    takes the CLI's --eval-max points (spr_eval_subset)."""
    import subprocess
    from conftest import ROOT
    cli = f"{ROOT}/build/sparrow"
    train, test = sparrow.generate("tiny", tmp_path / "d", seed=4)
    opts = ["--train", str(train), "--threads", "1", "--batch", "64", "--quiet"]
    subprocess.run([cli, "train", *opts, "--epochs", "2", "--save", str(tmp_path / "cli.spr")],
                   check=True, capture_output=True)
    subprocess.run([cli, "train", *opts, "--epochs", "2", "--max-batches", "5",
                    "--save", str(tmp_path / "cli5.spr")], check=True, capture_output=True)
    X, Y = sparrow.load_xmc(train)
    Xt, Yt = sparrow.load_xmc(test, n_features=X.shape[1], n_labels=Y.shape[1])
    kw = dict(batch_size=64, threads=1, quiet=True)
    m = sparrow.Model(X.shape[1], Y.shape[1])
    hist = m.fit(X, Y, epochs=2, validation_data=(Xt, Yt), eval_max=100, **kw)
    assert m.to_bytes() == open(tmp_path / "cli.spr", "rb").read()
    back = sparrow.Model.load(tmp_path / "cli5.spr")  # the CLI's save inside epoch 1
    back.fit(X, Y, epochs=2, resume=True, **kw)
    assert back.to_bytes() == open(tmp_path / "cli.spr", "rb").read()
    # lazy_adam is --lazy-adam (lazy_adam is spr_train_options' last field: ctypes must
    # put it where the library reads it), and another model than the default's
    subprocess.run([cli, "train", *opts, "--epochs", "2", "--lazy-adam", "--save", str(tmp_path / "lazy.spr")],
                   check=True, capture_output=True)
    lazy = sparrow.Model(X.shape[1], Y.shape[1])
    lazy.fit(X, Y, epochs=2, lazy_adam=True, **kw)
    assert lazy.to_bytes() == open(tmp_path / "lazy.spr", "rb").read()
    assert lazy.to_bytes() != m.to_bytes()
    # Both take Adam's owed steps at a complete epoch's end (spr_model_catch_up): after
    # one nothing is owed; a run stopped inside an epoch still owes steps.
    def owes(model):
        before = model.to_bytes()
        o = _lib.spr_train_options_default()
        o.threads = 1
        assert _lib.spr_model_catch_up(model._h(), ctypes.byref(o)) == 0
        return model.to_bytes() != before
    assert not owes(m) and not owes(sparrow.Model.load(tmp_path / "cli.spr"))
    assert owes(sparrow.Model.load(tmp_path / "cli5.spr"))
    out = subprocess.run([cli, "eval", "--model", str(tmp_path / "cli.spr"), "--test", str(test),
                          "--eval-max", "100", "--threads", "1"], check=True, capture_output=True,
                         text=True).stdout
    import json
    assert json.loads(out.strip().splitlines()[-1])["p_at_1"] == pytest.approx(hist[-1]["p_at_1"], abs=1e-9)
    assert hist[-1]["eval_points"] == 100
    # a CLI model of a one-based file, continued by fit on the same points (arrays are
    # zero-based): its record keeps the file's base, so `sparrow eval` of that file
    # still reads it as one-based (fit recorded 0: every id shifted, no error)
    lines = open(train).read().splitlines()
    shifted = [lines[0]] + [" ".join([ln.split(" ")[0]] + ["%d:%s" % (int(f) + 1, v) for f, v in
                                                             (t.split(":") for t in ln.split(" ")[1:])])
                            for ln in lines[1:]]
    one = tmp_path / "one.txt"
    one.write_text("\n".join(shifted) + "\n")
    subprocess.run([cli, "train", "--train", str(one), "--one-based", "--threads", "1", "--batch", "64",
                    "--max-batches", "3", "--quiet", "--save", str(tmp_path / "one.spr")], check=True,
                   capture_output=True)
    X1, Y1 = sparrow.load_xmc(one, one_based=True)
    assert (X1 != X).nnz == 0
    cont = sparrow.Model.load(tmp_path / "one.spr")
    cont.fit(X1, Y1, epochs=1, resume=True, max_batches=2, **kw)
    assert cont.info["training_set"]["one_based"] is True
    other = sparrow.Model(X.shape[1], Y.shape[1])
    other.fit(X1[:100], Y1[:100], max_batches=1, **kw)
    assert other.info["training_set"]["one_based"] is False
    # a fresh model fit on the one-based file as load_xmc read it records that base too:
    # `sparrow eval` of the file reads it one-based unasked (recorded 0, it refused
    # feature id D, or, where the last feature never occurs, shifted every id silently)
    fresh = sparrow.Model(X.shape[1], Y.shape[1])
    fresh.fit(X1, Y1, epochs=1, **kw)
    assert fresh.info["training_set"]["one_based"] is True
    fresh.save(tmp_path / "fresh.spr")
    ev = [subprocess.run([cli, "eval", "--model", str(tmp_path / "fresh.spr"), "--test", str(one), "--threads", "1",
                          *flag], capture_output=True, text=True) for flag in ([], ["--one-based"])]
    assert ev[0].returncode == 0, ev[0].stderr
    assert "zero-based" not in ev[0].stderr and "zero-based" not in ev[1].stderr
    assert json.loads(ev[0].stdout.splitlines()[-1])["p_at_1"] == json.loads(ev[1].stdout.splitlines()[-1])["p_at_1"]


def test_labels_as_ids_and_lists(xmc_data):
    X, _, _, _ = xmc_data
    m = sparrow.Model(X.shape[1], 5, hidden=8, sparsity=1.0)
    y = np.arange(X.shape[0]) % 5
    m.fit(X, y, epochs=1, quiet=True)
    m.fit(X, [[int(v)] for v in y], epochs=1, quiet=True)


def test_validation_on_the_training_data_is_noted(xmc_data, capsys):
    X, Y, Xt, Yt = xmc_data
    m = sparrow.Model(X.shape[1], Y.shape[1], hidden=8)
    m.fit(X, Y, max_batches=1, validation_data=(X, Y))
    assert "note: validation_data is the training data" in capsys.readouterr().err
    m.fit(X, Y, max_batches=1, validation_data=(Xt, Yt))
    assert "note: validation_data" not in capsys.readouterr().err
    m.fit(X, Y, max_batches=1, validation_data=(X, Y), quiet=True)
    assert capsys.readouterr().err == ""


def test_progress_lines_when_not_a_tty(xmc_data, capsys):
    X, Y, _, _ = xmc_data
    m = sparrow.Model(X.shape[1], Y.shape[1], hidden=8, sparsity=1.0)
    m.fit(X, Y, epochs=1)
    err = capsys.readouterr().err
    assert "epoch 1: step 8, loss" in err and "\r" not in err
    m.fit(X, Y, epochs=1, quiet=True)
    assert capsys.readouterr().err == ""


def test_bad_arguments_raise(xmc_data, tmp_path):
    X, Y, _, _ = xmc_data
    m = sparrow.Model(X.shape[1], Y.shape[1], hidden=8, sparsity=1.0)
    with pytest.raises(ValueError, match="features"):  # wrong shape
        m.predict(sp.random(3, X.shape[1] + 5, density=0.1, format="csr"))
    with pytest.raises(ValueError, match="2-D"):
        m.predict(np.zeros(X.shape[1]))
    with pytest.raises(TypeError, match="dtype"):
        m.predict(np.array([["a"] * X.shape[1]]))
    with pytest.raises(ValueError, match="out of range"):
        m.fit(X, np.full(X.shape[0], Y.shape[1] + 3), quiet=True)
    with pytest.raises(ValueError, match="points"):
        m.fit(X, Y[:10], quiet=True)
    # widths: a sparse X wider than the model is refused; narrower is an svmlight file's
    # largest id (accepted); a dense X of another width is another feature space (it
    # was accepted narrower, every column read as the model's first ones)
    with pytest.raises(ValueError, match="X has %d features, the model %d" % (X.shape[1] + 1, X.shape[1])):
        m.predict(sp.hstack([X, X[:, :1]]).tocsr())
    assert m.predict(X[:, :X.shape[1] - 1])[0].shape == (X.shape[0], 5)
    for width in (X.shape[1] - 1, X.shape[1] + 1):
        with pytest.raises(ValueError, match="X has %d columns, the model %d features: a dense X"
                           % (width, X.shape[1])):
            m.predict(np.zeros((3, width), dtype=np.float32))
    # A column of label ids (y.reshape(-1, 1), a DataFrame's df[["label"]]) was taken as
    # a one-column label matrix: every point with an id above 0 trained toward label 0.
    ids = np.arange(X.shape[0]) % Y.shape[1]
    for column in (ids.reshape(-1, 1), sp.csr_matrix(ids.reshape(-1, 1)),
                   (ids.reshape(-1, 1) == 1).astype(np.int64)):
        with pytest.raises(ValueError, match=r"a column of label ids\? Pass them 1-D"):
            m.fit(X, column, quiet=True)
        with pytest.raises(ValueError, match="a column of label ids"):
            m.evaluate(X, column)
    with pytest.raises(ValueError, match="a column of label ids"):
        sparrow.Dataset(X, ids.reshape(-1, 1))
    one = sparrow.Model(X.shape[1], 1, hidden=4, sparsity=1.0)  # one label: a 0/1 column is fine
    one.fit(X, (ids.reshape(-1, 1) == 1).astype(np.int64), quiet=True)
    # bool features (a binary bag of words) are 0/1 numbers, like bool labels
    m.fit(X.toarray() > 0, Y, max_batches=1, quiet=True)
    with pytest.raises(ValueError, match="k must"):
        m.predict(X, k=0)
    for bad_k in (0, 1001):
        with pytest.raises(ValueError, match="k must"):
            m.evaluate(X, Y, k=bad_k)
    # a label matrix's values: a stored 0 is no label, a -1 (a +-1 encoding) or a weight
    # is refused where it is (every nonzero, -1 included, was once taken as a label)
    Ypm = np.where(Y[:20].toarray() > 0, 1, -1)
    with pytest.raises(ValueError, match="got -1 at point 0, label 0"):
        m.fit(X[:20], Ypm, quiet=True)
    Yw = Y[:20].astype(np.float32)
    Yw.data[3] = 0.5
    with pytest.raises(ValueError, match="got 0.5 at point"):
        m.evaluate(X[:20], Yw)
    Yz = Y[:20].astype(np.float32)
    Yz.data[:] = 0.0  # all stored zeros: no labels at all
    assert sparrow.data.as_labels(Yz, 20).nnz == 0 and Yz.nnz == Y[:20].nnz
    # no points: refused, not P@k = 0.0 (as the tool refuses an empty test file)
    with pytest.raises(ValueError, match="no test points"):
        m.evaluate(X[:0], Y[:0])
    with pytest.raises(ValueError, match="validation_data has no points"):
        m.fit(X, Y, validation_data=(X[:0], Y[:0]), quiet=True)
    with pytest.raises(ValueError, match="no training points"):
        m.fit(X[:0], Y[:0], quiet=True)
    # points, but not one label: it "trained" to loss 0, and P@k read 0.0
    Y0 = sp.csr_matrix(Y[:20].shape, dtype=np.float32)
    with pytest.raises(ValueError, match="none of the 20 training points has a label"):
        m.fit(X[:20], Y0, quiet=True)
    with pytest.raises(ValueError, match="none of the 20 test points has a label"):
        m.evaluate(X[:20], Y0)
    with pytest.raises(ValueError, match="validation_data: none of its 20 points has a label"):
        m.fit(X, Y, validation_data=(X[:20], Y0), quiet=True)
    with pytest.raises(ValueError, match="batch_size"):
        m.fit(X, Y, batch_size=0, quiet=True)
    # Paths as bytes and PathLike name the file itself (str(b"x") made "b'x'"); damaged
    # bytes are reported as such, not as a temporary file the caller never saw.
    m.save(os.fsencode(str(tmp_path / "bytes.spr")))
    assert sparrow.Model.load(os.fsencode(str(tmp_path / "bytes.spr"))).n_labels == m.n_labels
    assert sparrow.Model.load(tmp_path / "bytes.spr").n_labels == m.n_labels
    with pytest.raises(sparrow.BadInputError, match="^the model bytes: not a sparrow model file"):
        sparrow.Model.from_bytes(b"junk")
    with pytest.raises(ValueError, match="^seed must be an integer, got 1.5"):
        sparrow.generate("tiny", str(tmp_path / "g"), seed=1.5)
    # Integer arguments that are not integers are refused by name (int() truncated
    # epochs=1.5 to one epoch and hidden=(16.9,) to 16 without a word); 1e2 is 100.
    steps = m.info["steps"]
    for call, name in ((lambda: m.fit(X, Y, epochs=1.5, quiet=True), "epochs"),
                       (lambda: m.fit(X, Y, batch_size=64.5, quiet=True), "batch_size"),
                       (lambda: m.fit(X, Y, threads="2", quiet=True), "threads"),
                       (lambda: m.predict(X, k=2.5), "k"),
                       (lambda: m.evaluate(X, Y, k=(1, 2.5)), "k"),
                       (lambda: m.weights(0.5), "layer"),
                       (lambda: m.fit(X[:2], [[0], [1.5]], quiet=True), "a label id"),
                       (lambda: sparrow.Model(X.shape[1], Y.shape[1], hidden=(16.9,)), "hidden"),
                       (lambda: sparrow.Model(X.shape[1], Y.shape[1], tables=7.5), "tables"),
                       (lambda: sparrow.Model(X.shape[1] + 0.5, Y.shape[1]), "n_features"),
                       (lambda: sparrow.Model(X.shape[1], Y.shape[1], seed=float("nan")), "seed")):
        with pytest.raises(ValueError, match="^%s must be an integer, got" % name):
            call()
    assert m.info["steps"] == steps, "a refused fit trained"
    layers = sparrow.Model(X.shape[1], Y.shape[1], hidden=(16.0,), tables=1e1).config["layers"]
    assert layers[0]["size"] == 16 and layers[1]["tables"] == 10
    # A batch larger than the data is the data (not scratch for 2**31 - 1 points).
    a = sparrow.Model(X.shape[1], Y.shape[1], hidden=8, sparsity=0.5, seed=5)
    b = sparrow.Model(X.shape[1], Y.shape[1], hidden=8, sparsity=0.5, seed=5)
    a.fit(X, Y, batch_size=2**31 - 1, threads=1, quiet=True)
    b.fit(X, Y, batch_size=X.shape[0], threads=1, quiet=True)
    assert a.to_bytes() == b.to_bytes()
    a.close(), b.close()
    for kwargs in (dict(epochs=0), dict(epochs=-1), dict(max_batches=0), dict(eval_max=0)):
        with pytest.raises(ValueError, match=list(kwargs)[0]):  # used to train nothing silently
            m.fit(X, Y, quiet=True, validation_data=(X, Y), **kwargs)
    with pytest.raises(sparrow.BadInputError, match="Adam"):  # the C check's message
        m.fit(X, Y, lr=-1.0, quiet=True)
    with pytest.raises(sparrow.BadInputError, match="sparse inference"):
        m.predict(X, sparse=True)
    with pytest.raises(ValueError, match="unknown hash"):
        sparrow.Model(10, 10, hash="md5")
    with pytest.raises(sparrow.BadInputError, match="sparsity"):
        sparrow.Model(10, 10, sparsity=1.5)
    with pytest.raises(MemoryError):
        sparrow.Model(10, 10**6, max_memory=1000)
    # What a C type cannot hold is refused, not wrapped or rounded (ctypes does either
    # without a word: 2**32 + 5 tables became 5, 2**64 + 50 features 50).
    for kwargs, name in [(dict(tables=2**32 + 5), "tables"), (dict(bits=-2**31 - 1), "bits"),
                         (dict(hidden=(2**64 + 16,)), "layer size"), (dict(seed=-1), "seed"),
                         (dict(bucket_capacity=2**32 + 3), "bucket_capacity"),
                         (dict(select="threshold", threshold=2**32 + 2), "threshold"),
                         (dict(simhash_one_in=2**32 + 3), "simhash_one_in"),
                         (dict(sparsity=1e-50), "sparsity"), (dict(init_std=1e40), "init_std")]:
        with pytest.raises(ValueError, match=name):
            sparrow.Model(10, 10, **kwargs)
    with pytest.raises(ValueError, match="n_features = 18446744073709551666 does not fit"):
        sparrow.Model(2**64 + 50, 10)
    with pytest.raises(ValueError, match="batch_size"):
        m.fit(X, Y, batch_size=2**32 + 1, quiet=True)
    with pytest.raises(ValueError, match="lr = 1e.49 is too large"):
        m.fit(X, Y, lr=1e49, quiet=True)
    with pytest.raises(ValueError, match="threads|argument"):
        m.predict(X, threads=2**32 + 1)
    with sparrow.Model(10, 10, seed=2**64 - 1) as big_seed:  # the largest seed is fine
        assert big_seed.config["seed"] == 2**64 - 1
    bad = tmp_path / "not_a_model"
    bad.write_bytes(b"garbage" * 100)
    with pytest.raises(sparrow.BadInputError):
        sparrow.Model.load(bad)
    with pytest.raises(sparrow.SparrowIOError):
        m.save(tmp_path / "no" / "such" / "dir" / "m.bin")
    m.close()
    for call in (lambda: m.predict(X), lambda: m.fit(X, Y), lambda: m.save(tmp_path / "x"),
                 lambda: m.evaluate(X, Y), lambda: m.info):
        with pytest.raises(ValueError, match="closed"):
            call()
    m.close()  # twice is fine


def test_gil_released_during_a_call():
    # One long C call (exact prediction over 200k outputs) while this thread counts.
    m = sparrow.Model(50, 200_000, hidden=64, sparsity=1.0)
    X = sp.random(400, 50, density=0.2, format="csr", random_state=1, dtype=np.float32)
    done = threading.Event()
    t = threading.Thread(target=lambda: (m.predict(X, k=5, threads=1), done.set()))
    t0 = time.perf_counter()
    t.start()
    ticks = 0
    while not done.is_set():
        ticks += 1
        time.sleep(0.001)
    t.join()
    elapsed = time.perf_counter() - t0
    assert elapsed > 0.05, "the call was too short to tell (%.3f s)" % elapsed
    # With the GIL held during the call, this loop could not tick until it returned.
    assert ticks >= 10, (ticks, elapsed)


def test_one_fit_at_a_time():
    """A second fit on a model while one runs in another thread is refused: each fit
    counts its epoch by the model's samples, and two would interleave their epochs."""
    m = sparrow.Model(50, 100_000, hidden=32, sparsity=1.0)
    X = sp.random(64, 50, density=0.2, format="csr", random_state=1, dtype=np.float32)
    y = np.arange(64) % 100_000
    errors = []
    t = threading.Thread(target=lambda: m.fit(X, y, epochs=20, batch_size=8, threads=1, quiet=True))
    t.start()
    for _ in range(2000):
        if getattr(m, "_fitting", False):
            break
        time.sleep(0.001)
    try:
        m.fit(X, y, quiet=True)
    except RuntimeError as e:
        errors.append(str(e))
    t.join()
    assert errors and "another fit() is running on this model" in errors[0]
    assert m.info["epoch"] == 20 and not m._fitting
    m.fit(X, y, quiet=True, threads=1)  # and after it, fit runs again
    assert m.info["epoch"] == 21


def test_kernels_not_followed_warn():
    """SPARROW_KERNELS naming no set: a RuntimeWarning at import (it was ignored in
    silence); one that is followed: none."""
    code = "import warnings, sys; warnings.simplefilter('always'); import sparrow"
    env = dict(os.environ, SPARROW_KERNELS="avx51", PYTHONPATH=os.path.dirname(sparrow.__path__[0]))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0 and "RuntimeWarning: SPARROW_KERNELS=avx51 ignored: not one of" in out.stderr, out.stderr
    env["SPARROW_KERNELS"] = "portable"
    out = subprocess.run([sys.executable, "-W", "error", "-c", "import sparrow"], env=env,
                         capture_output=True, text=True)
    assert out.returncode == 0 and out.stderr == "", out.stderr


def test_import_error_names_the_library(tmp_path):
    env = dict(os.environ, SPARROW_LIBRARY=str(tmp_path / "nowhere" / "libsparrow.so"))
    code = "import sys; sys.path.insert(0, %r); import sparrow" % os.path.join(
        os.path.dirname(__file__), "..", "..", "python")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert r.returncode != 0
    assert "ImportError" in r.stderr and "libsparrow.so" in r.stderr and "pip install" in r.stderr


def test_progress_bar_on_a_terminal():
    from sparrow.model import _Progress

    class Tty(io.StringIO):
        def isatty(self):
            return True

    out = Tty()
    p = _Progress(False, stream=out)
    p.update(1, 2, 5, 10, 100.0, 1.5, force=True)
    p.line("epoch 1: done")
    text = out.getvalue()
    assert text.startswith("\repoch 1/2 [===============               ] 5/10"), repr(text)
    assert text.endswith("\r\033[Kepoch 1: done\n"), repr(text)


def test_pickle_and_bytes_round_trip(xmc_data):
    """pickle / copy.deepcopy go through the model file's bytes: a separate model with
    the same weights, moments and step (ctypes handles cannot be pickled)."""
    import copy
    import pickle
    X, Y, Xt, _ = xmc_data
    m = sparrow.Model(X.shape[1], Y.shape[1], hidden=8, sparsity=0.5, seed=3)
    m.fit(X, Y, epochs=1, batch_size=64, threads=1, quiet=True)
    for other in (pickle.loads(pickle.dumps(m)), copy.deepcopy(m), sparrow.Model.from_bytes(m.to_bytes())):
        assert other._handle.value != m._handle.value
        assert other.to_bytes() == m.to_bytes()
        assert np.array_equal(other.predict(Xt, k=3)[0], m.predict(Xt, k=3)[0])
        other.fit(X, Y, epochs=1, batch_size=64, threads=1, quiet=True)  # the copy trains alone
        assert other.to_bytes() != m.to_bytes()
        other.close()
    with pytest.raises(sparrow.BadInputError):
        sparrow.Model.from_bytes(b"SPRMODEL" + b"\0" * 40)
    # A weights() view keeps its model alive: dropping the model frees nothing under it.
    view, kept = m.weights(1), m.weights(1).copy()
    del m, other
    import gc
    gc.collect()
    assert np.array_equal(view, kept)


def test_evaluate_and_predict_exclude(xmc_data, tmp_path, monkeypatch):
    """exclude (the XMC repository's filtered evaluation): the library's figures equal
    rank_metrics on predict's unfiltered ranking with the excluded labels removed; the
    filter file reads to the same exclusions (load_filter); k > 5 and chunks agree."""
    X, Y, Xt, Yt = xmc_data
    m = sparrow.Model(X.shape[1], Y.shape[1], hidden=32, sparsity=0.5, seed=3)
    m.fit(X, Y, epochs=2, batch_size=32, quiet=True, threads=1)
    full, _ = m.predict(Xt, k=20)
    n = Xt.shape[0]
    # every third point loses its first and fourth predicted labels
    pairs = sorted({(i, int(full[i, j])) for i in range(0, n, 3) for j in (0, 3)})
    with open(tmp_path / "filter_labels_test.txt", "w") as f:
        f.write("".join("%d %d\n" % p for p in pairs + pairs[:5]))  # repeats count once
    E = sparrow.load_filter(tmp_path / "filter_labels_test.txt", n, m.n_labels)
    assert E.shape == (n, m.n_labels) and E.nnz == len(pairs)
    gone = {}
    for i, l in pairs:
        gone.setdefault(i, set()).add(l)
    kept = np.array([[l for l in row if l not in gone.get(i, ())][:15] for i, row in enumerate(full.tolist())])
    ids, _ = m.predict(Xt, k=15, exclude=E)
    np.testing.assert_array_equal(ids, kept)
    w = sparrow.inv_propensities(Y)
    res = m.evaluate(Xt, Yt, k=(1, 3, 5, 10), inv_propensity=w, exclude=E)
    want = sparrow.model.rank_metrics(kept[:, :10], Yt, (1, 3, 5, 10), w)
    for name, value in want.items():
        assert res[name] == pytest.approx(value, abs=1e-12), (name, res[name], value)
    plain = m.evaluate(Xt, Yt, k=(1,))
    assert res["p_at_1"] != plain["p_at_1"]
    # a list of label lists is the same exclusion; chunks of 64 points agree
    as_lists = [sorted(gone.get(i, ())) for i in range(n)]
    monkeypatch.setattr(sparrow.model, "_EVAL_CHUNK", 64)
    again = m.evaluate(Xt, Yt, k=(1, 3, 5, 10), inv_propensity=w, exclude=as_lists)
    for name in want:
        assert again[name] == pytest.approx(res[name], abs=1e-12)
    # fit's validation_data with an exclude: the figures evaluate gives after the epoch
    m.fit(X, Y, epochs=3, batch_size=32, quiet=True, threads=1, validation_data=(Xt, Yt, E))
    after = m.evaluate(Xt, Yt, k=(1, 3, 5), exclude=E)
    assert m.history[-1]["p_at_1"] == pytest.approx(after["p_at_1"], abs=1e-12)
    assert m.history[-1]["p_at_5"] == pytest.approx(after["p_at_5"], abs=1e-12)
    with pytest.raises(ValueError, match="exclude has 10 rows, the data 200 points"):
        m.predict(Xt, k=3, exclude=as_lists[:10])
    with open(tmp_path / "bad.txt", "w") as f:
        f.write("0 1\n%d 2\n" % n)
    with pytest.raises(sparrow.BadInputError) as e:
        sparrow.load_filter(tmp_path / "bad.txt", n, m.n_labels)
    assert "bad.txt:2: point id %d out of range" % n in str(e.value)


def test_rebuild_allocates_nothing(tmp_path):
    """A rebuild (new hash functions) after training allocates nothing (tests/failalloc.c
    fails the first aligned allocation after FAILALLOC_NTH is set): the functions are
    redrawn in place, the scratch was sized before training, and the tables it leaves are
    those a reload makes. Where it does need memory (more threads than training used, for
    a layer whose scratch outgrows the stack: SimHash with 750 codes), it fails before
    anything changes: the model as it was, the rebuild not counted. Rebuilds used to
    allocate new functions in every training step that rebuilt, and before that freed the
    old ones first (sparse inference then crashed on a NULL hasher)."""
    from conftest import ROOT
    shim = os.path.join(ROOT, "build", "libfailalloc.so")
    if not os.path.exists(shim):
        pytest.skip("no build/libfailalloc.so (a sanitizer build)")
    script = r"""
import os, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from conftest import make_xmc
import sparrow
from sparrow import _lib
X, Y = make_xmc(300)
m = sparrow.Model(X.shape[1], Y.shape[1], hidden=16, sparsity=0.2, hash="simhash", bits=15,
                  tables=50, seed=3)
m.fit(X, Y, epochs=1, threads=1, quiet=True)
rebuilds = m.info["rebuilds"]
def rebuild(threads):
    os.environ["FAILALLOC_NTH"] = "0"
    st = _lib.spr_model_rehash(m._h(), 1, threads)
    del os.environ["FAILALLOC_NTH"]
    return st
assert rebuild(1) == 0, "a rebuild on training's threads allocated"
assert m.info["rebuilds"] == rebuilds + 1, (m.info["rebuilds"], rebuilds)
path = os.path.join(sys.argv[2], "m.bin")
m.save(path)
r = sparrow.Model.load(path)
now = m.predict(X[:50], k=3, sparse=True, threads=1)
loaded = r.predict(X[:50], k=3, sparse=True, threads=1)
assert all(np.array_equal(a, b) for a, b in zip(now, loaded)), "in-place rebuild != reload"
assert rebuild(2) != 0, "a rebuild on more threads should have needed (and failed) an allocation"
assert m.info["rebuilds"] == rebuilds + 1, (m.info["rebuilds"], rebuilds)
after = m.predict(X[:50], k=3, sparse=True, threads=1)
assert all(np.array_equal(a, b) for a, b in zip(now, after)), "the model changed"
assert _lib.spr_model_rehash(m._h(), 1, 2) == 0 and m.info["rebuilds"] == rebuilds + 2
m.fit(X, Y, epochs=2, threads=2, quiet=True)
print("ok")
"""
    env = dict(os.environ, LD_PRELOAD=shim, OMP_NUM_THREADS="1")  # the model made on 1 thread
    r = subprocess.run([sys.executable, "-c", script, os.path.join(ROOT, "tests", "python"), str(tmp_path)],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), (r.returncode, r.stdout, r.stderr)
