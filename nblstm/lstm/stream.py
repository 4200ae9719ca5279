"""``lstm.stream()``: feed a unidirectional LSTM a sequence chunk by chunk."""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import numpy as np

from .._threads import get_num_threads
from . import _validation as check
from ._driver import lstm_forward
from ._stepping import StepPlan, step_plan

State = Tuple[np.ndarray, np.ndarray]


class Stream:
    """A running sequence: the ``(h, c)`` of every layer of an LSTM, kept
    between calls, so that a sequence can be fed as it arrives.

    Made by :meth:`nblstm.LSTM.stream`. ``stream(chunk)`` runs the chunk's
    steps from the state the previous chunk left and returns their output.
    Feeding a sequence in chunks of any sizes gives bitwise the output and
    final state of one ``lstm(x)`` call on the whole sequence in evaluation
    mode, with one exception, which agrees to float rounding only: int8
    models with torch's numerics (torch quantises a layer's whole input with
    one range, a stream each chunk).

    Parameters
    ----------
    lstm : nblstm.LSTM
        Unidirectional and reading forwards (``time_order == "forward"``).
    batch_size : int
        ``N``, the sequences streamed side by side.
    hx : (h_0, c_0), optional
        As the model's: ``(num_layers, N, H_out)`` and ``(num_layers, N, H)``;
        zeros when omitted (and after :meth:`reset`).

    Notes
    -----
    A stream follows the model's weights as they are at each call. It is not
    thread-safe: give each thread its own stream (streams of one model may
    run at once, as calls of the model may). Two threads calling one stream
    at the same time update its one state together, without a lock: each
    gets an output, but the outputs and the state after are unspecified (a
    mix of both chunks' steps). Nothing crashes; :meth:`reset` starts over.
    """

    def __init__(self, lstm: Any, batch_size: int = 1, hx: Optional[State] = None) -> None:
        if lstm.bidirectional:
            raise ValueError("stream() needs a unidirectional LSTM: the backward direction of "
                             "a bidirectional one reads each sequence from its end, so its "
                             "output at any step depends on steps not yet received. Run whole "
                             "sequences with lstm(x) instead")
        if lstm.time_order != "forward":
            raise ValueError(f"stream() needs an LSTM that reads forwards; this one has "
                             f"time_order={lstm.time_order!r} (it reads each sequence from its "
                             f"end). Run whole sequences with lstm(x) instead")
        self._lstm = lstm
        self.batch_size = check.check_size(batch_size, "batch_size")
        layers, batch = lstm.num_layers, self.batch_size
        self._h = np.zeros((layers, batch, lstm.output_size), lstm.dtype)
        self._c = np.zeros((layers, batch, lstm.hidden_size), lstm.dtype)
        self._plans: Dict[Tuple[int, int], Optional[StepPlan]] = {}
        #: (chunk shape, batch_first, threads) -> (rows shape, output shape, output rows
        #: shape, plan) of the chunks that run on a step plan without a
        #: transposition.
        self._fast: Dict[Any, Any] = {}
        self._layers = lstm._layers
        if hx is not None:
            self.reset(hx)

    @property
    def state(self) -> State:
        """``(h, c)``: copies of the state, ``(num_layers, N, H_out)`` and
        ``(num_layers, N, H)``, as ``lstm(x)`` returns ``(h_n, c_n)``."""
        return self._h.copy(), self._c.copy()

    def reset(self, hx: Optional[State] = None) -> None:
        """Start a new sequence: from ``hx = (h_0, c_0)`` (shaped as
        :attr:`state`), or zeros."""
        lstm = self._lstm
        if hx is None:
            self._h.fill(0)
            self._c.fill(0)
            return
        if not isinstance(hx, (tuple, list)) or len(hx) != 2:
            raise TypeError(f"hx must be a tuple (h_0, c_0) of two arrays, got "
                            f"{type(hx).__name__}")
        layout = "a stream's hx is (num_layers, N, H_out) and (num_layers, N, H)"
        h0 = check.check_state(hx[0], "h_0", (lstm.num_layers, self.batch_size,
                                              lstm.output_size), lstm.dtype, layout)
        c0 = check.check_state(hx[1], "c_0", (lstm.num_layers, self.batch_size,
                                              lstm.hidden_size), lstm.dtype, layout)
        self._h[...] = h0
        self._c[...] = c0

    def __call__(self, chunk: Any) -> np.ndarray:
        """Run the steps of ``chunk`` and return their output.

        Parameters
        ----------
        chunk : array_like
            ``(T, N, H_in)`` (``(N, T, H_in)`` for a ``batch_first`` model),
            or one frame: ``(N, H_in)``, or ``(H_in,)`` when ``N`` is 1.

        Returns
        -------
        ndarray
            ``(T, N, H_out)`` (``(N, T, H_out)`` with ``batch_first``),
            ``(N, H_out)`` or ``(H_out,)``: shaped as the chunk.
        """
        lstm = self._lstm
        x = chunk
        if type(x) is np.ndarray and x.dtype == lstm.dtype and x.flags.c_contiguous:
            # A chunk shaped as an earlier one, already time-major rows: no
            # checks or planning left to do (see _fast).
            fast = self._fast.get((x.shape, lstm.batch_first, get_num_threads()))
            if fast is not None and lstm._layers is self._layers and not lstm.training:
                rows_shape, out_shape, out_rows, plan = fast
                out = np.empty(out_shape, lstm.dtype)
                plan.run(x.reshape(rows_shape), self._h, self._c, self._h, self._c,
                         out.reshape(out_rows))
                return out
        else:
            x = check.as_float_array(chunk, "chunk", lstm.dtype)
        batch, width = self.batch_size, lstm.output_size
        if x.ndim == 3:
            check.check_input_features(x, "chunk", lstm.input_size, (3,),
                                       "(N, T, H_in) for a batch_first model"
                                       if lstm.batch_first else "(T, N, H_in)")
            time_major = x.transpose(1, 0, 2) if lstm.batch_first else x
            if time_major.shape[1] != batch:
                layout = "(N, T, H_in)" if lstm.batch_first else "(T, N, H_in)"
                raise ValueError(f"chunk must hold batch_size = {batch} sequences, got shape "
                                 f"{x.shape} ({layout})")
            steps = time_major.shape[0]
            rows = np.ascontiguousarray(time_major).reshape(steps * batch, lstm.input_size)
        elif (x.ndim == 2 and x.shape == (batch, lstm.input_size)) or (
                x.ndim == 1 and batch == 1 and x.shape == (lstm.input_size,)):
            steps, rows = 1, np.ascontiguousarray(x).reshape(batch, lstm.input_size)
        else:
            raise ValueError(f"chunk must be (T, N, H_in) ((N, T, H_in) for a batch_first "
                             f"model), or one frame (N, H_in) (or (H_in,) for batch_size 1), "
                             f"with N = batch_size = {batch} and H_in = {lstm.input_size}; got "
                             f"shape {x.shape}")
        out = np.empty((steps * batch, width), lstm.dtype)
        if steps:
            self._run(rows, steps, out)
        threads = get_num_threads()
        plan = self._plans.get((steps, threads))
        if plan is not None and not (lstm.batch_first and x.ndim == 3 and batch > 1):
            out_shape = (x.shape[:-1] + (width,))
            self._fast[(x.shape, lstm.batch_first, threads)] = (
                (steps * batch, lstm.input_size), out_shape, (steps * batch, width), plan)
        if x.ndim < 3:
            return out if x.ndim == 2 else out.reshape(width)
        out = out.reshape(steps, batch, width)
        if lstm.batch_first:
            return np.ascontiguousarray(out.transpose(1, 0, 2))
        return out

    def _run(self, rows: np.ndarray, steps: int, out: np.ndarray) -> None:
        lstm = self._lstm
        if lstm._layers is not self._layers:  # new weights: new plans
            self._plans.clear()
            self._fast.clear()
            self._layers = lstm._layers
        dropout, rng = lstm._dropout_args()
        plan = None
        if rng is None:
            key = (steps, get_num_threads())  # more threads: the driver may spread the work
            if key not in self._plans:
                self._plans[key] = step_plan(lstm, steps, self.batch_size, key[1])
            plan = self._plans[key]
        if plan is not None:
            plan.run(rows, self._h, self._c, self._h, self._c, out)
            return
        batch_sizes = np.full(steps, self.batch_size, dtype=np.int64)
        result, h_n, c_n = lstm_forward(rows, batch_sizes, lstm._layers, self._h, self._c,
                                        dropout, rng)
        out[...] = result
        self._h[...] = h_n
        self._c[...] = c_n

    def __repr__(self) -> str:
        return f"Stream({self._lstm!r}, batch_size={self.batch_size})"
