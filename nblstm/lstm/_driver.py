"""Plans and runs the LSTM recurrence over packed rows.

Everything enters as time-major packed rows plus the offset table: a padded
equal-length batch is the case where every step has the whole batch, and it
is used in place (a time-major C-contiguous array already *is* that layout).

Per layer and direction the input projection ``x @ w_ih_t + b`` is computed
by BLAS for a window of time steps at a time, so the scratch a forward needs
does not grow with the sequence length; the kernels then walk the window's
steps.
"""

from __future__ import annotations

import contextlib
from typing import List, Optional, Tuple

import numpy as np

from .._threads import get_num_threads, parallel_section
from ..packing import step_offsets as offset_table
from . import _kernels
from ._kernels import TILE_ROWS
from ._weights import LayerWeights

#: Bytes of projected input (rows x 4H) held per direction and window.
WINDOW_BYTES = 16 << 20
#: From this many rows in a step on, the recurrent product goes to BLAS.
BLAS_MIN_ROWS = 16
#: Recurrent weights larger than this (about a core's L2 cache) go to BLAS at
#: any batch size: the product is then bound by streaming the weights, which
#: BLAS does with every core (measured here: B=1, H=384 and H=1024 run 2x
#: faster than in the register-tiled kernel; H=256, B=4..8 are level).
BLAS_MIN_WEIGHT_BYTES = 1 << 20
#: From this many rows on (and below BLAS), one direction's batch is split
#: into row groups that run on separate threads.
ROW_GROUP_MIN_ROWS = 8


