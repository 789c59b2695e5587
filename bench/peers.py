#!/usr/bin/env python3
"""sparrow against its peers, one command (bench/peers.sh calls this).

Same data, same network (sparse input -> 128 ReLU -> softmax over all labels), same batch,
Adam with the same hyper-parameters, for every system; each is run in this process tree
one after the other, its answers (P@1/P@5 on the same test points) checked before its
speed is quoted. Systems:
  pytorch-tcmalloc   Debian python3-torch, OpenBLAS, LD_PRELOAD tcmalloc (BENCHMARKING.md)
  pytorch-tcmalloc-avx512  the same with OPENBLAS_CORETYPE=SKYLAKEX, on CPUs with AVX-512:
                     Debian's OpenBLAS 0.3.21 does not know AMD Zen 5 and picks its Haswell
                     (AVX2) kernels there; its AVX-512 ones are 1.3-1.5x faster on it
  pytorch-glibc      the same without tcmalloc (fewer batches: it is much slower)
  pytorch-pypi       the PyPI release in a venv, if VENV_TORCH names one
  pytorch-pypi-sparseadam  the same with the embedding's rows stepped by
                     torch.optim.SparseAdam (sparse gradients, lazy like sparrow's
                     --lazy-adam; the output layer stays on Adam): PyTorch's own way to
                     skip the input rows a batch does not touch
  thirdai            ThirdAI's BOLT, if VENV_THIRDAI names a venv where it imports
  sparrow-dense      sparrow --dense (few batches: it computes every output)
  sparrow-sampled    sparrow's LSH-sampled training, all threads and 1 thread
  sparrow-sampled-bf16  the same with the output layer's weights and moments in BF16
                     (--bf16-weights)
Then a label sweep (time per sample at several output sizes), a thread sweep, and a
STREAM copy against the bytes the sampled output layer moves.

Where a full epoch would take too long the figures are per batch over the first N
batches (stated in the table). Results: OUT/results.json, OUT/results.md,
OUT/label_sweep.png. Everything is configurable by environment variables (peers.sh)."""
import json, math, os, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
E = os.environ.get
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "out", "peers")
TRAIN, TEST = E("TRAIN", "/tmp/a670/train.txt"), E("TEST", "/tmp/a670/test.txt")
SUBSET, EVAL = int(E("SUBSET", "60000")), int(E("EVAL", "2000"))
BATCH, HIDDEN, LR = int(E("BATCH", "256")), int(E("HIDDEN", "128")), float(E("LR", "1e-3"))
INIT_STD = E("INIT_STD", "0.1")  # every system's initial weights ~ N(0, INIT_STD^2)
SPARSITY = E("SPARSITY", "0.005")
BATCHES = int(E("BATCHES", "100"))              # sampled and pytorch-tcmalloc
SLOW_BATCHES = int(E("SLOW_BATCHES", "4"))      # pytorch without tcmalloc, sparrow dense
THREADS = int(E("THREADS", str(os.cpu_count())))
LABELS = [int(x) for x in E("LABELS", "10000 100000 670091 2000000").split()]
# SWEEP_BATCHES 0: one whole epoch of the subset, rehashes included (what an epoch costs)
SWEEP_BATCHES, SWEEP_SLOW = int(E("SWEEP_BATCHES", "0")), int(E("SWEEP_SLOW", "2"))
SWEEP_ACTIVE = int(E("SWEEP_ACTIVE", "3350"))  # active output neurons a sample in the sweep
TCMALLOC = "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4"
SPARROW = E("SPARROW", os.path.join(ROOT, "build", "sparrow"))
PY = "/usr/bin/python3"
os.makedirs(OUT, exist_ok=True)
log = open(os.path.join(OUT, "log.txt"), "a")


def say(*a):
    msg = " ".join(str(x) for x in a)
    print(msg, flush=True)
    log.write(msg + "\n"); log.flush()


