"""sparrow.torch.SampledSoftmaxLinear against nn.Linear + F.cross_entropy."""
import copy
import gc

import numpy as np
import pytest
import scipy.sparse as sp

torch = pytest.importorskip("torch")
F = torch.nn.functional

from sparrow.torch import SampledSoftmaxLinear  # noqa: E402
import sparrow  # noqa: E402


def reference(layer, hidden, target):
    """Loss and dLoss/dhidden of F.cross_entropy over a linear layer with the same
    weights (copied before sparrow's step changes them)."""
    W, b = layer.weight.clone(), layer.bias.clone()
    h = hidden.detach().clone().requires_grad_(True)
    loss = F.cross_entropy(h @ W.t() + b, target)
    loss.backward()
    return loss.item(), h.grad, W, b


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sparsity_one_matches_cross_entropy(seed):
    torch.manual_seed(seed)
    print("seed", seed)
    layer = SampledSoftmaxLinear(24, 300, sparsity=1.0, init_std=0.2, seed=seed + 1, threads=2)
    hidden = torch.randn(37, 24, requires_grad=True)
    labels = torch.randint(0, 300, (37,))
    ref_loss, ref_grad, W, b = reference(layer, hidden, labels)
    loss = layer(hidden, labels)
    loss.backward()
    assert abs(loss.item() - ref_loss) <= 1e-5, (ref_loss, loss.item())
    err = (hidden.grad - ref_grad).abs().max().item()
    assert err <= 1e-5, err


def test_multi_label_matches_soft_target_cross_entropy():
    torch.manual_seed(5)
    layer = SampledSoftmaxLinear(16, 40, sparsity=1.0, init_std=0.3)
    hidden = torch.randn(6, 16, requires_grad=True)
    rows = [[1, 7], [3], [0, 2, 39], [5], [10, 11], [20]]
    target = torch.zeros(6, 40)
    for i, r in enumerate(rows):
        target[i, r] = 1.0 / len(r)
    ref_loss, ref_grad, _, _ = reference(layer, hidden, target)
    offsets = torch.tensor([0, 2, 3, 6, 7, 9])
    flat = torch.tensor([l for r in rows for l in r])
    loss = layer(hidden, (offsets, flat))  # EmbeddingBag-style offsets
    loss.backward()
    assert abs(loss.item() - ref_loss) <= 1e-5, (ref_loss, loss.item())
    assert (hidden.grad - ref_grad).abs().max().item() <= 1e-5
    # the same labels as a scipy CSR or a list of lists give the same loss in eval mode
    layer.eval()
    Y = sp.csr_matrix(target.numpy() > 0)
    assert abs(layer(hidden, Y).item() - layer(hidden, rows).item()) < 1e-6


def test_step_is_torch_adam():
    torch.manual_seed(7)
    layer = SampledSoftmaxLinear(8, 20, sparsity=1.0, init_std=0.2, lr=0.01)
    lin = torch.nn.Linear(8, 20)
    with torch.no_grad():
        lin.weight.copy_(layer.weight)
        lin.bias.copy_(layer.bias)
    opt = torch.optim.Adam(lin.parameters(), lr=0.01)
    for _ in range(3):
        hidden = torch.randn(10, 8)
        labels = torch.randint(0, 20, (10,))
        layer(hidden, labels)
        opt.zero_grad()
        F.cross_entropy(lin(hidden), labels).backward()
        opt.step()
    assert (layer.weight - lin.weight.detach()).abs().max().item() < 1e-5
    assert (layer.bias - lin.bias.detach()).abs().max().item() < 1e-5


def test_sampled_layer_learns_inside_a_model(tmp_path):
    torch.manual_seed(0)
    n_classes, dim = 2000, 32
    centers = torch.randn(n_classes, dim)
    encoder = torch.nn.Sequential(torch.nn.Linear(dim, 64), torch.nn.ReLU())
    head = SampledSoftmaxLinear(64, n_classes, sparsity=0.02, tables=20, lr=3e-3, seed=3)
    opt = torch.optim.Adam(encoder.parameters(), lr=3e-3)
    first = None
    for step in range(150):
        y = torch.randint(0, 200, (64,))  # 200 classes in use out of 2000
        x = centers[y] + 0.1 * torch.randn(64, dim)
        opt.zero_grad()
        loss = head(encoder(x), y)
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
    assert head.last_active <= 0.02 * n_classes + 1 + 1e-9
    y = torch.arange(200)
    x = centers[y]
    with torch.no_grad():
        ids, scores = head.predict(encoder(x), k=1)
    acc = (ids[:, 0] == y).float().mean().item()
    assert acc > 0.5, acc
    path = tmp_path / "head.bin"
    head.save(path)
    head2 = SampledSoftmaxLinear.load(path)
    with torch.no_grad():
        ids2, _ = head2.predict(encoder(x), k=1)
    assert torch.equal(ids, ids2)


