"""sparrow.Model: a network trained by the C library, configured from Python."""
import ctypes
import os
import re
import sys
import tempfile
import threading
import time

import numpy as np
import scipy.sparse as sp

from . import _lib
from .data import Dataset, as_features, as_labels, exclusions
from .errors import SparrowError, check

_POLICIES = {"fifo": 0, "reservoir": 1}


def _parse(fn, name, what):
    out = ctypes.c_int()
    if not isinstance(name, str) or fn(name.encode(), ctypes.byref(out)) != 0:
        raise ValueError("unknown %s %r" % (what, name))
    return out.value


class _Progress:
    """Progress on stderr: a bar redrawn in place on a terminal, a line every
    `every` seconds otherwise (logs, notebooks' captured output), nothing if quiet."""

    def __init__(self, quiet, stream=None, every=10.0):
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.every = 0.2 if self.tty else every
        self.last = time.monotonic()

    def update(self, epoch, epochs, done, total, samples_per_s, loss, force=False):
        if self.quiet:
            return
        t = time.monotonic()
        if not force and t - self.last < self.every:
            return
        self.last = t
        if self.tty:
            width = 30
            fill = int(width * done / max(total, 1))
            self.stream.write("\repoch %d/%d [%s%s] %d/%d  %.0f samples/s  loss %.4f " % (
                epoch, epochs, "=" * fill, " " * (width - fill), done, total, samples_per_s, loss))
        else:
            self.stream.write("epoch %d/%d batch %d/%d: %.0f samples/s, loss %.4f\n" % (
                epoch, epochs, done, total, samples_per_s, loss))
        self.stream.flush()

    def line(self, text):
        if self.quiet:
            return
        if self.tty:
            self.stream.write("\r\033[K")
        self.stream.write(text + "\n")
        self.stream.flush()


def _save_interval(save_every, save_path):
    """fit's save_every as (steps, seconds), one of them None: an int of steps >= 1, or a
    time "30m", "2h", "600s" (decimals allowed), as `sparrow train --save-every`."""
    if save_every is None:
        return None, None
    if save_path is None:
        raise ValueError("save_every needs save_path (where to save)")
    if isinstance(save_every, str):
        m = re.fullmatch(r"(\d+\.?\d*|\.\d+)([smh])", save_every.strip())
        seconds = float(m.group(1)) * {"s": 1, "m": 60, "h": 3600}[m.group(2)] if m else 0.0
        if not 0 < seconds < float("inf"):
            raise ValueError("save_every must be a number of steps >= 1 or a time such as '30m', "
                             "'2h', '600s', got %r" % save_every)
        return None, seconds
    steps = _lib.integer(save_every, "save_every")
    if steps < 1:
        raise ValueError("save_every must be >= 1 steps, got %d" % steps)
    return steps, None


class _ArrayMemory:
    """What a view from Model.weights() is a view of: n floats of a C array, and the
    Model that owns them, kept alive as long as a view is (numpy keeps this object as
    the view's base), so that a dropped or replaced model (SampledSoftmaxLinear's
    load_state_dict) does not free the memory under a view still in use."""

    def __init__(self, model, address, n):
        self.model = model
        self.__array_interface__ = {"shape": (n,), "typestr": "<f4", "data": (address, False),
                                    "version": 3}


