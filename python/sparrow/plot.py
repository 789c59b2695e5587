#!/usr/bin/python3
"""Learning curves of sparrow runs: P@k and training loss against time and epochs.

    sparrow plot METRICS.jsonl [METRICS.jsonl ...] [--out curve.png]
    python3 plot.py METRICS.jsonl ... [--out curve.png]

Reads the metrics files that `sparrow train --metrics FILE` writes (JSON Lines: a first
line {"run": {...}} with the run's configuration, then one object per evaluation) and
draws one PNG with four panels: P@1 (solid) and P@5 (dashed) against training time and
against epochs, and the training loss against both. Each file is one run, one colour,
so that runs can be compared (sampled against dense, two sparsities, two hash
families). Training time is train_seconds: evaluation and I/O excluded.

A stand-alone script: it imports only the standard library, numpy and matplotlib (Agg
backend, no display needed), so that the command-line tool can run it with
/usr/bin/python3 and Debian's python3-matplotlib, without the sparrow package.

The PNG records where it came from in its text chunks: "Source" lists each file with
the SHA-256 of its bytes and the number of evaluations drawn from it.

Exit status: 0 success, 2 bad input (a missing file, a line that is not JSON, a value
of the wrong type, a file without evaluations), 1 anything else (out of memory: "sparrow
plot: out of memory ...", as the other commands).
"""
import argparse
import errno
import hashlib
import io
import json
import math
import mmap
import os
import resource
import stat
import sys

plt = None  # matplotlib.pyplot, imported by load_matplotlib()

# What OpenBLAS's first call (numpy.linalg, which matplotlib's transforms call) allocates
# at once: its buffer, 128 MB (BUFFER_SIZE = 32 << 22 on x86_64), and 4 MB for what numpy
# allocates before it.
BLAS_BUFFER = 132 << 20


class BadInput(Exception):
    """A problem with the user's files: reported as 'file:line: problem', exit 2."""


class CannotDraw(Exception):
    """The drawing cannot start (matplotlib missing or not loadable): exit 1."""


def load_matplotlib():
    """Imports matplotlib (Agg) and has OpenBLAS take its buffer now, while there is room.

    Under an address-space limit (ulimit -v) Debian's OpenBLAS (0.3.21) never returns
    from a first call whose 128 MB buffer cannot be had: it retried the allocation
    forever, so `sparrow plot` hung (ulimit -v 150-200 MB). The room is checked here by
    mapping that much address space and unmapping it, and then a 2 x 2 inverse makes
    OpenBLAS allocate the buffer it keeps for the rest of the run; every later shortage
    is Python's MemoryError, reported as out of memory."""
    global plt
    if plt is not None:
        return
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot
        import numpy
        room = mmap.mmap(-1, BLAS_BUFFER)
        room.close()
        numpy.linalg.inv(numpy.eye(2))
    except ImportError as e:
        if short_of_address_space(e):
            raise MemoryError() from None
        raise CannotDraw(f"cannot import matplotlib: {e} "
                         "(Debian: apt-get install python3-matplotlib)") from None
    except OSError as e:
        if e.errno == errno.ENOMEM:
            raise MemoryError() from None
        raise CannotDraw(f"cannot load matplotlib: {e}") from None
    plt = matplotlib.pyplot


def short_of_address_space(error):
    """Whether an ImportError is a shared object that could not be mapped (ulimit -v)."""
    text = str(error)
    return "Cannot allocate memory" in text or "failed to map segment" in text


def out_of_memory_message():
    limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    where = "" if limit == resource.RLIM_INFINITY else \
        f" (the address-space limit, ulimit -v, is {limit >> 20} MB; a plot takes about 260 MB)"
    return "out of memory" + where


