#!/usr/bin/python3
"""torch_reference.py: the dense sparrow network checked against PyTorch.

For each case this script builds a small problem (sparse inputs, multi-label targets,
initial weights), runs it through PyTorch on one thread, and writes the problem and the
expected numbers to a binary reference file; tests/test_torch.c reads the file, runs
sparrow in dense mode on the same problem and compares.

Precision: the problem itself is float32 (inputs, weights, Adam constants are float32
values, as sparrow holds them), but PyTorch computes the reference in float64 and the
file stores it rounded to float32. A float32 PyTorch run is itself off by up to ~1e-5
relative on gradient elements whose terms nearly cancel (seen: 1.2e-5 on an output
weight gradient where sparrow was 1e-6 from the exact value), so two float32 programs
cannot be held to 1e-5 of each other: the float64 reference is the exact answer, and
each gradient and moment element comes with a scale (the magnitude of the terms it is
summed from, see gradient_magnitudes) that test_torch.c measures the 1e-5 against.
Each step starts from the file's state (test_torch.c loads the reference's weights and
moments after comparing them), so rounding does not compound over the steps.
Problems whose answer is too sensitive to rounding to decide at 1e-5 (see
check_conditioning), or where "touched row" would be ambiguous, are skipped for the
next seed; the seeds in CASES are the first usable ones.

What a reference file holds, per step (3 steps, 3 different batches):
  - the loss and the gradient of every weight and bias (batch means), and
  - every weight, bias and Adam moment after the optimizer step.
Step 1 comes from torch.optim.Adam itself. Steps 2 and 3 come from Adam written out
below: sparrow only updates the rows that received gradient (the layer-0 embedding rows
of the features in the batch, every row of the other layers in dense mode, every bias),
and from step 2 on that differs from torch.optim.Adam, which steps every row. By default
(catch-up) a row that received gradient again first takes the zero-gradient steps
torch.optim.Adam would have taken in the steps it missed (catch_up below: its moments
decay, its weights move on them), late, after this step's gradient; with lazy_adam (the
cases marked lazy) it does not, as in torch.optim.SparseAdam. The step counter of the
bias correction is global (one per model). After the last step, the end of an epoch
(spr_model_catch_up): every row that still owes steps takes them, so that the state is
the one torch.optim.Adam's zero-gradient steps leave (unchanged in the lazy cases).

Usage:
  torch_reference.py --check PATH/test_torch   write the cases to a temporary directory,
                                               run the C program on them, exit with its
                                               status (non-zero on any difference)
  torch_reference.py --write DIR               only write the reference files

File layout (little-endian; int32 = i, int64 = q, float32 = f, float64 = d):
  i magic 0x54525053 ("SPRT"), i version 3
  i n_features, i n_layers, i size[n_layers]             (size[n_layers-1] = n_labels)
  f lr, f beta1, f beta2, f eps, i lazy (1: spr_train_options.lazy_adam)
  q n_points, q nnz, q n_label_entries
  q feature_indptr[n_points+1], i feature_indices[nnz], f feature_values[nnz]
  q label_indptr[n_points+1], i labels[n_label_entries]
  per layer: f W[rows*cols], f b[size]                   (the initial parameters)
  i n_steps
  per step: q n_rows, q rows[n_rows], d loss,
            per layer: f gW, f gb,
            per layer: f W, f b, f mW, f vW, f mb, f vb    (after the step)
            where every array is followed by its scale array (same shape, >= |value|:
            what float32 rounding is measured against, see gradient_magnitudes)
  settled: per layer: f W, f b, f mW, f vW, f mb, f vb   (after spr_model_catch_up, each
            with |value| as its scale)
  i magic again (catches a reader that went out of step)
Layer 0's W is (n_features, size[0]); layer k's W is (size[k], size[k-1]), dense, no padding.
"""

import argparse
import copy
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

MAGIC = 0x54525053
VERSION = 3
N_STEPS = 3


