#!/usr/bin/env python3
"""Time to the same P@1: sparrow sampled on this machine's CPU cores against PyTorch on
DEVICE (a GPU: `cuda`; `cpu` works too, for trying the harness), same data, same network
(sparse input -> 128 ReLU -> softmax over all labels), batch 256, Adam lr 1e-3.

Both train for EPOCHS epochs over a random SUBSET of TRAIN and evaluate P@1 on the same
EVAL random test points every EVAL_EVERY batches (evaluation time not counted). The
target is the best P@1 both reach (the smaller of the two maxima); each system's time to
it is the training time at its first evaluation at or above it. Writes OUT/results.json
and OUT/results.md, and prints the table.

    python3 bench/time_to_p1.py OUT                # environment: TRAIN TEST SUBSET EVAL
                                                   # EPOCHS EVAL_EVERY DEVICE THREADS
                                                   # SPARROW_ARGS TORCH_PYTHON

On the GPU machine (README.md, "Against PyTorch on a GPU"): build sparrow, make the data
with `build/sparrow gen --preset amazon670k --out /tmp/a670`, then
`DEVICE=cuda THREADS=$(nproc) python3 bench/time_to_p1.py out/gpu`."""
import json, os, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
E = os.environ.get
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "out", "time_to_p1")
os.environ.setdefault("SUBSET", "100000")
os.environ.setdefault("EVAL", "5000")
sys.path.insert(0, os.path.join(ROOT, "bench"))
sys.argv = [sys.argv[0], OUT]
import peers  # noqa: E402  (subset_files, run: the same data and runner as bench/peers.py)

EPOCHS = int(E("EPOCHS", "1"))
EVAL_EVERY = int(E("EVAL_EVERY", "40"))
DEVICE = E("DEVICE", "cuda")
THREADS = int(E("THREADS", str(os.cpu_count())))
TORCH_PY = E("TORCH_PYTHON", peers.PY)


def first_at(curve, target):
    """Training seconds at the first point of curve with p_at_1 >= target (None if never)."""
    for p in curve:
        if p["p_at_1"] >= target:
            return p["train_seconds"]
    return None


def main():
    tr, te = peers.subset_files()
    n = int(open(tr).readline().split()[0])
    batches = EPOCHS * (n // peers.BATCH)
    res = {"settings": {"train": tr, "test": te, "epochs": EPOCHS, "eval_every": EVAL_EVERY,
                        "device": DEVICE, "threads": THREADS, "batch": peers.BATCH,
                        "hidden": peers.HIDDEN, "lr": peers.LR, "sparsity": peers.SPARSITY}}

    mfile = os.path.join(OUT, "sparrow.jsonl")
    cmd = [peers.SPARROW, "train", "--train", tr, "--test", te, "--batch", str(peers.BATCH),
           "--hidden", str(peers.HIDDEN), "--lr", str(peers.LR), "--threads", str(THREADS),
           "--seed", "1", "--sparsity", peers.SPARSITY, "--epochs", str(EPOCHS),
           "--eval-every", str(EVAL_EVERY), "--eval-max", str(peers.EVAL), "--metrics", mfile,
           "--quiet"] + E("SPARROW_ARGS", "").split()
    out, rss, wall = peers.run(cmd, None, "sparrow")
    if out is None:
        sys.exit("sparrow failed: see " + os.path.join(OUT, "sparrow.out"))
    sc = [json.loads(l) for l in open(mfile) if '"step"' in l]
    sparrow_curve = [{"batch": m["step"], "train_seconds": m["train_seconds"], "p_at_1": m["p_at_1"],
                      "p_at_5": m["p_at_5"]} for m in sc]

    cfile = os.path.join(OUT, "torch_curve.jsonl")
    env = {"LD_PRELOAD": peers.TCMALLOC} if DEVICE == "cpu" and os.path.exists(peers.TCMALLOC) else {}
    cmd = [TORCH_PY, os.path.join(ROOT, "bench", "torch_peer.py"), "--train", tr, "--test", te,
           "--batches", str(batches), "--batch", str(peers.BATCH), "--hidden", str(peers.HIDDEN),
           "--lr", str(peers.LR), "--threads", str(THREADS), "--eval-max", str(peers.EVAL),
           "--device", DEVICE, "--eval-every", str(EVAL_EVERY), "--curve", cfile]
    tout, trss, twall = peers.run(cmd, env, "torch")
    if tout is None:
        sys.exit("PyTorch failed: see " + os.path.join(OUT, "torch.out"))
    torch_final = json.loads(tout.strip().splitlines()[-1])
    torch_curve = [json.loads(l) for l in open(cfile)]

    target = min(max(p["p_at_1"] for p in sparrow_curve), max(p["p_at_1"] for p in torch_curve))
    ts, tt = first_at(sparrow_curve, target), first_at(torch_curve, target)
    res.update(sparrow_curve=sparrow_curve, torch_curve=torch_curve, torch=torch_final,
               target_p_at_1=target, sparrow_seconds_to_target=ts, torch_seconds_to_target=tt,
               sparrow_peak_rss_gb=rss, torch_peak_rss_gb=trss,
               speedup=(tt / ts) if ts and tt else None)
    json.dump(res, open(os.path.join(OUT, "results.json"), "w"), indent=1)
    md = [f"# Time to P@1 {target:.4f}: sparrow on {THREADS} CPU threads, PyTorch on {DEVICE}\n",
          f"{n} training points of {peers.TRAIN}, {EPOCHS} epoch(s), P@1 on {peers.EVAL} test points "
          f"every {EVAL_EVERY} batches (not timed).\n",
          "| system | final P@1 | seconds to the target | x sparrow |", "|---|---|---|---|",
          f"| sparrow sampled ({THREADS} threads) | {sparrow_curve[-1]['p_at_1']:.4f} | {peers.fmt(ts, '{:.1f}')} | 1 |",
          f"| PyTorch {torch_final.get('torch', '')} on {DEVICE} | {torch_curve[-1]['p_at_1']:.4f} | "
          f"{peers.fmt(tt, '{:.1f}')} | {peers.fmt(res['speedup'], '{:.2f}')} |"]
    open(os.path.join(OUT, "results.md"), "w").write("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