def is_number(v):
    """A JSON number (bool is not one, though Python says it is an int)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# What the plot reads from each kind of line, and the JSON types each may hold (null is
# always allowed: the value is then left out). A value of another type is bad input.
HEADER_OBJECTS = ("config", "data")
CONFIG_TYPES = {"sparsity": "number", "tables": "number", "hash": "string", "dense": "bool"}
EVAL_NUMBERS = ("epoch", "samples", "train_seconds", "loss", "p_at_1", "p_at_5")


def check_type(where, key, value, kind):
    ok = {"number": is_number, "string": lambda v: isinstance(v, str),
          "bool": lambda v: isinstance(v, bool), "object": lambda v: isinstance(v, dict)}[kind]
    if value is not None and not ok(value):
        raise BadInput(f'{where}: "{key}" must be a {"JSON " + kind if kind != "bool" else "true or false"}'
                       f" or null, got {json.dumps(value)[:40]}")


def read_run(path):
    """The header (a dict, {} if absent) and the evaluations (a list of dicts) of one
    metrics file, and the SHA-256 of its bytes. Every value the plot reads is checked
    for its type here, so that a damaged file is refused naming its line."""
    chunks = []
    try:
        # "-": standard input, as for the data files of the other commands
        with (os.fdopen(os.dup(sys.stdin.fileno()), "rb") if path == "-" else open(path, "rb")) as f:
            # by pieces, a NUL byte refused as soon as it is read (no text file holds one),
            # so that a binary file or /dev/zero is not read whole first
            for chunk in iter(lambda: f.read(1 << 20), b""):
                at = chunk.find(b"\0")
                if at >= 0:
                    line = sum(c.count(b"\n") for c in chunks) + chunk.count(b"\n", 0, at) + 1
                    raise BadInput(f"{path}:{line}: a NUL byte: not a text file")
                chunks.append(chunk)
    except OSError as e:
        raise BadInput(f"{path}: cannot read: {e.strerror}")
    data = b"".join(chunks)
    lines = data.decode("utf-8", "replace").splitlines()
    header, evals = {}, []
    # A resumed run continues the file with its own header, and its train_seconds count
    # its own process from 0: they are drawn after the time the file had reached.
    offset, reached = 0.0, 0.0
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            obj = json.loads(line)
        except ValueError as e:
            if number == len(lines) and not data.endswith(b"\n"):
                # a line still being written (the file of a running train) or cut short
                # (a full disk): what comes before it is whole
                print(f"sparrow plot: {where}: an incomplete last line left out (a run still "
                      "writing it?)", file=sys.stderr)
                break
            raise BadInput(f"{where}: not a JSON object ({e.msg})")
        if not isinstance(obj, dict):
            raise BadInput(f"{where}: not a JSON object")
        if "run" in obj:
            check_type(where, "run", obj["run"], "object")
            header = obj["run"] or {}
            offset = reached
            for key in HEADER_OBJECTS:
                check_type(where, key, header.get(key), "object")
            for key, kind in CONFIG_TYPES.items():
                check_type(where, key, (header.get("config") or {}).get(key), kind)
            check_type(where, "train_points", (header.get("data") or {}).get("train_points"), "number")
            check_type(where, "library_version", header.get("library_version"), "string")
        elif "step" in obj:
            for key in EVAL_NUMBERS:
                check_type(where, key, obj.get(key), "number")
            t = obj.get("train_seconds")
            if t is not None and math.isfinite(t):
                obj["train_seconds"] = t + offset
                reached = max(reached, t + offset)
            evals.append(obj)
    if not evals:
        raise BadInput(f"{path}: no evaluations (is this a 'sparrow train --metrics' file?)")
    return header, evals, hashlib.sha256(data).hexdigest()


def run_label(path, header):
    """A legend entry: the file name and what distinguishes runs (dense or sampled at
    which sparsity, hash family, tables)."""
    name = "stdin" if path == "-" else os.path.basename(path)
    if name.endswith(".jsonl"):
        name = name[: -len(".jsonl")]
    config = header.get("config") or {}
    if not config:
        return name
    if config.get("dense"):
        return name if name == "dense" else f"{name}: dense"
    parts = []
    if config.get("sparsity") is not None:
        parts.append(f"sparsity {config['sparsity']:g}")
    if config.get("hash"):
        parts.append(config["hash"])
    if config.get("tables") is not None:
        parts.append(f"L {config['tables']}")
    return f"{name}: {', '.join(parts)}" if parts else name


def epochs_axis(header, evals):
    """Fractional epochs at each evaluation: samples / training points when the header
    says how many points the training set has, else the epoch number."""
    points = (header.get("data") or {}).get("train_points")
    xs = []
    for e in evals:
        if points and points > 0 and e.get("samples") is not None:
            xs.append(e["samples"] / points)
        else:
            xs.append(float(e.get("epoch") or 0))
    return [x if math.isfinite(x) else None for x in xs]


def series(evals, key):
    """The values of key, None (a gap in the line) where missing, null or not finite."""
    return [e[key] if is_number(e.get(key)) and math.isfinite(e[key]) else None for e in evals]


def has_values(values):
    return any(v is not None for v in values)


def plot(paths, out, title):
    load_matplotlib()
    runs = [(p,) + read_run(p) for p in paths]
    fig, axes = plt.subplots(2, 2, figsize=(12, 8), sharex="col")
    (ax_pt, ax_pe), (ax_lt, ax_le) = axes
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    any_p = False
    for i, (path, header, evals, _) in enumerate(runs):
        color = colors[i % len(colors)]
        label = run_label(path, header)
        t = series(evals, "train_seconds")
        ep = epochs_axis(header, evals)
        p1, p5, loss = series(evals, "p_at_1"), series(evals, "p_at_5"), series(evals, "loss")
        # A marker per evaluation: a run with one or two evaluations still shows up.
        style = dict(color=color, marker="o", markersize=3, linewidth=1.6)
        if has_values(p1):
            any_p = True
            ax_pt.plot(t, p1, label=label, **style)
            ax_pe.plot(ep, p1, label=label, **style)
        if has_values(p5):
            ax_pt.plot(t, p5, linestyle="--", **dict(style, linewidth=1.1))
            ax_pe.plot(ep, p5, linestyle="--", **dict(style, linewidth=1.1))
        ax_lt.plot(t, loss, label=label, **style)
        ax_le.plot(ep, loss, label=label, **style)

    ax_pt.set_title("precision on the test set (P@1 solid, P@5 dashed)")
    ax_pe.set_title("the same against epochs")
    # A sampled run's loss is the softmax over its active outputs only: lower than a
    # dense run's at the same quality, so compare P@k across modes, loss within one.
    ax_lt.set_title("training loss since the previous evaluation\n"
                    "(sampled: over the active outputs only)", fontsize=11)
    ax_le.set_title("the same against epochs\n ", fontsize=11)
    for ax in (ax_pt, ax_pe):
        ax.set_ylabel("precision")
        ax.set_ylim(bottom=0)
        if not any_p:
            ax.text(0.5, 0.5, "no test set in these runs", transform=ax.transAxes,
                    ha="center", va="center", color="gray")
    for ax in (ax_lt, ax_le):
        ax.set_ylabel("loss (softmax cross-entropy)")
    ax_lt.set_xlabel("training time (s, evaluation excluded)")
    ax_le.set_xlabel("epochs")
    for ax in axes.flat:
        ax.grid(True, alpha=0.3)
        ax.set_xlim(left=0)
    # One legend for the figure: the runs are the same in every panel.
    handles, labels = ax_lt.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 3), frameon=False)
    versions = sorted({h.get("library_version") for _, h, _, _ in runs if h.get("library_version")})
    suptitle = title or ("sparrow: " + ", ".join(os.path.basename(p) for p in paths))
    if versions:
        suptitle += f"   (library {', '.join(versions)})"
    fig.suptitle(suptitle)
    if min(len(e) for _, _, e, _ in runs) < 3:
        # A curve needs points: say how to get more than one per epoch.
        fig.text(0.99, 0.005, "few evaluations: 'sparrow train --eval-every N' adds some "
                 "within each epoch", ha="right", va="bottom", fontsize=8, color="gray")
    legend_rows = (len(labels) + 2) // 3
    fig.tight_layout(rect=(0, 0.03 + 0.03 * legend_rows, 1, 0.97))
    source = "; ".join(f"{p} sha256={digest} evaluations={len(e)}" for p, _, e, digest in runs)
    save_png(fig, out, metadata={"Software": "sparrow plot", "Source": source})
    plt.close(fig)
    return sum(len(e) for _, _, e, _ in runs)


def save_png(fig, out, metadata):
    """A PNG at exactly the path out, whatever its extension (matplotlib chose the format
    from the extension: "x.jsonl" failed with a traceback, and a name without one was
    written to "NAME.png" while the tool said "wrote NAME"). The picture is drawn in
    memory first. A regular file (or a new one, links followed) is written beside its
    place, with the old file's mode, and renamed onto it, so that a failure leaves no
    half-written picture and the old file as it was; anything else (/dev/stdout, a pipe)
    is written to directly."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, metadata=metadata)
    png = buf.getvalue()
    if out == "-":  # standard output, as '-' is standard input for the metrics files
        sys.stdout.buffer.write(png)
        sys.stdout.buffer.flush()
        return
    try:
        st = os.stat(out)
    except OSError:
        st = None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise BadInput(f"{out}: cannot write: a directory")
    if st is not None and not stat.S_ISREG(st.st_mode):
        with open(out, "wb") as f:
            f.write(png)
        return
    real = os.path.realpath(out)
    tmp = f"{real}.tmp.{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            if st is not None:  # the replaced picture's mode: one made private stays so
                try:
                    os.fchmod(f.fileno(), stat.S_IMODE(st.st_mode) & 0o777)
                except OSError:
                    pass
            f.write(png)
        os.replace(tmp, real)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


