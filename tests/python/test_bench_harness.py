"""The benchmark harness's own pieces (bench/peers.py, time_to_p1.py, torch_peer.py):
the child runner's exit handling and peak RSS (taken from wait4, since the GPU machine
has no /usr/bin/time), time to a target P@1, and the PyTorch peer's XMC reader. The
benchmarks themselves are not part of the test run; these keep them from rotting."""
import importlib
import os
import sys

import pytest

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "bench")


@pytest.fixture
def bench(tmp_path, monkeypatch):
    """bench/ importable, with OUT (the scripts read it from argv at import) in tmp_path."""
    monkeypatch.syspath_prepend(BENCH)
    monkeypatch.setattr(sys, "argv", ["bench", str(tmp_path)])
    for name in ("peers", "time_to_p1", "torch_peer"):
        sys.modules.pop(name, None)
    yield tmp_path
    for name in ("peers", "time_to_p1", "torch_peer"):
        sys.modules.pop(name, None)


def test_run_reports_output_and_child_peak_rss(bench):
    peers = importlib.import_module("peers")
    # 200 MiB written byte by byte: the child's resident set must pass 0.2 GB
    out, rss, wall = peers.run([sys.executable, "-c", "b = b'x' * (200 << 20); print('ok', len(b))"],
                               None, "child")
    assert out is not None and out.split() == ["ok", str(200 << 20)], out
    assert 0.2 < rss < 2.0, f"peak RSS {rss} GB, expected 0.2-2.0"
    assert wall > 0
    assert "ok" in open(bench / "child.out").read()


def test_run_failing_child_returns_none_and_keeps_stderr(bench):
    peers = importlib.import_module("peers")
    out, rss, _ = peers.run([sys.executable, "-c", "import sys; sys.exit('broken on purpose')"],
                            None, "bad")
    assert out is None and rss is None
    assert "broken on purpose" in open(bench / "bad.out").read()


def test_run_drops_openblas_overrides(bench, monkeypatch):
    peers = importlib.import_module("peers")
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    out, _, _ = peers.run([sys.executable, "-c",
                           "import os; print(os.environ.get('OPENBLAS_CORETYPE', 'unset'), os.environ['X'])"],
                          {"X": "given"}, "env")
    assert out.split() == ["unset", "given"], out


def test_first_at_is_the_first_evaluation_at_or_above_the_target(bench):
    ttp = importlib.import_module("time_to_p1")
    curve = [{"p_at_1": 0.05, "train_seconds": 1.0}, {"p_at_1": 0.15, "train_seconds": 2.0},
             {"p_at_1": 0.12, "train_seconds": 3.0}, {"p_at_1": 0.2, "train_seconds": 4.0}]
    assert ttp.first_at(curve, 0.15) == 2.0
    assert ttp.first_at(curve, 0.16) == 4.0
    assert ttp.first_at(curve, 0.21) is None


def test_torch_peer_reads_xmc_like_sparrow(bench):
    pytest.importorskip("torch")
    tp = importlib.import_module("torch_peer")
    f = bench / "d.txt"
    f.write_text("3 10 6\n1,4 0:1.5 9:2\n 3:0.5\n5 2:1 3:-1\n")
    indptr, idx, val, labels, d, l = tp.read_xmc(str(f))
    assert (d, l) == (10, 6)
    assert labels == [[1, 4], [], [5]]
    assert indptr.tolist() == [0, 2, 3, 5]
    assert idx.tolist() == [0, 9, 3, 2, 3]
    assert val.tolist() == [1.5, 2.0, 0.5, 1.0, -1.0]


def test_plot_curves_reads_all_three_kinds_of_file(bench):
    pytest.importorskip("matplotlib")
    import json
    pc = importlib.import_module("plot_curves")
    res = {"target_p_at_1": 0.15, "systems": [
        {"name": "a", "curve": [{"train_seconds": 1.0, "p_at_1": 0.1}, {"train_seconds": 2.0, "p_at_1": 0.15}]}]}
    (bench / "results.json").write_text(json.dumps(res))
    # a sparrow metrics file: a run header line (no step) is skipped
    (bench / "sparrow-x.jsonl").write_text(
        json.dumps({"run": {"command": "train"}}) + "\n" +
        json.dumps({"epoch": 1, "step": 10, "train_seconds": 0.5, "p_at_1": 0.05}) + "\n" +
        json.dumps({"epoch": 1, "step": 20, "train_seconds": 1.5, "p_at_1": 0.2}) + "\n")
    (bench / "torch-y.jsonl").write_text(json.dumps({"batch": 5, "train_seconds": 3.0, "p_at_1": 0.12}) + "\n")
    series, target = pc.load(str(bench / "results.json"))
    assert series == [("a", [(1.0, 0.1), (2.0, 0.15)])] and target == 0.15
    assert pc.load(str(bench / "sparrow-x.jsonl")) == ([("sparrow-x", [(0.5, 0.05), (1.5, 0.2)])], None)
    assert pc.load(str(bench / "torch-y.jsonl")) == ([("torch-y", [(3.0, 0.12)])], None)
    (bench / "empty.jsonl").write_text(json.dumps({"run": {}}) + "\n")
    with pytest.raises(ValueError, match="no evaluations"):
        pc.load(str(bench / "empty.jsonl"))
    png = bench / "c.png"
    pc.plot(series, str(png), "t", target)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_torch_peer_soft_target_spreads_one_over_the_labels(bench):
    torch = pytest.importorskip("torch")
    tp = importlib.import_module("torch_peer")
    labels = [[1, 4], [], [5], [0, 2, 3]]
    t = tp.soft_target(labels, [3, 1, 0, 2], 6, torch.device("cpu"))
    want = torch.zeros(4, 6)
    want[0, [0, 2, 3]] = 1 / 3
    want[2, [1, 4]] = 0.5
    want[3, 5] = 1.0
    assert torch.equal(t, want), t
    assert tp.soft_target(labels, [1], 6, torch.device("cpu")).abs().sum().item() == 0
