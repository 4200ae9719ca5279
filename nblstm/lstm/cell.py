"""``nblstm.LSTMCell``: ``torch.nn.LSTMCell`` inference on NumPy arrays.

A cell step is one time step of a one-layer LSTM, so it runs on the same
driver and gate kernels as :class:`~nblstm.LSTM`.
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np

from . import _validation as check
from ._base import _RecurrentModule
from ._driver import lstm_forward
from .formats.bfloat16 import is_torch_bfloat16
from ._weights import init_parameters, parameter_shapes

State = Tuple[np.ndarray, np.ndarray]


class LSTMCell(_RecurrentModule):
    """An LSTM cell with PyTorch's ``torch.nn.LSTMCell`` interface and results.

    Parameters
    ----------
    input_size : int
    hidden_size : int
    bias : bool, default True
    dtype : np.float32 or np.float64, keyword-only
    seed : keyword-only
        Seed of :func:`numpy.random.default_rng` for the default
        initialisation U(-1/sqrt(H), 1/sqrt(H)).

    Notes
    -----
    ``cell(input, hx=None)`` returns ``(h_1, c_1)``; ``input`` is ``(N, H_in)``
    or unbatched ``(H_in,)``, ``hx = (h_0, c_0)`` with ``(N, H)`` each (or
    ``(H,)``); zeros when omitted. ``state_dict()`` keys are ``weight_ih``,
    ``weight_hh``, ``bias_ih``, ``bias_hh``.
    """

    num_layers = 1
    bidirectional = False
    proj_size = 0

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, *,
                 dtype: Any = np.float32, seed: Any = None) -> None:
        self.input_size = check.check_size(input_size, "input_size")
        self.hidden_size = check.check_size(hidden_size, "hidden_size")
        self.bias = check.check_flag(bias, "bias")
        self.dtype = check.check_dtype(dtype)
        self.training = False
        shapes = parameter_shapes(self.input_size, self.hidden_size, 1, self.bias, False, 0)
        self._set_parameters(init_parameters(shapes, self.hidden_size, self.dtype, seed))

    def _public_name(self, name: str) -> str:
        return name[: -len("_l0")] if name.endswith("_l0") else name

    def _internal_name(self, name: str) -> str:
        return name + "_l0" if name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh") else name

    @classmethod
    def from_torch(cls, module: Any, *, dtype: Any = None) -> "LSTMCell":
        """Build a cell with the configuration and weights of a ``torch.nn.LSTMCell``
        (bfloat16 parameters: a bfloat16 cell, as :meth:`LSTM.from_torch`)."""
        weight_ih = getattr(module, "weight_ih", None)
        if (weight_ih is None or hasattr(module, "num_layers")
                or tuple(weight_ih.shape)[:1] != (4 * module.hidden_size,)):
            raise TypeError(f"LSTMCell.from_torch() expects a torch.nn.LSTMCell, got "
                            f"{type(module).__name__}")
        state = module.state_dict()
        bf16 = is_torch_bfloat16(next(iter(state.values())))
        keep_bf16 = bf16 and dtype is None
        if dtype is None:
            dtype = "float32" if bf16 else str(next(iter(state.values())).dtype).replace(
                "torch.", "")
        cell = cls(module.input_size, module.hidden_size, bool(module.bias), dtype=dtype)
        if keep_bf16:
            cell = cell.quantize("bfloat16")
        elif bf16:
            state = {k: v.float() for k, v in state.items()}
        cell.load_state_dict(state)
        return cell

    def __repr__(self) -> str:
        extra = ", bias=False" if not self.bias else ""
        return f"LSTMCell({self.input_size}, {self.hidden_size}{extra}, dtype=np.{self.dtype.name})"

    def __call__(self, input: Any, hx: Optional[State] = None) -> State:
        return self.forward(input, hx)

    def forward(self, input: Any, hx: Optional[State] = None) -> State:
        """One step: returns ``(h_1, c_1)`` shaped like ``h_0``, ``c_0``.

        Parameters
        ----------
        input : array_like, (N, H_in) or (H_in,)
        hx : (h_0, c_0), optional; each (N, H) or (H,)
        """
        x = check.as_float_array(input, "input", self.dtype)
        check.check_input_features(x, "input", self.input_size, (1, 2),
                                   "(N, H_in), or (H_in,) unbatched")
        unbatched = x.ndim == 1
        x = x.reshape(1, -1, self.input_size)
        batch = x.shape[1]
        shape = (batch, self.hidden_size)
        if hx is None:
            h0 = np.zeros(shape, self.dtype)
            c0 = np.zeros(shape, self.dtype)
        else:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise TypeError(f"hx must be a tuple (h_0, c_0) of two arrays, got "
                                f"{type(hx).__name__}")
            expected = shape[1:] if unbatched else shape
            hint = "hx is ((H,), (H,)) for unbatched input" if unbatched else \
                "hx is ((N, H), (N, H))"
            h0 = check.check_state(hx[0], "h_0", expected, self.dtype, hint).reshape(shape)
            c0 = check.check_state(hx[1], "c_0", expected, self.dtype, hint).reshape(shape)
        batch_sizes = np.full(1, batch, dtype=np.int64)
        _, h_n, c_n = lstm_forward(x, batch_sizes, self._layers, h0[None], c0[None])
        h1, c1 = h_n[0], c_n[0]
        if unbatched:
            return h1[0], c1[0]
        return h1, c1
