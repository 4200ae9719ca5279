"""Plans and runs the LSTM recurrence over packed rows.

Everything enters as time-major packed rows plus the offset table: a padded
equal-length batch is the case where every step has the whole batch, and it
is used in place (a time-major C-contiguous array already *is* that layout).

Per layer and direction the input projection ``x @ w_ih + b`` is computed
for a window of time steps at a time, so the scratch a forward needs does not
grow with the sequence length; the kernels then walk the window's steps.

Which kernels run depends only on sizes, never on the layout:

* bidirectional: one thread per direction, each projecting its own input
  and running its steps (:func:`_kernels.run_window_both_directions`);
* one direction: Numba projection, then the steps in row groups on separate
  threads, or with each step's hidden units split over the threads, or
  serially; BLAS for both products only for small batches with large
  recurrent weights where the split does not pay (short sequences, or one
  row through a projection; see :func:`plan_unidirectional`).

Mixing Numba and BLAS thread pools within one layer is avoided on purpose:
OpenBLAS workers keep spinning after a call and take the cores a Numba
kernel needs next.
"""

from __future__ import annotations

import contextlib
from typing import List, Optional, Tuple

import numpy as np

from .._memory import aligned_copy, aligned_empty, aligned_zeros
from .._threads import get_num_threads, parallel_section
from ..packing import step_offsets as offset_table
from . import _kernels, formats
from ._kernels import TILE_ROWS
from ._gate_options import for_direction
from ._weights import LayerWeights

#: Bytes of projected input (rows x 4H) held per direction and window (a
#: window may exceed it by one step's rows, see :func:`plan_windows`).
WINDOW_BYTES = 16 << 20
#: From this many rows on, one direction's batch is split
#: into row groups that run on separate threads, given at least
#: ROW_GROUP_MIN_MACS recurrent multiply-adds (steps x rows x 4H x P) to
#: repay waking them. Row groups against serial steps: 2.1M (T=4 B=8 H=128,
#: T=1 B=8 H=256) 0.96x, 0.5M 0.70x; 4.2M 1.09-1.19x, 8.4M 1.19-1.22x.
ROW_GROUP_MIN_ROWS = 8
ROW_GROUP_MIN_MACS = 4_000_000
#: Below ROW_GROUP_MIN_ROWS, a step's hidden units are split over the
#: threads (which then meet once a step) when the sequence repays waking
#: them (tens of microseconds): SPLIT_UNITS_MIN_MACS recurrent multiply-adds
#: per row (steps x 4H x P), over at least SPLIT_UNITS_MIN_STEPS steps or with
#: W_hh within SPLIT_UNITS_MIN_WEIGHT_BYTES (larger weights stay on BLAS for
#: short sequences, which it streams faster: B=1 H=512 T=16 0.82x on the
#: split). Split against serial or BLAS at B=1: T=8 H=256 1.10x, T=16 H=256
#: 1.27-1.37x, T=12 H=320 2.10x, T=32 H=128 1.05x; T=24 H=128 (1.6M) 0.98x.
SPLIT_UNITS_MIN_STEPS = 32
SPLIT_UNITS_MIN_MACS = 2_000_000
#: From ROW_GROUP_MIN_ROWS rows on, the hidden units are still split (not the
#: rows) when the recurrent weights outgrow a core's L2 cache (so each row
#: group would stream all of them from L3 at every step) and there are few
#: rows to share that traffic: more than SPLIT_UNITS_MIN_WEIGHT_BYTES of W_hh,
#: and at least SPLIT_UNITS_MIN_BYTES_PER_ROW of it per batch row. Measured
#: against row groups (T=50-100, I=H): B=8 H=512 1.15x, B=16 H=384 1.09x,
#: B=8 H=1000 1.22x, B=64 H=1024 1.14x, B=32 H=512 1.09x; and on the other
#: side, B=32 H=384 0.98x, B=64 H=512 1.00x, B=8 H=320 (1.6 MiB) 0.95x.
SPLIT_UNITS_MIN_WEIGHT_BYTES = 2 << 20
SPLIT_UNITS_MIN_BYTES_PER_ROW = 96 << 10
#: A single direction's window projection is spread over the threads from
#: this many multiply-adds (rows x I x 4H) on: about 40 us on one thread
#: here, against tens of microseconds to wake a thread. Measured against the
#: serial projection: B=1 H=128 T=100 (6.5M) 1.10x, B=4 H=256 T=50 1.35x,
#: B=1 H=128 T=24 (1.6M) 0.91x.
PARALLEL_PROJECTION_MIN_MACS = 2_000_000