# A title matplotlib can draw: a longer one failed deep inside its rasteriser ("raster
# overflow") with a traceback and exit 1.
MAX_TITLE = 300


def refuse_write_protected(out):
    """A picture made read-only to keep it (chmod 444) is refused, as sparrow's model and
    data writes refuse theirs (spr_file_replace_check): the rename onto it needs only the
    directory's permission, so it was replaced all the same. Root passes access() but
    not a file no one may write."""
    try:
        st = os.stat(out)
    except OSError:
        return
    if not stat.S_ISREG(st.st_mode):
        return
    if st.st_mode & 0o222 and os.access(out, os.W_OK):
        return
    raise BadInput(f"{out}: cannot write: the file is write-protected (mode "
                   f"{stat.S_IMODE(st.st_mode) & 0o777:03o}): writing would replace it; make "
                   "it writable (chmod u+w) or write elsewhere")


def check_paths(metrics, out, title):
    """Bad arguments refused before anything is read or drawn: --out naming one of the
    metrics files (it replaced the file with the picture) or a write-protected picture, a
    title too long to draw."""
    if metrics.count("-") > 1:
        raise BadInput("standard input ('-') named more than once")
    if out == "-" and sys.stdout.isatty():  # as gzip: binary is not written to a terminal
        raise BadInput("--out -: not writing a PNG to a terminal (redirect standard output, "
                       "or --out FILE)")
    for path in metrics:
        try:
            if path != "-" and os.path.exists(out) and os.path.samefile(out, path):
                raise BadInput(f"--out {out} is also the metrics file {path}: it would be overwritten")
        except OSError:
            pass  # a missing metrics file is reported when it is read
    if out != "-":
        refuse_write_protected(out)
    if title is not None and (len(title) > MAX_TITLE or title.count("\n") > 2):
        raise BadInput(f"--title is too long ({len(title)} characters, {title.count(chr(10)) + 1} "
                       f"lines; at most {MAX_TITLE} characters on 3 lines)")


