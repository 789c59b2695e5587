"""sparrow plot (python/sparrow/plot.py) on damaged metrics files: every value the plot
reads that has the wrong JSON type is refused with exit 2 naming the file, the line and
the key, never a Python traceback; non-finite numbers are gaps."""
import contextlib
import io
import json
import random

import pytest

from sparrow import plot

HEADER = {"run": {"command": "train", "library_version": "0.1.0",
                  "config": {"train": "t.txt", "sparsity": 0.01, "hash": "simhash",
                             "tables": 50, "dense": False},
                  "data": {"train_points": 10000, "features": 100, "labels": 20}}}


def evaluation(step):
    return {"epoch": 1, "partial_epoch": True, "step": step, "samples": 128 * step,
            "train_seconds": 0.01 * step, "loss": 4.0 - 0.01 * step, "p_at_1": 0.2 + 0.001 * step,
            "p_at_5": 0.1 + 0.001 * step}


def lines():
    return [json.loads(json.dumps(HEADER))] + [evaluation(s) for s in (20, 40, 60)]


def run_plot(tmp_path, objs):
    path = tmp_path / "m.jsonl"
    path.write_text("".join(json.dumps(o) + "\n" for o in objs))
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = plot.main([str(path), "--out", str(tmp_path / "m.png")])
    return rc, err.getvalue(), str(path)


def test_png_not_written_to_a_terminal(tmp_path, monkeypatch):
    """--out - with standard output on a terminal is refused (a PNG's bytes there garble
    it), before anything is read or drawn."""
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    path = tmp_path / "m.jsonl"
    path.write_text("".join(json.dumps(o) + "\n" for o in lines()))
    err = io.StringIO()
    monkeypatch.setattr("sys.stdout", Terminal())
    with contextlib.redirect_stderr(err):
        rc = plot.main([str(path), "--out", "-"])
    assert rc == 2 and "--out -: not writing a PNG to a terminal" in err.getvalue()


def test_valid_file_plots(tmp_path):
    rc, err, _ = run_plot(tmp_path, lines())
    assert rc == 0, err
    assert (tmp_path / "m.png").stat().st_size > 1000


# (line index, path of keys, a value of the wrong type): each used to raise a TypeError,
# AttributeError or ValueError out of the plot.
WRONG = [
    (0, ("run",), 3),
    (0, ("run", "config"), 0.5),
    (0, ("run", "data"), "x"),
    (0, ("run", "data", "train_points"), [1]),
    (0, ("run", "config", "sparsity"), "0.01"),
    (0, ("run", "config", "sparsity"), [0.01]),
    (0, ("run", "config", "hash"), 7),
    (0, ("run", "config", "tables"), {"a": 1}),
    (0, ("run", "library_version"), 1),
    (2, ("samples",), "2560"),
    (2, ("samples",), {}),
    (2, ("epoch",), "one"),
    (2, ("train_seconds",), [0.1]),
    (3, ("loss",), "low"),
    (1, ("p_at_1",), True),
]


@pytest.mark.parametrize("index, keys, value", WRONG)
def test_wrong_type_is_refused_with_its_line(tmp_path, index, keys, value):
    objs = lines()
    target = objs[index]
    for k in keys[:-1]:
        target = target[k]
    target[keys[-1]] = value
    rc, err, path = run_plot(tmp_path, objs)
    assert rc == 2, err
    assert f"{path}:{index + 1}: \"{keys[-1]}\" must be" in err, err


def test_nulls_and_non_finite_numbers_are_gaps(tmp_path):
    objs = lines()
    objs[1]["loss"] = None
    objs[2]["p_at_1"] = float("nan")
    objs[3]["train_seconds"] = float("inf")
    objs[0]["run"]["data"]["train_points"] = None
    objs[0]["run"]["config"] = None
    rc, err, _ = run_plot(tmp_path, objs)
    assert rc == 0, err


def test_random_damage_never_raises(tmp_path):
    """Values of every JSON type put in random places: exit 0 or 2, nothing else."""
    values = [None, True, False, "x", "", [], {}, [1], {"a": 1}, 0, -1, 1e308, float("nan"),
              float("inf"), 2 ** 70, 0.5, "1"]

    def key_paths(o, prefix=()):
        if isinstance(o, dict):
            for k, v in o.items():
                yield prefix + (k,)
                yield from key_paths(v, prefix + (k,))

    rng = random.Random(1)
    for _ in range(40):
        objs = lines()
        for _ in range(rng.randint(1, 3)):
            target = rng.choice(objs)
            keys = rng.choice(list(key_paths(target)))
            for k in keys[:-1]:
                target = target[k]
            target[keys[-1]] = rng.choice(values)
        rc, err, _ = run_plot(tmp_path, objs)
        assert rc in (0, 2), err


def fail_with(error):
    def draw(*args):
        raise error
    return draw


@pytest.mark.parametrize("error", [MemoryError(), OSError(12, "Cannot allocate memory")])
def test_out_of_memory_is_one_line_and_exit_1(tmp_path, monkeypatch, capfd, error):
    """Memory running out while drawing is "sparrow plot: out of memory", exit 1, no
    traceback and no picture (it was a traceback; under ulimit -v 150-200 MB a hang,
    test_cli.sh's address-space sweep)."""
    path = tmp_path / "m.jsonl"
    path.write_text("".join(json.dumps(o) + "\n" for o in lines()))
    monkeypatch.setattr(plot, "plot", fail_with(error))
    rc = plot.main([str(path), "--out", str(tmp_path / "m.png")])
    err = capfd.readouterr().err
    assert rc == 1 and err.startswith("sparrow plot: out of memory") and "Traceback" not in err
    assert not (tmp_path / "m.png").exists()


@pytest.mark.parametrize("message, memory", [
    ("libopenblas.so.0: failed to map segment from shared object", True),
    ("libfoo.so: cannot map: Cannot allocate memory", True),
    ("No module named 'matplotlib'", False),
])
def test_import_errors_told_apart(monkeypatch, message, memory):
    """An ImportError of a library that could not be mapped is memory; any other is a
    missing matplotlib, with the package that brings it."""
    import builtins
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError(message)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(plot, "plt", None)
    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    if memory:
        with pytest.raises(MemoryError):
            plot.load_matplotlib()
    else:
        with pytest.raises(plot.CannotDraw, match="apt-get install python3-matplotlib"):
            plot.load_matplotlib()


@pytest.mark.parametrize("mode", [0o444, 0o400, 0o000])
def test_write_protected_picture_is_refused(tmp_path, mode):
    """--out onto a picture made read-only to keep it is refused (exit 2, the file as it
    was), as sparrow's model and data writes are: the rename needed only the directory's
    permission, so it was replaced all the same (before session 29)."""
    path = tmp_path / "m.jsonl"
    path.write_text("".join(json.dumps(o) + "\n" for o in lines()))
    out = tmp_path / "kept.png"
    out.write_bytes(b"old picture")
    out.chmod(mode)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = plot.main([str(path), "--out", str(out)])
    out.chmod(0o644)
    assert rc == 2, err.getvalue()
    assert f"{out}: cannot write: the file is write-protected (mode {mode:03o})" in err.getvalue()
    assert out.read_bytes() == b"old picture"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.png", "m.jsonl"]
