"""The examples' own pieces that decide their printed results (the examples themselves
take minutes and run by hand, README "Python and PyTorch")."""
import importlib.util
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_example(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "examples", name + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example2_heads_predict_ids_first():
    """Example 2 scores both heads with predict(...)[0] as label ids: the dense head must
    return (ids, scores) like SampledSoftmaxLinear.predict (it once returned torch.topk's
    (values, indices), and the dense P@k printed 0)."""
    ex2 = load_example("02_torch_670k")
    torch.manual_seed(3)
    head = ex2.DenseHead(8, 50)
    hidden = torch.randn(6, 8)
    ids, scores = head.predict(hidden, 5)
    logits = head.linear(hidden).detach().numpy()
    want = np.argsort(-logits, axis=1)[:, :5]
    assert ids.dtype == torch.int64
    np.testing.assert_array_equal(ids.numpy(), want)
    np.testing.assert_allclose(scores.detach().numpy(), np.take_along_axis(logits, want, 1), rtol=1e-6)
