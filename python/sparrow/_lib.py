"""ctypes declarations of the C API (include/sparrow.h) and the library loader.

The structures below mirror the C structs field by field and must change with them:
a struct the C side fills (BatchStats, ModelInfo, EvalResult) that is shorter here
than in C is a buffer overflow. tests/python/test_model.py checks the layouts it can
(defaults, the info of a model). ctypes releases the GIL around every
call into a CDLL, so training and prediction run while other Python threads go on.
"""
import ctypes
import math
import numbers
import os
from ctypes import (POINTER, Structure, c_char_p, c_double, c_float, c_int, c_int32, c_int64,
                    c_uint64, c_void_p)

MAX_LAYERS = 8
_HERE = os.path.dirname(os.path.abspath(__file__))


def _candidates():
    """Where the shared library may be, most specific first."""
    env = os.environ.get("SPARROW_LIBRARY")
    if env:  # an explicit choice: nothing else is tried
        yield env
        return
    yield os.path.join(_HERE, "libsparrow.so")  # bundled by `pip install`
    # A source checkout: python/sparrow/ next to build/ (scripts/build.sh).
    root = os.path.dirname(os.path.dirname(_HERE))
    yield os.path.join(root, "build", "libsparrow.so")


def _load():
    tried = []
    for path in _candidates():
        if not os.path.exists(path):
            tried.append(path + " (missing)")
            continue
        try:
            return ctypes.CDLL(path), path
        except OSError as e:
            tried.append("%s (%s)" % (path, e))
    raise ImportError(
        "sparrow: cannot find the shared library libsparrow.so. Tried:\n  " + "\n  ".join(tried) +
        "\nInstall the package with `pip install ./python` (it builds and bundles the library), "
        "or build it with `bash scripts/build.sh` and use this source tree, or set "
        "SPARROW_LIBRARY to the path of libsparrow.so.")


lib, library_path = _load()

# ------------------------------------------------------------------ checked values

# ctypes wraps an integer that does not fit its C type without a word (2**32 + 5 tables
# became 5) and turns a finite float past FLT_MAX into infinity, a tiny one into 0.
# Every structure field and every integer argument of the functions below goes through
# checked(), which refuses those with a ValueError instead.
_INT_RANGES = {c_int: (-2 ** 31, 2 ** 31 - 1), c_int64: (-2 ** 63, 2 ** 63 - 1),
               c_uint64: (0, 2 ** 64 - 1)}  # c_int32 is c_int here
_TYPE_NAMES = {c_int: "a C int", c_int64: "a C int64", c_uint64: "a C uint64", c_float: "a C float"}
# The Python names of the fields whose C names differ (Model, SampledSoftmaxLinear).
_ARG_NAMES = {"hash_l": "tables", "hash_k": "bits", "select_threshold": "threshold",
              "size": "a layer size (hidden, n_labels, in_features, n_classes)"}


def integer(value, what):
    """value as an int: an integer, or a float / numpy value that is one (1e3); else
    ValueError naming what. int() alone truncated epochs=1.5 to 1 and hidden=(16.9,) to
    16 without a word."""
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real) and math.isfinite(float(value)) and float(value).is_integer():
        return int(value)
    raise ValueError("%s must be an integer, got %r" % (what, value))


def checked(ctype, value, what):
    """value, unchanged, if a C variable of ctype holds it as it is; else ValueError
    naming what. Infinity and NaN pass (the library's checks name the option)."""
    if ctype in _INT_RANGES and isinstance(value, numbers.Integral):
        lo, hi = _INT_RANGES[ctype]
        if not lo <= int(value) <= hi:
            raise ValueError("%s = %d does not fit %s (%d to %d)" % (what, int(value),
                                                                      _TYPE_NAMES[ctype], lo, hi))
    elif ctype is c_float and isinstance(value, numbers.Real):
        v = float(value)
        f = c_float(v).value
        if math.isfinite(v) and not math.isfinite(f):
            raise ValueError("%s = %r is too large for %s (at most 3.4e38)" % (
                what, value, _TYPE_NAMES[ctype]))
        if v != 0 and f == 0:
            raise ValueError("%s = %r is too small for %s (it would be 0)" % (
                what, value, _TYPE_NAMES[ctype]))
    return value