def run(cmd, env=None, name="run"):
    """Runs cmd; returns (stdout, peak RSS GB, wall s). The peak RSS is the child's own
    (os.wait4's rusage), so no /usr/bin/time is needed (the GPU machine has none)."""
    full_env = dict(os.environ)
    for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        full_env.pop(k, None)
    full_env.update(env or {})
    say("$", " ".join(cmd))
    ofile, efile = os.path.join(OUT, name + ".stdout"), os.path.join(OUT, name + ".stderr")
    t0 = time.time()
    with open(ofile, "w") as fo, open(efile, "w") as fe:
        p = subprocess.Popen(cmd, env=full_env, stdout=fo, stderr=fe, text=True)
        _, status, ru = os.wait4(p.pid, 0)
        rc = p.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    wall = time.time() - t0
    stdout, stderr = open(ofile).read(), open(efile).read()
    for f in (ofile, efile):
        os.remove(f)
    open(os.path.join(OUT, name + ".out"), "w").write(stdout + "\n--- stderr\n" + stderr)
    if rc != 0:
        say(f"  {name}: exit {rc}: {stderr.strip()[-600:]}")
        return None, None, wall
    return stdout, ru.ru_maxrss / 1e6, wall  # ru_maxrss: kilobytes on Linux


def subset_files(labels=None):
    """A random SUBSET of the training points and EVAL test points (fixed seed), with
    labels folded to `labels` outputs (label mod labels) or the output grown to it."""
    tag = f"{SUBSET}_{EVAL}_{labels or 'orig'}"
    tr, te = os.path.join(OUT, f"train_{tag}.txt"), os.path.join(OUT, f"test_{tag}.txt")
    if os.path.exists(tr) and os.path.exists(te):
        return tr, te
    import random
    for src, dst, n in ((TRAIN, tr, SUBSET), (TEST, te, EVAL)):
        with open(src) as f:
            head = f.readline().split()
            lines = f.readlines()
        rnd = random.Random(1)
        pick = sorted(rnd.sample(range(len(lines)), min(n, len(lines))))
        L = int(head[2]) if labels is None else labels
        with open(dst, "w") as g:
            g.write(f"{len(pick)} {head[1]} {L}\n")
            for k in pick:
                line = lines[k]
                if labels is not None and labels < int(head[2]):
                    lab, sp, rest = line.partition(" ")
                    if ":" not in lab and lab:
                        ls = sorted({int(x) % labels for x in lab.split(",")})
                        line = ",".join(map(str, ls)) + sp + rest
                g.write(line)
        del lines
    return tr, te


def has_avx512():
    try:
        return " avx512f" in open("/proc/cpuinfo").read()
    except OSError:
        return False


def l3_bytes():
    """The CPU's last-level cache in bytes as Linux reports it (None where it does not)."""
    try:
        size = open("/sys/devices/system/cpu/cpu0/cache/index3/size").read().strip()
        return int(size[:-1]) * {"K": 1 << 10, "M": 1 << 20}[size[-1]] if size[-1] in "KM" else int(size)
    except (OSError, ValueError):
        return None


def torch_run(tr, te, batches, tcmalloc, name, python=PY, labels=0, coretype=None, extra=()):
    env = {"LD_PRELOAD": TCMALLOC} if tcmalloc else {}
    if coretype:
        env["OPENBLAS_CORETYPE"] = coretype
    cmd = [python, os.path.join(ROOT, "bench", "torch_peer.py"), "--train", tr, "--test", te,
           "--batches", str(batches), "--batch", str(BATCH), "--hidden", str(HIDDEN),
           "--lr", str(LR), "--threads", str(THREADS), "--eval-max", str(EVAL), "--std", INIT_STD,
           *extra]
    out, rss, wall = run(cmd, env, name)
    if not out:
        return None
    r = json.loads(out.strip().splitlines()[-1])
    r.update(name=name, peak_rss_gb=rss, wall_seconds=wall, per_batches=batches)
    return r


def sparrow_cmd(tr, te, threads, mfile):
    """sparrow train on tr with the peers' network and optimizer, metrics to mfile."""
    return [SPARROW, "train", "--train", tr, "--test", te, "--batch", str(BATCH),
            "--hidden", str(HIDDEN), "--lr", str(LR), "--threads", str(threads), "--seed", "1",
            "--init-std", INIT_STD, "--metrics", mfile, "--quiet"]