def test_bad_arguments_raise():
    layer = SampledSoftmaxLinear(8, 10, sparsity=1.0)
    with pytest.raises(ValueError, match=r"\(batch, 8\)"):
        layer(torch.randn(4, 9), torch.zeros(4, dtype=torch.long))
    with pytest.raises(TypeError, match="floating"):
        layer(torch.zeros(4, 8, dtype=torch.long), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="a column of label ids"):  # once: all label 0
        layer(torch.randn(4, 8), sp.csr_matrix(np.array([[3], [1], [0], [2]])))
    with pytest.raises(ValueError, match="labels are needed to train"):  # training mode
        layer(torch.randn(4, 8))

    with pytest.raises(ValueError, match="out of range"):
        layer(torch.randn(4, 8), torch.tensor([0, 1, 2, 10]))
    with pytest.raises(ValueError, match="rows"):
        layer(torch.randn(4, 8), torch.zeros(3, dtype=torch.long))
    with pytest.raises(TypeError, match="integer"):
        layer(torch.randn(4, 8), torch.zeros(4))
    with pytest.raises(ValueError, match="got -1 at point 0, label 2"):  # a +-1 matrix
        layer(torch.randn(2, 8), sp.csr_matrix(np.array([[0, 1, -1] + [0] * 7, [1] + [0] * 9])))
    with pytest.raises(sparrow.BadInputError, match="ascending"):
        layer(torch.randn(2, 8), (torch.tensor([0, 2]), torch.tensor([3, 1, 4])))
    with pytest.raises(ValueError, match="k must"):
        layer.predict(torch.randn(2, 8), k=0)
    with pytest.raises(sparrow.BadInputError, match="sparse inference"):
        layer.predict(torch.randn(2, 8), sparse=True)
    # a NaN or an infinity from the layers before is named where it is (it once read as
    # this layer's loss diverging, and predict gave NaN scores); the weights stay as they were
    w = layer.weight.clone()
    h = torch.randn(2, 8)
    h[1, 5] = float("nan")
    with pytest.raises(sparrow.BadInputError, match="input row 1, column 5 is nan"):
        layer(h, torch.tensor([0, 1]))
    assert torch.equal(layer.weight, w)
    h[1, 5] = float("-inf")
    with pytest.raises(sparrow.BadInputError, match="input row 1, column 5 is inf"):
        layer.predict(h)
    with pytest.raises(ValueError):
        SampledSoftmaxLinear(0, 10)
    # Values a C type cannot hold are refused, not wrapped (2**64 + 5 classes became 5).
    with pytest.raises(ValueError, match="n_classes = 18446744073709551621 does not fit"):
        SampledSoftmaxLinear(8, 2**64 + 5)
    with pytest.raises(ValueError, match="tables"):
        SampledSoftmaxLinear(8, 10, tables=2**32 + 1)
    with pytest.raises(ValueError, match="lr"):
        SampledSoftmaxLinear(8, 10, lr=1e49)
    # Non-integers where integers go are refused by name, not truncated (2.5 was label 2).
    with pytest.raises(ValueError, match="^a label id must be an integer, got 2.5"):
        layer(torch.randn(2, 8), [[0], [2.5]])
    with pytest.raises(TypeError, match="label ids must be integers"):
        layer(torch.randn(2, 8), (torch.tensor([0, 1]), torch.tensor([0.0, 2.5])))
    with pytest.raises(ValueError, match="^tables must be an integer, got 7.5"):
        SampledSoftmaxLinear(8, 10, tables=7.5)
    with pytest.raises(ValueError, match="^n_classes must be an integer, got 10.5"):
        SampledSoftmaxLinear(8, 10.5)


