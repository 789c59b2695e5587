#!/usr/bin/env python3
"""The PyTorch peer of bench/peers.py: the same network as sparrow's
(sparse input -> EmbeddingBag(sum, weighted) + bias -> ReLU -> Linear -> softmax over all
labels), the same loss (soft-target cross-entropy, 1/|labels| on each label), Adam with
the same hyper-parameters, the same batches (the order sparrow would not reproduce, but
the same points, shuffled with a fixed seed). Trains --batches batches (0: one epoch),
times each batch (forward+backward and the Adam step apart), evaluates P@1/P@5 on the
test file, prints one JSON object.

Run it as ../shared/BENCHMARKING.md says: OpenBLAS selected, OPENBLAS_CORETYPE and
OPENBLAS_L2_SIZE unset, LD_PRELOAD=libtcmalloc_minimal.so.4 (peers.py does)."""
import argparse, json, os, resource, statistics, sys, time

import numpy as np
import torch


def read_xmc(path, limit=None):
    """XMC text file -> (indptr, indices, values, label lists, n_features, n_labels)."""
    with open(path) as f:
        n, d, l = map(int, f.readline().split())
        indptr, idx, val, labels = [0], [], [], []
        for k, line in enumerate(f):
            if limit is not None and k >= limit:
                break
            head, _, rest = line.rstrip("\n").partition(" ")
            if ":" in head:  # no labels
                rest, head = line.strip(), ""
            labels.append([int(x) for x in head.split(",") if x])
            for tok in rest.split():
                i, v = tok.split(":")
                idx.append(int(i))
                val.append(float(v))
            indptr.append(len(idx))
    return (np.array(indptr, np.int64), np.array(idx, np.int64), np.array(val, np.float32),
            labels, d, l)


class Net(torch.nn.Module):
    def __init__(self, d, hidden, l, std, sparse=False):
        super().__init__()
        self.emb = torch.nn.EmbeddingBag(d, hidden, mode="sum", sparse=sparse)
        self.b0 = torch.nn.Parameter(torch.zeros(hidden))
        self.out = torch.nn.Linear(hidden, l)
        with torch.no_grad():
            self.emb.weight.normal_(0, std)
            self.out.weight.normal_(0, std)
            self.out.bias.zero_()

    def forward(self, idx, offsets, vals):
        h = torch.relu(self.emb(idx, offsets, per_sample_weights=vals) + self.b0)
        return self.out(h)


def batch_tensors(data, rows):
    indptr, idx, val, labels = data[:4]
    parts_i, parts_v, offs = [], [], []
    o = 0
    for r in rows:
        a, b = indptr[r], indptr[r + 1]
        parts_i.append(idx[a:b]); parts_v.append(val[a:b]); offs.append(o); o += b - a
    return (torch.from_numpy(np.concatenate(parts_i)), torch.from_numpy(np.array(offs, np.int64)),
            torch.from_numpy(np.concatenate(parts_v)))


