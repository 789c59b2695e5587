"""sparrow.torch: an LSH-sampled softmax output layer for PyTorch models.

    from sparrow.torch import SampledSoftmaxLinear
    head = SampledSoftmaxLinear(128, 670_091, sparsity=0.005)
    loss = head(hidden, labels)      # replaces F.cross_entropy(linear(hidden), labels)
    loss.backward()                  # the gradient flows into hidden (and the encoder)
    ids, scores = head.predict(hidden, k=5)
"""
import ctypes

import numpy as np
import scipy.sparse as sp
import torch

from . import _lib
from .data import binary_labels
from .errors import check
from .model import Model, _parse, _POLICIES


def _labels_csr(labels, n, n_classes):
    """(indptr int64 (n+1), ids int32) from a 1-D tensor/array of class ids, a
    (offsets, flat ids) pair, a scipy sparse matrix or a list of id lists."""
    if isinstance(labels, tuple) and len(labels) == 2:
        offsets, flat = (np.asarray(x.cpu() if torch.is_tensor(x) else x) for x in labels)
        for name, a in (("label ids", flat), ("label offsets", offsets)):
            if a.size and not np.issubdtype(a.dtype, np.integer):  # astype truncated 2.5 to 2
                raise TypeError("%s must be integers, got dtype %s" % (name, a.dtype))
        indptr = np.empty(n + 1, dtype=np.int64)
        if offsets.shape == (n,):  # EmbeddingBag style: start of each row
            indptr[:n] = offsets
            indptr[n] = flat.size
        elif offsets.shape == (n + 1,):
            indptr[:] = offsets
        else:
            raise ValueError("label offsets must have %d or %d entries, got %s" % (n, n + 1, offsets.shape))
        ids = flat.astype(np.int64, copy=False)
    elif sp.issparse(labels):
        m = binary_labels(labels, n_classes)
        if m.shape[0] != n:
            raise ValueError("hidden has %d rows but the labels %d" % (n, m.shape[0]))
        indptr, ids = m.indptr.astype(np.int64), m.indices.astype(np.int64)
    elif isinstance(labels, (list,)) and labels and not np.isscalar(labels[0]):
        indptr = np.zeros(len(labels) + 1, dtype=np.int64)
        indptr[1:] = np.cumsum([len(r) for r in labels])
        ids = np.fromiter((_lib.integer(l, "a label id") for r in labels for l in sorted(set(r))), dtype=np.int64,
                          count=int(indptr[-1])) if all(len(set(r)) == len(r) for r in labels) \
            else None
        if ids is None:
            raise ValueError("a row of labels repeats a label")
    else:
        t = labels.cpu().numpy() if torch.is_tensor(labels) else np.asarray(labels)
        if t.ndim != 1 or not np.issubdtype(t.dtype, np.integer):
            raise TypeError("labels must be a 1-D integer tensor of class ids (or offsets and ids,"
                            " a scipy sparse matrix, a list of lists), got %s %s" % (t.dtype, t.shape))
        if t.shape[0] != n:
            raise ValueError("hidden has %d rows but labels %d" % (n, t.shape[0]))
        indptr, ids = np.arange(n + 1, dtype=np.int64), t.astype(np.int64)
    if indptr.size != n + 1:
        raise ValueError("hidden has %d rows but the labels %d" % (n, indptr.size - 1))
    if ids.size and (ids.min() < 0 or ids.max() >= n_classes):
        bad = ids.min() if ids.min() < 0 else ids.max()
        raise ValueError("label %d out of range [0, %d)" % (bad, n_classes))
    return indptr, np.ascontiguousarray(ids, dtype=np.int32)


class _SampledSoftmaxLoss(torch.autograd.Function):
    """Forward runs sparrow's step (loss, dLoss/dhidden, and the update of the layer's
    own weights); backward hands the saved dLoss/dhidden on, scaled by grad_output."""

    @staticmethod
    def forward(ctx, hidden, layer, indptr, ids):
        loss, grad = layer._step(hidden, indptr, ids)
        ctx.save_for_backward(grad)
        return loss

    @staticmethod
    def backward(ctx, grad_output):
        (grad,) = ctx.saved_tensors
        return grad * grad_output, None, None, None


