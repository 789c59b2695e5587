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
    with pytest.raises(ValueError, match="out of range"):
        layer(torch.randn(4, 8), torch.tensor([0, 1, 2, 10]))
    with pytest.raises(ValueError, match="rows"):
        layer(torch.randn(4, 8), torch.zeros(3, dtype=torch.long))
    with pytest.raises(TypeError, match="integer"):
        layer(torch.randn(4, 8), torch.zeros(4))
    with pytest.raises(sparrow.BadInputError, match="ascending"):
        layer(torch.randn(2, 8), (torch.tensor([0, 2]), torch.tensor([3, 1, 4])))
    with pytest.raises(ValueError, match="k must"):
        layer.predict(torch.randn(2, 8), k=0)
    with pytest.raises(sparrow.BadInputError, match="sparse inference"):
        layer.predict(torch.randn(2, 8), sparse=True)
    with pytest.raises(sparrow.BadInputError, match="diverged"):
        layer(torch.full((2, 8), float("nan")), torch.tensor([0, 1]))
    with pytest.raises(ValueError):
        SampledSoftmaxLinear(0, 10)
    # Values a C type cannot hold are refused, not wrapped (2**64 + 5 classes became 5).
    with pytest.raises(ValueError, match="n_classes = 18446744073709551621 does not fit"):
        SampledSoftmaxLinear(8, 2**64 + 5)
    with pytest.raises(ValueError, match="tables"):
        SampledSoftmaxLinear(8, 10, tables=2**32 + 1)
    with pytest.raises(ValueError, match="lr"):
        SampledSoftmaxLinear(8, 10, lr=1e49)


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
