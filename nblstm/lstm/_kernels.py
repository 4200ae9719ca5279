"""Numba kernels of the LSTM recurrence. They take only arrays and scalars.

Conventions (all arrays C-contiguous, one dtype):

* ``gx`` : (rows, 4H) -- the input projection ``x @ w_ih_t + b`` of the rows
  of a window of time steps, gate columns in PyTorch's order (i, f, g, o).
  The kernels add the recurrent product into it in place (it is scratch).
* ``h`` : (batch, P), ``c`` : (batch, H) -- the running state of one
  direction, in packed (length-sorted) batch order. A step of ``n`` active
  rows reads and updates rows ``[0, n)``; rows of finished sequences are left
  alone, so after the last step every row holds its sequence's final state
  (and a sequence of length 0 keeps its initial state).
* ``w_hh_panels`` and ``w_hr_panels`` -- the transposed weights ``w_hh_t``
  (P, 4H) and ``w_hr_t`` (H, P) as column panels (see
  :func:`matmul_accumulate`); ``w_hr_panels`` has no panels when there is
  no projection (then P == H).
* ``h_full`` : (batch, H) -- scratch for ``o * tanh(c)`` before projection;
  without projection it is ``h`` itself.
* ``out`` : (total_rows, D * P) -- the layer output, packed; a direction
  writes columns ``[out_col, out_col + P)``.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .._codegen import atomic_add, atomic_load, borrowed, prefer_vector_width, spin_pause
from .._config import JIT_OPTIONS, PARALLEL_JIT_OPTIONS
from ._gate_options import for_direction, update_units
from .formats import bfloat16 as _bfloat16_format  # noqa: F401 (overloads)
from .formats import float as _float_format, int8 as _int8_format  # noqa: F401 (overloads)
from .formats._dispatch import (direction, new_scratch, pairs_panels, panel_count,
                                panel_pair_product, panel_product, prepare_rows, row_block,
                                whole_product)
from .formats._tiles import TALL_MIN_ROWS, TALL_TILE_ROWS, TILE_ROWS, _tile_width, tile_columns


#: Rows of the input projection taken at a time (rounded down to whole row
#: blocks, ``_dispatch.row_block``): the chunk of input rows stays in the L2
#: cache while every weight panel passes over it.
PROJECTION_CHUNK_ROWS = 128


@njit(inline="always", **JIT_OPTIONS)
def accumulate_panels(operand, weights, out, n_rows, tall, n_blocks, block_cols, b0, b1):
    """``out[:n_rows] +=`` the prepared ``operand`` times panels ``[b0, b1)``
    of each of the ``n_blocks`` column blocks of ``weights``: panel ``g *
    per_block + b`` holds columns ``g * block_cols + b * width`` on, those
    below ``(g + 1) * block_cols`` real. Two panels at a time where the
    format pairs them (``_dispatch.pairs_panels``), all at once where it
    computes whole products (``_dispatch.whole_product``). Inlined: a call passing
    arrays costs reference counting on each (``formats.float.panel_accumulate``)."""
    width = _tile_width(out)
    per_block = (block_cols + width - 1) // width
    span = b1 - b0
    total = n_blocks * span
    pair = pairs_panels(weights, n_rows)
    i = 0
    if whole_product(operand, weights, out, n_rows, n_blocks, block_cols, b0, b1):
        i = total
    while i < total:
        g = i // span
        b = b0 + i - g * span
        p = g * per_block + b
        j0 = np.uint64(g * block_cols + b * width)
        n_valid = np.uint64(min(width, block_cols - b * width))
        if pair and i + 1 < total:
            g = (i + 1) // span
            b = b0 + i + 1 - g * span
            panel_pair_product(operand, weights, p, g * per_block + b, out, j0, n_valid,
                               np.uint64(g * block_cols + b * width),
                               np.uint64(min(width, block_cols - b * width)))
            i += 2
        else:
            panel_product(operand, weights, p, out, n_rows, j0, n_valid, tall)
            i += 1


@njit(**JIT_OPTIONS)
def matmul_accumulate(a, b_panels, out, n_rows, tall, n_blocks, scratch):
    """``out[:n_rows] += a[:n_rows] @ b`` without BLAS, with ``b`` (K, N)
    given as column panels in any weight format (see ``formats._dispatch``;
    for floats ``_weights.column_panels``): ``b_panels`` holds
    n_blocks * ceil(N / n_blocks / width) panels, zero-padded, ``width``
    the dtype's :func:`tile_columns`, each of the ``n_blocks`` equal column
    blocks (4 gates, or 1) on panels of its own. ``scratch`` is the format's
    (``new_scratch``), for at least ``n_rows`` rows of ``a``.

    A panel is contiguous, so the reduction streams it at unit stride (a
    row-major ``b`` jumps a whole row per step, which defeats the prefetcher
    and the TLB once ``b`` outgrows the L1 cache).

    Register tiling: a tile of TILE_ROWS (with ``tall``, TALL_TILE_ROWS) rows
    x ``width`` columns of ``out`` stays in registers while the reduction
    runs over ``a``'s columns, so each loaded panel row feeds one FMA per
    tile row (see ``formats.float.panel_accumulate`` for the rows left over). Only the
    ``N`` real columns of ``out`` are read and written.

    Callers pass ``tall``, ``n_blocks`` (and row indices) as computed values,
    never literals: Numba compiles a separate copy of the tile code for every
    literal, which multiplies compile time.
    """
    prefer_vector_width()
    block_cols = out.shape[1] // n_blocks
    operand = prepare_rows(a, n_rows, b_panels, scratch)
    accumulate_panels(operand, b_panels, out, n_rows, tall, n_blocks, block_cols, 0,
                      panel_count(b_panels) // n_blocks)


@njit(**JIT_OPTIONS)
def project_rows(x, w_ih_panels, bias, gx, n_blocks, x_range):
    """``gx[:n] = x @ w_ih + bias`` for the ``n`` rows of ``x`` (serial);
    ``w_ih_panels`` holds ``n_blocks`` column blocks (see
    :func:`matmul_accumulate`). A chunk's rows get the bias just before its
    product, so they are still in cache when the tiles add to them.
    ``x_range`` is the format's ``fixed_range`` (see ``formats._dispatch``)."""
    prefer_vector_width()
    n_rows = x.shape[0]
    n_cols = np.uint64(gx.shape[1])
    block = row_block(w_ih_panels)
    chunk = max(block, PROJECTION_CHUNK_ROWS // block * block)
    scratch = new_scratch(w_ih_panels, min(n_rows, chunk), x.shape[1], x_range)
    for lo in range(0, n_rows, chunk):
        hi = min(n_rows, lo + chunk)
        for r in range(lo, hi):
            for j in range(n_cols):
                gx[r, j] = bias[j]
        matmul_accumulate(x[lo:hi], w_ih_panels, gx[lo:hi], hi - lo, hi - lo >= TALL_TILE_ROWS,
                          n_blocks, scratch)


@njit(**PARALLEL_JIT_OPTIONS)
def project(x, w_ih_panels, bias, gx, n_blocks, n_threads, x_range):
    """As :func:`project_rows`, on ``n_threads`` threads at once (the same
    pool as the recurrence, so no other pool's threads are left spinning on
    the cores it needs): each takes one run of rows, a whole multiple of the
    format's row block (``_dispatch.row_block``: whole tall tiles, or AMX
    blocks, so no chunk leaves rows to slower tiles), which
    :func:`project_rows` cuts into chunks. Every thread gets the same rows,
    give or take one block (equal chunks of whole tall tiles left 24 of
    every 120 rows of int8's AMX projection to its VNNI tiles)."""
    prefer_vector_width()
    n_rows = x.shape[0]
    block = row_block(w_ih_panels)
    per_thread = (n_rows + n_threads - 1) // n_threads
    per_thread = (per_thread + block - 1) // block * block
    for q in prange(n_threads):
        lo = min(n_rows, q * per_thread)
        hi = min(n_rows, lo + per_thread)
        project_rows(x[lo:hi], w_ih_panels, bias, gx[lo:hi], n_blocks, x_range)


@njit(**JIT_OPTIONS)
def cell_update_row(gates, c, h_full, r, unit_lo, unit_hi, gate_options):
    """Fused gates of row ``r``, hidden units ``[unit_lo, unit_hi)``:
    ``c = f*c + i*g``, ``h_full = o*tanh(c)``; ``gate_options``: None, or
    one direction's ONNX options (see ``_gate_options``)."""
    prefer_vector_width()
    update_units(gate_options, gates, c, h_full, r, unit_lo, unit_hi)


@njit(**JIT_OPTIONS)
def copy_block(src, dst, dst_row, dst_col, row_lo, row_hi, col_lo, col_hi):
    """``dst[dst_row + r, dst_col + p] = src[r, p]`` for r in [row_lo, row_hi),
    p in [col_lo, col_hi): rows of a state into the output, or into ``h``."""
    prefer_vector_width()
    col = np.uint64(dst_col)
    for r in range(row_lo, row_hi):
        for p in range(col_lo, col_hi):
            dst[dst_row + r, col + np.uint64(p)] = src[r, np.uint64(p)]


@njit(**JIT_OPTIONS)
def lstm_step(gates, n_rows, h, c, w_hh_panels, w_hr_panels, h_full, out, out_row, out_col,
              scratch, gate_options):
    """One time step of one direction over its ``n_rows`` active rows.

    ``gates`` holds the step's input projection (n_rows, 4H) and receives
    the recurrent product in place. Without projection the caller passes
    ``h`` itself as ``h_full``: the recurrent product has read all of ``h``
    before the gates overwrite it. ``scratch``: see :func:`step_scratch`;
    ``gate_options``: see :func:`cell_update_row`.
    """
    prefer_vector_width()
    hidden = c.shape[1]
    matmul_accumulate(h, w_hh_panels, gates, n_rows, n_rows >= TALL_MIN_ROWS,
                      gates.shape[1] // hidden, scratch)
    for r in range(n_rows):
        cell_update_row(gates, c, h_full, r, np.int64(0), hidden, gate_options)
    if panel_count(w_hr_panels) > 0:
        h[:n_rows] = 0.0
        matmul_accumulate(h_full, w_hr_panels, h, n_rows, n_rows >= TALL_MIN_ROWS,
                          np.int64(1), scratch)
    zero = np.int64(0)
    copy_block(h, out, out_row, out_col, zero, n_rows, zero, h.shape[1])


@njit(**JIT_OPTIONS)
def step_scratch(w_hh_panels, h, c):
    """The format's scratch for the recurrent products of ``h`` (rows, P)
    and ``h_full`` (rows, H) (see ``formats._dispatch.new_scratch``)."""
    return new_scratch(w_hh_panels, h.shape[0], max(h.shape[1], c.shape[1]),
                       np.empty(0, np.float32))


@njit(**JIT_OPTIONS)
def run_rows(gx, gx_row0, step_lo, step_hi, reverse, batch_sizes, step_offsets, h, c,
             w_hh_panels, w_hr_panels, h_full, out, out_col, row_lo, row_hi, scratch,
             gate_options):
    """Rows ``[row_lo, row_hi)`` of one direction's batch through steps
    ``[step_lo, step_hi)``, serially (see :func:`run_steps`; ``h``, ``c`` and
    ``h_full`` are the whole batch's). At step ``t`` the rows below
    ``batch_sizes[t]`` are active; sequences never interact, so row ranges
    run on separate threads without synchronisation. The loop passes
    :func:`borrowed` views (no reference counts to update at every step)."""
    prefer_vector_width()
    gx, out, batch_sizes, step_offsets = borrowed((gx, out, batch_sizes, step_offsets))
    h_rows = borrowed(h[row_lo:row_hi])
    c_rows = borrowed(c[row_lo:row_hi])
    h_full_rows = borrowed(h_full[row_lo:row_hi])
    w_hh_panels, w_hr_panels = borrowed((w_hh_panels, w_hr_panels))
    scratch, gate_options = borrowed((scratch, gate_options))
    for s in range(step_hi - step_lo):
        t = step_hi - 1 - s if reverse else step_lo + s
        n_rows = min(batch_sizes[t], row_hi) - row_lo
        if n_rows <= 0:
            continue
        row = step_offsets[t] + row_lo
        lo = row - gx_row0
        lstm_step(gx[lo:lo + n_rows], n_rows, h_rows, c_rows, w_hh_panels, w_hr_panels,
                  h_full_rows, out, row, out_col, scratch, gate_options)


@njit(**JIT_OPTIONS)
def run_steps(gx, gx_row0, step_lo, step_hi, reverse, batch_sizes, step_offsets,
              h, c, w_hh_panels, w_hr_panels, h_full, out, out_col, gate_options):
    """Run steps ``[step_lo, step_hi)`` of one direction, serially.

    ``gx`` holds the projected input of packed rows starting at ``gx_row0``.
    With ``reverse`` the steps are walked backwards; the batch then grows,
    and a sequence's first processed row starts from the initial state still
    held in its row of ``h``/``c``.
    """
    scratch = step_scratch(w_hh_panels, h, c)
    run_rows(gx, gx_row0, step_lo, step_hi, reverse, batch_sizes, step_offsets, h, c,
             w_hh_panels, w_hr_panels, h_full, out, out_col, np.int64(0), np.int64(h.shape[0]),
             scratch, gate_options)


@njit(**PARALLEL_JIT_OPTIONS)
def run_window_both_directions(x_forward, x_reverse, w_ih_panels, bias, gx, step_lo, step_hi,
                               batch_sizes, step_offsets, h, c, w_hh_panels, w_hr_panels,
                               h_full, out, x_range, gate_options):
    """A window of both directions of a bidirectional layer at once, one
    thread per direction: each projects its window's input rows (``x_forward``
    or ``x_reverse``, packed rows starting at ``step_offsets[step_lo[d]]``)
    and runs its steps. ``x_range``: see :func:`project_rows`.

    Arrays with a leading axis of 2 hold direction 0 (forward) and 1
    (reverse); ``step_lo``, ``step_hi`` are int64 arrays of 2, and
    ``gate_options`` is the layer's (None, or both directions'). The
    directions are independent, so they need no synchronisation, and the
    projection needs no other thread pool (a BLAS pool would leave its
    threads spinning on the cores the recurrence needs).
    """
    prefer_vector_width()
    out_width = h.shape[2]
    for d in prange(2):
        x_rows = x_forward if d == 0 else x_reverse
        project_rows(x_rows, direction(w_ih_panels, d), bias[d], gx[d],
                     gx.shape[2] // c.shape[2], x_range)
        run_steps(gx[d], step_offsets[step_lo[d]], step_lo[d], step_hi[d], d == 1, batch_sizes,
                  step_offsets, h[d], c[d], direction(w_hh_panels, d),
                  direction(w_hr_panels, d), h_full[d], out, d * out_width,
                  for_direction(gate_options, d))


@njit(**JIT_OPTIONS)
def _claim_part(claims, phase, n_parts, q, i, n_panels):
    """Thread ``q``'s ``i``-th try in ``phase``: part ``(q + i) % n_parts``.

    Returns ``(won, b0, b1)``: whether this thread is the first to ask for
    that part, and the part's panels ``[b0, b1)`` of ``n_panels``.
    """
    part = (q + i) % n_parts
    won = atomic_add(claims, (phase * n_parts + part) * 8, 1) == 0
    return won, part * n_panels // n_parts, (part + 1) * n_panels // n_parts


@njit(**JIT_OPTIONS)
def _finish_part(done, phase):
    """Count one part of ``phase`` done (releasing what this thread wrote)."""
    atomic_add(done, phase * 8, 1)


@njit(**JIT_OPTIONS)
def _wait_phase(done, phase, n_parts):
    """Spin until every part of ``phase`` is done."""
    while atomic_load(done, phase * 8) < n_parts:
        spin_pause()


@njit(**JIT_OPTIONS)
def _split_rows(q, n_parts, claims, done, gx, gx_row0, step_lo, step_hi, reverse, batch_sizes,
                step_offsets, h, c, w_hh_panels, w_hr_panels, h_full, h_even, h_odd, out,
                out_col, row_lo, row_hi, scratch, gate_options):
    """Part ``q`` of ``n_parts`` of rows ``[row_lo, row_hi)`` of one direction
    through its steps, each step's hidden units split into parts that
    threads compute at once: for rows too few to split further, each thread
    streams only its part of the recurrent weights.

    Parts are whole weight panels of every gate (``w_hh_panels`` holds each
    gate on panels of its own, see :func:`matmul_accumulate`), so there are
    at most ``ceil(H / width)`` of them. With a projection a step has a
    second phase, split over the P output columns (panels of ``w_hr_panels``):
    ``h = h_full @ w_hr``, which needs every unit of ``h_full``.

    A phase's parts need the previous phase complete, so the threads meet
    once a phase, through counters instead of a barrier: ``claims`` (phases
    * n_parts * 8,) and ``done`` (phases * 8,) int64 zeros, one cache line
    per counter, with one phase a step (two with a projection). A thread
    claims its own part first, then any part left, and waits only for parts
    another thread has claimed and is computing. A thread that is never
    scheduled therefore never blocks the others: whoever runs, alone or not,
    claims and computes every part.

    ``h_even`` and ``h_odd`` (rows, P), the rows' own, hold ``h`` of even
    and odd steps (without a projection a part of step ``s + 1`` must not
    overwrite what another part of step ``s`` still reads); both must hold
    the rows of ``h`` on entry, so a row that starts late (walking
    backwards, the batch grows) reads its initial state. ``h`` receives each
    row's state when its sequence ends or at the window's last step. ``h``,
    ``c`` and ``h_full`` are the whole batch's.
    """
    prefer_vector_width()
    hidden = c.shape[1]
    out_width = h.shape[1]
    width = _tile_width(gx)
    blocks = (hidden + width - 1) // width
    out_blocks = (out_width + width - 1) // width
    has_proj = panel_count(w_hr_panels) > 0
    phases_per_step = 2 if has_proj else 1
    n_steps = step_hi - step_lo
    zero = np.int64(0)
    claims, done, gx, out, h_even, h_odd = borrowed((claims, done, gx, out, h_even, h_odd))
    batch_sizes, step_offsets = borrowed((batch_sizes, step_offsets))
    h_rows = borrowed(h[row_lo:row_hi])
    c_rows = borrowed(c[row_lo:row_hi])
    h_full_rows = borrowed(h_full[row_lo:row_hi])
    w_hh_panels, w_hr_panels = borrowed((w_hh_panels, w_hr_panels))
    scratch, gate_options = borrowed((scratch, gate_options))
    for s in range(n_steps):
        t = step_hi - 1 - s if reverse else step_lo + s
        n_rows = min(batch_sizes[t], row_hi) - row_lo
        if n_rows <= 0:  # every part of these rows skips the same steps
            continue
        if s + 1 == n_steps:
            n_next = zero
        elif reverse:
            n_next = n_rows
        else:
            n_next = max(min(batch_sizes[t + 1], row_hi) - row_lo, zero)
        tall = n_rows >= TALL_MIN_ROWS
        h_prev = h_even if s % 2 == 0 else h_odd
        h_next = h_odd if s % 2 == 0 else h_even
        row = step_offsets[t] + row_lo
        gates = gx[row - gx_row0:row - gx_row0 + n_rows]
        phase = s * phases_per_step
        for i in range(n_parts):
            won, b0, b1 = _claim_part(claims, phase, n_parts, q, i, blocks)
            if not won:
                continue
            operand = prepare_rows(h_prev, n_rows, w_hh_panels, scratch)
            accumulate_panels(operand, w_hh_panels, gates, n_rows, tall, 4, hidden, b0, b1)
            u0 = b0 * width
            u1 = min(hidden, b1 * width)
            cell_out = h_full_rows if has_proj else h_next
            for r in range(n_rows):
                cell_update_row(gates, c_rows, cell_out, r, u0, u1, gate_options)
            if not has_proj:
                copy_block(h_next, out, row, out_col, zero, n_rows, u0, u1)
                copy_block(h_next, h_rows, zero, zero, n_next, n_rows, u0, u1)
            _finish_part(done, phase)
        _wait_phase(done, phase, n_parts)
        if not has_proj:
            continue
        phase += 1
        for i in range(n_parts):
            won, b0, b1 = _claim_part(claims, phase, n_parts, q, i, out_blocks)
            if not won:
                continue
            p0 = b0 * width
            p1 = min(out_width, b1 * width)
            for r in range(n_rows):
                for p in range(p0, p1):
                    h_next[r, np.uint64(p)] = 0.0
            operand = prepare_rows(h_full_rows, n_rows, w_hr_panels, scratch)
            accumulate_panels(operand, w_hr_panels, h_next, n_rows, tall, 1, out_width, b0, b1)
            copy_block(h_next, out, row, out_col, zero, n_rows, p0, p1)
            copy_block(h_next, h_rows, zero, zero, n_next, n_rows, p0, p1)
            _finish_part(done, phase)
        _wait_phase(done, phase, n_parts)


@njit(**PARALLEL_JIT_OPTIONS)
def run_steps_partitioned(gx, gx_row0, step_lo, step_hi, batch_sizes, step_offsets, h, c,
                          w_hh_panels, w_hr_panels, h_full, h_steps, claims, done, out,
                          row_bounds, n_parts, gate_options):
    """A window of every direction of a layer, on ``D x groups x n_parts``
    threads at once: direction ``d``'s batch in row groups ``[row_bounds[d, g],
    row_bounds[d, g + 1])`` (``_driver.plan_row_groups``; an empty group
    does nothing), each group's steps
    with its hidden units split into ``n_parts`` parts (:func:`_split_rows`;
    with one part the group runs :func:`run_rows`, no counters).

    Arrays with a leading axis of D (1, or 2: direction 1 walks backwards)
    hold each direction's: ``gx`` (D, rows, 4H) its projected window,
    starting at packed row ``gx_row0[d]`` (int64 arrays of D, as ``step_lo``
    and ``step_hi``), ``h``, ``c``, ``h_full``, the stacked weights, and
    ``h_steps`` (2, D, batch, P) (for split parts: both copies of ``h`` on
    entry, see :func:`_split_rows`); direction ``d`` writes output columns
    ``[d P, (d + 1) P)``. ``claims`` (D * groups * phases * n_parts * 8,) and
    ``done`` (D * groups * phases * 8,) are int64 zeros, a slice per row
    group of each direction. Every row's sums are those of the serial loop
    (the tiles sum each row alike), so results do not depend on the cut.
    """
    prefer_vector_width()
    n_dirs = h.shape[0]
    n_groups = row_bounds.shape[1] - 1
    per_direction = n_groups * n_parts
    out_width = h.shape[2]
    claims_per_group = claims.shape[0] // (n_dirs * n_groups)
    done_per_group = done.shape[0] // (n_dirs * n_groups)
    for task in prange(n_dirs * per_direction):
        d = task // per_direction
        g = (task - d * per_direction) // n_parts
        q = task - d * per_direction - g * n_parts
        lo = row_bounds[d, g]
        hi = row_bounds[d, g + 1]
        w_hh = direction(w_hh_panels, d)
        w_hr = direction(w_hr_panels, d)
        options = for_direction(gate_options, d)
        scratch = step_scratch(w_hh, h[d, lo:hi], c[d, lo:hi])
        if n_parts == 1:
            run_rows(gx[d], gx_row0[d], step_lo[d], step_hi[d], d == 1, batch_sizes,
                     step_offsets, h[d], c[d], w_hh, w_hr, h_full[d], out, d * out_width, lo, hi,
                     scratch, options)
        else:
            slot = d * n_groups + g
            _split_rows(q, n_parts, claims[slot * claims_per_group:(slot + 1) * claims_per_group],
                        done[slot * done_per_group:(slot + 1) * done_per_group], gx[d],
                        gx_row0[d], step_lo[d], step_hi[d], d == 1, batch_sizes, step_offsets,
                        h[d], c[d], w_hh, w_hr, h_full[d], h_steps[0, d, lo:hi],
                        h_steps[1, d, lo:hi], out,
                        d * out_width, lo, hi, scratch, options)


@njit(**JIT_OPTIONS)
def run_chunk(x, w_ih_panels, bias, w_hh_panels, w_hr_panels, h0, c0, h, c, h_full, gx, out,
              x_range, gate_options):
    """Whole steps of one (forward) direction in which every row is active,
    serially, in one call: the stepping path (``LSTMCell`` calls, streams,
    short calls) where the per-call cost is what counts.

    ``x`` (T * B, I) holds T steps of B rows, time-major; ``h0``/``c0`` (B, P)
    and (B, H) are copied into ``h``/``c`` (they may be the same arrays),
    which then hold the final state; ``out`` (T * B, P) receives every step's
    ``h``; ``gx`` (at least T * B, 4H) and ``h_full`` (B, H; ``h`` itself
    without projection) are scratch. ``x`` is read (projected) before
    anything is written, so it may overlap the outputs. The arithmetic is
    :func:`project_rows` then :func:`run_steps`', so results equal those of
    the driver's serial loop bitwise.
    """
    prefer_vector_width()
    batch = h.shape[0]
    n_rows = x.shape[0]
    project_rows(x, w_ih_panels, bias, gx[:n_rows], gx.shape[1] // c.shape[1], x_range)
    for r in range(batch):
        for p in range(h.shape[1]):
            h[r, p] = h0[r, p]
        for j in range(c.shape[1]):
            c[r, j] = c0[r, j]
    _run_full_steps(gx, n_rows, h, c, w_hh_panels, w_hr_panels, h_full, out,
                    step_scratch(w_hh_panels, h, c), gate_options)


@njit(**JIT_OPTIONS)
def _run_full_steps(gx, n_rows, h, c, w_hh_panels, w_hr_panels, h_full, out, scratch,
                    gate_options):
    """The steps of :func:`run_chunk`: rows ``[0, n_rows)`` of ``gx``, B =
    ``h.shape[0]`` a step, all active. A kernel of its own so that every
    array its loop passes :func:`borrowed` is its caller's, the scratch
    included."""
    prefer_vector_width()
    batch = h.shape[0]
    gx, h, c, h_full, out = borrowed((gx, h, c, h_full, out))
    w_hh_panels, w_hr_panels = borrowed((w_hh_panels, w_hr_panels))
    scratch, gate_options = borrowed((scratch, gate_options))
    for lo in range(0, n_rows, batch):
        lstm_step(gx[lo:lo + batch], batch, h, c, w_hh_panels, w_hr_panels, h_full, out, lo,
                  0, scratch, gate_options)


@njit(**JIT_OPTIONS)
def run_chunk_layers(x, layers, h0, c0, h, c, h_full, gx, between, out, x_range, has_proj):
    """:func:`run_chunk` for every layer of a single-direction stack, in one
    call: a multi-layer stream's frame then pays one dispatch and one
    unboxing of the shared arrays, not one a layer.

    ``layers`` is a tuple of ``(w_ih_panels, bias, w_hh_panels, w_hr_panels,
    gate_options)`` per layer, all of one type; ``h0``, ``h`` (L, B, P) and
    ``c0``, ``c`` (L, B, H) the states (``h0`` may be ``h``); ``h_full`` (B, H)
    scratch, used with ``has_proj``; ``between`` (rows, P): every layer but the
    last writes its output there and the next one reads it (a layer reads
    its input before it writes). ``x_range``: empty (int8 with torch's
    numerics needs each layer's own range: its callers go layer by layer).
    """
    last = len(layers) - 1
    first = layers[0]
    run_chunk(x, first[0], first[1], first[2], first[3], h0[0], c0[0], h[0], c[0],
              h_full if has_proj else h[0], gx, out if last == 0 else between, x_range,
              first[4])
    for k in range(1, last + 1):
        layer = layers[k]
        run_chunk(between, layer[0], layer[1], layer[2], layer[3], h0[k], c0[k], h[k], c[k],
                  h_full if has_proj else h[k], gx, out if k == last else between, x_range,
                  layer[4])