def main(argv):
    parser = argparse.ArgumentParser(
        prog="sparrow plot",
        description="Draws P@k and loss against time and epochs for sparrow metrics files.")
    parser.add_argument("metrics", nargs="+", help="metrics files (sparrow train --metrics; - reads standard input)")
    parser.add_argument("--out", default="curve.png", help="PNG to write (default curve.png; - writes standard output)")
    parser.add_argument("--title", default=None, help="figure title")
    args = parser.parse_args(argv)
    # Made before anything can run out of memory, and written after the failed frames are
    # gone: formatting it where the MemoryError was caught failed again (ulimit -v 251 MB).
    no_memory = f"sparrow plot: {out_of_memory_message()}\n".encode()
    short = False
    try:
        check_paths(args.metrics, args.out, args.title)
        n = plot(args.metrics, args.out, args.title)  # loads matplotlib first
    except BadInput as e:
        print(f"sparrow plot: {e}", file=sys.stderr)
        return 2
    except CannotDraw as e:
        print(f"sparrow plot: {e}", file=sys.stderr)
        return 1
    except MemoryError:
        short = True
    except OSError as e:
        if e.errno != errno.ENOMEM:
            print(f"sparrow plot: {args.out}: cannot write: {e.strerror or e}", file=sys.stderr)
            return 2
        short = True
    if short:
        sys.stderr.flush()
        os.write(2, no_memory)
        return 1
    # not into the picture when it went to stdout (--out /dev/stdout | ...)
    report = sys.stderr if is_stdout(args.out) else sys.stdout
    name = "standard output" if args.out == "-" else args.out
    print(f"wrote {name}: {len(args.metrics)} run(s), {n} evaluations", file=report)
    return 0


def is_stdout(path):
    if path == "-":
        return True
    try:
        a, b = os.stat(path), os.fstat(sys.stdout.fileno())
    except (OSError, ValueError):
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
