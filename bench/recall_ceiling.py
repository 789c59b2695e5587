#!/usr/bin/env python3
"""What top-10 recall each hash family could reach with ideal tables, on a trained model.

Reads W.f32 (size, fan_in), b.f32 and H.f32 (n, fan_in) written by dump_output_layer and
ranks every output neuron, for each hidden vector, by:
  - the exact logit (the truth: its top 10 is what recall is measured against),
  - exact cosine (what SimHash estimates),
  - the share of agreeing WTA codes over many bins of 8 (what WTA and DWTA estimate,
    with infinitely many tables and no buckets),
  - the Jaccard similarity of the top-m coordinate sets (what DOPH estimates),
and prints the fraction of the true top 10 inside each ranking's first `budget` neurons.
Usage: recall_ceiling.py DIR [--budget 25 50] [--points 300]
"""
import argparse

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--budget", type=int, nargs="+", default=[25, 50])
    ap.add_argument("--points", type=int, default=300)
    ap.add_argument("--codes", type=int, default=2000, help="WTA codes (bins of 8)")
    a = ap.parse_args()
    b = np.fromfile(f"{a.dir}/b.f32", np.float32).astype(np.float64)
    W = np.fromfile(f"{a.dir}/W.f32", np.float32).astype(np.float64).reshape(len(b), -1)
    H = np.fromfile(f"{a.dir}/H.f32", np.float32).astype(np.float64).reshape(-1, W.shape[1])
    H = H[: a.points]
    rng = np.random.default_rng(1)
    top10 = np.argsort(-(H @ W.T + b), axis=1)[:, :10]

    def recall(score, budget):
        score = score + rng.random(score.shape) * 1e-9  # random tie-break
        chosen = np.argsort(-score, axis=1)[:, :budget]
        return np.mean([len(set(t) & set(c)) / 10 for t, c in zip(top10, chosen)])

    cos = (H @ W.T) / np.outer(np.linalg.norm(H, axis=1) + 1e-30, np.linalg.norm(W, axis=1) + 1e-30)
    bins = [rng.permutation(W.shape[1])[:8] for _ in range(a.codes)]
    wq = np.stack([np.argmax(H[:, p], axis=1) for p in bins], 1)
    ww = np.stack([np.argmax(W[:, p], axis=1) for p in bins], 1)
    wta = np.zeros((len(H), len(W)))
    for c in range(a.codes):
        wta += wq[:, c, None] == ww[None, :, c]
    rows = [("exact cosine (SimHash's measure)", cos), ("WTA code agreement, %d codes" % a.codes, wta)]
    for m in (16, 32, 64):
        th = np.zeros_like(H)
        np.put_along_axis(th, np.argsort(-H, axis=1)[:, :m], 1, axis=1)
        th *= H > 0
        tw = np.zeros_like(W)
        np.put_along_axis(tw, np.argsort(-W, axis=1)[:, :m], 1, axis=1)
        inter = th @ tw.T
        rows.append((f"Jaccard of top-{m} coordinates (DOPH's measure)", inter / (th.sum(1)[:, None] + tw.sum(1)[None, :] - inter)))
    print(f"{len(H)} points, {len(W)} outputs, fan-in {W.shape[1]}")
    print("| ranking | " + " | ".join(f"recall@10 in first {k}" for k in a.budget) + " |")
    print("|---|" + "---|" * len(a.budget))
    for name, score in rows:
        print(f"| {name} | " + " | ".join(f"{recall(score, k):.3f}" for k in a.budget) + " |")


if __name__ == "__main__":
    main()