def test_logits_without_labels():
    """layer(hidden) without labels, in eval mode or under no_grad: nn.Linear's logits
    (it was a TypeError: a missing argument), nothing updated."""
    layer = SampledSoftmaxLinear(8, 10, sparsity=0.5, seed=2)
    h = torch.randn(5, 8, dtype=torch.float64)
    before = layer.state_dict()["sparrow_model"].clone()
    want = h.float() @ layer.weight.t() + layer.bias
    with torch.no_grad():
        got = layer(h)
    assert got.shape == (5, 10) and got.dtype == torch.float64
    torch.testing.assert_close(got.float(), want)
    layer.eval()
    torch.testing.assert_close(layer(h).float(), want)
    assert torch.equal(layer.state_dict()["sparrow_model"], before)
    assert torch.equal(layer(h).argmax(1), layer.predict(h, k=1)[0][:, 0])


def _trained_net(seed=1, steps=3):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(8, 16),
                              SampledSoftmaxLinear(16, 50, sparsity=0.2, seed=seed, threads=1))
    x, y = torch.randn(32, 8), torch.randint(0, 50, (32,))
    for _ in range(steps):
        net[1](net[0](x), y).backward()
    return net, x, y


def test_state_dict_carries_the_layer(tmp_path):
    """torch.save(state_dict) + load_state_dict restores the sparrow layer exactly
    (weights, Adam moments, step): without the hook it was left out silently."""
    net, x, y = _trained_net()
    path = tmp_path / "net.pt"
    torch.save(net.state_dict(), path)
    assert "1.sparrow_model" in net.state_dict()
    other, _, _ = _trained_net(seed=9, steps=0)
    assert not torch.equal(other[1].weight, net[1].weight)
    view = other[1].weight  # shares the memory of the model that the load replaces
    kept = view.clone()
    result = other.load_state_dict(torch.load(path))
    gc.collect()
    assert torch.equal(view, kept)  # still readable: the view keeps the old model alive
    assert not result.missing_keys and not result.unexpected_keys
    assert torch.equal(other[1].weight, net[1].weight) and torch.equal(other[1].bias, net[1].bias)
    assert other[1]._opts.threads == 1  # the module's own training options stay
    # The same next step on both: the moments and the step count came along too.
    for module in (net, other):
        module[1](module[0](x).detach(), y)
    assert torch.equal(other[1].weight, net[1].weight)
    # A layer of another shape, a missing entry and a damaged one are refused.
    wrong = torch.nn.Sequential(torch.nn.Linear(8, 16), SampledSoftmaxLinear(16, 51))
    with pytest.raises(RuntimeError, match="size mismatch for 1.sparrow_model"):
        wrong.load_state_dict(torch.load(path))
    state = torch.load(path)
    del state["1.sparrow_model"]
    with pytest.raises(RuntimeError, match="Missing key.*1.sparrow_model"):
        other.load_state_dict(state)
    state = torch.load(path)
    state["1.sparrow_model"] = state["1.sparrow_model"][:100].clone()
    with pytest.raises(RuntimeError, match="1.sparrow_model"):
        other.load_state_dict(state)
    assert torch.equal(other[1].weight, net[1].weight)  # the refused entries changed nothing
    # An unknown key is reported as nn.Module reports it (after loading the rest, as
    # PyTorch does for its own parameters).
    state = torch.load(path)
    state["1.extra"] = torch.zeros(1)
    with pytest.raises(RuntimeError, match="Unexpected key.*1.extra"):
        other.load_state_dict(state)


def test_deepcopy_and_pickle_give_independent_copies(tmp_path):
    net, x, y = _trained_net()
    copied = copy.deepcopy(net)
    assert torch.equal(copied[1].weight, net[1].weight)
    assert copied[1].model._handle.value != net[1].model._handle.value
    before = net[1].weight.clone()
    copied[1](copied[0](x).detach(), y)  # training the copy leaves the original alone
    assert torch.equal(net[1].weight, before) and not torch.equal(copied[1].weight, before)
    path = tmp_path / "whole.pt"
    torch.save(net, path)
    loaded = torch.load(path)
    assert torch.equal(loaded[1].weight, net[1].weight)
    with torch.no_grad():
        assert torch.equal(loaded[1].predict(net[0](x))[0], net[1].predict(net[0](x))[0])


