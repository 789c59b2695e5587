"""Example 2: an ordinary PyTorch script with a 670K-way output, in two versions that
differ only in the last layer: nn.Linear + cross-entropy (dense) against
sparrow.torch.SampledSoftmaxLinear (LSH-sampled).

    build/sparrow gen --preset amazon670k --out /tmp/a670     # once (a few minutes)
    PYTHONPATH=python python3 examples/02_torch_670k.py --data /tmp/a670 \
        [--train-points 5000] [--test-points 1000] [--epochs 1] [--heads sampled,dense]

Model: an embedding-bag encoder over the 135,909 sparse features (sum of the feature
rows weighted by the feature values, + bias, ReLU: 128 wide), then the output layer
over 670,091 labels. Loss: softmax cross-entropy with the target spread evenly over a
point's labels (what sparrow computes). Both versions: Adam, lr 1e-3, batch 128, the
same initialisation (N(0, 0.01^2) weights, zero biases), the same shuffled order, the
same threads. The dense version scores every label of every sample; the sampled one
ceil(0.005 x 670,091) = 3,351 LSH-picked labels plus the sample's own.

The dense version ran at 10.5 samples/s on this project's 2 cores (README.md): an epoch
of all 490,449 points would take about 13 hours, so by default both train on the first
--train-points points. P@k is measured
with exact inference (every label scored) on the first --test-points test points.
"""
import argparse
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import sparrow  # noqa: E402
from sparrow.torch import SampledSoftmaxLinear  # noqa: E402


class Encoder(torch.nn.Module):
    """relu(sum_f x_f E[f] + b): an embedding bag over sparse features."""

    def __init__(self, n_features, dim):
        super().__init__()
        self.bag = torch.nn.EmbeddingBag(n_features, dim, mode="sum", sparse=True)
        self.bias = torch.nn.Parameter(torch.zeros(dim))
        torch.nn.init.normal_(self.bag.weight, std=0.01)

    def forward(self, indices, offsets, values):
        return torch.relu(self.bag(indices, offsets, per_sample_weights=values) + self.bias)


def batch_tensors(X, Y, rows):
    """The CSR rows of a batch as EmbeddingBag inputs, and their labels as (offsets, ids)."""
    Xb, Yb = X[rows], Y[rows]
    return (torch.from_numpy(Xb.indices.astype(np.int64)), torch.from_numpy(Xb.indptr[:-1].astype(np.int64)),
            torch.from_numpy(Xb.data), Yb.indptr.astype(np.int64), Yb.indices.astype(np.int64))


# ------------------------------------------------------------------ the last layer: the only difference

class DenseHead(torch.nn.Module):
    """nn.Linear(dim, n_labels) + softmax cross-entropy over every label."""

    def __init__(self, dim, n_labels):
        super().__init__()
        self.linear = torch.nn.Linear(dim, n_labels)
        torch.nn.init.normal_(self.linear.weight, std=0.01)
        torch.nn.init.zeros_(self.linear.bias)

    def forward(self, hidden, labels):
        offsets, ids = labels
        logp = F.log_softmax(self.linear(hidden), dim=1)
        counts = torch.from_numpy(np.diff(offsets))
        rows = torch.repeat_interleave(torch.arange(hidden.shape[0]), counts)
        weight = 1.0 / counts.clamp(min=1).float()[rows]
        return -(logp[rows, torch.from_numpy(ids)] * weight).sum() / hidden.shape[0]

    def predict(self, hidden, k):
        """(ids, scores) of the top k, the order SampledSoftmaxLinear.predict uses."""
        scores, ids = torch.topk(self.linear(hidden), k, dim=1)
        return ids, scores


def make_head(kind, dim, n_labels, args):
    if kind == "dense":
        head = DenseHead(dim, n_labels)
        return head, torch.optim.Adam(head.parameters(), lr=args.lr)
    # sparrow's layer: its weights are updated by sparrow's Adam inside the forward call
    head = SampledSoftmaxLinear(dim, n_labels, sparsity=args.sparsity, lr=args.lr, seed=1,
                                threads=args.threads)
    return head, None


# ------------------------------------------------------------------ the ordinary training script

def precision_at(head, encoder, X, Y, k_max=5, chunk=256):
    hits = np.zeros(k_max + 1)
    with torch.no_grad():
        for c0 in range(0, X.shape[0], chunk):
            rows = np.arange(c0, min(c0 + chunk, X.shape[0]))
            idx, off, val, yptr, yids = batch_tensors(X, Y, rows)
            top = head.predict(encoder(idx, off, val), k_max)[0].numpy()
            for i in range(len(rows)):
                true = set(yids[yptr[i]:yptr[i + 1]].tolist())
                for k in (1, 3, 5):
                    hits[k] += len(true.intersection(top[i, :k].tolist())) / k
    return {k: hits[k] / X.shape[0] for k in (1, 3, 5)}


