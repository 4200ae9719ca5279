"""nblstm: PyTorch-compatible LSTM inference on CPU with Numba."""

from . import _config  # noqa: F401  (sets up the threading layer before Numba runs)
from . import packing
from ._threads import get_num_threads, set_num_threads
from .io import load_state_dict
from .lstm import LSTM, LSTMCell
from .packing import PackedSequence
from .predict import predict

__version__ = "0.1.0"
__all__ = ["LSTM", "LSTMCell", "PackedSequence", "packing", "get_num_threads",
           "set_num_threads", "load_state_dict", "predict", "__version__"]