class SampledSoftmaxLinear(torch.nn.Module):
    """nn.Linear(in_features, n_classes) + softmax cross-entropy over a huge label set,
    computed by sparrow over the few output neurons that LSH tables pick per sample
    (ceil(sparsity x n_classes) plus the sample's labels).

    In training mode (module.train() and autograd on), `loss = layer(hidden, labels)`
    returns the batch-mean cross-entropy over the active neurons (the target spread
    evenly over a sample's labels) and loss.backward() sends dLoss/dhidden into the
    rest of the model through autograd.

    Its own weights live in sparrow, not in PyTorch: they are not nn.Parameters, no
    torch optimizer sees them, and they are updated by sparrow's own Adam (lr, betas,
    eps, clip_norm given here) during the forward call, one optimizer step per
    training-mode call, after dLoss/dhidden has been computed with the weights before
    the step. A class row that got no gradient in a step takes that step's zero-gradient
    move (torch.optim.Adam's) when it next has gradient, or at catch_up(), which
    module.eval() calls: from then on `weight` holds what torch.optim.Adam would. So
    scaling the loss scales the gradient into hidden but not sparrow's update; for
    gradient accumulation over several calls, use a larger batch instead.
    `weight` (n_classes, in_features) and `bias` (n_classes,) are tensor views of
    sparrow's arrays (shared memory, no copy) for inspection and export; save()/load()
    write and read sparrow's model file with the optimizer state, and state_dict()
    holds that file's bytes as one uint8 entry, "sparrow_model", which
    load_state_dict() restores (deepcopy and pickle go the same way).

    In eval mode, or under torch.no_grad(), forward returns the exact full softmax
    cross-entropy and changes nothing; `layer(hidden)` without labels there returns
    the logits (batch, n_classes). With sparsity=1.0 the layer is exactly
    nn.Linear + F.cross_entropy (tests/python/test_torch_layer.py).

    Inputs must be float32-convertible; the computation runs on the CPU (a CUDA
    tensor is copied to the CPU and its gradient back)."""

    def __init__(self, in_features, n_classes, sparsity=0.01, hash="simhash", tables=50, bits=0,
                 bucket_capacity=128, bucket_policy="fifo", select="topk", threshold=2,
                 random_fraction=0.5, init_std=0.1, seed=1, lr=1e-3, betas=(0.9, 0.999),
                 eps=1e-8, clip_norm=0.0, threads=0, rehash_first=50, rehash_growth=0.1,
                 rehash_max=1000, rebuild_every=10, bf16_state=False, bf16_weights=False,
                 simhash_one_in=0):
        super().__init__()
        in_features = _lib.integer(in_features, "in_features")
        n_classes = _lib.integer(n_classes, "n_classes")
        if in_features < 1 or n_classes < 1:
            raise ValueError("in_features and n_classes must be >= 1")
        _lib.checked(_lib.c_int64, int(in_features), "in_features")
        _lib.checked(_lib.c_int64, int(n_classes), "n_classes")
        cfg = _lib.spr_model_config_default(1, int(n_classes))
        # Layer 0 is a placeholder of width in_features (one input feature): only the
        # output layer is used, on the hidden rows PyTorch computes.
        cfg.layers[0].size = int(in_features)
        out = cfg.layers[1]
        out.size = int(n_classes)
        out.sparsity = float(sparsity)
        out.hash = _parse(_lib.spr_hash_family_parse, hash, "hash family")
        out.hash_l, out.hash_k = _lib.integer(tables, "tables"), _lib.integer(bits, "bits")
        out.bucket_capacity = _lib.integer(bucket_capacity, "bucket_capacity")
        if bucket_policy not in _POLICIES:
            raise ValueError("bucket_policy must be 'fifo' or 'reservoir', got %r" % (bucket_policy,))
        out.bucket_policy = _POLICIES[bucket_policy]
        out.select = _parse(_lib.spr_select_parse, select, "selection strategy")
        out.select_threshold = _lib.integer(threshold, "threshold")
        out.random_fraction = float(random_fraction)
        out.simhash_one_in = _lib.integer(simhash_one_in, "simhash_one_in")
        cfg.init_std, cfg.seed = float(init_std), _lib.integer(seed, "seed")
        cfg.bf16_state = 1 if bf16_state or bf16_weights else 0  # the Adam moments in BF16
        cfg.bf16_weights = 1 if bf16_weights else 0  # and the weights too
        check(_lib.spr_model_config_check(ctypes.byref(cfg)))
        handle = ctypes.c_void_p()
        check(_lib.spr_model_create(ctypes.byref(cfg), ctypes.byref(handle)))
        self._init_from_model(Model._owning(handle))
        o = self._opts
        o.lr, o.beta1, o.beta2, o.eps = float(lr), float(betas[0]), float(betas[1]), float(eps)
        o.clip_norm, o.threads = float(clip_norm), _lib.integer(threads, "threads")
        o.rehash_first, o.rehash_growth = _lib.integer(rehash_first, "rehash_first"), float(rehash_growth)
        o.rehash_max, o.rebuild_every = _lib.integer(rehash_max, "rehash_max"), _lib.integer(rebuild_every, "rebuild_every")

    def _init_from_model(self, model):
        c = _lib.spr_model_get_config(model._h())
        if c.n_layers != 2:
            model.close()
            raise ValueError("a SampledSoftmaxLinear model has 2 layers, this file %d" % c.n_layers)
        self.model = model  # owns the C handle (freed with it)
        self.in_features = int(c.layers[0].size)
        self.n_classes = int(c.layers[1].size)
        self.sparsity = float(c.layers[1].sparsity)
        self._opts = _lib.spr_train_options_default()
        self._stats = _lib.BatchStats()
        self.last_active = None

    # ------------------------------------------------------------ parameters

    @property
    def weight(self):
        """(n_classes, in_features) tensor sharing sparrow's weight memory; with
        bf16_weights a float32 copy widened from BF16 (writing it changes nothing)."""
        a = self.model.weights(1)
        if not a.flags.writeable:  # that copy: ours, and torch has no read-only tensors
            a.flags.writeable = True
        return torch.from_numpy(a)

    @property
    def bias(self):
        """(n_classes,) tensor sharing sparrow's bias memory."""
        return torch.from_numpy(self.model.weights(1, bias=True))

    def save(self, path):
        """Weights, Adam state and step, in sparrow's model file format."""
        self.model.save(path)

    @classmethod
    def load(cls, path, **train_options):
        """A layer from a file written by save(); train_options as the constructor's
        lr, betas, eps, clip_norm, threads."""
        layer = cls.__new__(cls)
        torch.nn.Module.__init__(layer)
        layer._init_from_model(Model.load(path))
        o = layer._opts
        o.lr = float(train_options.get("lr", 1e-3))
        b = train_options.get("betas", (0.9, 0.999))
        o.beta1, o.beta2 = float(b[0]), float(b[1])
        o.eps = float(train_options.get("eps", 1e-8))
        o.clip_norm = float(train_options.get("clip_norm", 0.0))
        o.threads = _lib.integer(train_options.get("threads", 0), "threads")
        return layer

    def catch_up(self):
        """Every class row that missed optimizer steps (no gradient in them) takes them
        now, as torch.optim.Adam's zero-gradient steps would have moved it (otherwise it
        moves when it next has gradient, after that forward read it). module.eval()
        calls it."""
        check(_lib.spr_model_catch_up(self.model._h(), ctypes.byref(self._opts)))

    def train(self, mode=True):
        if not mode:
            self.catch_up()
        return super().train(mode)

    # ------------------------------------------------------------ state_dict

    # The layer's weights are not nn.Parameters, so without these two hooks
    # module.state_dict() would leave them out and load_state_dict() would keep the
    # fresh random weights without a word. The entry holds the model file's bytes
    # (weights, Adam moments and step: what save() writes) as a uint8 tensor, so that
    # torch.save(module.state_dict()) and load_state_dict() resume training exactly.
    _STATE_KEY = "sparrow_model"

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        super()._save_to_state_dict(destination, prefix, keep_vars)
        data = np.frombuffer(self.model.to_bytes(), dtype=np.uint8).copy()
        destination[prefix + self._STATE_KEY] = torch.from_numpy(data)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        key = prefix + self._STATE_KEY
        for k in state_dict:  # what nn.Module's own check would say of unknown entries
            if k.startswith(prefix) and k != key and "." not in k[len(prefix):]:
                unexpected_keys.append(k)
        if key not in state_dict:
            missing_keys.append(key)
            return
        value = state_dict[key]
        if not torch.is_tensor(value) or value.dtype != torch.uint8 or value.dim() != 1:
            error_msgs.append("%s: expected a 1-D uint8 tensor (a sparrow model file), got %s" % (
                key, tuple(value.shape) if torch.is_tensor(value) else type(value).__name__))
            return
        try:
            model = Model.from_bytes(value.cpu().numpy().tobytes())
        except Exception as e:  # a damaged entry: reported as load_state_dict reports
            error_msgs.append("%s: %s" % (key, e))
            return
        c = _lib.spr_model_get_config(model._handle)
        shape = (int(c.layers[c.n_layers - 1].size), int(c.layers[0].size)) if c.n_layers == 2 else None
        if shape != (self.n_classes, self.in_features):
            error_msgs.append("size mismatch for %s: a layer of %s (n_classes, in_features) in "
                              "the state_dict, %s in this module" % (
                                  key, shape if shape else "%d layers" % c.n_layers,
                                  (self.n_classes, self.in_features)))
            model.close()
            return
        opts = self._opts  # the training options stay this module's
        # The old model is dropped, not closed: a weight or bias tensor taken before
        # keeps it alive (and keeps its values: it is not this module's any more).
        self._init_from_model(model)
        self._opts = opts

    def extra_repr(self):
        return "in_features=%d, n_classes=%d, sparsity=%g" % (self.in_features, self.n_classes,
                                                               self.sparsity)

    # ------------------------------------------------------------ compute

    def _rows(self, hidden):
        if not torch.is_tensor(hidden):
            raise TypeError("hidden must be a torch.Tensor, got %s" % type(hidden).__name__)
        if hidden.dim() != 2 or hidden.shape[1] != self.in_features:
            raise ValueError("hidden must be (batch, %d), got %s" % (self.in_features,
                                                                     tuple(hidden.shape)))
        if not hidden.is_floating_point():
            raise TypeError("hidden must be a floating-point tensor, got %s" % hidden.dtype)
        return hidden.detach().to("cpu", torch.float32).contiguous()

    def _step(self, hidden, indptr, ids):
        h = self._rows(hidden)
        n = h.shape[0]
        grad = torch.empty_like(h)
        self._opts.batch_size = max(n, 1)
        check(_lib.spr_model_output_train(self.model._h(), h.data_ptr(), n, indptr.ctypes.data,
                                          ids.ctypes.data if ids.size else None,
                                          ctypes.byref(self._opts), grad.data_ptr(),
                                          ctypes.byref(self._stats)))
        self.last_active = self._stats.active[1]
        loss = torch.tensor(self._stats.loss, dtype=hidden.dtype, device=hidden.device)
        return loss, grad.to(hidden.device, hidden.dtype)

    def forward(self, hidden, labels=None):
        """Loss of hidden (batch, in_features) against labels: a 1-D LongTensor of class
        ids, or for several labels per sample an (offsets, ids) pair (offsets as
        nn.EmbeddingBag's, or CSR's n+1), a scipy sparse matrix, or a list of lists.
        Without labels, in eval mode or under torch.no_grad(): the exact logits
        (batch, n_classes), as nn.Linear gives them (predict() ranks them sparsely)."""
        if labels is None:
            if self.training and torch.is_grad_enabled():
                raise ValueError("labels are needed to train (for logits: module.eval() or "
                                 "torch.no_grad(); for the top classes: predict())")
            h = self._rows(hidden)
            return (h @ self.weight.t() + self.bias).to(hidden.device, hidden.dtype)
        n = hidden.shape[0] if torch.is_tensor(hidden) and hidden.dim() == 2 else -1
        if n < 1:
            self._rows(hidden)  # raises the right error
            raise ValueError("hidden has no rows")
        indptr, ids = _labels_csr(labels, n, self.n_classes)
        if self.training and torch.is_grad_enabled():
            return _SampledSoftmaxLoss.apply(hidden, self, indptr, ids)
        # Evaluation: the exact loss over all classes, nothing updated.
        h = self._rows(hidden)
        logp = torch.log_softmax(h @ self.weight.t() + self.bias, dim=1)
        per = torch.from_numpy(np.diff(indptr)).to(torch.float32)
        rows = torch.repeat_interleave(torch.arange(n), torch.from_numpy(np.diff(indptr)))
        picked = logp[rows, torch.from_numpy(ids.astype(np.int64))]
        w = 1.0 / per.clamp(min=1)[rows]
        return (-(picked * w).sum() / n).to(hidden.dtype)

    def predict(self, hidden, k=5, sparse=False):
        """Top-k classes of each row: (ids LongTensor (batch, k), scores (batch, k)),
        best first; sparse=True scores only the LSH candidates (sublinear; short rows
        padded with id -1 and score -inf)."""
        h = self._rows(hidden)
        k = _lib.integer(k, "k")
        if not 1 <= k <= 1000:
            raise ValueError("k must be in [1, 1000], got %d" % k)
        n = h.shape[0]
        ids = np.empty((n, k), dtype=np.int32)
        scores = np.empty((n, k), dtype=np.float32)
        check(_lib.spr_model_output_predict(self.model._h(), h.data_ptr(), n, k,
                                            1 if sparse else 0, int(self._opts.threads),
                                            ids.ctypes.data, scores.ctypes.data))
        return torch.from_numpy(ids.astype(np.int64)), torch.from_numpy(scores)
