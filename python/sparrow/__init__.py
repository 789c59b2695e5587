"""sparrow: train very wide networks on CPUs by computing only the neurons that matter.

    import sparrow
    X, Y = sparrow.load_xmc("train.txt")          # scipy CSR features and labels
    model = sparrow.Model(X.shape[1], Y.shape[1], hidden=128, sparsity=0.01)
    model.fit(X, Y, epochs=5, validation_data=(Xt, Yt))
    ids, scores = model.predict(Xt, k=5)

sparrow.torch holds SampledSoftmaxLinear, a drop-in for nn.Linear + cross-entropy over
a huge label set (needs torch). The C library is found next to this package (pip
install), in ../build/ of a source checkout, or at $SPARROW_LIBRARY.
"""
from . import _lib
from .data import Dataset, generate, load_filter, load_xmc
from .errors import (BadInputError, InternalError, SparrowError, SparrowIOError,
                     SparrowMemoryError)
from .model import Model, inv_propensities

__version__ = _lib.spr_version().decode()
library_path = _lib.library_path

__all__ = ["Model", "inv_propensities", "Dataset", "generate", "load_filter", "load_xmc", "SparrowError",
           "BadInputError", "SparrowIOError", "SparrowMemoryError", "InternalError", "library_path",
           "__version__"]