class Case:
    """One problem: architecture, hyper-parameters, data, batches."""

    def __init__(self, name, seed, n_features, sizes, batch, lr, betas, eps, shared_features=(),
                 lazy=False):
        self.name = name
        self.lazy = lazy                   # lazy Adam: rows never catch up on missed steps
        self.settle = True                 # False: the settled block left as step 3's (a negative control)
        self.seed = seed
        self.n_features = n_features
        self.sizes = list(sizes)           # hidden sizes then n_labels
        self.batch = batch
        # sparrow holds the constants as float32 (spr_train_options), so the reference
        # uses the same rounded values: 1 - beta2 with beta2 = 0.999 differs from 1 - 0.999f
        # by 1.3e-5 relative, which would show up in every second moment.
        f32 = lambda v: float(np.float32(v))
        self.lr, self.betas, self.eps = f32(lr), (f32(betas[0]), f32(betas[1])), f32(eps)
        self.shared_features = list(shared_features)  # put into every point of every batch


CASES = [
    # (a) one hidden layer
    Case("a_one_hidden", 1003, 60, [16, 40], 8, 1e-2, (0.9, 0.999), 1e-8),
    # (b) two hidden layers, other Adam constants so the file's values are really used
    Case("b_two_hidden", 2005, 60, [24, 12, 30], 8, 5e-3, (0.8, 0.99), 1e-6),
    # (c) features 7 and 33 in every point: gradients of several points accumulate in one
    # embedding row
    Case("c_shared_rows", 3003, 60, [16, 40], 8, 1e-2, (0.9, 0.999), 1e-8, shared_features=(7, 33)),
    # (d) case (a) with lazy Adam
    Case("d_lazy", 1003, 60, [16, 40], 8, 1e-2, (0.9, 0.999), 1e-8, lazy=True),
]


def make_points(case, rng):
    """N_STEPS batches of case.batch points. Each point has 3..10 features and 0..3
    labels; every batch has at least one point without labels. The features of a point
    without labels are drawn from those of the labelled points of its batch: such a point
    adds zero gradient, and this keeps "the row received gradient" and "the feature is in
    the batch" the same set, so the lazy reference does not depend on which of the two
    sparrow means by a touched row."""
    n_labels = case.sizes[-1]
    points = []  # (features sorted, values, labels sorted)
    for _ in range(N_STEPS):
        n_label_counts = rng.integers(0, 4, size=case.batch)
        n_label_counts[rng.integers(0, case.batch)] = 0
        batch = [None] * case.batch
        order = sorted(range(case.batch), key=lambda i: n_label_counts[i] == 0)
        seen = set()
        for i in order:
            nnz = int(rng.integers(3, 11))
            if n_label_counts[i] > 0:
                pool = np.arange(case.n_features)
            else:
                pool = np.array(sorted(seen))
            feats = set(int(f) for f in rng.choice(pool, size=min(nnz, len(pool)), replace=False))
            if n_label_counts[i] > 0:
                feats.update(case.shared_features)
            feats = sorted(feats)
            seen.update(feats)
            vals = rng.uniform(0.1, 2.0, size=len(feats)).astype(np.float32)
            labs = sorted(int(l) for l in rng.choice(n_labels, size=n_label_counts[i], replace=False))
            batch[i] = (feats, vals, labs)
        points.extend(batch)
    return points


def init_params(case, rng):
    """Weights and biases in sparrow's layout: float32 values in float64 tensors."""
    params = []
    fan_in = case.n_features
    for k, size in enumerate(case.sizes):
        if k == 0:
            w = rng.normal(0.0, 0.3, size=(case.n_features, size))
        else:
            w = rng.normal(0.0, 1.0 / np.sqrt(fan_in), size=(size, fan_in))
        b = rng.normal(0.0, 0.1, size=size)
        # float32 values (what the file holds), computed with in float64
        params.append(torch.tensor(w.astype(np.float32), dtype=torch.float64, requires_grad=True))
        params.append(torch.tensor(b.astype(np.float32), dtype=torch.float64, requires_grad=True))
        fan_in = size
    return params


def dense_batch(case, points, rows):
    n_labels = case.sizes[-1]
    x = torch.zeros(len(rows), case.n_features, dtype=torch.float64)
    t = torch.zeros(len(rows), n_labels, dtype=torch.float64)
    for i, r in enumerate(rows):
        feats, vals, labs = points[r]
        x[i, feats] = torch.from_numpy(vals.astype(np.float64))
        if labs:
            t[i, labs] = 1.0 / len(labs)
    return x, t