class _Checked(Structure):
    """A Structure whose numeric fields refuse what their C type cannot hold."""

    def __setattr__(self, name, value):
        ctype = dict(self._fields_).get(name)
        if ctype is not None:
            checked(ctype, value, _ARG_NAMES.get(name, name))
        super().__setattr__(name, value)


# ------------------------------------------------------------------ structures


class DatasetView(_Checked):
    _fields_ = [("n_points", c_int64), ("n_features", c_int64), ("n_labels", c_int64),
                ("feature_indptr", c_void_p), ("feature_indices", c_void_p),
                ("feature_values", c_void_p), ("label_indptr", c_void_p), ("labels", c_void_p)]


class ReadOptions(_Checked):
    _fields_ = [("format", c_int), ("one_based", c_int), ("n_features", c_int64),
                ("n_labels", c_int64)]


class SynthConfig(_Checked):
    _fields_ = [("name", ctypes.c_char * 32), ("n_train", c_int64), ("n_test", c_int64),
                ("n_features", c_int64), ("n_labels", c_int64), ("labels_per_point", c_double),
                ("nnz_per_point", c_double), ("zipf_exponent", c_double), ("cluster_size", c_int64),
                ("prototype_nnz", c_int64), ("noise", c_double)]


class LayerConfig(_Checked):
    _fields_ = [("size", c_int64), ("sparsity", c_float), ("hash", c_int), ("hash_k", c_int),
                ("hash_l", c_int), ("bucket_capacity", c_int), ("bucket_policy", c_int),
                ("select", c_int), ("select_threshold", c_int), ("random_fraction", c_float),
                ("simhash_one_in", c_int)]


class ModelConfig(_Checked):
    _fields_ = [("n_features", c_int64), ("n_layers", c_int), ("layers", LayerConfig * MAX_LAYERS),
                ("init_std", c_float), ("seed", c_uint64), ("bf16_state", c_int),
                ("bf16_weights", c_int)]


class TrainOptions(_Checked):
    _fields_ = [("batch_size", c_int), ("lr", c_float), ("beta1", c_float), ("beta2", c_float),
                ("eps", c_float), ("threads", c_int), ("dense", c_int), ("rehash_first", c_int64),
                ("rehash_growth", c_float), ("rehash_max", c_int64), ("rebuild_every", c_int),
                ("clip_norm", c_float), ("random_pool", c_int),
                ("lazy_adam", c_int)]


class BatchStats(Structure):
    _fields_ = [("loss", c_double), ("active", c_double * MAX_LAYERS), ("rehash_seconds", c_double),
                ("optimizer_seconds", c_double), ("optimizer_rows", c_int64),
                ("optimizer_bytes", c_int64), ("comm_seconds", c_double), ("comm_bytes", c_int64)]


class EvalResult(Structure):
    _fields_ = [("n_points", c_int64), ("p_at", c_double * 6), ("seconds", c_double),
                ("ndcg_at", c_double * 6), ("psp_at", c_double * 6),
                ("psndcg_at", c_double * 6)]


class DataNote(_Checked):
    _fields_ = [("points", c_int64), ("digest", c_uint64), ("one_based", c_int)]


class ModelInfo(Structure):
    _fields_ = [("steps", c_int64), ("samples", c_int64), ("epoch", c_int64),
                ("parameters", c_int64), ("parameter_bytes", c_int64), ("table_bytes", c_int64),
                ("rehashes", c_int64), ("rebuilds", c_int64), ("hash_k", c_int * MAX_LAYERS),
                ("key_bits", c_int * MAX_LAYERS), ("label_lo", c_int64), ("labels_total", c_int64),
                ("rank", c_int), ("ranks", c_int),
                ("lr", c_float), ("beta1", c_float), ("beta2", c_float), ("eps", c_float)]