def test_load_checks_the_depth(tmp_path):
    """SampledSoftmaxLinear.load reads a 2-layer model file (its own, or a Model with one
    hidden layer: that layer's size is in_features) and refuses any other depth."""
    path = tmp_path / "deep.spr"
    sparrow.Model(20, 30, hidden=(8, 8)).save(path)
    with pytest.raises(ValueError, match="2 layers, this file 3"):
        SampledSoftmaxLinear.load(path)
    layer = SampledSoftmaxLinear(8, 30)
    layer.save(tmp_path / "ok.spr")
    again = SampledSoftmaxLinear.load(tmp_path / "ok.spr", lr=0.5)
    assert again.in_features == 8 and again.n_classes == 30 and again._opts.lr == 0.5
    assert torch.equal(again.weight, layer.weight) and torch.equal(again.bias, layer.bias)
    sparrow.Model(20, 30, hidden=(8,)).save(path)
    assert SampledSoftmaxLinear.load(path).in_features == 8


def _bf16_floor(x):
    """x (float32) with its low 16 bits cleared: the BF16 value next to x toward zero."""
    return (x.contiguous().view(torch.int32) & -65536).view(torch.float32)


def _bf16_ulp(x):
    """The gap between x's BF16 neighbours (one BF16 step at x's magnitude)."""
    lo = _bf16_floor(x)
    return ((lo.view(torch.int32) + 65536).view(torch.float32) - lo).abs()


def _adam_bracket(w, g, m, v, lr, b1, b2, eps, step):
    """Bounds of one Adam step from intervals: g = (lo, hi) of the gradient, m and v the
    (lo, hi) of the stored moments. The step is monotone in m and, for either sign of m,
    in v, so its bounds are at the corners. Returns the new (w, m, v) intervals."""
    m = (b1 * m[0] + (1 - b1) * g[0], b1 * m[1] + (1 - b1) * g[1])
    g2_hi = torch.maximum(g[0] * g[0], g[1] * g[1])
    g2_lo = torch.where((g[0] <= 0) & (g[1] >= 0), torch.zeros_like(g2_hi),
                        torch.minimum(g[0] * g[0], g[1] * g[1]))
    v = (b2 * v[0] + (1 - b2) * g2_lo, b2 * v[1] + (1 - b2) * g2_hi)
    bc1, bc2 = 1 - b1 ** step, 1 - b2 ** step
    corners = [w - lr / bc1 * mm / (torch.sqrt(vv / bc2) + eps) for mm in m for vv in v]
    lo, hi = corners[0], corners[0]
    for c in corners[1:]:
        lo, hi = torch.minimum(lo, c), torch.maximum(hi, c)
    return (lo, hi), m, v