def forward_loss(params, x, t):
    """sparrow's network: layer 0 an embedding bag with ReLU, further hidden layers
    Linear + ReLU, a linear output, soft-target cross-entropy averaged over the batch
    (a point without labels counts in the mean with loss 0)."""
    n_layers = len(params) // 2
    h = torch.relu(x @ params[0] + params[1])
    for k in range(1, n_layers - 1):
        h = torch.relu(h @ params[2 * k].T + params[2 * k + 1])
    z = h @ params[-2].T + params[-1]
    loss = -(t * F.log_softmax(z, dim=1)).sum(dim=1).mean()
    # The same quantity through PyTorch's own soft-target cross-entropy.
    alt = F.cross_entropy(z, t)
    tol = 1e-12 if z.dtype == torch.float64 else 1e-6
    assert abs(loss.item() - alt.item()) <= tol * max(1.0, abs(loss.item())), (loss.item(), alt.item())
    return loss


def catch_up(params, state, step, case, present, last):
    """The embedding rows in `present` take, before this step's update, the zero-gradient
    torch.optim.Adam steps they missed since they were last stepped (last[row]; 0: never,
    with zero moments, so those steps do nothing). Returns how many rows moved."""
    b1, b2 = case.betas
    p, (m, v) = params[0], state[0]
    moved = present & (last < step - 1) & (m.abs().sum(dim=1) != 0)
    with torch.no_grad():
        for u in range(1, step):
            rows = present & (last < u)
            if not bool(rows.any()):
                continue
            m[rows] = m[rows] * b1
            v[rows] = v[rows] * b2
            denom = (v[rows].sqrt() / (1 - b2 ** u) ** 0.5).add(case.eps)
            p[rows] = p[rows] - case.lr / (1 - b1 ** u) * m[rows] / denom
    last[present] = step
    return int(moved.sum())


def lazy_adam_step(params, state, step, case, touched):
    """One lazy Adam step written out as torch.optim.Adam computes it, restricted to the
    rows in touched[k] (a bool mask per parameter, None = every row)."""
    b1, b2 = case.betas
    bc1 = 1 - b1 ** step
    bc2_sqrt = (1 - b2 ** step) ** 0.5
    step_size = case.lr / bc1
    with torch.no_grad():
        for k, p in enumerate(params):
            m, v = state[k]
            g = p.grad
            rows = touched[k] if touched[k] is not None else torch.ones(p.shape[0], dtype=torch.bool)
            m_new = m.mul(b1).add(g, alpha=1 - b1)
            v_new = v.mul(b2).addcmul(g, g, value=1 - b2)
            denom = (v_new.sqrt() / bc2_sqrt).add(case.eps)
            p_new = p.addcdiv(m_new, denom, value=-step_size)
            m[rows] = m_new[rows]
            v[rows] = v_new[rows]
            p[rows] = p_new[rows]


def check_conditioning(params, state, step, case, touched, grads):
    """Raises Ambiguous if an Adam step of this problem would magnify float32 rounding past
    the tolerance test_torch.c applies to the new weights (1e-5 relative). The step
    w - lr * m / (sqrt(v) + eps) depends steeply on g where |g| is near eps, or where the
    new gradient nearly cancels the old moment; and a float32 gradient element is only
    known to within rounding, of the order of 1e-8 of its array's largest. So: move every
    non-zero gradient element by 1e-7 of its array's largest (in float64); if that moves
    any new weight by
    more than its tolerance, the problem cannot tell a bug from rounding and we draw
    another. Elements with g == 0 are exact zeros (ReLU) in both programs."""
    b1, b2 = case.betas
    bc1 = 1 - b1 ** step
    bc2_sqrt = (1 - b2 ** step) ** 0.5
    for k, p in enumerate(params):
        w0 = p.detach().double()
        m0, v0 = (a.double() for a in state[k])
        g = grads[k].double()
        rows = touched[k] if touched[k] is not None else torch.ones(p.shape[0], dtype=torch.bool)

        def update(gg):
            m = b1 * m0 + (1 - b1) * gg
            v = b2 * v0 + (1 - b2) * gg * gg
            return w0 - case.lr / bc1 * m / (v.sqrt() / bc2_sqrt + case.eps)

        w1 = update(g)
        delta = 1e-7 * g.abs().max() * (g != 0)
        moved = torch.maximum((update(g + delta) - w1).abs(), (update(g - delta) - w1).abs())
        scale = torch.clamp(w1.abs(), min=1e-2 * w1.abs().max().item())
        bad = (moved > 1e-5 * scale) & rows.reshape(-1, *([1] * (p.dim() - 1)))
        if bool(bad.any()):
            i = tuple(int(j) for j in bad.nonzero()[0])
            raise Ambiguous(f"step {step}: the Adam step of layer {k // 2} "
                            f"{'bias' if k % 2 else 'weight'} {list(i)} is ill-conditioned "
                            f"(gradient {g[i].item():.3g}, eps {case.eps:g})")