# ------------------------------------------------------------------ functions

_p = c_void_p
_i64p = POINTER(c_int64)


def _fn(name, restype, *argtypes):
    f = getattr(lib, name)
    f.restype = restype
    f.argtypes = list(argtypes)
    numeric = [(i, t) for i, t in enumerate(argtypes) if t in _TYPE_NAMES]
    if not numeric:
        return f

    def call(*args):
        for i, t in numeric:
            checked(t, args[i], "argument %d of %s" % (i + 1, name))
        return f(*args)

    call.__name__ = name
    return call


spr_version = _fn("spr_version", c_char_p)
spr_status_to_string = _fn("spr_status_to_string", c_char_p, c_int)
spr_last_error = _fn("spr_last_error", c_char_p)
spr_kernels_name = _fn("spr_kernels_name", c_char_p)
spr_kernels_describe = _fn("spr_kernels_describe", c_char_p)


def _warn_kernels_not_followed():
    """SPARROW_KERNELS naming a set that is not the one in use (a typo, or a set this CPU
    cannot run): a warning, as the command-line tool prints, not silence."""
    env = os.environ.get("SPARROW_KERNELS")
    name = spr_kernels_name().decode()
    if env and env != name:
        import warnings
        why = spr_kernels_describe().decode().partition("; SPARROW_KERNELS=")[2]
        warnings.warn("SPARROW_KERNELS=%s; using %s" % (why or env + " not followed", name),
                      RuntimeWarning, stacklevel=3)


_warn_kernels_not_followed()
spr_read_options_default = _fn("spr_read_options_default", ReadOptions)
spr_dataset_read = _fn("spr_dataset_read", c_int, c_char_p, POINTER(ReadOptions), POINTER(_p))
spr_dataset_read_split = _fn("spr_dataset_read_split", c_int, c_char_p, c_char_p, POINTER(ReadOptions),
                             _p, _p, POINTER(_p))
spr_dataset_wrap = _fn("spr_dataset_wrap", c_int, POINTER(DatasetView), POINTER(_p))
spr_dataset_get_view = _fn("spr_dataset_get_view", DatasetView, _p)
spr_dataset_digest = _fn("spr_dataset_digest", c_uint64, _p)
spr_dataset_write = _fn("spr_dataset_write", c_int, _p, c_char_p)
spr_dataset_free = _fn("spr_dataset_free", None, _p)
spr_synth_preset = _fn("spr_synth_preset", c_int, c_char_p, POINTER(SynthConfig))
spr_synth_generate = _fn("spr_synth_generate", c_int, POINTER(SynthConfig), c_uint64, c_char_p,
                         c_char_p, c_int)
spr_hash_family_parse = _fn("spr_hash_family_parse", c_int, c_char_p, POINTER(c_int))
spr_hash_family_to_string = _fn("spr_hash_family_to_string", c_char_p, c_int)
spr_select_parse = _fn("spr_select_parse", c_int, c_char_p, POINTER(c_int))
spr_select_to_string = _fn("spr_select_to_string", c_char_p, c_int)
spr_model_config_default = _fn("spr_model_config_default", ModelConfig, c_int64, c_int64)
spr_model_config_check = _fn("spr_model_config_check", c_int, POINTER(ModelConfig))
spr_model_config_memory = _fn("spr_model_config_memory", c_int, POINTER(ModelConfig), _i64p)
spr_train_options_default = _fn("spr_train_options_default", TrainOptions)
spr_model_create = _fn("spr_model_create", c_int, POINTER(ModelConfig), POINTER(_p))
spr_model_free = _fn("spr_model_free", None, _p)
spr_model_get_config = _fn("spr_model_get_config", ModelConfig, _p)
spr_model_train_batch = _fn("spr_model_train_batch", c_int, _p, _p, _p, c_int64,
                            POINTER(TrainOptions), POINTER(BatchStats))
