"""``nblstm.LSTMCell``: ``torch.nn.LSTMCell`` inference on NumPy arrays.

A cell step is one time step of a one-layer LSTM, so it runs on the same
driver and gate kernels as :class:`~nblstm.LSTM`.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Tuple

import numpy as np

from . import _validation as check
from ._base import _RecurrentModule, model_dtype, stored_format
from ._state_dict_config import select
from .._threads import get_num_threads
from ._driver import lstm_forward
from ._stepping import step_plan
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

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any], prefix: str = "", *,
                        dtype: Any = None) -> "LSTMCell":
        """Build the cell stored under ``prefix`` (``"decoder.cell."``) in a
        whole model's state dict: ``input_size``, ``hidden_size`` and ``bias``
        are read from ``weight_ih`` (4H, I), ``weight_hh`` (4H, H) and the
        bias keys. Formats, ``dtype`` and errors as
        :meth:`nblstm.LSTM.from_state_dict`."""
        _, config, entries = select(state, prefix, cell=True)
        fmt = stored_format(entries)
        cell = cls(config.input_size, config.hidden_size, config.bias,
                   dtype=model_dtype(fmt, dtype, "LSTMCell"))
        return cell._load_entries(entries, fmt, dtype)

    def __repr__(self) -> str:
        extra = ", bias=False" if not self.bias else ""
        return f"LSTMCell({self.input_size}, {self.hidden_size}{extra}, dtype=np.{self.dtype.name})"

    def __call__(self, input: Any, hx: Optional[State] = None,
                 out: Optional[State] = None) -> State:
        return self.forward(input, hx, out)

    def forward(self, input: Any, hx: Optional[State] = None,
                out: Optional[State] = None) -> State:
        """One step: returns ``(h_1, c_1)`` shaped like ``h_0``, ``c_0``.

        Parameters
        ----------
        input : array_like, (N, H_in) or (H_in,)
        hx : (h_0, c_0), optional; each (N, H) or (H,)
        out : (h_1, c_1), optional
            Arrays to write the new state into and return (each (N, H), or
            (H,) for unbatched input; the module's dtype, C-contiguous,
            writeable), so that a decoding loop allocates nothing. They may
            be ``hx`` itself (``out=(h, c)`` with ``hx=(h, c)`` updates the
            state in place), and may overlap ``input`` (read first); any
            other overlap is an error.

        Notes
        -----
        Repeated calls with inputs of the last call's shape (an ndarray of
        the module's dtype, C-contiguous, ``hx`` and ``out`` likewise) skip
        the checks that cannot fail and run the step's kernel directly: a
        batch-1 step of ``LSTMCell(128, 128)`` costs a few microseconds.
        """
        result = self._fast_call(input, hx, out)
        if result is not None:
            return result
        return self._checked_call(input, hx, out)

    def _fast_call(self, x: Any, hx: Any, out: Any) -> Optional[State]:
        """The step for inputs shaped as the last call's, or None where any
        condition of that path fails (the checked call then decides).

        Flat on purpose: at a few microseconds a step, every Python call
        and lookup here shows in the per-call cost."""
        prepared = self._prepared
        if prepared is None or type(x) is not np.ndarray or prepared.threads != get_num_threads():
            return None
        dtype, shape = self.dtype, prepared.state_shape
        if x.shape != prepared.x_shape or x.dtype != dtype or not x.flags.c_contiguous:
            return None
        if hx is None:
            h0 = c0 = prepared.zeros
        elif type(hx) is tuple and len(hx) == 2:
            h0, c0 = hx
            if (type(h0) is not np.ndarray or type(c0) is not np.ndarray or h0.shape != shape
                    or c0.shape != shape or h0.dtype != dtype or c0.dtype != dtype
                    or not h0.flags.c_contiguous or not c0.flags.c_contiguous):
                return None
        else:
            return None
        if out is None:
            h1, c1 = np.empty(shape, dtype), np.empty(shape, dtype)
        elif type(out) is tuple and len(out) == 2:
            h1, c1 = out
            if (type(h1) is not np.ndarray or type(c1) is not np.ndarray or h1.shape != shape
                    or c1.shape != shape or h1.dtype != dtype or c1.dtype != dtype):
                return None
            flags_1, flags_2 = h1.flags, c1.flags
            if not (flags_1.c_contiguous and flags_2.c_contiguous and flags_1.writeable
                    and flags_2.writeable):
                return None
            # Buffers seen together before were checked then (a decoding loop
            # passes the same ones every call).
            seen = prepared.checked
            if not (h1 is seen[0] and c1 is seen[1] and h0 is seen[2] and c0 is seen[3]):
                if check.overlapping_pair([("h1", h1), ("c1", c1)], [("h0", h0), ("c0", c0)],
                                          [("h1", "h0"), ("c1", "c0")]):
                    return None
                prepared.checked = (h1, c1, h0, c0)
        else:
            return None
        plan = prepared.plan
        if prepared.unbatched:
            rows = prepared.rows_shape2
            x = x.reshape(prepared.rows_shape)
            h0, c0, h1_rows, c1_rows = (h0.reshape(rows), c0.reshape(rows), h1.reshape(rows),
                                        c1.reshape(rows))
            if plan is not None:
                plan.run_cell(x, h0, c0, h1_rows, c1_rows)
            else:
                self._step_with_driver(x, h0, c0, h1_rows, c1_rows)
        elif plan is not None:
            plan.run_cell(x, h0, c0, h1, c1)
        else:
            self._step_with_driver(x, h0, c0, h1, c1)
        return h1, c1

    def _step_with_driver(self, x: np.ndarray, h0: np.ndarray, c0: np.ndarray,
                          h1: np.ndarray, c1: np.ndarray) -> None:
        """A step the driver plans (large weights: split units)."""
        batch_sizes = np.full(1, x.shape[0], dtype=np.int64)
        _, h_n, c_n = lstm_forward(x[None], batch_sizes, self._layers, h0[None], c0[None])
        h1[...] = h_n[0]
        c1[...] = c_n[0]

    def _checked_call(self, input: Any, hx: Any, out: Any) -> State:
        """Every documented check, then the step; prepares the fast path for
        the next call of this shape."""
        x = check.as_float_array(input, "input", self.dtype)
        check.check_input_features(x, "input", self.input_size, (1, 2),
                                   "(N, H_in), or (H_in,) unbatched")
        unbatched = x.ndim == 1
        x = np.ascontiguousarray(x.reshape(-1, self.input_size))
        batch = x.shape[0]
        shape = (batch, self.hidden_size)
        expected = shape[1:] if unbatched else shape
        if hx is None:
            h0 = np.zeros(shape, self.dtype)
            c0 = np.zeros(shape, self.dtype)
        else:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise TypeError(f"hx must be a tuple (h_0, c_0) of two arrays, got "
                                f"{type(hx).__name__}")
            hint = "hx is ((H,), (H,)) for unbatched input" if unbatched else \
                "hx is ((N, H), (N, H))"
            h0 = np.ascontiguousarray(
                check.check_state(hx[0], "h_0", expected, self.dtype, hint).reshape(shape))
            c0 = np.ascontiguousarray(
                check.check_state(hx[1], "c_0", expected, self.dtype, hint).reshape(shape))
        if out is None:
            h1, c1 = np.empty(expected, self.dtype), np.empty(expected, self.dtype)
        else:
            if not isinstance(out, (tuple, list)) or len(out) != 2:
                raise TypeError(f"out must be a tuple (h_1, c_1) of two arrays, got "
                                f"{type(out).__name__}")
            h1 = check.check_out(out[0], "out[0] (h_1)", expected, self.dtype)
            c1 = check.check_out(out[1], "out[1] (c_1)", expected, self.dtype)
            inputs = [] if hx is None else [("h_0", hx[0]), ("c_0", hx[1])]
            check.check_no_overlap([("out[0] (h_1)", h1), ("out[1] (c_1)", c1)],
                                   [i for i in inputs if isinstance(i[1], np.ndarray)],
                                   same_ok=[("out[0] (h_1)", "h_0"), ("out[1] (c_1)", "c_0")])
        self._prepared = _Prepared(self, batch, unbatched)
        plan = self._prepared.plan
        h1_rows, c1_rows = h1.reshape(shape), c1.reshape(shape)
        if plan is not None:
            plan.run_cell(x, h0, c0, h1_rows, c1_rows)
        else:
            self._step_with_driver(x, h0, c0, h1_rows, c1_rows)
        return h1, c1


class _Prepared:
    """What a cell call of one input shape needs, decided once (see
    ``_stepping``): shapes, zeros for a missing ``hx``, the step plan."""

    def __init__(self, cell: "LSTMCell", batch: int, unbatched: bool) -> None:
        self.unbatched = unbatched
        self.x_shape = (cell.input_size,) if unbatched else (batch, cell.input_size)
        self.state_shape = (cell.hidden_size,) if unbatched else (batch, cell.hidden_size)
        self.rows_shape = (batch, cell.input_size)
        self.rows_shape2 = (batch, cell.hidden_size)
        self.zeros = np.zeros(self.state_shape, cell.dtype)
        self.zeros.flags.writeable = False
        #: The thread count the plan was made for (see ``module._Prepared``).
        self.threads = get_num_threads()
        self.plan = step_plan(cell, 1, batch, self.threads)
        #: The last out= buffers and hx whose overlaps were checked.
        self.checked = (None, None, None, None)