def sparrow_run(tr, te, batches, name, dense=False, threads=THREADS, sparsity=None, extra=()):
    mfile = os.path.join(OUT, name + ".jsonl")
    cmd = sparrow_cmd(tr, te, threads, mfile) + (["--max-batches", str(batches)] if batches else [])
    cmd += E("SPARROW_ARGS", "").split() + list(extra)
    cmd += ["--dense"] if dense else ["--sparsity", sparsity or SPARSITY]
    out, rss, wall = run(cmd, None, name)
    if out is None:
        return None
    m = [json.loads(l) for l in open(mfile)][-1]
    return {"name": name, "system": "sparrow", "dense": dense, "threads": threads,
            "batches": m["step"], "per_batches": batches, "samples_per_second": m["samples_per_second"],
            "median_batch_seconds": BATCH / m["samples_per_second"], "train_seconds": m["train_seconds"],
            "rehash_seconds": m.get("rehash_seconds"), "optimizer_seconds": m.get("optimizer_seconds"),
            "optimizer_rows_per_step": m.get("optimizer_rows_per_step"),
            "optimizer_gb_per_s": m.get("optimizer_gb_per_s"), "p_at_1": m["p_at_1"], "p_at_5": m["p_at_5"],
            "active_out": m["active_out"], "peak_rss_gb": rss, "wall_seconds": wall}


def thirdai_run(tr, te, batches, name):
    venv = E("VENV_THIRDAI")
    if not venv:
        return None
    cmd = [os.path.join(venv, "bin", "python"), os.path.join(ROOT, "bench", "thirdai_peer.py"),
           "--train", tr, "--test", te, "--batches", str(batches), "--batch", str(BATCH),
           "--hidden", str(HIDDEN), "--lr", str(LR), "--sparsity", SPARSITY, "--threads", str(THREADS)]
    out, rss, wall = run(cmd, None, name)
    if not out:
        text = open(os.path.join(OUT, name + ".out")).read()
        try:
            err = json.loads(text.split("\n--- stderr")[0].strip().splitlines()[-1])["error"]
        except Exception:
            err = text[-800:]
        return {"name": name, "system": "thirdai", "error": err}
    r = json.loads(out.strip().splitlines()[-1])
    r.update(name=name, peak_rss_gb=rss, wall_seconds=wall, per_batches=batches)
    return r