spr_model_predict = _fn("spr_model_predict", c_int, _p, _p, _p, c_int64, c_int, c_int, c_int, _p, _p)
spr_model_predict_excluding = _fn("spr_model_predict_excluding", c_int, _p, _p, _p, c_int64, c_int, c_int,
                                  c_int, _p, _p, _p)
spr_dataset_read_filter = _fn("spr_dataset_read_filter", c_int, c_char_p, c_int64, c_int64, POINTER(_p))
spr_model_evaluate = _fn("spr_model_evaluate", c_int, _p, _p, _p, c_int64, c_int, c_int,
                         POINTER(EvalResult))
spr_model_evaluate_ps = _fn("spr_model_evaluate_ps", c_int, _p, _p, _p, c_int64, c_int, c_int,
                            _p, c_int64, POINTER(EvalResult))
spr_model_evaluate_excluding = _fn("spr_model_evaluate_excluding", c_int, _p, _p, _p, c_int64, c_int, c_int,
                                   _p, c_int64, _p, POINTER(EvalResult))
spr_inv_propensities = _fn("spr_inv_propensities", c_int, _p, c_double, c_double, c_int64, _p)
spr_epoch_order = _fn("spr_epoch_order", None, _p, c_int64, c_uint64, c_int64)
spr_eval_subset = _fn("spr_eval_subset", c_int64, _p, c_int64, c_int64)
spr_model_sampling_recall = _fn("spr_model_sampling_recall", c_int, _p, _p, _p, c_int64, c_int,
                                c_int, POINTER(c_double))
spr_model_param = _fn("spr_model_param", c_int, _p, c_int, c_int, POINTER(ctypes.POINTER(c_float)),
                      _i64p, _i64p, _i64p)
spr_model_weight_rows = _fn("spr_model_weight_rows", c_int, _p, c_int, c_int64, c_int64,
                            ctypes.POINTER(c_float))
spr_model_rehash = _fn("spr_model_rehash", c_int, _p, c_int, c_int)
spr_model_get_info = _fn("spr_model_get_info", ModelInfo, _p)
spr_model_set_epoch = _fn("spr_model_set_epoch", None, _p, c_int64)
spr_model_catch_up = _fn("spr_model_catch_up", c_int, _p, ctypes.POINTER(TrainOptions))
spr_model_settle = _fn("spr_model_settle", c_int, _p, c_int)
spr_model_set_data_note = _fn("spr_model_set_data_note", None, _p, ctypes.POINTER(DataNote))
spr_model_get_data_note = _fn("spr_model_get_data_note", DataNote, _p)
spr_model_save = _fn("spr_model_save", c_int, _p, c_char_p)
spr_model_save_check = _fn("spr_model_save_check", c_int, c_char_p)
spr_model_load = _fn("spr_model_load", c_int, c_char_p, POINTER(_p))
spr_model_verify = _fn("spr_model_verify", c_int, c_char_p)
spr_model_load_inference = _fn("spr_model_load_inference", c_int, c_char_p, c_int, POINTER(_p))
spr_model_file_shards = _fn("spr_model_file_shards", c_int, c_char_p)
spr_model_peek = _fn("spr_model_peek", c_int, c_char_p, POINTER(ModelConfig), POINTER(ModelInfo),
                     POINTER(DataNote))
spr_model_output_train = _fn("spr_model_output_train", c_int, _p, _p, c_int64, _p, _p,
                             POINTER(TrainOptions), _p, POINTER(BatchStats))
spr_model_output_predict = _fn("spr_model_output_predict", c_int, _p, _p, c_int64, c_int, c_int,
                               c_int, _p, _p)