def gradient_magnitudes(params, x, t):
    """For every gradient element, the size of what float32 rounding can do to it: the
    same backward pass run on absolute values (|W|, |x|, |p - t| -> p + t, the real
    ReLU masks), i.e. the sum of the magnitudes of all the terms the element is summed
    from, recursively. Where terms cancel this is far above |g| (an output weight
    gradient of 8e-4 summed from terms of 4e-3: float32 PyTorch itself was off by 1.8e-5
    of it), and a float32 result can only be asked to be within a small multiple of
    2^-24 of it. The classic running error bound; see test_torch.c for how it is used."""
    with torch.no_grad():
        n_layers = len(params) // 2
        W = [params[2 * k].detach() for k in range(n_layers)]
        b = [params[2 * k + 1].detach() for k in range(n_layers)]
        a = x @ W[0] + b[0]
        masks = [(a > 0).double()]
        hs = [torch.relu(a)]
        mags = [masks[0] * (x.abs() @ W[0].abs() + b[0].abs())]
        for k in range(1, n_layers - 1):
            a = hs[-1] @ W[k].T + b[k]
            masks.append((a > 0).double())
            hs.append(torch.relu(a))
            mags.append(masks[-1] * (mags[-1] @ W[k].abs().T + b[k].abs()))
        z = hs[-1] @ W[-1].T + b[-1]
        pr = torch.softmax(z, dim=1)
        mag_d = (pr * t.sum(dim=1, keepdim=True) + t) / x.shape[0]  # |dLoss/dz| = |p - t| / B
        out = [None] * (2 * n_layers)
        for k in range(n_layers - 1, -1, -1):
            inp = mags[k - 1] if k > 0 else x.abs()
            out[2 * k] = inp.T @ mag_d if k == 0 else mag_d.T @ inp
            out[2 * k + 1] = mag_d.sum(dim=0)
            if k > 0:
                mag_d = masks[k - 1] * (mag_d @ W[k].abs())
        return out


def float32_rel_error(params, x, t, grads64, scales, loss64):
    """The largest error of a float32 PyTorch run of this step against the float64 one,
    by test_torch.c's measure: an independent float32 implementation, to show how much
    room the tolerance leaves."""
    p32 = [p.detach().float().requires_grad_(True) for p in params]
    loss32 = forward_loss(p32, x.float(), t.float())
    loss32.backward()
    worst = abs(loss32.item() - loss64) / abs(loss64)
    for p, g, sc in zip(p32, grads64, scales):
        scale = torch.clamp(sc, min=1e-2 * sc.max().item())
        rel = (p.grad.double() - g).abs() / scale
        rel[scale == 0] = 0.0
        worst = max(worst, rel.max().item())
    return worst


def pack_f32(a):
    return np.ascontiguousarray(a.detach().numpy() if torch.is_tensor(a) else a, dtype='<f4').tobytes()


class Ambiguous(Exception):
    """The drawn problem would not tell lazy Adam's possible meanings apart cleanly."""


def build_case_retrying(case):
    """build_case with case.seed, else the next seeds (deterministically)."""
    first = case.seed
    for attempt in range(20):
        case.seed = first + attempt
        try:
            return build_case(case)
        except Ambiguous as e:
            print(f"  seed {case.seed} skipped: {e}")
    raise RuntimeError(f"{case.name}: no usable seed in {first}..{first + 19}")


