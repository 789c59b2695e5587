"""Example 1: the Python API end to end on the `small` preset.

    PYTHONPATH=python python3 examples/01_python_api.py [--epochs 5] [--out out/example1]

Generates the data (the same files as `sparrow gen --preset small`), trains a sampled
model with per-epoch validation, evaluates, predicts, saves, loads, and checks that the
loaded model predicts exactly what the trained one did.
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import sparrow  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--out", default="out/example1")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()

    t0 = time.perf_counter()
    train_path, test_path = sparrow.generate("small", args.out, seed=1, threads=args.threads)
    X, Y = sparrow.load_xmc(train_path)
    Xt, Yt = sparrow.load_xmc(test_path)
    print("data: %d train / %d test points, %d features, %d labels (%.1f s)" % (
        X.shape[0], Xt.shape[0], X.shape[1], Y.shape[1], time.perf_counter() - t0))

    model = sparrow.Model(X.shape[1], Y.shape[1], hidden=128, sparsity=0.01, hash="simhash",
                          tables=50, seed=1)
    print("model: %s -> %d ReLU -> %d softmax, %d%% of outputs active per sample" % (
        X.shape[1], model.config["layers"][0]["size"], Y.shape[1], 1))
    history = model.fit(X, Y, epochs=args.epochs, batch_size=128, lr=1e-3,
                        validation_data=(Xt, Yt), threads=args.threads)

    res = model.evaluate(Xt, Yt, k=(1, 3, 5), threads=args.threads)
    sparse = model.evaluate(Xt, Yt, k=(1, 3, 5), sparse=True, threads=args.threads)
    ids, scores = model.predict(Xt[:3], k=5)
    for i in range(3):
        true = Yt.indices[Yt.indptr[i]:Yt.indptr[i + 1]].tolist()
        print("point %d: labels %s, top 5 %s" % (i, true, ids[i].tolist()))

    path = os.path.join(args.out, "model.spr")
    model.save(path)
    loaded = sparrow.Model.load(path)
    same = np.array_equal(loaded.predict(Xt, k=5)[0], model.predict(Xt, k=5)[0])
    print("saved to %s (%.1f MB); the loaded model predicts the same top 5: %s" % (
        path, os.path.getsize(path) / 1e6, same))
    print("result: %d epochs in %.1f s of training (%.0f samples/s); test P@1 %.4f P@3 %.4f "
          "P@5 %.4f exact, P@1 %.4f with sparse inference (%.2f s against %.2f s)" % (
              args.epochs, history[-1]["train_seconds"], history[-1]["samples_per_second"],
              res["p_at_1"], res["p_at_3"], res["p_at_5"], sparse["p_at_1"], sparse["seconds"],
              res["seconds"]))
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
