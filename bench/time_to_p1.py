#!/usr/bin/env python3
"""Time to the same P@1: sparrow sampled on this machine's CPU cores against PyTorch on
DEVICE (a GPU: `cuda`; `cpu` works too, for trying the harness), same data, same network
(sparse input -> 128 ReLU -> softmax over all labels), batch 256, Adam lr 1e-3.

Every system trains for EPOCHS epochs over a random SUBSET of TRAIN and is evaluated (P@1
on the same EVAL random test points) every EVAL_EVERY batches, evaluation time not
counted. The target is the best P@1 every system reaches (the smallest of their maxima);
each system's time to it is its training time at its first evaluation at or above it.
Writes OUT/results.json, OUT/results.md and OUT/time_to_p1.png (P@1 against training
seconds), and prints the table.

    python3 bench/time_to_p1.py OUT     # environment: TRAIN TEST SUBSET EVAL EPOCHS
                                        # EVAL_EVERY DEVICE THREADS SPARROW_ARGS
                                        # TORCH_PYTHON TORCH_VARIANTS (fp32 tf32)
                                        # SPARROW_VARIANTS (float bf16) THREAD_SWEEP
                                        # THREAD_SWEEP_BATCHES

On a GPU machine, `bash bench/gpu_peer.sh out/gpu` makes the data and runs this with
DEVICE=cuda and all CPU threads (doc/performance-history.md, "Session 7: against PyTorch on an H200 GPU")."""
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
# On a GPU, one PyTorch run per variant: fp32 (PyTorch's default, full float32 products)
# and tf32 (TF32 tensor cores for the products: the GPU at its fastest without changing
# the model's float32 parameters).
TORCH_VARIANTS = E("TORCH_VARIANTS", "fp32 tf32" if DEVICE == "cuda" else "fp32").split()
SPARROW_VARIANTS = E("SPARROW_VARIANTS", "float").split()  # float, bf16 (--bf16-weights)
THREAD_SWEEP = [int(t) for t in E("THREAD_SWEEP", "").split()]  # e.g. "1 2 4 8 16"
SWEEP_BATCHES = int(E("THREAD_SWEEP_BATCHES", "30"))


def first_at(curve, target):
    """Training seconds at the first point of curve with p_at_1 >= target (None if never)."""
    for p in curve:
        if p["p_at_1"] >= target:
            return p["train_seconds"]
    return None


def cpu_name():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def sparrow_curve(tr, te, variant):
    name = "sparrow-" + variant
    mfile = os.path.join(OUT, name + ".jsonl")
    cmd = peers.sparrow_cmd(tr, te, THREADS, mfile) + [
        "--sparsity", peers.SPARSITY, "--epochs", str(EPOCHS), "--eval-every", str(EVAL_EVERY),
        "--eval-max", str(peers.EVAL)] + (["--bf16-weights"] if variant == "bf16" else []) + \
        E("SPARROW_ARGS", "").split()
    out, rss, wall = peers.run(cmd, None, name)
    if out is None:
        return None
    sc = [json.loads(l) for l in open(mfile) if '"step"' in l]
    return {"name": f"sparrow sampled{', BF16 weights' if variant == 'bf16' else ''} "
                    f"({THREADS} CPU threads)", "peak_rss_gb": rss, "wall_seconds": wall,
            "curve": [{"batch": m["step"], "train_seconds": m["train_seconds"], "p_at_1": m["p_at_1"],
                       "p_at_5": m["p_at_5"]} for m in sc]}


def torch_curve(tr, te, variant, batches):
    name = "torch-" + variant
    cfile = os.path.join(OUT, name + ".jsonl")
    env = {"LD_PRELOAD": peers.TCMALLOC} if DEVICE == "cpu" and os.path.exists(peers.TCMALLOC) else {}
    cmd = [TORCH_PY, os.path.join(ROOT, "bench", "torch_peer.py"), "--train", tr, "--test", te,
           "--batches", str(batches), "--batch", str(peers.BATCH), "--hidden", str(peers.HIDDEN),
           "--lr", str(peers.LR), "--threads", str(THREADS), "--eval-max", str(peers.EVAL),
           "--device", DEVICE, "--eval-every", str(EVAL_EVERY), "--curve", cfile]
    cmd += ["--tf32"] if variant == "tf32" else []
    out, rss, wall = peers.run(cmd, env, name)
    if out is None:
        return None
    final = json.loads(out.strip().splitlines()[-1])
    where = final.get("gpu") or DEVICE
    return {"name": f"PyTorch {final.get('torch', '')} on {where}, {variant}", "final": final,
            "peak_rss_gb": rss, "wall_seconds": wall,
            "curve": [json.loads(l) for l in open(cfile)]}