def build_case(case):
    """Runs the case through PyTorch and returns the reference file's bytes."""
    print(f"{case.name}: seed {case.seed}, {case.n_features} -> {' -> '.join(map(str, case.sizes))}, "
          f"batch {case.batch}, lr {case.lr:g}, betas ({case.betas[0]:g}, {case.betas[1]:g}), eps {case.eps:g}")
    rng = np.random.default_rng(case.seed)
    torch.manual_seed(case.seed)
    points = make_points(case, rng)
    params = init_params(case, rng)
    n_layers = len(case.sizes)
    # The points go into the data set in a shuffled order and each batch lists its rows
    # in a shuffled order too, so that rows[] must really be followed.
    perm = rng.permutation(len(points))      # data set row j holds point perm[j]
    where = np.argsort(perm)                 # point i sits in data set row where[i]
    points = [points[int(i)] for i in perm]
    step_rows = []
    for s in range(N_STEPS):
        block = rng.permutation(np.arange(s * case.batch, (s + 1) * case.batch))
        step_rows.append([int(where[i]) for i in block])

    # The data set in CSR form, points in file order.
    out = bytearray()
    feat_indptr, feat_idx, feat_val, lab_indptr, labs = [0], [], [], [0], []
    for feats, vals, lab in points:
        feat_idx.extend(feats)
        feat_val.extend(vals.tolist())
        feat_indptr.append(len(feat_idx))
        labs.extend(lab)
        lab_indptr.append(len(labs))
    out += struct.pack('<ii', MAGIC, VERSION)
    out += struct.pack('<ii', case.n_features, n_layers)
    out += struct.pack(f'<{n_layers}i', *case.sizes)
    out += struct.pack('<ffffi', case.lr, case.betas[0], case.betas[1], case.eps, int(case.lazy))
    out += struct.pack('<qqq', len(points), len(feat_idx), len(labs))
    out += np.asarray(feat_indptr, dtype='<i8').tobytes()
    out += np.asarray(feat_idx, dtype='<i4').tobytes()
    out += np.asarray(feat_val, dtype='<f4').tobytes()
    out += np.asarray(lab_indptr, dtype='<i8').tobytes()
    out += np.asarray(labs, dtype='<i4').tobytes()
    for p in params:
        out += pack_f32(p)
    out += struct.pack('<i', N_STEPS)

    # Lazy Adam's state; torch.optim.Adam on a copy gives step 1.
    state = [(torch.zeros_like(p), torch.zeros_like(p)) for p in params]
    last = torch.zeros(case.n_features, dtype=torch.int64)  # step that last stepped each embedding row
    caught_up = 0
    for s in range(N_STEPS):
        rows = step_rows[s]
        x, t = dense_batch(case, points, rows)
        for p in params:
            p.grad = None
        loss = forward_loss(params, x, t)
        loss.backward()
        grads = [p.grad.detach().clone() for p in params]

        # Rows touched: layer-0 embedding rows of the features in the batch; every row of
        # the other weights (dense mode); every bias.
        present = torch.zeros(case.n_features, dtype=torch.bool)
        for r in rows:
            present[points[r][0]] = True
        nonzero = grads[0].abs().sum(dim=1) != 0
        if s > 0 and not torch.equal(present, nonzero):
            raise Ambiguous(f"step {s + 1}: a feature in the batch got no gradient")
        for k in range(2, len(params), 2):
            # A row of a later layer with an all-zero gradient after step 1 (a neuron dead
            # for the whole batch) would make "touched" ambiguous in the same way.
            if s > 0 and not bool((grads[k].abs().sum(dim=1) != 0).all()):
                raise Ambiguous(f"step {s + 1}: a row of layer {k // 2} got no gradient")
        touched = [present] + [None] * (len(params) - 1)
        gmag = gradient_magnitudes(params, x, t)
        for g, m in zip(grads, gmag):
            assert bool((m >= g.abs() * (1 - 1e-9)).all())
        err32 = float32_rel_error(params, x, t, grads, gmag, loss.item())
        if not case.lazy:  # after the gradient (sparrow's forward read the rows as they were)
            caught_up += catch_up(params, state, s + 1, case, present, last)
        check_conditioning(params, state, s + 1, case, touched, grads)
        # Scales of the moments: m = b1 m0 + (1 - b1) g and v = b2 v0 + (1 - b2) g^2
        # inherit g's rounding through (1 - b1) |dg| and 2 (1 - b2) |g| |dg|; rows not
        # touched keep their old values.
        b1, b2 = case.betas
        mscale, vscale = [], []
        for k in range(len(params)):
            m0, v0 = state[k]
            moved = touched[k] if touched[k] is not None else torch.ones(params[k].shape[0], dtype=torch.bool)
            moved = moved.reshape(-1, *([1] * (params[k].dim() - 1)))
            g, gm = grads[k], gmag[k]
            mscale.append(torch.where(moved, b1 * m0.abs() + (1 - b1) * gm, m0.abs()))
            vscale.append(torch.where(moved, b2 * v0 + (1 - b2) * g.abs() * (g.abs() + 2 * gm), v0))

        if s == 0:
            ref = [p.detach().clone().requires_grad_(True) for p in params]
            for rp, g in zip(ref, grads):
                rp.grad = g.clone()
            opt = torch.optim.Adam(ref, lr=case.lr, betas=case.betas, eps=case.eps)
            opt.step()
            lazy_adam_step(params, state, s + 1, case, touched)
            # The hand-written step agrees with PyTorch's on the first step (from zero
            # moments the untouched rows do not move in either); then carry on from
            # PyTorch's numbers so that step 1 of the file is torch.optim.Adam's.
            with torch.no_grad():
                for k, p in enumerate(params):
                    st = opt.state[ref[k]]
                    for mine, theirs in ((p, ref[k]), (state[k][0], st['exp_avg']),
                                         (state[k][1], st['exp_avg_sq'])):
                        err = (mine - theirs).abs().max().item()
                        scale = theirs.abs().max().item()
                        assert err <= 1e-12 * scale, (case.name, k, err, scale)
                        mine.copy_(theirs)
        else:
            lazy_adam_step(params, state, s + 1, case, touched)

        out += struct.pack('<q', len(rows))
        out += np.asarray(rows, dtype='<i8').tobytes()
        out += struct.pack('<d', float(loss.item()))
        for g, gm in zip(grads, gmag):
            out += pack_f32(g) + pack_f32(gm)
        for k in range(n_layers):
            w, b = params[2 * k], params[2 * k + 1]
            mw, vw = state[2 * k]
            mb, vb = state[2 * k + 1]
            for a, scale in ((w, w.abs()), (b, b.abs()), (mw, mscale[2 * k]), (vw, vscale[2 * k]),
                             (mb, mscale[2 * k + 1]), (vb, vscale[2 * k + 1])):
                assert bool((scale >= a.abs() * (1 - 1e-9)).all())
                out += pack_f32(a) + pack_f32(scale)
        # test_torch.c starts each step from the file's (float32) state: so do we.
        with torch.no_grad():
            for k, p in enumerate(params):
                for a in (p, state[k][0], state[k][1]):
                    a.copy_(a.float().double())
        print(f"  step {s + 1}: rows {rows}, loss {loss.item():.9g}, "
              f"{int(present.sum())} embedding rows touched; float32 PyTorch: max rel err {err32:.1e}")
    if not case.lazy and caught_up == 0:
        raise Ambiguous("no embedding row missed a step and came back: catch-up untested")
    # The end of the epoch: the rows that missed the last steps take them now.
    if not case.lazy and case.settle:
        owed = catch_up(params, state, N_STEPS + 1, case, torch.ones_like(last, dtype=torch.bool), last)
        if owed == 0:
            raise Ambiguous("no embedding row owed steps at the end: spr_model_catch_up untested")
    for k in range(n_layers):
        for a in (params[2 * k], params[2 * k + 1]) + state[2 * k] + state[2 * k + 1]:
            out += pack_f32(a) + pack_f32(a.abs())
    out += struct.pack('<i', MAGIC)
    return bytes(out)


