"""The LSTM modules: Numba kernels, the packed-rows driver, public classes."""

from .cell import LSTMCell
from .module import LSTM
from .stream import Stream

__all__ = ["LSTM", "LSTMCell", "Stream"]
