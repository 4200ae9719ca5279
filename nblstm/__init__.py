"""nblstm: PyTorch-compatible LSTM inference on CPU with Numba."""

from . import _config  # noqa: F401  (sets up the threading layer before Numba runs)
from . import packing

__version__ = "0.1.0"
__all__ = ["packing", "__version__"]