def perturbed(data):
    """A copy of a reference file whose first step's layer-0 weight gradient has one
    element changed by 1e-3 relative: the C program must reject it."""
    n_features, n_layers = struct.unpack_from('<ii', data, 8)
    sizes = struct.unpack_from(f'<{n_layers}i', data, 16)
    off = 16 + 4 * n_layers + 16 + 4  # ... eps, lazy
    n_points, nnz, n_lab = struct.unpack_from('<qqq', data, off)
    off += 24 + 8 * (n_points + 1) + 4 * nnz + 4 * nnz + 8 * (n_points + 1) + 4 * n_lab
    fan_in = n_features
    for size in sizes:
        off += 4 * (fan_in * size + size)  # W (n_features, size0) or (size, fan_in); b
        fan_in = size
    off += 4  # n_steps
    (n_rows,) = struct.unpack_from('<q', data, off)
    off += 8 + 8 * n_rows + 8  # rows, loss: now at layer 0's gW, (n_features, sizes[0])
    g = np.frombuffer(data, dtype='<f4', count=n_features * sizes[0], offset=off)
    i = int(np.argmax(np.abs(g)))
    out = bytearray(data)
    struct.pack_into('<f', out, off + 4 * i, float(g[i]) * (1 + 1e-3))
    return bytes(out)