def main():
    t_start = time.time()
    res = {"machine": {"cpus": os.cpu_count(), "loadavg_start": os.getloadavg(),
                       "uname": os.uname().release},
           "settings": {"batch": BATCH, "hidden": HIDDEN, "lr": LR, "sparsity": SPARSITY,
                        "subset": SUBSET, "eval": EVAL, "threads": THREADS, "batches": BATCHES,
                        "slow_batches": SLOW_BATCHES, "train": TRAIN, "test": TEST}}
    if not os.path.exists(SPARROW):  # bench/peers.sh builds first
        subprocess.run(["bash", os.path.join(ROOT, "scripts", "build.sh")], check=True)
    res["kernels"] = subprocess.run([SPARROW, "info", "--cpu"], capture_output=True, text=True).stdout.strip()
    alt = subprocess.run(["update-alternatives", "--display", "libblas.so.3-x86_64-linux-gnu"],
                         capture_output=True, text=True).stdout
    res["blas"] = "openblas" if "currently points to" in alt and "openblas" in alt.split("currently points to")[1].splitlines()[0] else "NOT openblas: " + alt[:200]
    say("kernels:", res["kernels"], "| blas:", res["blas"])

    # STREAM copy
    stream = os.path.join(OUT, "stream")
    subprocess.run(["gcc", "-O2", "-fopenmp", os.path.join(ROOT, "bench", "stream.c"), "-o", stream], check=True)
    res["stream"] = json.loads(subprocess.run([stream, E("STREAM_MB", "1024")], capture_output=True, text=True).stdout)
    say("stream:", res["stream"])

    # the main comparison at the data set's own label count
    tr, te = subset_files()
    sysres = []
    only = set(E("SYSTEMS", "pytorch-tcmalloc pytorch-tcmalloc-avx512 pytorch-glibc pytorch-pypi "
                 "pytorch-pypi-sparseadam thirdai "
                 "sparrow-dense sparrow-sampled sparrow-sampled-bf16 sparrow-sampled-1t").split())
    if "sparrow-sampled" in only: sysres.append(sparrow_run(tr, te, BATCHES, "sparrow-sampled"))
    if "sparrow-sampled-bf16" in only:
        sysres.append(sparrow_run(tr, te, BATCHES, "sparrow-sampled-bf16", extra=["--bf16-weights"]))
    if "sparrow-sampled-1t" in only: sysres.append(sparrow_run(tr, te, BATCHES, "sparrow-sampled-1t", threads=1))
    if "pytorch-tcmalloc" in only: sysres.append(torch_run(tr, te, BATCHES, True, "pytorch-tcmalloc"))
    if "pytorch-tcmalloc-avx512" in only and has_avx512():
        sysres.append(torch_run(tr, te, BATCHES, True, "pytorch-tcmalloc-avx512", coretype="SKYLAKEX"))
    if "pytorch-glibc" in only: sysres.append(torch_run(tr, te, SLOW_BATCHES, False, "pytorch-glibc"))
    if "pytorch-pypi" in only and E("VENV_TORCH"):
        sysres.append(torch_run(tr, te, BATCHES, True, "pytorch-pypi", python=os.path.join(E("VENV_TORCH"), "bin", "python")))
    if "pytorch-pypi-sparseadam" in only and E("VENV_TORCH"):
        sysres.append(torch_run(tr, te, BATCHES, True, "pytorch-pypi-sparseadam",
                                python=os.path.join(E("VENV_TORCH"), "bin", "python"),
                                extra=["--sparse-adam"]))
    if "thirdai" in only: sysres.append(thirdai_run(tr, te, BATCHES, "thirdai"))
    if "sparrow-dense" in only: sysres.append(sparrow_run(tr, te, SLOW_BATCHES, "sparrow-dense", dense=True))
    sysres = [r for r in sysres if r]
    res["systems"] = sysres
    torch_best = max((r for r in sysres if r.get("system") == "pytorch" and "samples_per_second" in r),
                     key=lambda r: r["samples_per_second"], default=None)
    for r in sysres:
        if torch_best and "samples_per_second" in r:
            r["speed_vs_best_pytorch"] = r["samples_per_second"] / torch_best["samples_per_second"]
    s2 = next((r for r in sysres if r["name"] == "sparrow-sampled"), None)
    s1 = next((r for r in sysres if r["name"] == "sparrow-sampled-1t"), None)
    if s1 and s2:
        res["thread_speedup"] = s2["samples_per_second"] / s1["samples_per_second"]
    # bytes the sampled output layer moves per batch (estimate): forward and input-gradient
    # reads of the active rows, then Adam reading and writing w, m, v of the touched rows
    if s2:
        L = int(open(tr).readline().split()[2])
        row = 4 * math.ceil(HIDDEN / 16) * 16
        act = s2["active_out"]
        touched = L * (1 - (1 - act / L) ** BATCH)
        per_batch = BATCH * act * row * 2 + touched * row * 6
        res["output_layer"] = {"active_per_sample": act, "touched_rows_per_batch_est": touched,
                               "bytes_per_batch_est": per_batch,
                               "gb_per_s": per_batch / s2["median_batch_seconds"] / 1e9}
        res["output_layer"]["fraction_of_stream"] = res["output_layer"]["gb_per_s"] / res["stream"]["stream_copy_gb_per_s"]
        # what could come from cache instead of memory: the layer's weights and moments
        # (float) against the last-level cache, so that a figure above STREAM reads right
        res["output_layer"]["state_bytes"] = L * row * 3
        res["output_layer"]["l3_bytes"] = l3_bytes()
        # the optimizer alone, as sparrow measures it: the bytes of weights, moments and
        # gradient rows its steps read and wrote over the time they took, against an
        # in-place update (read and write the same lines) of the same run
        if s2.get("optimizer_gb_per_s"):
            upd = res["stream"].get("stream_update_gb_per_s")
            res["optimizer"] = {"rows_per_step": s2["optimizer_rows_per_step"],
                                "gb_per_s": s2["optimizer_gb_per_s"],
                                "share_of_train_seconds": s2["optimizer_seconds"] / s2["train_seconds"],
                                "fraction_of_stream_update": s2["optimizer_gb_per_s"] / upd if upd else None}
    json.dump(res, open(os.path.join(OUT, "results.json"), "w"), indent=1)

    # label sweep
    sweep = []
    if E("SWEEP", "1") != "0":
        for L in LABELS:
            trL, teL = subset_files(L)
            row = {"labels": L}
            # the same number of active neurons at every size (SLIDE's claim: the cost
            # follows the active set, not the layer); SWEEP_ACTIVE=0: the same fraction
            sp = f"{min(1.0, SWEEP_ACTIVE / L):.6g}" if SWEEP_ACTIVE else SPARSITY
            row["sparrow_sparsity"] = sp
            r = sparrow_run(trL, teL, SWEEP_BATCHES, f"sweep-{L}-sampled", sparsity=sp)
            if r:
                row["sparrow_sampled_ms_per_sample"] = 1e3 / r["samples_per_second"]
                row["sparrow_sampled_batches"] = r["batches"]
                row["sparrow_sampled_rehash_share"] = (r["rehash_seconds"] or 0) / r["train_seconds"]
            if E("SWEEP_BF16", "1") != "0":
                r = sparrow_run(trL, teL, SWEEP_BATCHES, f"sweep-{L}-sampled-bf16", sparsity=sp,
                                extra=["--bf16-weights"])
                if r: row["sparrow_sampled_bf16_ms_per_sample"] = 1e3 / r["samples_per_second"]
            if E("SWEEP_DENSE", "1") != "0":
                r = sparrow_run(trL, teL, SWEEP_SLOW, f"sweep-{L}-dense", dense=True)
                if r: row["sparrow_dense_ms_per_sample"] = 1e3 / r["samples_per_second"]
            if L <= int(E("SWEEP_TORCH_MAX", "2000000")):
                r = torch_run(trL, teL, SWEEP_SLOW + 2, True, f"sweep-{L}-pytorch",
                              coretype="SKYLAKEX" if has_avx512() else None)
                if r: row["pytorch_ms_per_sample"] = 1e3 / r["samples_per_second"]
            say("sweep:", row)
            sweep.append(row)
        res["label_sweep"] = sweep
        by = {r["labels"]: r.get("sparrow_sampled_ms_per_sample") for r in sweep}
        if by.get(100000) and by.get(2000000):
            res["sweep_growth_100k_to_2m"] = by[2000000] / by[100000]
        by = {r["labels"]: r.get("sparrow_sampled_bf16_ms_per_sample") for r in sweep}
        if by.get(100000) and by.get(2000000):
            res["sweep_growth_100k_to_2m_bf16"] = by[2000000] / by[100000]
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
            fig, ax = plt.subplots(figsize=(6, 4))
            for key, lab in (("pytorch_ms_per_sample", "PyTorch (OpenBLAS, tcmalloc)"),
                             ("sparrow_dense_ms_per_sample", "sparrow --dense"),
                             ("sparrow_sampled_ms_per_sample", "sparrow sampled"),
                             ("sparrow_sampled_bf16_ms_per_sample", "sparrow sampled, BF16 weights")):
                pts = [(r["labels"], r[key]) for r in sweep if key in r]
                if pts: ax.plot(*zip(*pts), marker="o", label=lab)
            ax.set_xscale("log"); ax.set_yscale("log")
            ax.set_xlabel("output labels"); ax.set_ylabel("ms per training sample")
            ax.set_title(f"batch {BATCH}, hidden {HIDDEN}, {THREADS} threads"); ax.legend()
            fig.tight_layout(); fig.savefig(os.path.join(OUT, "label_sweep.png"), dpi=120)
        except Exception as e:  # the table still stands
            say("no PNG:", e)
    res["machine"]["loadavg_end"] = os.getloadavg()
    res["wall_seconds"] = time.time() - t_start
    json.dump(res, open(os.path.join(OUT, "results.json"), "w"), indent=1)
    write_md(res)


