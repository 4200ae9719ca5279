"""Plans and runs the LSTM recurrence over packed rows.

Everything enters as time-major packed rows plus the offset table: a padded
equal-length batch is the case where every step has the whole batch, and it
is used in place (a time-major C-contiguous array already *is* that layout).

Per layer and direction the input projection ``x @ w_ih + b`` is computed
for a window of time steps at a time, so the scratch a forward needs does not
grow with the sequence length; the kernels then walk the window's steps.

Which kernels run depends only on sizes and the thread count, never on the
layout (:func:`plan_layer`), and a row's arithmetic does not depend on the
plan: every register tile sums a row alike, so any thread count gives
bitwise the same results.

* a direction's batch is split into row groups on separate threads, and
  each group's hidden units into parts when threads are left over (or the
  units alone, for a batch too small to split by rows);
  :func:`_kernels.run_steps_partitioned` runs every direction's groups and
  parts at once, after a parallel input projection;
* a bidirectional layer on fewer than four threads runs its two directions
  at once, one thread each, each projecting its own input
  (:func:`_kernels.run_window_both_directions`);
* otherwise serially.

Every product runs on nblstm's own kernels: BLAS's sums depend on how its
threads split a product (a B=1 layer on OpenBLAS gave other bits at 4
threads than at 1 or 2), and the one case it served (small batches with
large recurrent weights on short sequences, 1.1-1.25x faster than the
split on a quiet machine) collapsed whenever another process held a core.

"""

from __future__ import annotations

import contextlib
from typing import List, NamedTuple, Optional, Tuple

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
#: W_hh within SPLIT_UNITS_MIN_WEIGHT_BYTES (larger weights on short
#: sequences run serially: B=1 H=512 T=16 ran 0.82x on the split against
#: BLAS). Split against serial or BLAS at B=1: T=8 H=256 1.10x, T=16 H=256
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
#: With int8 or bfloat16 weights a step's product is 2-4x shorter than in
#: float, so the threads' meeting once a step costs relatively more: a
#: step's hidden units are split (a few rows', or a row group's with threads
#: to spare) only when the rows x W_hh bytes of a step exceed
#: SPLIT_UNITS_MIN_QUANTIZED_BYTES (besides the rules above). 2 threads
#: against 1 (T=100, I=H; AMD EPYC Zen 4, AVX512-VNNI and -BF16): int8 B=1
#: H=128 0.75x, B=1 H=256 0.72x, B=4 H=128 0.95x, B=2 H=256 (512 KiB) 0.91x;
#: B=1 H=384 (576 KiB) 1.41x, B=1 H=512 1.25x, B=4 H=256 1.30x. bfloat16 B=1
#: H=128 0.88x, B=1 H=256 (512 KiB) 0.90x, B=4 H=128 1.09x, B=2 H=256 0.94x;
#: B=1 H=384 1.52x, B=4 H=256 1.49x. (float32 gains from B=1 H=128 on: 1.09x
#: there, 1.26x at H=256.)
SPLIT_UNITS_MIN_QUANTIZED_BYTES = 512 << 10
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


def _w_hh_bytes(hidden: int, proj_size: int, dtype, weight_itemsize: Optional[int]) -> int:
    """Bytes of a direction's recurrent weights (``weight_itemsize`` per
    weight, default the dtype's)."""
    itemsize = np.dtype(dtype).itemsize if weight_itemsize is None else weight_itemsize
    return (proj_size or hidden) * 4 * hidden * itemsize


def _unit_split_pays(n_steps: int, hidden: int, proj_size: int, dtype,
                     weight_itemsize: Optional[int], max_batch: int) -> bool:
    """Whether splitting each step's hidden units over threads repays their
    meeting once a step (see SPLIT_UNITS_MIN_MACS, and
    SPLIT_UNITS_MIN_QUANTIZED_BYTES for weights stored in fewer bytes than
    ``dtype``'s: int8, bfloat16)."""
    w_hh_bytes = _w_hh_bytes(hidden, proj_size, dtype, weight_itemsize)
    quantized = weight_itemsize is not None and weight_itemsize < np.dtype(dtype).itemsize
    if quantized and max_batch * w_hh_bytes <= SPLIT_UNITS_MIN_QUANTIZED_BYTES:
        return False
    row_macs = n_steps * (proj_size or hidden) * 4 * hidden
    return row_macs >= SPLIT_UNITS_MIN_MACS and (
        n_steps >= SPLIT_UNITS_MIN_STEPS or w_hh_bytes <= SPLIT_UNITS_MIN_WEIGHT_BYTES)


