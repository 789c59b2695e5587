"""Example 3: real dense data with a wide sampled hidden layer (Fashion-MNIST).

    PYTHONPATH=python python3 examples/03_fashion_mnist.py [--epochs 3] [--threads 2]

Data: Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist, read here from
the IDX files with numpy and gzip; scripts/setup.sh installs it). 60,000 training and
10,000 test images of 28x28 pixels, 10 classes; pixels scaled to [0, 1].

sparrow:  784 -> 256 ReLU -> 8192 ReLU, 5% active (410 neurons per sample, LSH-picked)
          -> 10 softmax. Layer 0 of a sparrow model is an embedding bag and is never
          sampled, so the sampled wide layer is the second one.
PyTorch:  784 -> 1024 ReLU -> 10, dense (nn.Linear, Adam, the same batch size and lr).

Both train for the same epochs on the same threads; test accuracy and training time of
both are printed at the end.
"""
import argparse
import gzip
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import sparrow  # noqa: E402

DATA = "/usr/share/datasets/fashion-mnist"


def read_idx(path):
    """An IDX file (big-endian magic: 0x0000, type 0x08 = uint8, ndim; then the dims)."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    if raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError("%s: not an unsigned-byte IDX file" % path)
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">u4", count=ndim, offset=4).astype(np.int64)
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError("%s: %d bytes of data for dims %s" % (path, data.size, dims.tolist()))
    return data.reshape(dims)


def load(split):
    prefix = "train" if split == "train" else "t10k"
    images = read_idx(os.path.join(DATA, "%s-images-idx3-ubyte.gz" % prefix))
    labels = read_idx(os.path.join(DATA, "%s-labels-idx1-ubyte.gz" % prefix))
    return images.reshape(len(images), -1).astype(np.float32) / 255.0, labels.astype(np.int64)


def run_sparrow(X, y, Xt, yt, args):
    model = sparrow.Model(784, 10, hidden=(256, args.width), hidden_sparsity=args.sparsity,
                          sparsity=1.0, tables=50, init_std=0.05, seed=1)
    hist = model.fit(X, y, epochs=args.epochs, batch_size=args.batch, lr=args.lr,
                     threads=args.threads, quiet=args.quiet)
    ids, _ = model.predict(Xt, k=1, threads=args.threads)
    return float((ids[:, 0] == yt).mean()), hist[-1]["train_seconds"], hist[-1]["samples_per_second"]


def run_torch(X, y, Xt, yt, args):
    import torch
    torch.manual_seed(1)
    torch.set_num_threads(args.threads or os.cpu_count())
    net = torch.nn.Sequential(torch.nn.Linear(784, 1024), torch.nn.ReLU(), torch.nn.Linear(1024, 10))
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    Xtr, ytr = torch.from_numpy(X), torch.from_numpy(y)
    seconds = 0.0
    for epoch in range(args.epochs):
        perm = torch.from_numpy(np.random.default_rng(epoch).permutation(len(X)))
        t0 = time.perf_counter()
        for b in range(0, len(X), args.batch):
            idx = perm[b:b + args.batch]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(Xtr[idx]), ytr[idx])
            loss.backward()
            opt.step()
        seconds += time.perf_counter() - t0
        if not args.quiet:
            print("torch epoch %d: loss %.4f, %.1f s" % (epoch + 1, loss.item(), seconds), file=sys.stderr)
    with torch.no_grad():
        acc = (net(torch.from_numpy(Xt)).argmax(1).numpy() == yt).mean()
    return float(acc), seconds, args.epochs * len(X) / seconds


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--width", type=int, default=8192)
    ap.add_argument("--sparsity", type=float, default=0.05)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    if not os.path.isdir(DATA):
        sys.exit("%s not found: install Debian's dataset-fashion-mnist (scripts/setup.sh does)" % DATA)
    X, y = load("train")
    Xt, yt = load("test")
    print("Fashion-MNIST: %d train, %d test images, %d pixels, %d classes" % (
        len(X), len(Xt), X.shape[1], len(np.unique(y))))
    s_acc, s_sec, s_sps = run_sparrow(X, y, Xt, yt, args)
    t_acc, t_sec, t_sps = run_torch(X, y, Xt, yt, args)
    print("after %d epochs, batch %d, lr %g, %s threads:" % (args.epochs, args.batch, args.lr,
                                                              args.threads or "all"))
    print("  sparrow 784 -> 256 -> %d (%.0f%% active) -> 10: test accuracy %.4f, train %.1f s (%.0f samples/s)"
          % (args.width, 100 * args.sparsity, s_acc, s_sec, s_sps))
    print("  PyTorch 784 -> 1024 -> 10 dense:              test accuracy %.4f, train %.1f s (%.0f samples/s)"
          % (t_acc, t_sec, t_sps))


if __name__ == "__main__":
    main()