def main():
    tr, te = peers.subset_files()
    n = int(open(tr).readline().split()[0])
    batches = EPOCHS * (n // peers.BATCH)
    res = {"machine": {"cpu": cpu_name(), "cpus": os.cpu_count(), "uname": os.uname().release},
           "settings": {"train": tr, "test": te, "epochs": EPOCHS, "eval_every": EVAL_EVERY,
                        "device": DEVICE, "threads": THREADS, "batch": peers.BATCH,
                        "hidden": peers.HIDDEN, "lr": peers.LR, "sparsity": peers.SPARSITY}}
    res["kernels"] = subprocess.run([peers.SPARROW, "info", "--cpu"], capture_output=True,
                                    text=True).stdout.strip()
    peers.say("cpu:", res["machine"]["cpu"], "|", res["kernels"])
    systems = []
    for v in SPARROW_VARIANTS:
        systems.append(sparrow_curve(tr, te, v))
    for v in TORCH_VARIANTS:
        systems.append(torch_curve(tr, te, v, batches))
    systems = [s for s in systems if s and s["curve"]]
    if not systems:
        sys.exit("no system ran: see the .out files in " + OUT)
    # the target: the best P@1 every system reaches (the smallest of their maxima)
    target = min(max(p["p_at_1"] for p in s["curve"]) for s in systems)
    for s in systems:
        s["seconds_to_target"] = first_at(s["curve"], target)
        s["final_p_at_1"] = s["curve"][-1]["p_at_1"]
        s["final_p_at_5"] = s["curve"][-1]["p_at_5"]
        s["train_seconds"] = s["curve"][-1]["train_seconds"]
    ref = systems[0]["seconds_to_target"] if systems[0]["name"].startswith("sparrow") else None
    res.update(systems=systems, target_p_at_1=target)
    json.dump(res, open(os.path.join(OUT, "results.json"), "w"), indent=1)
    md = [f"# Time to P@1 {target:.4f}: sparrow on {THREADS} CPU threads, PyTorch on {DEVICE}\n",
          f"CPU: {res['machine']['cpu']} ({res['machine']['cpus']} logical CPUs); sparrow {res['kernels']}.\n",
          f"{n} training points of {peers.TRAIN}, {EPOCHS} epoch(s), batch {peers.BATCH}, hidden "
          f"{peers.HIDDEN}, Adam lr {peers.LR}, sparrow at sparsity {peers.SPARSITY}; P@1 on {peers.EVAL} "
          f"test points every {EVAL_EVERY} batches (not timed).\n",
          "| system | train s (all epochs) | final P@1 | final P@5 | seconds to the target | "
          "time to target / sparrow's | peak host RSS GB |", "|---|---|---|---|---|---|---|"]
    for s in systems:
        rel = s["seconds_to_target"] / ref if ref and s["seconds_to_target"] else None
        md.append(f"| {s['name']} | {s['train_seconds']:.1f} | {s['final_p_at_1']:.4f} | "
                  f"{s['final_p_at_5']:.4f} | {peers.fmt(s['seconds_to_target'], '{:.1f}')} | "
                  f"{peers.fmt(rel, '{:.3f}')} | {peers.fmt(s['peak_rss_gb'], '{:.2f}')} |")
    for s in systems:
        if "final" in s and s["final"].get("gpu_peak_gb") is not None:
            md.append(f"\n{s['name']}: peak GPU memory {s['final']['gpu_peak_gb']:.2f} GB, median batch "
                      f"{1e3 * s['final']['median_batch_seconds']:.2f} ms (forward+backward "
                      f"{1e3 * s['final']['median_fwd_bwd_seconds']:.2f}, Adam {1e3 * s['final']['median_adam_seconds']:.2f}).")
    if THREAD_SWEEP:
        md += [f"\nThreads, sparrow sampled, first {SWEEP_BATCHES} batches:\n",
               "| threads | samples/s | x 1 thread |", "|---|---|---|"]
        sweep, base = [], None
        for t in THREAD_SWEEP:
            r = peers.sparrow_run(tr, te, SWEEP_BATCHES, f"threads-{t}", threads=t)
            if not r:
                continue
            base = base or (r["samples_per_second"] if t == 1 else None)
            sweep.append({"threads": t, "samples_per_second": r["samples_per_second"]})
            md.append(f"| {t} | {r['samples_per_second']:.1f} | "
                      f"{peers.fmt(r['samples_per_second'] / base if base else None, '{:.2f}')} |")
        res["thread_sweep"] = sweep
    json.dump(res, open(os.path.join(OUT, "results.json"), "w"), indent=1)
    try:
        import plot_curves
        plot_curves.plot([(s["name"], [(p["train_seconds"], p["p_at_1"]) for p in s["curve"]])
                          for s in systems], os.path.join(OUT, "time_to_p1.png"),
                         f"amazon670k, {n} points, {EPOCHS} epoch(s): sparrow on {THREADS} CPU threads, "
                         f"PyTorch on {DEVICE}", target)
        md.append("\n![P@1 against training time](time_to_p1.png)")
    except Exception as e:  # the table still stands
        peers.say("no PNG:", e)
    open(os.path.join(OUT, "results.md"), "w").write("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