def plan_unidirectional(max_batch: int, n_steps: int, hidden: int, proj_size: int,
                        dtype, threads: int,
                        weight_itemsize: Optional[int] = None,
                        rows_independent: bool = True) -> Tuple[str, int]:
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
    * ``"serial"``: otherwise, and on one thread.

    ``weight_itemsize`` is the bytes of a stored weight (default: the
    dtype's; 1 for int8), which decide whether W_hh fits a core's L2 cache
    and, for int8 and bfloat16, whether splitting units pays at all (see
    SPLIT_UNITS_MIN_QUANTIZED_BYTES).
    ``rows_independent`` False (int8 weights with torch's per-tensor
    activation scale, which spans all the rows of a step) rules out row
    groups.
    """
    width = _kernels.tile_columns(dtype)
    panels = -(-hidden // width)
    parts = min(threads, panels)
    w_hh_bytes = _w_hh_bytes(hidden, proj_size, dtype, weight_itemsize)
    splittable = panels > 1 and _unit_split_pays(n_steps, hidden, proj_size, dtype,
                                                 weight_itemsize, max_batch)
    if max_batch >= ROW_GROUP_MIN_ROWS and rows_independent:
        if (parts > 1 and splittable and w_hh_bytes > SPLIT_UNITS_MIN_WEIGHT_BYTES
                and w_hh_bytes >= SPLIT_UNITS_MIN_BYTES_PER_ROW * max_batch):
            return "split_units", parts
        groups = min(threads, max_batch // TILE_ROWS)
        row_macs = n_steps * (proj_size or hidden) * 4 * hidden
        if groups > 1 and max_batch * row_macs >= ROW_GROUP_MIN_MACS:
            return "row_groups", groups
        return "serial", 1
    if splittable and parts > 1:
        return "split_units", parts
    return "serial", 1


class LayerPlan(NamedTuple):
    """How a layer runs (:func:`plan_layer`).

    Attributes
    ----------
    kind : "serial", "directions" (both directions at once, one
        thread each) or "partitioned" (:func:`_kernels.run_steps_partitioned`)
    groups : row groups per direction ("partitioned"; else 1)
    parts : hidden-unit parts per row group ("partitioned"; else 1)
    """

    kind: str
    groups: int
    parts: int

    def threads_used(self, directions: int) -> int:
        """Threads the layer's steps run on at once."""
        if self.kind == "partitioned":
            return directions * self.groups * self.parts
        return directions if self.kind == "directions" else 1


def plan_layer(max_batch: int, n_steps: int, hidden: int, proj_size: int,
               dtype, threads: int, weight_itemsize: Optional[int] = None, directions: int = 1,
               rows_independent: bool = True) -> LayerPlan:
    """How one layer of ``directions`` (1 or 2) runs on ``threads`` threads.

    Each direction gets ``threads // directions`` threads and is planned as
    :func:`plan_unidirectional` plans one. Its row groups, or unit parts,
    then take the threads left over by the other split: a bidirectional
    layer of 16 rows and H=256 (the speech model) on 16 threads runs 2
    directions x 4 row groups x 2 unit parts. A bidirectional layer with one
    thread per direction, or whose directions are too small to split, runs
    its directions at once ("directions"), as does one on a single thread
    (then one after the other).
    """
    per_direction = max(1, threads // directions)
    if directions == 2 and per_direction < 2:
        return LayerPlan("directions", 1, 1)
    kind, count = plan_unidirectional(max_batch, n_steps, hidden, proj_size, dtype,
                                      per_direction, weight_itemsize, rows_independent)
    if kind == "serial":
        return LayerPlan("directions" if directions == 2 else kind, 1, 1)
    spare = per_direction // count
    panels = -(-hidden // _kernels.tile_columns(dtype))
    if kind == "row_groups":
        pays = _unit_split_pays(n_steps, hidden, proj_size, dtype, weight_itemsize, max_batch)
        parts = min(spare, panels) if spare > 1 and pays else 1
        return LayerPlan("partitioned", count, parts)
    groups = min(spare, max_batch // TILE_ROWS) if rows_independent else 1
    return LayerPlan("partitioned", max(1, groups), count)


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


def _project_window(x_rows, layer, d, gx, threads, x_range) -> None:
    """``gx[:rows] = x_rows @ w_ih + b`` of direction ``d``, on every thread
    when the product repays waking them (:func:`projects_in_parallel`)."""
    w_ih = formats.direction(layer.w_ih_panels, d)
    if projects_in_parallel(x_rows.shape[0], x_rows.shape[1], gx.shape[1] // 4, threads):
        _kernels.project(x_rows, w_ih, layer.bias[d], gx, 4, threads, x_range)
    else:
        _kernels.project_rows(x_rows, w_ih, layer.bias[d], gx, 4, x_range)


def _run_windows(x, layer, plan: LayerPlan, batch_sizes, step_offsets, h, c, h_full, out,
                 x_range) -> None:
    """Every direction of a layer, window by window, by the loop ``plan``
    names ("serial": one direction). A bidirectional layer pairs the
    windows: the forward direction takes them from the start, the reverse one
    from the end (windows of equal rows, see :func:`plan_windows`).

    Each window's input is projected first, on every thread where that
    repays waking them; with "directions" each of the two threads projects
    its own direction's window instead (no other pool of threads is woken).
    """
    n_dirs, batch, hidden = c.shape
    max_batch = int(batch_sizes[0])
    windows = plan_windows(step_offsets, hidden, out.itemsize)
    gx = aligned_empty((n_dirs, _window_rows(step_offsets, windows), 4 * hidden), out.dtype)
    threads = get_num_threads()
    has_proj = h.shape[2] != hidden
    partitioned = plan.kind == "partitioned"
    h_steps = aligned_empty((2,) + h.shape if partitioned and plan.parts > 1
                            else (2, n_dirs, 0, h.shape[2]), h.dtype)
    w_hh, w_hr = (formats.for_rows(w, -(-max_batch // plan.groups))
                  for w in (layer.w_hh_panels, layer.w_hr_panels))
    parallel = plan.kind != "serial" or projects_in_parallel(
        _window_rows(step_offsets, windows), x.shape[-1], hidden, threads)
    with parallel_section() if parallel else contextlib.nullcontext():
        for k, forward_span in enumerate(windows):
            spans = [forward_span, windows[-1 - k]][:n_dirs]
            rows = [(int(step_offsets[a]), int(step_offsets[b])) for a, b in spans]
            x_rows = [_window_input(x, a, b, r0, r1) for (a, b), (r0, r1) in zip(spans, rows)]
            t_lo = np.array([a for a, _ in spans], np.int64)
            t_hi = np.array([b for _, b in spans], np.int64)
            if plan.kind == "directions":
                _kernels.run_window_both_directions(
                    *x_rows, layer.w_ih_panels, layer.bias, gx, t_lo, t_hi, batch_sizes,
                    step_offsets, h, c, w_hh, w_hr, h_full, out, x_range, layer.gate_options)
                continue
            for d, x_d in enumerate(x_rows):
                _project_window(x_d, layer, d, gx[d], threads, x_range)
            if not partitioned:
                _kernels.run_steps(gx[0], rows[0][0], t_lo[0], t_hi[0], False, batch_sizes,
                                   step_offsets, h[0], c[0], formats.direction(w_hh, 0),
                                   formats.direction(w_hr, 0), h_full[0], out, 0,
                                   for_direction(layer.gate_options, 0))
                continue
            row_bounds = np.empty((n_dirs, plan.groups + 1), np.int64)
            row_bounds[:, 0], row_bounds[:, -1] = 0, batch
            for d, (a, b) in enumerate(spans if plan.groups > 1 else ()):  # 14 us a plan
                cuts = plan_row_groups(batch_sizes, a, b, batch, plan.groups)
                row_bounds[d, :cuts.shape[0]] = cuts
                row_bounds[d, cuts.shape[0]:] = batch  # fewer groups: empty ones
            phases = max(b - a for a, b in spans) * (2 if has_proj else 1)
            claims = aligned_zeros(n_dirs * plan.groups * phases * plan.parts * 8, np.int64)
            done = aligned_zeros(n_dirs * plan.groups * phases * 8, np.int64)
            if plan.parts > 1:
                h_steps[0] = h
                h_steps[1] = h
            _kernels.run_steps_partitioned(
                gx, np.array([r0 for r0, _ in rows], np.int64), t_lo, t_hi, batch_sizes,
                step_offsets, h, c, w_hh, w_hr, h_full, h_steps, claims, done, out, row_bounds,
                plan.parts, layer.gate_options)


def layer_plan(layer: LayerWeights, batch_sizes: np.ndarray, out_size: int,
               threads: Optional[int] = None) -> LayerPlan:
    """:func:`plan_layer` for ``layer`` (output size ``out_size``: P, or H
    without projection) on these steps (default threads:
    :func:`get_num_threads`)."""
    hidden = layer.bias.shape[1] // 4
    return plan_layer(int(batch_sizes[0]), batch_sizes.shape[0], hidden,
                      out_size if out_size != hidden else 0, layer.bias.dtype,
                      get_num_threads() if threads is None else threads,
                      formats.weight_itemsize(layer.w_hh_panels), layer.bias.shape[0],
                      not formats.per_tensor(layer.w_hh_panels))


def _run_layer(x: np.ndarray, layer: LayerWeights, batch_sizes: np.ndarray,
               step_offsets: np.ndarray, h: np.ndarray, c: np.ndarray,
               out: np.ndarray) -> None:
    """One layer, all its directions; updates ``h``/``c`` (D, B, *) in place."""
    has_proj = h.shape[2] != c.shape[2]
    h_full = aligned_empty(c.shape, c.dtype) if has_proj else h
    x_range = formats.input_range(layer, x)
    _run_windows(x, layer, layer_plan(layer, batch_sizes, h.shape[2]), batch_sizes,
                 step_offsets, h, c, h_full, out, x_range)


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
        _run_layer(layer_input, layer, batch_sizes, offsets, h_n[states], c_n[states], out)
    return out, h_n, c_n