@pytest.mark.parametrize("weights", [False, True])
def test_bf16_layer_against_torch(weights):
    """A BF16 layer (Adam moments in BF16, and with weights=True the weights too) over
    three steps against PyTorch in float64: the loss and dLoss/dhidden from the stored
    (widened) weights to 1e-5, and each Adam step within what the documented roundings
    and float32 allow. The reference carries intervals: the gradient +- 1e-6 of the
    magnitude of its terms (float32 sums), the first moment rounded to nearest even, the
    second stochastically (between its two BF16 neighbours), the step's bounds at their
    corners. BF16 weights are rounded stochastically: on the BF16 grid, within one BF16
    step of the float step, and unbiased over the 7,200 weights: no drift toward zero
    (as truncation would give) nor against the step (as rounding to nearest gives when
    steps are below half a BF16 step, which lr 2e-4 makes common)."""
    torch.manual_seed(11)
    lr = 2e-4 if weights else 0.01
    layer = SampledSoftmaxLinear(24, 300, sparsity=1.0, init_std=0.2, seed=4, lr=lr, threads=1,
                                 bf16_state=True, bf16_weights=weights)
    # the constants as sparrow holds them (float32: 0.999 is 0.99900001287..., which moves
    # the second step's bias correction by 1e-5)
    lr, b1, b2, eps = (float(np.float32(x)) for x in (lr, 0.9, 0.999, 1e-8))
    zeros = torch.zeros(300, 24, dtype=torch.float64)
    m, v = (zeros, zeros), (zeros, zeros)
    mb, vb = (zeros[:, 0], zeros[:, 0]), (zeros[:, 0], zeros[:, 0])
    biases = []
    for step in (1, 2, 3):
        W = layer.weight.clone().double()
        b = layer.bias.clone().double()
        if weights:
            assert torch.equal(_bf16_floor(layer.weight.clone()), layer.weight), "weights off the BF16 grid"
        hidden = torch.randn(37, 24, requires_grad=True)
        labels = torch.randint(0, 300, (37,))
        h = hidden.detach().double().requires_grad_(True)
        Wr, br = W.clone().requires_grad_(True), b.clone().requires_grad_(True)
        logits = h @ Wr.t() + br
        ref = F.cross_entropy(logits, labels)
        ref.backward()
        loss = layer(hidden, labels)
        loss.backward()
        assert abs(loss.item() - ref.item()) <= 1e-5, (step, loss.item(), ref.item())
        assert (hidden.grad.double() - h.grad).abs().max().item() <= 1e-5, step
        # each gradient element's terms: |softmax - onehot| x |h|, a mean over the batch
        delta = (torch.softmax(logits.detach(), 1) - F.one_hot(labels, 300)).abs()
        scale_w = delta.t() @ h.detach().abs() / 37 + 1e-12
        scale_b = delta.sum(0) / 37 + 1e-12
        gw = (Wr.grad - 1e-6 * scale_w, Wr.grad + 1e-6 * scale_w)
        gb = (br.grad - 1e-6 * scale_b, br.grad + 1e-6 * scale_b)
        (lo, hi), m, v = _adam_bracket(W, gw, m, v, lr, b1, b2, eps, step)
        got = layer.weight.clone().double()
        slack = 2.0 ** -23 * 2 * hi.abs().maximum(lo.abs()) + 1e-12  # float32 rounding
        if weights:
            slack = slack + _bf16_ulp(hi.float()).double()
        assert (got >= lo - slack).all() and (got <= hi + slack).all(), (
            step, (lo - slack - got).max().item(), (got - hi - slack).max().item())
        if weights:  # the rounding's error in BF16 steps: toward zero, and along the step
            mid = (lo + hi) / 2
            r = (got - mid) / _bf16_ulp(mid.float()).double()
            biases.append(((r * mid.sign()).mean().item(), (r * (mid - W).sign()).mean().item()))
        # the stored moments, as the kernel rounds them: m to nearest even, v
        # stochastically (the upper bound one BF16 step above the floor of its own)
        m = tuple(x.float().to(torch.bfloat16).double() for x in m)
        v = (_bf16_floor(v[0].float()).double(),
             _bf16_floor(v[1].float()).double() + _bf16_ulp(v[1].float()).double())
        # the bias and its moments stay float
        (blo, bhi), mb, vb = _adam_bracket(b, gb, mb, vb, lr, b1, b2, eps, step)
        bslack = 2.0 ** -23 * 2 * bhi.abs().maximum(blo.abs()) + 1e-12
        got_b = layer.bias.clone().double()
        assert (got_b >= blo - bslack).all() and (got_b <= bhi + bslack).all(), step
    if weights:
        for which in (0, 1):
            assert abs(sum(b[which] for b in biases) / 3) < 0.05, ("stochastic rounding looks biased", biases)


def test_eval_takes_the_missed_steps():
    """module.eval() calls catch_up(): rows that missed optimizer steps (no gradient in
    them) take torch.optim.Adam's zero-gradient moves; the others stay; a second call
    moves nothing; a twin trained alike without the call differs only in those rows."""
    torch.manual_seed(3)
    layers = [SampledSoftmaxLinear(16, 400, sparsity=0.02, tables=8, lr=0.01, seed=5, threads=1)
              for _ in range(2)]
    for _ in range(6):
        hidden = torch.randn(8, 16)
        labels = torch.randint(0, 400, (8,))
        for layer in layers:
            layer(hidden, labels)
    a, b = layers
    assert torch.equal(a.weight, b.weight)
    before = a.weight.clone()
    net = torch.nn.Sequential(torch.nn.Identity(), a)
    net.eval()  # reaches the layer through nn.Module.train(False)
    moved = (a.weight != before).any(dim=1)
    assert 0 < int(moved.sum()) < 400, int(moved.sum())
    after = a.weight.clone()
    a.eval()
    assert torch.equal(a.weight, after)
    b.catch_up()
    assert torch.equal(b.weight, after)
