#!/usr/bin/env python3
"""P@1 against training seconds, one line per run: the picture of bench/time_to_p1.py's
table (it calls plot() itself), or of any curves saved before.

    python3 bench/plot_curves.py OUT.png FILE [FILE ...]

Each FILE is a time_to_p1 results.json (every system in it), a sparrow metrics file
(JSON lines with "step", as `sparrow train --metrics` writes) or a torch_peer curve
(JSON lines with "batch"); a JSON-lines file is labelled with its name. A horizontal
line marks results.json's target P@1."""
import json, os, sys


def load(path):
    """[(label, [(train_seconds, p_at_1), ...])], target P@1 or None."""
    if path.endswith(".json"):
        res = json.load(open(path))
        return ([(s["name"], [(p["train_seconds"], p["p_at_1"]) for p in s["curve"]])
                 for s in res["systems"]], res.get("target_p_at_1"))
    pts = []
    for line in open(path):
        m = json.loads(line)
        if "p_at_1" in m and ("step" in m or "batch" in m) and m["p_at_1"] is not None:
            pts.append((m["train_seconds"], m["p_at_1"]))
    if not pts:
        raise ValueError(f"{path}: no evaluations with train_seconds and p_at_1")
    return [(os.path.splitext(os.path.basename(path))[0], pts)], None


def plot(series, out, title="", target=None):
    """series: [(label, [(seconds, p_at_1), ...])]; writes the PNG out."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label, pts in series:
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".", label=label)
    if target is not None:
        ax.axhline(target, color="grey", linestyle=":", linewidth=1, label=f"target P@1 {target:.4f}")
    ax.set_xlabel("training seconds (evaluations not counted)")
    ax.set_ylabel("P@1")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main():
    if len(sys.argv) < 3 or sys.argv[1].startswith("-"):
        sys.exit(__doc__)
    series, target = [], None
    for f in sys.argv[2:]:
        s, t = load(f)
        series += s
        target = target if t is None else t
    plot(series, sys.argv[1], "P@1 against training time", target)
    print("wrote", sys.argv[1])


if __name__ == "__main__":
    main()