def soft_target(labels, rows, l, dev):
    """(len(rows), l) on dev: 1/|labels| on each label of each row, 0 elsewhere. Built with
    one scatter from host index arrays (one copy and one kernel a batch on a GPU, not one
    per sample); not part of the timed step either way."""
    ri, ci, v = [], [], []
    for i, r in enumerate(rows):
        lab = labels[r]
        if not lab:  # a point without labels: an all-zero target
            continue
        ri += [i] * len(lab)
        ci += lab
        v += [1.0 / len(lab)] * len(lab)
    target = torch.zeros(len(rows), l, device=dev)
    if ri:
        target[torch.tensor(ri, device=dev), torch.tensor(ci, device=dev)] = torch.tensor(v, device=dev)
    return target


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", required=True)
    ap.add_argument("--test", required=True)
    ap.add_argument("--batches", type=int, default=100, help="0: one full epoch")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--std", type=float, default=0.1)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--eval-max", type=int, default=2000)
    ap.add_argument("--labels", type=int, default=0, help="output size (0: the file's)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--tf32", action="store_true",
                    help="on a GPU, let float32 matrix products use TF32 tensor cores "
                         "(PyTorch's default is full float32)")
    ap.add_argument("--sparse-adam", action="store_true",
                    help="the embedding's rows by torch.optim.SparseAdam (lazy, as sparrow steps "
                         "them: a row absent from a batch keeps its weights and moments) instead "
                         "of Adam, whose zero-gradient steps keep moving a row on its momentum")
    ap.add_argument("--eval-every", type=int, default=0,
                    help="also evaluate P@1/P@5 every N batches (not timed) and write them to --curve")
    ap.add_argument("--curve", default=None, help="JSON lines: batch, train_seconds, p_at_1, p_at_5")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    t0 = time.time()
    tr = read_xmc(a.train)
    te = read_xmc(a.test, a.eval_max)
    load_s = time.time() - t0
    d = max(tr[4], te[4])
    l = a.labels or max(tr[5], te[5])
    dev = torch.device(a.device)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = a.tf32
        torch.backends.cudnn.allow_tf32 = a.tf32
    net = Net(d, a.hidden, l, a.std, a.sparse_adam).to(dev)
    adam = dict(lr=a.lr, betas=(0.9, 0.999), eps=1e-8)
    if a.sparse_adam:
        opts = [torch.optim.SparseAdam([net.emb.weight], **adam),
                torch.optim.Adam([net.b0, net.out.weight, net.out.bias], **adam)]
    else:
        opts = [torch.optim.Adam(net.parameters(), **adam)]
    n = len(tr[3])
    order = np.random.default_rng(a.seed).permutation(n)
    nb = n // a.batch if a.batches == 0 else a.batches
    fwdbwd, step, total = [], [], []
    sync = (lambda: torch.cuda.synchronize()) if dev.type == "cuda" else (lambda: None)
    curve = open(a.curve, "w") if a.curve else None

    def evaluate():
        hits1 = hits5 = 0
        net.eval()
        with torch.no_grad():
            for s0 in range(0, len(te[3]), 256):
                rows = list(range(s0, min(s0 + 256, len(te[3]))))
                idx, offs, vals = (t.to(dev) for t in batch_tensors(te, rows))
                top = torch.topk(net(idx, offs, vals), 5, dim=1).indices.cpu().numpy()
                for i, r in enumerate(rows):
                    lab = set(te[3][r])
                    hits1 += top[i, 0] in lab
                    hits5 += sum(int(t in lab) for t in top[i])
        net.train()
        return hits1 / len(te[3]), hits5 / (5 * len(te[3]))

    for b in range(nb):
        rows = order[(b * a.batch) % n:(b * a.batch) % n + a.batch]
        if len(rows) < a.batch:
            rows = order[:a.batch]
        idx, offs, vals = (t.to(dev) for t in batch_tensors(tr, rows))
        target = soft_target(tr[3], rows, l, dev)
        sync(); t1 = time.time()
        z = net(idx, offs, vals)
        loss = -(target * torch.log_softmax(z, dim=1)).sum(1).mean()
        for opt in opts:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        sync(); t2 = time.time()
        for opt in opts:
            opt.step()
        sync(); t3 = time.time()
        fwdbwd.append(t2 - t1); step.append(t3 - t2); total.append(t3 - t1)
        if not np.isfinite(loss.item()):
            print(json.dumps({"error": "loss not finite"})); sys.exit(1)
        if curve and a.eval_every and ((b + 1) % a.eval_every == 0 or b + 1 == nb):
            p1, p5 = evaluate()
            curve.write(json.dumps({"batch": b + 1, "train_seconds": sum(total), "p_at_1": p1,
                                    "p_at_5": p5}) + "\n")
            curve.flush()
    # P@k on the test points
    p1, p5 = evaluate()
    warm = min(3, len(total) - 1) if len(total) > 1 else 0
    med = statistics.median(total[warm:])
    print(json.dumps({
        "system": "pytorch", "torch": torch.__version__, "device": a.device, "threads": a.threads,
        "labels": l, "batches": nb, "batch": a.batch, "load_seconds": load_s,
        "median_batch_seconds": med, "median_fwd_bwd_seconds": statistics.median(fwdbwd[warm:]),
        "median_adam_seconds": statistics.median(step[warm:]),
        "samples_per_second": a.batch / med, "train_seconds": sum(total),
        "p_at_1": p1, "p_at_5": p5, "eval_points": len(te[3]),
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
        "ld_preload": os.environ.get("LD_PRELOAD", ""), "tf32": a.tf32,
        "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
        "gpu_peak_gb": torch.cuda.max_memory_allocated(dev) / 1e9 if dev.type == "cuda" else None,
        "blas": torch.__config__.show().count("openblas") > 0 and "openblas" or "see torch config"}))


if __name__ == "__main__":
    main()