def rejected(check, path, data, what, blind):
    """Runs the C program on a reference file that must fail (a negative control)."""
    with open(path, 'wb') as f:
        f.write(data)
    print(f"negative control: {what}; expecting a failure")
    sys.stdout.flush()
    r = subprocess.run([check, '--quiet', path], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode == 0:
        print(r.stdout)
        print(f"torch_reference: {blind}: FAILED")
        return False
    fails = [line.strip() for line in r.stdout.splitlines() if 'FAIL' in line]
    print(f"negative control rejected as it should be ({len(fails)} failures, first: "
          f"{fails[0] if fails else '?'})")
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--check', metavar='TEST_TORCH', help='run this test_torch binary on the cases')
    ap.add_argument('--write', metavar='DIR', help='only write the reference files into DIR')
    args = ap.parse_args()
    if not args.check and not args.write:
        ap.error('give --check or --write')

    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float32)
    print(f"torch {torch.__version__}, numpy {np.__version__}, 1 thread, "
          f"float32 problems, float64 reference")

    with tempfile.TemporaryDirectory(prefix='sparrow-torch-') as tmp:
        out_dir = args.write or tmp
        os.makedirs(out_dir, exist_ok=True)
        paths = []
        for case in CASES:
            path = os.path.join(out_dir, f'{case.name}.bin')
            with open(path, 'wb') as f:
                f.write(build_case_retrying(case))
            paths.append(path)
        if args.write:
            print(f"wrote {len(paths)} files to {out_dir}")
            return 0

        sys.stdout.flush()
        rc = subprocess.run([args.check] + paths).returncode
        if rc != 0:
            print(f"torch_reference: {args.check} exited with status {rc}: FAILED")
            return 1 if rc > 0 else 2

        with open(paths[0], 'rb') as f:
            data = f.read()
        # Negative controls: the comparison must notice a 1e-3 relative change of one
        # number, and the catch-up must matter (a catch-up case run as lazy Adam fails).
        lazy = bytearray(data)
        struct.pack_into('<i', lazy, 16 + 4 * struct.unpack_from('<i', data, 12)[0] + 16, 1)
        unsettled = copy.copy(CASES[0])  # its seed as build_case_retrying left it
        unsettled.settle = False
        for what, bad_data, blind in (
                ("one gradient element changed by 1e-3 relative", perturbed(data),
                 "the perturbed reference was accepted: the comparison is blind"),
                ("a catch-up case run with lazy Adam", bytes(lazy),
                 "lazy Adam passed for catch-up: the catch-up is untested"),
                ("a catch-up case whose rows keep their owed steps at the end", build_case(unsettled),
                 "the end-of-epoch catch-up changed nothing: spr_model_catch_up is untested")):
            if not rejected(args.check, os.path.join(tmp, 'negative_control.bin'), bad_data, what, blind):
                return 1
        print("torch_reference: all cases agree with PyTorch")
        return 0


if __name__ == '__main__':
    sys.exit(main())