def window_steps(max_batch: int, hidden_size: int, itemsize: int) -> int:
    """How many time steps one projection window holds."""
    row_bytes = 4 * hidden_size * itemsize
    return max(1, WINDOW_BYTES // (row_bytes * max(1, max_batch)))


def _window_input(x: np.ndarray, t0: int, t1: int, r0: int, r1: int) -> np.ndarray:
    """Rows ``[r0, r1)`` (steps ``[t0, t1)``) of the layer input as a 2-D array.

    ``x`` is either packed rows (rows, F) or a time-major padded view
    (steps, batch, F) that may be strided (batch-first input); only the
    window is made contiguous.
    """
    if x.ndim == 2:
        return x[r0:r1]
    window = x[t0:t1]
    return np.ascontiguousarray(window).reshape(r1 - r0, x.shape[2])


def _project(x_rows: np.ndarray, w_ih_t: np.ndarray, bias: np.ndarray,
             gx: np.ndarray) -> None:
    """``gx[:rows] = x_rows @ w_ih_t + bias``."""
    dst = gx[: x_rows.shape[0]]
    np.matmul(x_rows, w_ih_t, out=dst)
    dst += bias


def _run_steps_blas(gx, gx_row0, step_lo, step_hi, reverse, batch_sizes, step_offsets,
                    h, c, w_hh_t, w_hr_t, h_full, gates, out, out_col) -> None:
    """As :func:`_kernels.run_steps`, for large batches: each step's recurrent
    product (and projection) is one NumPy BLAS call (threaded by BLAS), the
    fused gates a serial kernel. A step costs far more than the Python loop."""
    has_proj = w_hr_t.shape[0] > 0
    width = h.shape[1]
    steps = range(step_lo, step_hi)
    for t in (reversed(steps) if reverse else steps):
        n_rows = int(batch_sizes[t])
        row = int(step_offsets[t])
        np.matmul(h[:n_rows], w_hh_t, out=gates[:n_rows])
        _kernels.gates_from_product(gates, gx, row - gx_row0, n_rows, c, h_full, not has_proj,
                                    out, row, out_col)
        if has_proj:
            np.matmul(h_full[:n_rows], w_hr_t, out=h[:n_rows])
            out[row:row + n_rows, out_col:out_col + width] = h[:n_rows]


def _run_layer(x: np.ndarray, layer: LayerWeights, batch_sizes: np.ndarray,
               step_offsets: np.ndarray, h: np.ndarray, c: np.ndarray,
               out: np.ndarray) -> None:
    """One layer, all its directions; updates ``h``/``c`` (D, B, *) in place."""
    n_dirs, _, four_h = layer.w_hh_t.shape
    hidden = four_h // 4
    n_steps = batch_sizes.shape[0]
    max_batch = int(batch_sizes[0])
    steps = window_steps(max_batch, hidden, out.itemsize)
    gx = np.empty((n_dirs, steps * max_batch, four_h), dtype=out.dtype)
    has_proj = layer.w_hr_t.shape[1] > 0
    h_full = np.empty(c.shape, dtype=c.dtype) if has_proj else h
    windows = [(t0, min(t0 + steps, n_steps)) for t0 in range(0, n_steps, steps)]

    def direction_window(d: int, k: int) -> Tuple[int, int, int]:
        t0, t1 = windows[k]
        if d == 1:  # the reverse direction takes the windows from the end
            t0, t1 = n_steps - t1, n_steps - t0
        r0, r1 = int(step_offsets[t0]), int(step_offsets[t1])
        _project(_window_input(x, t0, t1, r0, r1), layer.w_ih_t[d], layer.bias[d], gx[d])
        return t0, t1, r0

    use_blas = (max_batch >= BLAS_MIN_ROWS
                or layer.w_hh_t[0].nbytes > BLAS_MIN_WEIGHT_BYTES)
    if n_dirs == 2 and not use_blas:
        with parallel_section():
            _run_both_directions(len(windows), direction_window, gx, batch_sizes, step_offsets,
                                 h, c, layer, h_full, out)
        return

    gates = np.empty((max_batch, four_h), dtype=out.dtype) if use_blas else None
    row_groups = 1
    if not use_blas and max_batch >= ROW_GROUP_MIN_ROWS:
        row_groups = min(get_num_threads(), max_batch // TILE_ROWS)
    with parallel_section() if row_groups > 1 else contextlib.nullcontext():
        _run_directions(n_dirs, len(windows), direction_window, use_blas, row_groups, gx,
                        batch_sizes, step_offsets, h, c, layer, h_full, gates, out)


def _run_both_directions(n_windows, direction_window, gx, batch_sizes, step_offsets, h, c,
                         layer, h_full, out) -> None:
    """Both directions at once, window by window (forward from the start,
    reverse from the end), one thread per direction."""
    for k in range(n_windows):
        spans = [direction_window(d, k) for d in range(2)]
        t_lo = np.array([s[0] for s in spans], dtype=np.int64)
        t_hi = np.array([s[1] for s in spans], dtype=np.int64)
        row0 = np.array([s[2] for s in spans], dtype=np.int64)
        _kernels.run_steps_both_directions(gx, row0, t_lo, t_hi, batch_sizes, step_offsets,
                                           h, c, layer.w_hh_panels, layer.w_hr_panels, h_full,
                                           out)


def _run_directions(n_dirs, n_windows, direction_window, use_blas, row_groups, gx,
                    batch_sizes, step_offsets, h, c, layer, h_full, gates, out) -> None:
    """Each direction in turn, window by window, with the chosen step kernel."""
    for d in range(n_dirs):
        out_col = d * h.shape[2]
        for k in range(n_windows):
            t0, t1, r0 = direction_window(d, k)
            if use_blas:
                _run_steps_blas(gx[d], r0, t0, t1, d == 1, batch_sizes, step_offsets,
                                h[d], c[d], layer.w_hh_t[d], layer.w_hr_t[d], h_full[d],
                                gates, out, out_col)
            elif row_groups > 1:
                _kernels.run_steps_row_groups(gx[d], r0, t0, t1, d == 1, batch_sizes,
                                              step_offsets, h[d], c[d], layer.w_hh_panels[d],
                                              layer.w_hr_panels[d], h_full[d], out, out_col,
                                              row_groups)
            else:
                _kernels.run_steps(gx[d], r0, t0, t1, d == 1, batch_sizes, step_offsets,
                                   h[d], c[d], layer.w_hh_panels[d], layer.w_hr_panels[d],
                                   h_full[d], out, out_col)


def lstm_forward(x: np.ndarray, batch_sizes: np.ndarray, layers: List[LayerWeights],
                 h0: np.ndarray, c0: np.ndarray, dropout: float = 0.0,
                 rng: Optional[np.random.Generator] = None
                 ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run a stacked (bi)LSTM over packed rows.

    Parameters
    ----------
    x : ndarray, (total_rows, I) packed rows, or (steps, batch, I) time-major
        padded view (then ``batch_sizes`` is full at every step)
    batch_sizes : int64 ndarray, (steps,)
    layers : kernel layout of every layer
    h0 : (num_layers * D, batch, P), c0 : (num_layers * D, batch, H)
        initial state in packed (sorted) batch order; not modified
    dropout : probability of zeroing a layer's output before the next layer
        (only when ``rng`` is given, i.e. in training mode)

    Returns
    -------
    out : (total_rows, D * P) packed output of the last layer
    h_n, c_n : final states in packed batch order (fresh arrays)
    """
    offsets = offset_table(batch_sizes)
    h_n = h0.copy()
    c_n = c0.copy()
    total_rows = int(offsets[-1])
    n_dirs = layers[0].w_hh_t.shape[0]
    out_width = n_dirs * h0.shape[2]
    layer_input = x
    out = np.empty((total_rows, out_width), dtype=h0.dtype)
    if batch_sizes.shape[0] == 0:
        return out, h_n, c_n
    for index, layer in enumerate(layers):
        if index > 0:
            layer_input = out
            out = np.empty((total_rows, out_width), dtype=h0.dtype)
            if rng is not None and dropout > 0.0:
                # Inverted dropout, as torch: survivors scaled by 1/(1-p); p == 1 drops all.
                scale = 0.0 if dropout >= 1.0 else 1.0 / (1.0 - dropout)
                keep = rng.random(layer_input.shape) >= dropout
                layer_input = (layer_input * (keep * scale)).astype(h0.dtype, copy=False)
        states = slice(index * n_dirs, (index + 1) * n_dirs)
        _run_layer(layer_input, layer, batch_sizes, offsets, h_n[states], c_n[states], out)
    return out, h_n, c_n