def fmt(x, f="{:.3g}"):
    return "-" if x is None else f.format(x)


def write_md(res):
    s = res["settings"]
    md = [f"# sparrow against its peers\n",
          f"sparrow {res['kernels']}; PyTorch's BLAS: {res['blas']}; {res['machine']['cpus']} CPUs, load average "
          f"{res['machine']['loadavg_start'][0]:.1f} at start, {res['machine']['loadavg_end'][0]:.1f} at end.\n",
          f"Data: {s['subset']} random training points of {s['train']}, P@k on {s['eval']} random test "
          f"points; batch {s['batch']}, hidden {s['hidden']}, Adam lr {s['lr']}, sampled sparsity "
          f"{s['sparsity']}. Speeds are per batch over the first N batches (column), not full epochs.\n",
          "| system | batches | samples/s | ms/sample | x best PyTorch | P@1 | P@5 | peak RSS GB |",
          "|---|---|---|---|---|---|---|---|"]
    for r in res["systems"]:
        if "error" in r:
            md.append(f"| {r['name']} | did not run: {r['error'][-200:].strip().replace(chr(10), ' ')} | | | | | | |")
            continue
        md.append(f"| {r['name']} | {r['per_batches']} | {fmt(r['samples_per_second'], '{:.1f}')} | "
                  f"{fmt(1e3 / r['samples_per_second'], '{:.2f}')} | {fmt(r.get('speed_vs_best_pytorch'), '{:.2f}')} | "
                  f"{fmt(r.get('p_at_1'), '{:.4f}')} | {fmt(r.get('p_at_5'), '{:.4f}')} | {fmt(r.get('peak_rss_gb'), '{:.2f}')} |")
    if "thread_speedup" in res:
        md.append(f"\nThreads: sampled with {s['threads']} threads is {res['thread_speedup']:.2f}x 1 thread.")
    if "output_layer" in res:
        o = res["output_layer"]
        md.append(f"\nSampled output layer: {o['active_per_sample']:.0f} active rows a sample, about "
                  f"{o['touched_rows_per_batch_est']:.0f} rows touched a batch; about "
                  f"{o['bytes_per_batch_est'] / 1e9:.2f} GB moved a batch = {o['gb_per_s']:.2f} GB/s against a "
                  f"STREAM copy of {res['stream']['stream_copy_gb_per_s']:.2f} GB/s in the same run "
                  f"({100 * o['fraction_of_stream']:.0f}%).")
        if o.get("l3_bytes"):
            md.append(f"The layer's weights and moments take {o['state_bytes'] / 1e6:.0f} MB against "
                      f"{o['l3_bytes'] / 1e6:.0f} MB of last-level cache: above 100% means that part "
                      f"of the rows came from cache, not memory (the figure counts every byte as moved).")
    if res.get("optimizer"):
        o = res["optimizer"]
        upd = (f" against an in-place STREAM update of {res['stream']['stream_update_gb_per_s']:.2f} GB/s "
               f"({100 * o['fraction_of_stream_update']:.0f}%)") if o.get("fraction_of_stream_update") else ""
        md.append(f"\nIts optimizer (measured by sparrow): {o['rows_per_step']:.0f} rows stepped a batch, "
                  f"{o['gb_per_s']:.2f} GB/s of weights and moments read and written{upd}; "
                  f"{100 * o['share_of_train_seconds']:.0f}% of the training time.")
    if res.get("label_sweep"):
        md += ["\n| labels | PyTorch ms/sample | sparrow dense ms/sample | sparrow sampled ms/sample | "
               "sampled, BF16 weights | sampled: batches (rehash share) | sampled sparsity |",
               "|---|---|---|---|---|---|---|"]
        for r in res["label_sweep"]:
            share = r.get("sparrow_sampled_rehash_share")
            md.append(f"| {r['labels']} | {fmt(r.get('pytorch_ms_per_sample'))} | "
                      f"{fmt(r.get('sparrow_dense_ms_per_sample'))} | {fmt(r.get('sparrow_sampled_ms_per_sample'))} | "
                      f"{fmt(r.get('sparrow_sampled_bf16_ms_per_sample'))} | "
                      f"{r.get('sparrow_sampled_batches', '')} ({fmt(100 * share if share is not None else None, '{:.0f}')}%) | "
                      f"{r.get('sparrow_sparsity', SPARSITY)} |")
        if res.get("sweep_growth_100k_to_2m"):
            md.append(f"\nsparrow sampled, 100K -> 2M labels: time per sample x{res['sweep_growth_100k_to_2m']:.2f}.")
        if res.get("sweep_growth_100k_to_2m_bf16"):
            md.append(f"With BF16 weights (--bf16-weights): x{res['sweep_growth_100k_to_2m_bf16']:.2f}.")
        md.append("\n![label sweep](label_sweep.png)")
    open(os.path.join(OUT, "results.md"), "w").write("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
