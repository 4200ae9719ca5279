"""The stepping path: calls whose per-call cost is what counts.

An ``LSTMCell`` call in a decoding loop, a :class:`~nblstm.lstm.stream.Stream`
chunk or a short ``LSTM`` call does a few microseconds of arithmetic, so the
generic driver's planning (offset tables, windows, scratch allocation, thread
decisions) would cost more than the step. A :class:`StepPlan` makes those
decisions once for a chunk shape (steps x batch rows, every row active) and
keeps the scratch; a call is then one :func:`_kernels.run_chunk` per layer.

It is taken only where the driver would run the same arithmetic, a layer's
serial loop (see :func:`_driver.plan_unidirectional`), so results are bitwise
those of the driver; larger work goes to the driver.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from . import _kernels, formats
from ._driver import plan_unidirectional, projects_in_parallel
from ._gate_options import for_direction
from ._weights import LayerWeights

_NO_RANGE = np.empty(0, np.float32)


def runs_serially(layers: Sequence[LayerWeights], n_steps: int, batch: int, input_size: int,
                  hidden: int, proj_size: int, dtype: np.dtype, threads: int) -> bool:
    """Whether the driver would run every layer of a single-direction model
    serially (no row groups, split units or parallel projection) for
    ``n_steps`` full steps of ``batch`` rows."""
    rows = n_steps * batch
    for index, layer in enumerate(layers):
        kind, _ = plan_unidirectional(batch, n_steps, hidden, proj_size, dtype, threads,
                                      formats.weight_itemsize(layer.w_hh_panels),
                                      not formats.per_tensor(layer.w_hh_panels))
        width = input_size if index == 0 else proj_size or hidden
        if kind != "serial" or projects_in_parallel(rows, width, hidden, threads):
            return False
    return True


class StepPlan:
    """Per-layer arguments of :func:`_kernels.run_chunk` for chunks of
    ``n_steps`` steps of ``batch`` rows (see the module doc).

    A plan holds nothing a call writes (each call allocates its few small
    scratch arrays), so threads may share one, as they may share a model.
    """

    def __init__(self, layers: Sequence[LayerWeights], n_steps: int, batch: int, hidden: int,
                 out_size: int, dtype: np.dtype) -> None:
        rows = n_steps * batch
        self.layers_source = layers
        self.gx_shape = (rows, 4 * hidden)
        self.h_full_shape = (batch, hidden) if out_size != hidden else None
        self.between_shape = (rows, out_size)
        self.dtype = dtype
        self.layers = []
        for layer in layers:
            w_hh, w_hr = (formats.for_rows(formats.direction(w, 0), batch)
                          for w in (layer.w_hh_panels, layer.w_hr_panels))
            w_ih = formats.direction(layer.w_ih_panels, 0)
            per_tensor = formats.per_tensor(w_ih)
            self.layers.append((w_ih, layer.bias[0], w_hh, w_hr,
                                for_direction(layer.gate_options, 0), per_tensor))
        # Stacks whose layers share one Numba type run in one kernel call.
        self.fused = None
        if (len(self.layers) > 1 and not any(l[5] for l in self.layers)
                and all(l[4] is None for l in self.layers)):
            self.fused = tuple(l[:5] for l in self.layers)

    def run_cell(self, x: np.ndarray, h0: np.ndarray, c0: np.ndarray, h: np.ndarray,
                 c: np.ndarray) -> None:
        """One step of a one-layer model without projection (a cell): as
        :meth:`run` with ``out`` = ``h``, without its per-layer loop."""
        w_ih, bias, w_hh, w_hr, gate_options, per_tensor = self.layers[0]
        x_range = np.array([x.min(), x.max()], np.float32) if per_tensor else _NO_RANGE
        _kernels.run_chunk(x, w_ih, bias, w_hh, w_hr, h0, c0, h, c, h,
                           np.empty(self.gx_shape, self.dtype), h, x_range, gate_options)

    def run(self, x: np.ndarray, h0: np.ndarray, c0: np.ndarray, h: np.ndarray,
            c: np.ndarray, out: np.ndarray) -> None:
        """One chunk: ``x`` (rows, I) time-major rows; ``h0`` (L, B, P), ``c0``
        (L, B, H) the initial state and ``h``, ``c`` the arrays that receive
        the final one (may be the same); ``out`` (rows, P) the last layer's
        output. Arrays are C-contiguous, of the dtype."""
        dtype = self.dtype
        gx = np.empty(self.gx_shape, dtype)
        h_full = None if self.h_full_shape is None else np.empty(self.h_full_shape, dtype)
        if self.fused is not None:
            _kernels.run_chunk_layers(x, self.fused, h0, c0, h, c,
                                      gx if h_full is None else h_full, gx,
                                      np.empty(self.between_shape, dtype), out, _NO_RANGE,
                                      h_full is not None)
            return
        layer_input = x
        last = len(self.layers) - 1
        for k, (w_ih, bias, w_hh, w_hr, gate_options, per_tensor) in enumerate(self.layers):
            layer_out = out if k == last else np.empty(self.between_shape, dtype)
            x_range = (np.array([layer_input.min(), layer_input.max()], np.float32)
                       if per_tensor else _NO_RANGE)
            h_k = h[k]
            _kernels.run_chunk(layer_input, w_ih, bias, w_hh, w_hr, h0[k], c0[k], h_k, c[k],
                               h_k if h_full is None else h_full, gx, layer_out, x_range,
                               gate_options)
            layer_input = layer_out


def step_plan(model, n_steps: int, batch: int, threads: int) -> Optional[StepPlan]:
    """A :class:`StepPlan` for ``model`` (an ``LSTM`` or ``LSTMCell``), or None
    where the driver would not run it serially (then callers use the driver)."""
    if getattr(model, "bidirectional", False) or n_steps * batch == 0:
        return None
    if not runs_serially(model._layers, n_steps, batch, model.input_size, model.hidden_size,
                         model.proj_size, model.dtype, threads):
        return None
    return StepPlan(model._layers, n_steps, batch, model.hidden_size,
                    model.proj_size or model.hidden_size, model.dtype)