def plan_windows(step_offsets: np.ndarray, hidden_size: int, itemsize: int
                 ) -> List[Tuple[int, int]]:
    """The projection windows: consecutive step ranges ``(t0, t1)`` covering
    all steps, with nearly equal row counts.

    As few windows as WINDOW_BYTES of projected input (rows x 4H) allows,
    cut where the running row count crosses a multiple of ``total / n``:
    each window holds at most ``ceil(total / n)`` rows plus one step's, so
    the scratch stays bounded however long the sequences are. Equal rows
    (not equal steps) matter for a ragged batch run in both directions at
    once: the forward direction takes window ``k`` while the reverse one
    takes window ``n - 1 - k``, and on equal steps one of them would hold the
    crowded early steps while the other waits on the sparse late ones (in
    the packed bidirectional benchmark case, float32, the busier direction
    of each window pair added up to 1.57x the batch's rows).
    """
    n_steps = step_offsets.shape[0] - 1
    total = int(step_offsets[-1])
    capacity = max(1, WINDOW_BYTES // (4 * hidden_size * itemsize))
    n_windows = -(-total // capacity)
    if n_windows <= 1:  # the common case, without the array work below (tens of us)
        return [(0, n_steps)]
    cuts = np.arange(1, n_windows, dtype=np.int64) * total // n_windows
    # The first step whose offset reaches each cut; repeats (steps of many rows) merge.
    bounds = np.unique(np.concatenate(([0], np.searchsorted(step_offsets, cuts), [n_steps])))
    return list(zip(bounds[:-1].tolist(), bounds[1:].tolist()))


def _window_rows(step_offsets: np.ndarray, windows: List[Tuple[int, int]]) -> int:
    """Rows of the largest window (the projection buffer's size)."""
    return max(int(step_offsets[t1] - step_offsets[t0]) for t0, t1 in windows)


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


def _run_steps_blas(gx, gx_row0, step_lo, step_hi, batch_sizes, step_offsets, h, c, w_hh_t,
                    w_hr_t, h_full, gates, out, gate_options) -> None:
    """As :func:`_kernels.run_steps` (forward direction), for small batches
    with large recurrent weights: each step's recurrent product (and
    projection) is one NumPy BLAS call, threaded by BLAS, so every core
    streams part of the weights; the fused gates are a serial kernel. A step
    costs far more than the Python loop."""
    has_proj = w_hr_t.shape[0] > 0
    width = h.shape[1]
    for t in range(step_lo, step_hi):
        n_rows = int(batch_sizes[t])
        row = int(step_offsets[t])
        np.matmul(h[:n_rows], w_hh_t, out=gates[:n_rows])
        _kernels.gates_from_product(gates, gx, row - gx_row0, n_rows, c, h_full, not has_proj,
                                    out, row, gate_options)
        if has_proj:
            np.matmul(h_full[:n_rows], w_hr_t, out=h[:n_rows])
            out[row:row + n_rows, :width] = h[:n_rows]


def _run_bidirectional(x, layer, batch_sizes, step_offsets, h, c, h_full, out, x_range) -> None:
    """Both directions at once, one thread each, window by window: the
    forward direction takes the windows from the start, the reverse one from
    the end (windows of equal rows, see :func:`plan_windows`). Each thread
    projects its own window's input."""
    windows = plan_windows(step_offsets, c.shape[2], out.itemsize)
    gx = aligned_empty((2, _window_rows(step_offsets, windows), 4 * c.shape[2]), out.dtype)
    w_hh, w_hr = (formats.for_rows(w, int(batch_sizes[0])) for w in (layer.w_hh_panels,
                                                                     layer.w_hr_panels))
    with parallel_section():
        for k, forward_span in enumerate(windows):
            spans = [forward_span, windows[-1 - k]]
            x_rows = [_window_input(x, a, b, int(step_offsets[a]), int(step_offsets[b]))
                      for a, b in spans]
            t_lo = np.array([a for a, _ in spans], dtype=np.int64)
            t_hi = np.array([b for _, b in spans], dtype=np.int64)
            _kernels.run_window_both_directions(
                *x_rows, layer.w_ih_panels, layer.bias, gx, t_lo, t_hi, batch_sizes,
                step_offsets, h, c, w_hh, w_hr, h_full, out, x_range, layer.gate_options)


def plan_unidirectional(max_batch: int, n_steps: int, hidden: int, proj_size: int,
                        blas_ready: bool, dtype, threads: int,
                        weight_itemsize: Optional[int] = None) -> Tuple[str, int]:
    """Which step loop a single-direction layer runs, and on how many parts.

    Returns ``(kind, parts)`` with ``kind`` one of

    * ``"row_groups"``: from ROW_GROUP_MIN_ROWS rows (and ROW_GROUP_MIN_MACS
      of work), the batch split into up to ``parts`` groups of rows of equal
      work (:func:`plan_row_groups`; measured here against BLAS for both
      products: B=32..256, H=256..2048 level or up to 1.2x faster);
    * ``"split_units"``: below that, or for large recurrent weights and few
      rows (see SPLIT_UNITS_MIN_WEIGHT_BYTES), each step's hidden units (and
      with a projection, then its output columns) split into ``parts`` of
      whole weight panels (needs H over one panel and a sequence long
      enough, see SPLIT_UNITS_MIN_STEPS);
    * ``"blas"``: otherwise (or for one row with a projection), if the layer
      is ``blas_ready`` (has more than BLAS_MIN_WEIGHT_BYTES of recurrent
      weights, which a single thread would stream alone: B=1, H=1024 ran 2x
      faster on BLAS than serially);
    * ``"serial"``.

    ``weight_itemsize`` is the bytes of a stored weight (default: the
    dtype's; 1 for int8), which decide whether W_hh fits a core's L2 cache.
    """
    width = _kernels.tile_columns(dtype)
    parts = min(threads, -(-hidden // width))
    if weight_itemsize is None:
        weight_itemsize = np.dtype(dtype).itemsize
    w_hh_bytes = (proj_size or hidden) * 4 * hidden * weight_itemsize
    row_macs = n_steps * (proj_size or hidden) * 4 * hidden
    long_enough = row_macs >= SPLIT_UNITS_MIN_MACS and (
        n_steps >= SPLIT_UNITS_MIN_STEPS or w_hh_bytes <= SPLIT_UNITS_MIN_WEIGHT_BYTES)
    can_split = parts > 1 and long_enough
    if max_batch >= ROW_GROUP_MIN_ROWS:
        if (can_split and w_hh_bytes > SPLIT_UNITS_MIN_WEIGHT_BYTES
                and w_hh_bytes >= SPLIT_UNITS_MIN_BYTES_PER_ROW * max_batch):
            return "split_units", parts
        groups = min(threads, max_batch // TILE_ROWS)
        if groups > 1 and max_batch * row_macs >= ROW_GROUP_MIN_MACS:
            return "row_groups", groups
        return "serial", 1
    # One row through a projection: BLAS streams the large weights faster
    # (B=1 H=1024 P=256: BLAS 1.1-1.25x the split; from B=2 the split is level
    # or faster: B=2 H=640 P=160 1.03x, B=4 H=1024 P=256 1.9x).
    if can_split and not (proj_size and max_batch == 1 and blas_ready):
        return "split_units", parts
    if blas_ready:
        return "blas", 1
    return "serial", 1


def plan_row_groups(batch_sizes: np.ndarray, t0: int, t1: int, batch: int,
                    n_groups: int) -> np.ndarray:
    """Row bounds ``(parts + 1,)`` (int64, ``parts <= n_groups``) of the row
    groups for steps ``[t0, t1)``: runs of whole TILE_ROWS-row tiles with
    nearly equal work, counted as one pass over the recurrent weights per
    tile and step in which any of its rows is active.

    Rows are sorted by length, so on a ragged batch the first tiles are the
    busiest: for 32 sequences of 20..200 steps, halving the rows gave the
    first group 585 tile passes against 251, where this gives 482 against
    354. Rows beyond the window's largest step go to the last group.
    """
    steps = batch_sizes[t0:t1]
    n_tiles = -(-int(steps[0]) // TILE_ROWS)
    # Passes of tile k: the steps with more than k * TILE_ROWS rows (batch sizes never grow).
    passes = steps.shape[0] - np.searchsorted(steps[::-1], TILE_ROWS * np.arange(n_tiles),
                                              side="right")
    before = np.concatenate(([0], np.cumsum(passes)))  # work of the tiles before each boundary
    targets = before[-1] * np.arange(1, n_groups) / n_groups
    cuts = np.abs(before[:, None] - targets).argmin(axis=0)
    return np.unique(np.concatenate(([0], np.minimum(cuts * TILE_ROWS, batch), [batch])))


def projects_in_parallel(rows: int, input_size: int, hidden: int, threads: int) -> bool:
    """Whether a single direction's window of ``rows`` input rows is projected
    on all threads (see PARALLEL_PROJECTION_MIN_MACS)."""
    return threads > 1 and rows * input_size * 4 * hidden >= PARALLEL_PROJECTION_MIN_MACS


def _run_unidirectional(x, layer, batch_sizes, step_offsets, h, c, h_full, out, x_range,
                        allow_blas=True) -> None:
    """One direction, window by window: the window's input projection, then
    its steps, by the loop :func:`plan_unidirectional` picks. Only one thread
    pool runs: BLAS for both products, or Numba kernels for both."""
    n_steps = batch_sizes.shape[0]
    max_batch = int(batch_sizes[0])
    hidden = c.shape[2]
    windows = plan_windows(step_offsets, hidden, out.itemsize)
    window_rows = _window_rows(step_offsets, windows)
    gx = aligned_empty((window_rows, 4 * hidden), out.dtype)
    threads = get_num_threads()
    has_proj = h.shape[2] != hidden
    kind, parts = plan_unidirectional(max_batch, n_steps, hidden, h.shape[2] if has_proj else 0,
                                      allow_blas and layer.w_hh_t is not None, out.dtype, threads,
                                      formats.weight_itemsize(layer.w_hh_panels))
    use_blas = kind == "blas"
    gates = aligned_empty((max_batch, 4 * hidden), out.dtype) if use_blas else None
    h_steps = aligned_empty((2,) + h.shape[1:], h.dtype) if kind == "split_units" else None
    parallel_projection = projects_in_parallel(window_rows, x.shape[-1], hidden, threads)
    # Numba's thread count is only set (a few microseconds) when a parallel
    # kernel will run: small serial forwards are dominated by such costs.
    parallel = not use_blas and (parts > 1 or parallel_projection)
    step_rows = max_batch // parts if kind == "row_groups" else max_batch
    w_ih = formats.direction(layer.w_ih_panels, 0)
    gate_options = for_direction(layer.gate_options, 0)
    w_hh, w_hr = (formats.for_rows(formats.direction(w, 0), step_rows)
                  for w in (layer.w_hh_panels, layer.w_hr_panels))
    with parallel_section() if parallel else contextlib.nullcontext():
        for t0, t1 in windows:
            r0, r1 = int(step_offsets[t0]), int(step_offsets[t1])
            x_rows = _window_input(x, t0, t1, r0, r1)
            if use_blas:
                np.matmul(x_rows, layer.w_ih_t[0], out=gx[:r1 - r0])
                gx[:r1 - r0] += layer.bias[0]
                _run_steps_blas(gx, r0, t0, t1, batch_sizes, step_offsets, h[0], c[0],
                                layer.w_hh_t[0], layer.w_hr_t[0], h_full[0], gates, out,
                                gate_options)
                continue
            # The weight panels hold 4 column blocks: the gates.
            if parallel_projection:
                _kernels.project(x_rows, w_ih, layer.bias[0], gx, 4, threads, x_range)
            else:
                _kernels.project_rows(x_rows, w_ih, layer.bias[0], gx, 4, x_range)
            if kind == "split_units":
                phases = (t1 - t0) * (2 if has_proj else 1)
                claims = aligned_zeros(phases * parts * 8, np.int64)
                done = aligned_zeros(phases * 8, np.int64)
                _kernels.run_steps_split_units(gx, r0, t0, t1, batch_sizes, step_offsets, h[0],
                                               c[0], w_hh, w_hr, h_full[0], h_steps, claims, done,
                                               out, parts, gate_options)
            elif kind == "row_groups":
                row_bounds = plan_row_groups(batch_sizes, t0, t1, h.shape[1], parts)
                _kernels.run_steps_row_groups(gx, r0, t0, t1, batch_sizes, step_offsets, h[0],
                                              c[0], w_hh, w_hr, h_full[0], out, row_bounds,
                                              gate_options)
            else:
                _kernels.run_steps(gx, r0, t0, t1, False, batch_sizes, step_offsets, h[0], c[0],
                                   w_hh, w_hr, h_full[0], out, 0, gate_options)


def _run_layer(x: np.ndarray, layer: LayerWeights, batch_sizes: np.ndarray,
               step_offsets: np.ndarray, h: np.ndarray, c: np.ndarray,
               out: np.ndarray, allow_blas: bool) -> None:
    """One layer, all its directions; updates ``h``/``c`` (D, B, *) in place."""
    has_proj = h.shape[2] != c.shape[2]
    h_full = aligned_empty(c.shape, c.dtype) if has_proj else h
    x_range = formats.input_range(layer, x)
    if h.shape[0] == 2:
        _run_bidirectional(x, layer, batch_sizes, step_offsets, h, c, h_full, out, x_range)
    else:
        _run_unidirectional(x, layer, batch_sizes, step_offsets, h, c, h_full, out, x_range,
                            allow_blas)


def lstm_forward(x: np.ndarray, batch_sizes: np.ndarray, layers: List[LayerWeights],
                 h0: np.ndarray, c0: np.ndarray, dropout: float = 0.0,
                 rng: Optional[np.random.Generator] = None, allow_blas: bool = True
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
    allow_blas : False keeps every product on nblstm's kernels (streams: a
        chunk then computes exactly what one call on the whole sequence
        computes on them)

    Returns
    -------
    out : (total_rows, D * P) packed output of the last layer
    h_n, c_n : final states in packed batch order (fresh arrays)
    """
    offsets = offset_table(batch_sizes)
    h_n = aligned_copy(h0)
    c_n = aligned_copy(c0)
    total_rows = int(offsets[-1])
    n_dirs = layers[0].bias.shape[0]
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
        _run_layer(layer_input, layer, batch_sizes, offsets, h_n[states], c_n[states], out,
                   allow_blas)
    return out, h_n, c_n