class Model:
    """A sparrow network: sparse input -> embedding-bag layer 0 (ReLU) -> optional more
    hidden ReLU layers -> a softmax output over n_labels, sampled with LSH.

    The options are those of `sparrow train` (README, "The command-line tool"):
    hidden (sizes of the hidden layers, (128,)), sparsity (fraction of output neurons
    active per sample, 0.01), hash ("simhash", "dwta", "wta", "doph"), tables (L, 50),
    bits (K, 0 = automatic), bucket_capacity (128), bucket_policy ("fifo",
    "reservoir"), select ("topk", "union", "threshold", "rank"), threshold (2),
    random_fraction (0.5), simhash_one_in (SimHash projections non-zero one entry in
    this many; 0: sqrt of the layer's fan-in rounded, at least 3), hidden_sparsity
    (sample the hidden layers after the first too, with the output's hash options),
    init_std (0.1), seed (1), bf16_state (False: True keeps the output layer's Adam
    moments in BF16, `sparrow train --bf16-state`),
    bf16_weights (False: True keeps the output layer's weights in BF16 too, and implies
    bf16_state, `sparrow train --bf16-weights`), and max_memory (bytes; refuse a model that needs more before allocating anything).

    The C handle is freed by close() (or `with Model(...) as m:`, or garbage
    collection); a closed model raises ValueError when used. Calls on one model from
    several threads take turns (a lock per model; one fit at a time); calls on different
    models run at the same time."""

    def __init__(self, n_features, n_labels, hidden=(128,), sparsity=0.01, hash="simhash",
                 tables=50, bits=0, bucket_capacity=128, bucket_policy="fifo", select="topk",
                 threshold=2, random_fraction=0.5, hidden_sparsity=None, init_std=0.1, seed=1,
                 max_memory=None, bf16_state=False, bf16_weights=False, simhash_one_in=0):
        self._handle = None
        self._lock = threading.RLock()
        hidden = (hidden,) if np.isscalar(hidden) else tuple(hidden)
        if not 1 <= len(hidden) <= _lib.MAX_LAYERS - 1:
            raise ValueError("hidden must have 1 to %d sizes, got %r" % (_lib.MAX_LAYERS - 1, hidden))
        n_features, n_labels = _lib.integer(n_features, "n_features"), _lib.integer(n_labels, "n_labels")
        if n_features < 1 or n_labels < 1:
            raise ValueError("n_features and n_labels must be >= 1")
        _lib.checked(_lib.c_int64, int(n_features), "n_features")
        _lib.checked(_lib.c_int64, int(n_labels), "n_labels")
        cfg = _lib.spr_model_config_default(int(n_features), int(n_labels))
        cfg.n_layers = len(hidden) + 1
        for i, size in enumerate(hidden):
            cfg.layers[i].size = _lib.integer(size, "hidden")
            cfg.layers[i].sparsity = 1.0
        out = cfg.layers[cfg.n_layers - 1]
        out.size = int(n_labels)
        out.sparsity = float(sparsity)
        out.hash = _parse(_lib.spr_hash_family_parse, hash, "hash family")
        out.hash_l = _lib.integer(tables, "tables")
        out.hash_k = _lib.integer(bits, "bits")
        out.bucket_capacity = _lib.integer(bucket_capacity, "bucket_capacity")
        if bucket_policy not in _POLICIES:
            raise ValueError("bucket_policy must be 'fifo' or 'reservoir', got %r" % (bucket_policy,))
        out.bucket_policy = _POLICIES[bucket_policy]
        out.select = _parse(_lib.spr_select_parse, select, "selection strategy")
        out.select_threshold = _lib.integer(threshold, "threshold")
        out.random_fraction = float(random_fraction)
        out.simhash_one_in = _lib.integer(simhash_one_in, "simhash_one_in")
        if hidden_sparsity is not None:
            for i in range(1, cfg.n_layers - 1):
                size = cfg.layers[i].size
                ctypes.memmove(ctypes.byref(cfg.layers[i]), ctypes.byref(out), ctypes.sizeof(out))
                cfg.layers[i].size = size
                cfg.layers[i].sparsity = float(hidden_sparsity)
        cfg.init_std = float(init_std)
        cfg.seed = _lib.integer(seed, "seed")
        cfg.bf16_state = 1 if bf16_state or bf16_weights else 0
        cfg.bf16_weights = 1 if bf16_weights else 0
        check(_lib.spr_model_config_check(ctypes.byref(cfg)))
        if max_memory is not None:
            need = ctypes.c_int64()
            check(_lib.spr_model_config_memory(ctypes.byref(cfg), ctypes.byref(need)))
            if need.value > max_memory:
                raise MemoryError("the model needs %.1f MB, more than max_memory %.1f MB" % (
                    need.value / 1e6, max_memory / 1e6))
        handle = ctypes.c_void_p()
        check(_lib.spr_model_create(ctypes.byref(cfg), ctypes.byref(handle)))
        self._handle = handle
        self.history = []
        self._partial = None  # where a fit stopped inside an epoch (_stop_inside_epoch)
        self._fitting = False  # a fit runs (one at a time)

    # ---------------------------------------------------------------- life cycle

    @classmethod
    def load(cls, path, inference=False, tables=False):
        """Loads a model written by save() or by `sparrow train --save`.

        inference=True loads only what predict() and evaluate() read: the weights and
        biases, with the LSH tables only if tables=True (sparse=True and recall need
        them). That is a third of the memory with float moments (the optimizer state is
        not read), and the predictions are bit for bit those of the whole model settled
        (spr_model_load_inference). Such a model cannot fit() or save(): BadInputError."""
        handle = ctypes.c_void_p()
        if inference:
            check(_lib.spr_model_load_inference(os.fsencode(path), 1 if tables else 0,
                                                ctypes.byref(handle)))
        else:
            check(_lib.spr_model_load(os.fsencode(path), ctypes.byref(handle)))
        return cls._owning(handle)

    @classmethod
    def _owning(cls, handle, history=()):
        """A Model that owns handle (a C spr_model *): freed by its close()."""
        m = cls.__new__(cls)
        m._lock, m._handle, m.history = threading.RLock(), handle, list(history)
        m._partial, m._fitting = None, False
        return m

    def _release(self):
        """Hands this model's C handle to the caller; this object is closed after."""
        with self._lock:
            handle, self._handle = self._h(), None
        return handle

    def save(self, path):
        """Writes the whole model (weights, optimizer state, step) atomically, in the
        format `sparrow eval --model` reads."""
        with self._lock:
            check(_lib.spr_model_save(self._h(), os.fsencode(path)))

    def to_bytes(self):
        """The model file's bytes (what save() writes: weights, optimizer state, step)."""
        with tempfile.TemporaryDirectory(prefix="sparrow-") as d:
            path = os.path.join(d, "model.spr")
            self.save(path)
            with open(path, "rb") as f:
                return f.read()

    @classmethod
    def from_bytes(cls, data):
        """A model from to_bytes()'s output (or a model file's contents)."""
        with tempfile.TemporaryDirectory(prefix="sparrow-") as d:
            path = os.path.join(d, "model.spr")
            with open(path, "wb") as f:
                f.write(bytes(data))
            try:
                return cls.load(path)
            except SparrowError as e:  # not the temporary file's name: the caller never saw it
                raise type(e)(str(e).replace(path, "the model bytes")) from None

    # pickle and copy.deepcopy (ctypes handles cannot be pickled): the model file's
    # bytes, so a copy is a separate model with the same weights, moments and step.
    def __getstate__(self):
        return {"model_file": self.to_bytes(), "history": list(self.history),
                "partial": self._partial}

    def __setstate__(self, state):
        self._lock, self.history = threading.RLock(), list(state["history"])
        self._partial, self._fitting = state.get("partial"), False
        self._handle = Model.from_bytes(state["model_file"])._release()

    def close(self):
        """Frees the C model; later calls raise ValueError."""
        lock = getattr(self, "_lock", None)
        if lock is None:
            return
        with lock:  # waits for a call on another thread (a batch, a prediction) to end
            if self._handle:
                _lib.spr_model_free(self._handle)
            self._handle = None

    def __del__(self):
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _h(self):
        if not self._handle:
            raise ValueError("the model is closed")
        return self._handle

    # ---------------------------------------------------------------- properties

    @property
    def config(self):
        """The configuration as a dict (sizes, sparsity and hashing per layer)."""
        c = _lib.spr_model_get_config(self._h())
        layers = []
        for i in range(c.n_layers):
            L = c.layers[i]
            layers.append({"size": L.size, "sparsity": L.sparsity,
                           "hash": _lib.spr_hash_family_to_string(L.hash).decode(),
                           "bits": L.hash_k, "tables": L.hash_l,
                           "bucket_capacity": L.bucket_capacity,
                           "bucket_policy": "fifo" if L.bucket_policy == 0 else "reservoir",
                           "select": _lib.spr_select_to_string(L.select).decode(),
                           "threshold": L.select_threshold, "random_fraction": L.random_fraction,
                           "simhash_one_in": L.simhash_one_in})
        return {"n_features": c.n_features, "layers": layers, "init_std": c.init_std,
                "seed": c.seed, "bf16_state": bool(c.bf16_state),
                "bf16_weights": bool(c.bf16_weights)}

    @property
    def n_features(self):
        return _lib.spr_model_get_config(self._h()).n_features

    @property
    def n_labels(self):
        c = _lib.spr_model_get_config(self._h())
        return c.layers[c.n_layers - 1].size

    @property
    def info(self):
        """Steps, samples, epoch, parameter and table sizes, rehashes (a dict),
        training_set: the points, digest and id base of the data that trained the model
        (None: not recorded), what `sparrow train --resume` and fit(resume=True) check,
        and adam: the lr, beta1, beta2, eps of its last step, which settle() takes owed
        steps at (None: not recorded: no step, lazy Adam, or a file before session 26)."""
        return _info_dict(_lib.spr_model_get_info(self._h()), _lib.spr_model_get_data_note(self._h()))

    @staticmethod
    def verify(path):
        """Checks every section's checksum of a saved model (every shard of a manifest)
        and its layout, streaming the file: a few MB of memory whatever its size
        (spr_model_verify; `sparrow info --verify`). Raises BadInputError naming the file,
        the section and its offset on damage."""
        check(_lib.spr_model_verify(os.fsencode(path)))

    @staticmethod
    def peek(path):
        """What load(path).info would say, and n_features, n_labels, hidden (the hidden
        layers' sizes) and shards (0: one file; N: path is the manifest of N shards), from
        the file's small sections only: its arrays are not read (nor their checksums:
        load() still checks those), so a model of any size, or a manifest of shards,
        costs a few reads."""
        c, i, note = _lib.ModelConfig(), _lib.ModelInfo(), _lib.DataNote()
        check(_lib.spr_model_peek(os.fsencode(path), ctypes.byref(c), ctypes.byref(i), ctypes.byref(note)))
        d = _info_dict(i, note)
        d.update(n_features=c.n_features, n_labels=c.layers[c.n_layers - 1].size,
                 hidden=[c.layers[l].size for l in range(c.n_layers - 1)],
                 shards=max(0, _lib.spr_model_file_shards(os.fsencode(path))))
        return d

    def weights(self, layer, bias=False):
        """A numpy view (not a copy) of a layer's weights: layer 0 (n_features, size),
        others (size, fan_in); bias=True gives the (size,) bias. It keeps the model
        alive, and is valid until close(); writing it changes the model (the tables see
        it at the next rehash).
        The output layer of a bf16_weights model has no float array: its weights come as
        a read-only float32 copy, widened from BF16. A model stopped or saved inside an
        epoch holds rows that still owe Adam steps: settle() first for the weights
        torch.optim.Adam would hold."""
        layer = _lib.integer(layer, "layer")
        c = _lib.spr_model_get_config(self._h())
        if c.bf16_weights and not bias and layer == c.n_layers - 1:
            rows = c.layers[layer].size
            cols = c.layers[layer - 1].size
            a = np.empty((rows, cols), np.float32)
            check(_lib.spr_model_weight_rows(self._h(), int(layer), 0, rows,
                                             a.ctypes.data_as(ctypes.POINTER(ctypes.c_float))))
            a.flags.writeable = False
            return a
        ptr = ctypes.POINTER(ctypes.c_float)()
        rows, cols, stride = ctypes.c_int64(), ctypes.c_int64(), ctypes.c_int64()
        check(_lib.spr_model_param(self._h(), int(layer), 1 if bias else 0, ctypes.byref(ptr),
                                   ctypes.byref(rows), ctypes.byref(cols), ctypes.byref(stride)))
        memory = _ArrayMemory(self, ctypes.addressof(ptr.contents), rows.value * stride.value)
        a = np.asarray(memory).reshape(rows.value, stride.value)[:, :cols.value]
        return a[0] if bias else a

    # ---------------------------------------------------------------- training

    def fit(self, X, Y, epochs=1, batch_size=128, lr=None, validation_data=None, callbacks=(),
            dense=False, threads=0, shuffle=True, beta1=0.9, beta2=0.999, eps=1e-8,
            rehash_first=50, rehash_growth=0.1, rehash_max=1000, rebuild_every=10, clip_norm=0.0,
            eval_max=None, sparse_inference=False, quiet=False, max_batches=None,
            random_pool=None, save_path=None, save_every=None, resume=False, lazy_adam=False):
        """Trains on X (scipy CSR or numpy dense, (points, features)) and Y (CSR label
        matrix, 1-D label ids, or a list of label lists) for `epochs` epochs of shuffled
        batches (the order depends only on the model's seed and the epoch: the order
        `sparrow train` takes, so that with the same options and threads=1 fit writes the
        very model file the CLI writes; eval_max takes the CLI's --eval-max points).

        After each epoch: the epoch's metrics (the keys of the CLI's metrics file:
        epoch, step, train_seconds, samples_per_second, loss, active_out and, with
        validation_data=(X_val, Y_val), p_at_1/3/5 and ndcg_at_1/3/5 on at most eval_max
        of its points; (X_val, Y_val, exclude) scores them filtered, as evaluate's
        exclude and `sparrow train --test-filter-labels` do)
        are appended to self.history, printed on stderr unless quiet, and passed to
        each callback(metrics); a callback returning True stops training. The GIL is
        released while a batch trains. random_pool: the CLI's --random-pool (None:
        the library's default). lazy_adam: the CLI's --lazy-adam (rows without gradient
        never catch up on the steps they missed). A fit stopped inside an epoch (max_batches,
        KeyboardInterrupt) is continued after its trained rows by the next fit on the same
        data and shuffle (any batch_size), byte for byte the fit never stopped; its
        validation there scores the rows that owe Adam steps as settle() would leave
        them, bit for bit, without writing the model (evaluate() and predict() settle
        it; `sparrow train`, whose stopped run ends, settles after its save).

        save_every (with save_path): also save the model there, atomically, at every N-th
        step (an int; steps count the model's, as `sparrow train --save-every`) or once
        the time given has passed since the last save ("30m", "2h", "600s"); at an
        epoch's last batch after the epoch is counted. A save that fails raises (the file
        keeps the previous save). resume=True continues a model loaded from such a file
        (or from `sparrow train --save`) inside the epoch it stopped in, at the row its
        sample count gives, as `sparrow train --resume` does: X must be the data it was
        trained on (a sample count that does not fit X is refused), and lr, if not given,
        is the model's last step's (info["adam"]), as `sparrow train --resume` without
        --lr; otherwise lr defaults to 1e-3. Returns self.history."""
        with self._lock:
            if self._fitting:  # epochs are counted by the model's samples: two would interleave
                raise RuntimeError("another fit() is running on this model (in another thread): "
                                   "one at a time, or their epochs would interleave")
            self._fitting = True
        try:
            args = dict(locals())
            del args["self"]
            return self._fit(**args)
        finally:
            self._fitting = False

    def _fit(self, X, Y, epochs, batch_size, lr, validation_data, callbacks, dense, threads,
             shuffle, beta1, beta2, eps, rehash_first, rehash_growth, rehash_max, rebuild_every,
             clip_norm, eval_max, sparse_inference, quiet, max_batches, random_pool, save_path,
             save_every, resume, lazy_adam):
        """fit's work, one fit at a time."""
        h = self._h()
        every_steps, every_seconds = _save_interval(save_every, save_path)
        if save_path is not None:  # a path that cannot be written: before any training
            check(_lib.spr_model_save_check(os.fsencode(save_path)))
        for name, value in (("epochs", epochs), ("max_batches", max_batches), ("eval_max", eval_max)):
            if value is not None and _lib.integer(value, name) < 1:  # as the CLI's --epochs ... refuse them
                raise ValueError("%s must be >= 1, got %r" % (name, value))
        cfg = _lib.spr_model_get_config(h)
        n_labels = cfg.layers[cfg.n_layers - 1].size
        data = Dataset(X, Y, cfg.n_features, n_labels)
        val = val_exclude = None
        if validation_data is not None:
            if len(validation_data) not in (2, 3):
                raise ValueError("validation_data must be (X, Y) or (X, Y, exclude), got %d items"
                                 % len(validation_data))
            Xv, Yv = validation_data[:2]
            val = Dataset(Xv, Yv, cfg.n_features, n_labels)
            if len(validation_data) == 3 and validation_data[2] is not None:
                val_exclude = exclusions(validation_data[2], val.n_points, n_labels)
            if val.n_points == 0:  # its P@k would read 0.0
                raise ValueError("validation_data has no points")
            if val.Y.nnz == 0:
                raise ValueError("validation_data: none of its %d points has a label" % val.n_points)
        n = data.n_points
        if n == 0:
            raise ValueError("no training points")
        if data.Y.nnz == 0:  # it "trained" to loss 0
            raise ValueError("none of the %d training points has a label" % n)
        if lr is None:
            adam = self.info["adam"] if resume else None
            lr = adam["lr"] if adam else 1e-3
        opts = _lib.spr_train_options_default()
        opts.batch_size, opts.lr, opts.beta1, opts.beta2, opts.eps = (
            _lib.integer(batch_size, "batch_size"), float(lr), float(beta1), float(beta2), float(eps))
        opts.threads, opts.dense = _lib.integer(threads, "threads"), 1 if dense else 0
        opts.rehash_first, opts.rehash_growth = _lib.integer(rehash_first, "rehash_first"), float(rehash_growth)
        opts.rehash_max, opts.rebuild_every, opts.clip_norm = (
            _lib.integer(rehash_max, "rehash_max"), _lib.integer(rebuild_every, "rebuild_every"), float(clip_norm))
        opts.lazy_adam = 1 if lazy_adam else 0
        if random_pool is not None:
            if _lib.integer(random_pool, "random_pool") < 0:
                raise ValueError("random_pool must be >= 0, got %d" % int(random_pool))
            opts.random_pool = int(random_pool)
        if opts.batch_size < 1:
            raise ValueError("batch_size must be >= 1, got %d" % opts.batch_size)
        opts.batch_size = min(opts.batch_size, n)  # a larger batch is the whole set (scratch)
        eval_rows = None
        if val is not None and eval_max is not None and eval_max < val.n_points:
            eval_rows = np.empty(val.n_points, dtype=np.int64)  # the CLI's --eval-max subset
            eval_rows = eval_rows[:_lib.spr_eval_subset(eval_rows.ctypes.data, val.n_points, int(eval_max))]
        bar = _Progress(quiet)
        if val is not None and val.n_points == n and val.digest() == data.digest():
            bar.line("note: validation_data is the training data: its P@k measures the fit, "
                     "not held-out data")  # as `sparrow train --test` notes it
        per_epoch = (n + opts.batch_size - 1) // opts.batch_size
        stats = _lib.BatchStats()
        last = cfg.n_layers - 1
        first_epoch = self.info["epoch"] + 1
        digest = data.digest()
        if resume:
            info = self.info
            known = info["training_set"]
            if known is not None and (known["points"], known["digest"]) != (n, digest):
                raise ValueError("resume: X is not the data the model was trained on (%d points, digest "
                                 "%016x; the model's: %d points, digest %016x)"
                                 % (n, digest, known["points"], known["digest"]))
            skip = info["samples"] - info["epoch"] * n
            if not 0 <= skip < n:
                raise ValueError("resume: the model's %d samples after %d complete epochs do not fit "
                                 "the %d points of X: resume with the data the model was trained on"
                                 % (info["samples"], info["epoch"], n))
        else:
            skip = self._continued_rows(data, shuffle, first_epoch)
        saved_at = [time.monotonic()]

        def save_if_due():
            """Saves when save_every says so; returns the seconds it took (0.0: no save)."""
            step = self.info["steps"]
            due = (every_steps is not None and step % every_steps == 0) or (
                every_seconds is not None and time.monotonic() - saved_at[0] >= every_seconds)
            if not due:
                return 0.0
            t = time.perf_counter()
            self.save(save_path)  # raises when it fails: the file keeps the last save
            saved_at[0] = time.monotonic()
            took = time.perf_counter() - t
            bar.line("saved %s at step %d (%.2f s)" % (os.fsdecode(save_path), step, took))
            return took

        epochs = _lib.integer(epochs, "epochs")
        # the data the model trains on from here, as `sparrow train` records it: arrays
        # carry zero-based ids, but X as load_xmc read it keeps its file's base, and the
        # same points as the model's record keep that one (a CLI model from a one-based
        # file, continued here, still reads as one)
        known = self.info["training_set"]
        same = known is not None and (known["points"], known["digest"]) == (n, digest)
        one_based = same and known["one_based"]
        if getattr(X, "sparrow_one_based", None) is not None:
            one_based = X.sparrow_one_based
        with self._lock:  # a save() in another thread reads it
            _lib.spr_model_set_data_note(h, ctypes.byref(_lib.DataNote(n, digest, int(bool(one_based)))))
        train_seconds, samples_done, batches_done = 0.0, 0, 0
        for epoch in range(first_epoch, first_epoch + epochs):
            rows = np.arange(n, dtype=np.int64)
            if shuffle:  # the order `sparrow train` takes
                _lib.spr_epoch_order(rows.ctypes.data, n, cfg.seed, epoch)
            base = rows.ctypes.data
            loss_sum = active_sum = 0.0
            seen = 0
            t0 = time.perf_counter()
            first_row = skip if epoch == first_epoch else 0
            first_samples = self.info["samples"]
            try:
                for start in range(first_row, n, opts.batch_size):
                    if max_batches is not None and batches_done >= max_batches:
                        break
                    count = min(opts.batch_size, n - start)
                    with self._lock:
                        check(_lib.spr_model_train_batch(self._h(), data.handle, base + 8 * start,
                                                         count, ctypes.byref(opts), ctypes.byref(stats)))
                    loss_sum += stats.loss * count
                    active_sum += stats.active[last] * count
                    seen += count
                    batches_done += 1
                    el = train_seconds + time.perf_counter() - t0
                    batch = -(-(start + count) // opts.batch_size)  # of the epoch, rounded up
                    bar.update(epoch, first_epoch + epochs - 1, batch, per_epoch,
                               (samples_done + seen) / el if el > 0 else 0.0, loss_sum / seen)
                    if save_path is not None and start + count < n:
                        t0 += save_if_due()  # the save is not training time
            finally:  # also after KeyboardInterrupt: the next fit continues from here
                done = first_row + self.info["samples"] - first_samples
                complete = self._stop_inside_epoch(data, shuffle, epoch, done, opts)
            if seen == 0 and not complete:  # max_batches was reached at the epoch's start
                break
            train_seconds += time.perf_counter() - t0
            if save_path is not None and complete:  # at the epoch's end once it is counted
                save_if_due()
            samples_done += seen
            metrics = {"epoch": epoch, "partial_epoch": not complete, "step": self.info["steps"],
                       "train_seconds": train_seconds,
                       "samples_per_second": samples_done / train_seconds if train_seconds else 0.0,
                       "loss": loss_sum / seen if seen else float("nan"),
                       "active_out": active_sum / seen if seen else float("nan")}
            text = "epoch %d: step %d, loss %.4f, %.0f samples/s, train %.2f s, active out %.1f" % (
                epoch, metrics["step"], metrics["loss"], metrics["samples_per_second"],
                train_seconds, metrics["active_out"])
            if val is not None:
                r = self._evaluate(val, eval_rows, sparse_inference, threads, None, val_exclude)
                metrics.update({"p_at_1": r.p_at[1], "p_at_3": r.p_at[3], "p_at_5": r.p_at[5],
                                "ndcg_at_1": r.ndcg_at[1], "ndcg_at_3": r.ndcg_at[3],
                                "ndcg_at_5": r.ndcg_at[5],
                                "eval_points": r.n_points, "eval_seconds": r.seconds})
                text += ", P@1 %.4f P@3 %.4f P@5 %.4f on %d points" % (
                    r.p_at[1], r.p_at[3], r.p_at[5], r.n_points)
            bar.line(text)
            self.history.append(metrics)
            stop = False
            for cb in callbacks:
                stop = bool(cb(metrics)) or stop
            if stop or not complete:
                break
        return self.history

    # A fit that stops inside an epoch (max_batches, KeyboardInterrupt) leaves
    # self._partial; the next fit on the same data and shuffle continues that epoch
    # after its trained rows (the epoch's order depends only on the seed and the epoch),
    # as `sparrow train --resume` does, whatever its batch_size. Anything else starts the
    # epoch again: the model alone cannot tell which rows of other data were trained.
    # Not kept by save()/load() (the model file does not know the data): pickling keeps it.

    def _stop_inside_epoch(self, data, shuffle, epoch, done, opts):
        """Records where training of epoch stopped (done of its rows, counted from the
        model's samples); a complete epoch is counted, after the rows that missed Adam
        steps take them (spr_model_catch_up, as `sparrow train` at an epoch's end).
        Returns whether it is."""
        with self._lock:
            if done >= data.n_points:
                check(_lib.spr_model_catch_up(self._h(), ctypes.byref(opts)))
                _lib.spr_model_set_epoch(self._h(), epoch)
                self._partial = None
            elif done > 0:
                self._partial = {"epoch": epoch, "rows": done, "samples": self.info["samples"],
                                 "points": data.n_points, "shuffle": bool(shuffle),
                                 "data": data.digest()}
        return done >= data.n_points

    def _continued_rows(self, data, shuffle, epoch):
        """The rows of epoch an earlier fit trained, if this one continues it; else 0."""
        p = self._partial
        if p is None:
            return 0
        now = {"epoch": epoch, "samples": self.info["samples"], "points": data.n_points,
               "shuffle": bool(shuffle)}
        if any(p[k] != v for k, v in now.items()) or p["data"] != data.digest():
            return 0
        return p["rows"]

    # ---------------------------------------------------------------- inference

    def settle(self, threads=0):
        """Takes the Adam steps the model's rows owe (rows without gradient in the last
        steps of a fit stopped inside an epoch, or of a model saved then), at the
        options of its last step, which a saved model keeps (spr_model_settle): the
        weights become what torch.optim.Adam holds. A fit's complete epochs end settled;
        evaluate() and predict() settle first, as `sparrow eval` and `predict` do. A fit
        continued after it is the same model in exact arithmetic, rounded otherwise
        (not byte for byte the run never stopped). A no-op for lazy_adam."""
        with self._lock:
            check(_lib.spr_model_settle(self._h(), _lib.integer(threads, "threads")))

    def predict(self, X, k=5, sparse=False, threads=0, exclude=None):
        """Top-k labels of every row of X (CSR or dense): (ids int32 (n, k), scores
        float32 (n, k)), best first; scores are output logits. sparse=True ranks only
        the LSH candidates (sublinear); short rows are padded with id -1, -inf.
        exclude: labels to leave out of each row's ranking, a (n, labels) CSR or
        0-1 matrix (sparrow.load_filter reads the XMC repository's filter files) or a
        list of label-id lists; k + the most a row excludes must be at most 1000.
        The model is settled first (settle())."""
        h = self._h()
        k = _lib.integer(k, "k")
        if not 1 <= k <= 1000:
            raise ValueError("k must be in [1, 1000], got %d" % k)
        data = Dataset(X, None, self.n_features, 0)
        ex = None if exclude is None else exclusions(exclude, data.n_points, self.n_labels)
        ids = np.empty((data.n_points, k), dtype=np.int32)
        scores = np.empty((data.n_points, k), dtype=np.float32)
        with self._lock:
            self.settle(threads)
            if data.n_points:
                check(_lib.spr_model_predict_excluding(
                    self._h(), data.handle, None, data.n_points, k, 1 if sparse else 0,
                    _lib.integer(threads, "threads"), None if ex is None else ex.handle, ids.ctypes.data,
                    scores.ctypes.data))
        return ids, scores

    def _evaluate(self, data, rows, sparse, threads, inv_propensity=None, ex=None):
        r = _lib.EvalResult()
        w = None
        if inv_propensity is not None:
            w = np.ascontiguousarray(inv_propensity, dtype=np.float64)
            if w.ndim != 1:
                raise ValueError("inv_propensity must be 1-D (one weight a label), got shape %s"
                                 % (w.shape,))
        with self._lock:
            check(_lib.spr_model_evaluate_excluding(
                self._h(), data.handle, None if rows is None else rows.ctypes.data,
                0 if rows is None else rows.size, 1 if sparse else 0, _lib.integer(threads, "threads"),
                None if w is None else w.ctypes.data, 0 if w is None else w.size,
                None if ex is None else ex.handle, ctypes.byref(r)))
        return r

    def evaluate(self, X, Y, k=(1, 3, 5), sparse=False, threads=0, inv_propensity=None, exclude=None):
        """Precision@k and nDCG@k (k in 1..1000) on (X, Y): a dict {"p_at_1": ...,
        "ndcg_at_1": ..., ...} plus "n_points" and "seconds". The XMC repository's
        definitions with binary relevance (sparrow.h, spr_model_evaluate); a point without
        labels counts as 0. With inv_propensity (one weight a label, e.g.
        sparrow.inv_propensities(Y_train)) also "psp_at_k" and "psndcg_at_k":
        propensity-scored precision and nDCG. k 1..5 come from the library's evaluation;
        a larger k from the top-k predictions ranked here by the same definitions
        (rank_metrics; a k above the label count counts the missing ranks as misses).
        exclude (as predict's): labels left out of each point's ranking first, the XMC
        repository's filtered evaluation of the LF-* sets (sparrow.load_filter); Y is
        not changed. The model is settled first (settle())."""
        ks = (k,) if np.isscalar(k) else tuple(k)
        for q in ks:
            if not 1 <= _lib.integer(q, "k") <= 1000:
                raise ValueError("k must be in 1..1000, got %r" % (q,))
        data = Dataset(X, Y, self.n_features, self.n_labels)
        if data.n_points == 0:  # P@k of no points is not 0
            raise ValueError("no test points")
        if data.Y.nnz == 0:  # P@k would read 0.0
            raise ValueError("none of the %d test points has a label" % data.n_points)
        ex = None if exclude is None else exclusions(exclude, data.n_points, self.n_labels)
        self.settle(threads)
        r = self._evaluate(data, None, sparse, threads, inv_propensity, ex)
        small = [int(q) for q in ks if int(q) <= 5]
        out = {"p_at_%d" % q: r.p_at[q] for q in small}
        out.update({"ndcg_at_%d" % q: r.ndcg_at[q] for q in small})
        if inv_propensity is not None:
            out.update({"psp_at_%d" % q: r.psp_at[q] for q in small})
            out.update({"psndcg_at_%d" % q: r.psndcg_at[q] for q in small})
        large = [int(q) for q in ks if int(q) > 5]
        seconds = r.seconds
        if large:  # predict's top k a chunk of points at a time: (chunk, k) arrays, not (n, k)
            t = time.perf_counter()
            total = {}
            for c0 in range(0, data.n_points, _EVAL_CHUNK):
                ids, _ = self.predict(data.X[c0:c0 + _EVAL_CHUNK], k=min(max(large), self.n_labels),
                                      sparse=sparse, threads=threads,
                                      exclude=None if ex is None else ex.Y[c0:c0 + _EVAL_CHUNK])
                for key, v in _rank_sums(ids, data.Y[c0:c0 + _EVAL_CHUNK], large, inv_propensity).items():
                    total[key] = total.get(key, 0.0) + v
            out.update(_rank_finish(total, data.n_points, large, inv_propensity is not None))
            seconds += time.perf_counter() - t
        out.update({"n_points": r.n_points, "seconds": seconds})
        return out

    def sampling_recall(self, X, top=10, threads=0):
        """Mean fraction of each point's exact top-`top` outputs that the sampler puts
        in the active set (a health check of the hash tables)."""
        data = Dataset(X, None, self.n_features, 0)
        out = ctypes.c_double()
        with self._lock:
            check(_lib.spr_model_sampling_recall(self._h(), data.handle, None, data.n_points, _lib.integer(top, "top"),
                                                 _lib.integer(threads, "threads"), ctypes.byref(out)))
        return out.value


_EVAL_CHUNK = 4096  # points whose top k evaluate holds at a time (k > 5)


def _info_dict(i, note):
    """Model.info's dict from an spr_model_info and an spr_data_note."""
    d = {k: getattr(i, k) for k in ("steps", "samples", "epoch", "parameters", "parameter_bytes",
                                     "table_bytes", "rehashes", "rebuilds")}
    d["training_set"] = ({"points": note.points, "digest": note.digest,
                          "one_based": bool(note.one_based)} if note.points > 0 else None)
    d["adam"] = ({k: float(getattr(i, k)) for k in ("lr", "beta1", "beta2", "eps")} if i.lr > 0 else None)
    return d


def rank_metrics(ids, Y, ks, inv_propensity=None):
    """P@k and nDCG@k (and PSP@k, PSnDCG@k with inv_propensity) of ranked predictions
    ids (n, K) (best first, -1 pads) against the label matrix Y (n, L), for every k in
    ks: the definitions of the library's evaluation (src/metrics.c) for any k, ranks
    past K counting as misses. Model.evaluate's k > 5; tested equal to the library's
    at k 1..5. A dict {"p_at_k": ..., "ndcg_at_k": ..., ...}."""
    ids = np.asarray(ids)
    return _rank_finish(_rank_sums(ids, Y, ks, inv_propensity), ids.shape[0], ks, inv_propensity is not None)


def _rank_sums(ids, Y, ks, w=None):
    """rank_metrics' sums over the points of ids (a chunk): P@k and nDCG@k summed over
    points, and the numerators and denominators of PSP@k and PSnDCG@k (ratios of sums)."""
    Y = sp.csr_matrix(Y)  # the caller's arrays, not modified
    n, kk = ids.shape
    K = max(max(ks), kk)
    ranked = np.full((n, K), -1, dtype=np.int64)
    ranked[:, :kk] = ids
    valid = ranked >= 0
    hits = np.zeros((n, K))
    if n and K:
        rows = np.repeat(np.arange(n), K)
        hits[valid] = np.asarray(Y[rows[valid.ravel()], ranked[valid]]).ravel() != 0
    n_true = np.diff(Y.indptr)
    has = n_true > 0
    gain = 1.0 / np.log2(np.arange(2, K + 2))
    cum_gain = np.cumsum(gain)
    dcg = np.cumsum(hits * gain, axis=1)
    cum_hits = np.cumsum(hits, axis=1)
    idcg = {k: cum_gain[np.minimum(k, np.maximum(n_true, 1)) - 1] for k in ks}  # per point
    sums = {}
    for k in ks:
        sums["p", k] = float(np.sum(cum_hits[:, k - 1]) / k)
        sums["ndcg", k] = float(np.sum(np.where(has, dcg[:, k - 1] / idcg[k], 0.0)))
    if w is None:
        return sums
    w = np.asarray(w, dtype=np.float64)
    got_w = np.zeros((n, K))
    got_w[valid] = w[ranked[valid]]
    got_w *= hits
    # each point's K largest weights of its labels, largest first
    row_of = np.repeat(np.arange(n), n_true)
    lw = w[Y.indices]
    order = np.lexsort((-lw, row_of))
    rank_in_row = np.arange(Y.nnz) - Y.indptr[row_of[order]]
    keep = rank_in_row < K
    best = np.zeros((n, K))
    best[row_of[order][keep], rank_in_row[keep]] = lw[order][keep]
    got, ideal = np.cumsum(got_w, axis=1), np.cumsum(best, axis=1)
    wdcg, ideal_wdcg = np.cumsum(got_w * gain, axis=1), np.cumsum(best * gain, axis=1)
    for k in ks:
        sums["psp_num", k] = float(got[:, k - 1].sum())
        sums["psp_den", k] = float(ideal[:, k - 1].sum())
        sums["psn_num", k] = float(np.sum(np.where(has, wdcg[:, k - 1] / idcg[k], 0.0)))
        sums["psn_den", k] = float(np.sum(np.where(has, ideal_wdcg[:, k - 1] / idcg[k], 0.0)))
    return sums


def _rank_finish(sums, n, ks, propensity):
    """The metrics from _rank_sums' sums over n points (a chunk's added up)."""
    out = {}
    for k in ks:
        out["p_at_%d" % k] = sums["p", k] / n if n else 0.0
        out["ndcg_at_%d" % k] = sums["ndcg", k] / n if n else 0.0
        if propensity:
            den, nd_den = sums["psp_den", k], sums["psn_den", k]
            out["psp_at_%d" % k] = sums["psp_num", k] / den if den > 0 else 0.0
            out["psndcg_at_%d" % k] = sums["psn_num", k] / nd_den if nd_den > 0 else 0.0
    return out


def inv_propensities(Y, a=0.55, b=1.5, n_labels=None):
    """Inverse label propensities 1 / p_l (Jain, Prabhu and Varma 2016) from a training
    label matrix Y (CSR, or lists of label ids): p_l = 1 / (1 + C (N_l + b)^-a),
    C = (ln N - 1)(b + 1)^a, N_l the points with label l. The XMC repository's a, b:
    0.55, 1.5; Amazon sets 0.6, 2.6; Wikipedia 0.5, 0.4. For Model.evaluate's
    inv_propensity. Returns float64 (n_labels,)."""
    Y = as_labels(Y, Y.shape[0] if hasattr(Y, "shape") else len(Y), n_labels)
    n = Y.shape[0]
    data = Dataset(sp.csr_matrix((n, 1), dtype=np.float32), Y, 1, Y.shape[1])
    # n_labels (a model's) may exceed Y's columns: labels never seen get their weight too
    out = np.empty(Y.shape[1] if n_labels is None else _lib.integer(n_labels, "n_labels"),
                   dtype=np.float64)
    check(_lib.spr_inv_propensities(data.handle, float(a), float(b), out.size, out.ctypes.data))
    return out