def train(kind, X, Y, Xt, Yt, args):
    torch.manual_seed(1)
    encoder = Encoder(X.shape[1], args.hidden)
    head, head_opt = make_head(kind, args.hidden, Y.shape[1], args)
    enc_opt = [torch.optim.SparseAdam([encoder.bag.weight], lr=args.lr),
               torch.optim.Adam([encoder.bias], lr=args.lr)]
    opts = enc_opt + ([head_opt] if head_opt else [])
    n = X.shape[0]
    seconds = []
    for epoch in range(args.epochs):
        order = np.random.default_rng([1, epoch]).permutation(n)
        t0 = time.perf_counter()
        loss_sum, seen, last_print = 0.0, 0, t0
        batches = math.ceil(n / args.batch)
        if args.max_batches:
            batches = min(batches, args.max_batches)
        for b in range(batches):
            rows = order[b * args.batch:(b + 1) * args.batch]
            idx, off, val, yptr, yids = batch_tensors(X, Y, rows)
            for o in opts:
                o.zero_grad()
            loss = head(encoder(idx, off, val), (yptr, yids))
            loss.backward()
            for o in opts:
                o.step()
            loss_sum += loss.item() * len(rows)
            seen += len(rows)
            t = time.perf_counter()
            if t - last_print > 30 and not args.quiet:
                print("  %s epoch %d batch %d/%d: %.0f samples/s, loss %.4f" % (
                    kind, epoch + 1, b + 1, batches, seen / (t - t0), loss_sum / seen),
                      file=sys.stderr, flush=True)
                last_print = t
        seconds.append(time.perf_counter() - t0)
        print("  %s epoch %d: loss %.4f, %.1f s, %.1f samples/s" % (
            kind, epoch + 1, loss_sum / seen, seconds[-1], seen / seconds[-1]), file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    p = precision_at(head, encoder, Xt, Yt)
    return {"epoch_seconds": float(np.mean(seconds)), "samples_per_second": seen / seconds[-1],
            "p": p, "eval_seconds": time.perf_counter() - t0, "loss": loss_sum / seen}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="/tmp/a670", help="directory with train.txt and test.txt")
    ap.add_argument("--train-points", type=int, default=5000)
    ap.add_argument("--test-points", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--sparsity", type=float, default=0.005)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--heads", default="sampled,dense")
    ap.add_argument("--max-batches", type=int, default=0, help="stop each epoch early (timing only)")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    threads = args.threads or os.cpu_count()
    torch.set_num_threads(threads)

    t0 = time.perf_counter()
    X, Y = sparrow.load_xmc(os.path.join(args.data, "train.txt"))
    Xt, Yt = sparrow.load_xmc(os.path.join(args.data, "test.txt"), n_features=X.shape[1],
                              n_labels=Y.shape[1])
    X, Y = X[:args.train_points], Y[:args.train_points]
    Xt, Yt = Xt[:args.test_points], Yt[:args.test_points]
    print("data: %d train / %d test points, %d features, %d labels (read in %.1f s)" % (
        X.shape[0], Xt.shape[0], X.shape[1], Y.shape[1], time.perf_counter() - t0), flush=True)

    results = {}
    for kind in args.heads.split(","):
        results[kind] = train(kind, X, Y, Xt, Yt, args)
        r = results[kind]
        print("%s: %.1f s per epoch (%.1f samples/s), final loss %.4f, P@1 %.4f P@3 %.4f P@5 %.4f" % (
            kind, r["epoch_seconds"], r["samples_per_second"], r["loss"], r["p"][1], r["p"][3],
            r["p"][5]), flush=True)

    print("\n%d training points, %d epoch(s), batch %d, %d threads, %d labels; P@k on %d test points:"
          % (X.shape[0], args.epochs, args.batch, threads, Y.shape[1], Xt.shape[0]))
    print("%-8s %12s %12s %8s %8s %8s" % ("head", "s/epoch", "samples/s", "P@1", "P@3", "P@5"))
    for kind, r in results.items():
        print("%-8s %12.1f %12.1f %8.4f %8.4f %8.4f" % (kind, r["epoch_seconds"], r["samples_per_second"],
                                                       r["p"][1], r["p"][3], r["p"][5]))
    if "dense" in results and "sampled" in results:
        d, s = results["dense"], results["sampled"]
        print("sampled is %.1fx faster per epoch than dense; P@1 difference (sampled - dense) %+.4f" % (
            d["epoch_seconds"] / s["epoch_seconds"], s["p"][1] - d["p"][1]))


if __name__ == "__main__":
    main()
