#!/usr/bin/env python3
"""ThirdAI's engine as a peer of bench/peers.py, where it runs. Run with the python of a
venv where `pip install thirdai` succeeded (VENV_THIRDAI).

What happened here (thirdai 0.9.33 from PyPI, Debian 12, Python 3.11): the package
installs and imports, but (1) its public Python API no longer exposes BOLT's layer
operations (bolt.nn has only Model and optimizers: no Input or FullyConnected to build
sparse input -> 128 ReLU -> sampled softmax), and (2) the one model it exposes,
UniversalDeepTransformer, refuses to be built without a licence:
"The license was found to be invalid: Please first call either licensing.set_path,
licensing.start_heartbeat, or licensing.activate with a valid license."
This script tries exactly that and prints what it says as JSON ({"error": ...}, exit 3).
With a licence (THIRDAI_KEY) it trains UDT on the same points, the features as words
of a text column (UDT's input for sparse data; the values are dropped); UDT picks its
own architecture and sampling, so it is not the same network. That path has not been
run here (no licence)."""
import argparse, json, os, sys, time


def to_csv(src, dst, limit=None):
    with open(src) as f, open(dst, "w") as g:
        f.readline()
        g.write("labels,text\n")
        for k, line in enumerate(f):
            if limit is not None and k >= limit:
                break
            head, _, rest = line.rstrip("\n").partition(" ")
            if ":" in head:
                rest, head = line.strip(), ""
            g.write(head.replace(",", ":") + "," + " ".join("f" + t.split(":")[0] for t in rest.split()) + "\n")


def main():
    ap = argparse.ArgumentParser()
    for a in ("--train", "--test"):
        ap.add_argument(a, required=True)
    for a, d in (("--batches", 100), ("--batch", 256), ("--hidden", 128), ("--threads", os.cpu_count())):
        ap.add_argument(a, type=int, default=d)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--sparsity", type=float, default=0.005)
    a = ap.parse_args()
    import thirdai
    from thirdai import bolt, licensing
    out = {"system": "thirdai", "version": thirdai.__version__,
           "bolt_nn_layer_ops": [x for x in dir(bolt.nn) if not x.startswith("_")]}
    if os.environ.get("THIRDAI_KEY"):
        licensing.activate(os.environ["THIRDAI_KEY"])
    n_labels = int(open(a.train).readline().split()[2])
    try:
        model = bolt.UniversalDeepTransformer(
            data_types={"labels": bolt.types.categorical(delimiter=":", n_classes=n_labels, type="int"),
                        "text": bolt.types.text()},
            target="labels")
    except RuntimeError as e:
        out["error"] = str(e)
        print(json.dumps(out))
        sys.exit(3)
    thirdai.set_global_num_threads(a.threads)
    tr, te = a.train + ".thirdai.csv", a.test + ".thirdai.csv"
    to_csv(a.train, tr, a.batches * a.batch)
    to_csv(a.test, te)
    t0 = time.time()
    model.train(tr, epochs=1, learning_rate=a.lr, batch_size=a.batch)
    dt = time.time() - t0
    ev = model.evaluate(te, metrics=["precision@1", "precision@5"])
    out.update(samples_per_second=a.batches * a.batch / dt, train_seconds=dt,
               median_batch_seconds=dt / a.batches, batches=a.batches, evaluate=str(ev),
               note="UDT's own architecture, features as text tokens; not the same network")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
