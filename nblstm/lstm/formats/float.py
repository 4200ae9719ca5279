"""float32 and float64 weights: column panels and FMA register tiles.

A panel is ``(K, width)``: ``width`` columns of the transposed weight ``w_t``
(see ``_weights.column_panels``), ``width`` = :func:`~._tiles.tile_columns`.
The format's operand is the float activation matrix itself, and it needs no
scratch.
"""

from __future__ import annotations

import numpy as np
from numba import carray, njit, types
from numba.extending import overload

from ..._codegen import prefer_vector_width
from ..._config import INLINE_JIT_OPTIONS, JIT_OPTIONS
from .. import _cpu
from . import _dispatch, _tiles
from ._x86 import fma_4_rows, fma_6_rows
from ._tiles import TALL_TILE_ROWS, _pass_width, _tile_buffer, _tile_width, four_rows, \
    tile_schedule


# The tile functions below compute ``out[r:r + rows, j0:j0 + n_valid] +=
# a[r:r + rows] @ panel[:, :n_valid]`` for one column panel (K, width), where
# ``width`` is the dtype's :func:`tile_columns`.
# Column indices are unsigned: Numba then emits no negative-index wraparound,
# and LLVM sees contiguous loads instead of gathers. The padding columns of a
# last panel start from zero and are never stored.


#: Whether the many-row tiles run their reduction as explicit AVX2 FMA steps
#: (``_x86.fma_4_rows``/``fma_6_rows``): LLVM's own schedule of the loops
#: hoists every row's broadcast and spills (6 x 16 float32 on Zen 3: 19
#: GMAC/s a core against 44; single-thread sgemm 40). The same FMAs in the
#: same order, so the same bits as the loops, which run everywhere else
#: (AVX-512, CPUs without AVX2 and FMA). Decided by the features Numba
#: compiles for, which its cache keys on (``NUMBA_CPU_FEATURES`` overrides
#: them), not by NBLSTM_PORTABLE_KERNELS, which it does not see: float
#: weights are plain arrays, so no type carries the choice.
FMA_STEPS = _tiles.PASS_VECTORS == 2 and _cpu.HAS_AVX2 and _cpu.HAS_FMA


@njit(inline="always", **JIT_OPTIONS)
def _zero_columns(tile, n_rows, width, first):
    """``tile[i * width + jj] = 0`` for tile rows ``i < n_rows`` and columns
    ``jj`` in ``[first, width)``: the padding columns of a last panel. The
    indices are unsigned: a signed ``first`` left LLVM a negative-index
    wraparound to keep, which it vectorised as scatters."""
    for i in range(n_rows):
        base = np.uint64(i * width)
        for jj in range(np.uint64(first), np.uint64(width)):
            tile[base + jj] = 0.0


@njit(inline="always", **JIT_OPTIONS)
def _loop_steps_4(tile_ptr, a, r0, r1, r2, r3, panel, c0):
    """Tile rows 0..3 (``_pass_width`` columns each) += ``a[r_i, k] *
    panel[k, c0:c0 + width]`` for every k in order, one FMA each."""
    prefer_vector_width()
    width = _pass_width(a)
    tile = carray(tile_ptr, (TALL_TILE_ROWS * width,))
    for k in range(a.shape[1]):
        a0 = a[r0, k]
        a1 = a[r1, k]
        a2 = a[r2, k]
        a3 = a[r3, k]
        for jj in range(width):
            bkj = panel[k, np.uint64(c0 + jj)]
            tile[jj] += a0 * bkj
            tile[width + jj] += a1 * bkj
            tile[2 * width + jj] += a2 * bkj
            tile[3 * width + jj] += a3 * bkj


@njit(inline="always", **JIT_OPTIONS)
def _loop_steps_6(tile_ptr, a, r, panel, c0):
    """:func:`_loop_steps_4` of rows ``r .. r + 5``."""
    prefer_vector_width()
    width = _pass_width(a)
    tile = carray(tile_ptr, (TALL_TILE_ROWS * width,))
    for k in range(a.shape[1]):
        a0 = a[r, k]
        a1 = a[r + 1, k]
        a2 = a[r + 2, k]
        a3 = a[r + 3, k]
        a4 = a[r + 4, k]
        a5 = a[r + 5, k]
        for jj in range(width):
            bkj = panel[k, np.uint64(c0 + jj)]
            tile[jj] += a0 * bkj
            tile[width + jj] += a1 * bkj
            tile[2 * width + jj] += a2 * bkj
            tile[3 * width + jj] += a3 * bkj
            tile[4 * width + jj] += a4 * bkj
            tile[5 * width + jj] += a5 * bkj


@njit(inline="always", **JIT_OPTIONS)
def _fma_steps_4(tile_ptr, a, r0, r1, r2, r3, panel, c0):
    """:func:`_loop_steps_4` as AVX2 FMA steps (two vectors per row)."""
    for k in range(a.shape[1]):
        fma_4_rows(tile_ptr, a, r0, r1, r2, r3, k, panel, c0)


@njit(inline="always", **JIT_OPTIONS)
def _fma_steps_6(tile_ptr, a, r, panel, c0):
    """:func:`_loop_steps_6` as AVX2 FMA steps."""
    for k in range(a.shape[1]):
        fma_6_rows(tile_ptr, a, r, k, panel, c0)


def _k_steps_4(tile_ptr, a, r0, r1, r2, r3, panel, c0):
    """:func:`_fma_steps_4` where FMA_STEPS, else :func:`_loop_steps_4`."""
    raise NotImplementedError


def _k_steps_6(tile_ptr, a, r, panel, c0):
    """:func:`_fma_steps_6` where FMA_STEPS, else :func:`_loop_steps_6`."""
    raise NotImplementedError


@overload(_k_steps_4, inline="always", jit_options=INLINE_JIT_OPTIONS)
def _k_steps_4_overload(tile_ptr, a, r0, r1, r2, r3, panel, c0):
    steps = _fma_steps_4 if FMA_STEPS else _loop_steps_4
    return lambda tile_ptr, a, r0, r1, r2, r3, panel, c0: steps(tile_ptr, a, r0, r1, r2, r3,
                                                                panel, c0)


@overload(_k_steps_6, inline="always", jit_options=INLINE_JIT_OPTIONS)
def _k_steps_6_overload(tile_ptr, a, r, panel, c0):
    steps = _fma_steps_6 if FMA_STEPS else _loop_steps_6
    return lambda tile_ptr, a, r, panel, c0: steps(tile_ptr, a, r, panel, c0)


@njit(inline="always", **JIT_OPTIONS)
def _tile_4_rows(a, panel, out, r0, r1, r2, r3, j0, n_valid):
    """Rows ``r0..r3``; a row may repeat (a tile of 2 or 3 distinct rows):
    its copies compute the same sums in the same order, so they store the
    same values, and the panel is still streamed once for all of them.
    In passes of ``_pass_width`` columns (all of the panel with AVX-512, half
    with AVX2); a column's sum is the same whatever the pass."""
    prefer_vector_width()
    width = _pass_width(out)
    tile_ptr = _tile_buffer(out.dtype)
    tile = carray(tile_ptr, (TALL_TILE_ROWS * width,))
    for c0 in range(0, n_valid, width):
        jc = np.uint64(j0 + c0)
        n_cols = min(width, n_valid - c0)
        for jj in range(n_cols):
            j = jc + np.uint64(jj)
            tile[jj] = out[r0, j]
            tile[width + jj] = out[r1, j]
            tile[2 * width + jj] = out[r2, j]
            tile[3 * width + jj] = out[r3, j]
        _zero_columns(tile, 4, width, n_cols)
        _k_steps_4(tile_ptr, a, r0, r1, r2, r3, panel, c0)
        for jj in range(n_cols):
            j = jc + np.uint64(jj)
            out[r0, j] = tile[jj]
            out[r1, j] = tile[width + jj]
            out[r2, j] = tile[2 * width + jj]
            out[r3, j] = tile[3 * width + jj]


@njit(inline="always", **JIT_OPTIONS)
def _tile_6_rows(a, panel, out, r, j0, n_valid):
    """Six rows, in passes as :func:`_tile_4_rows`."""
    prefer_vector_width()
    width = _pass_width(out)
    tile_ptr = _tile_buffer(out.dtype)
    tile = carray(tile_ptr, (TALL_TILE_ROWS * width,))
    for c0 in range(0, n_valid, width):
        jc = np.uint64(j0 + c0)
        n_cols = min(width, n_valid - c0)
        for jj in range(n_cols):
            j = jc + np.uint64(jj)
            for i in range(6):
                tile[i * width + jj] = out[r + i, j]
        _zero_columns(tile, 6, width, n_cols)
        _k_steps_6(tile_ptr, a, r, panel, c0)
        for jj in range(n_cols):
            j = jc + np.uint64(jj)
            for i in range(6):
                out[r + i, j] = tile[i * width + jj]


@njit(inline="always", **JIT_OPTIONS)
def _tile_1_row(a, panel, out, r, j0, n_valid):
    """One row: one accumulator per column, the sums of a row of the taller
    tiles in the same order, so a row's bits do not depend on which tile it
    lands in (how the rows are cut into row groups, chunks or threads)."""
    prefer_vector_width()
    width = _tile_width(out)
    tile = carray(_tile_buffer(out.dtype), (TALL_TILE_ROWS * width,))
    for jj in range(n_valid):
        tile[jj] = out[r, j0 + jj]
    _zero_columns(tile, 1, width, n_valid)
    for k in range(a.shape[1]):
        a0 = a[r, k]
        for jj in range(width):
            tile[jj] += a0 * panel[k, np.uint64(jj)]
    for jj in range(n_valid):
        out[r, j0 + jj] = tile[jj]


@njit(inline="always", **JIT_OPTIONS)
def _tile_1_row_2_panels(a, panel0, panel1, out, r, j0, n0, j1, n1):
    """Row ``r`` through two panels at once: :func:`_tile_1_row`'s sums (so
    the same bits), with 8 accumulator vectors instead of 4, which a single
    row needs to keep both FMA ports busy (4 chains stall on FMA latency)."""
    prefer_vector_width()
    width = _tile_width(out)
    tile = carray(_tile_buffer(out.dtype), (TALL_TILE_ROWS * width,))
    for jj in range(n0):
        tile[jj] = out[r, j0 + jj]
    _zero_columns(tile, 1, width, n0)
    second = tile[width:]
    for jj in range(n1):
        second[jj] = out[r, j1 + jj]
    _zero_columns(second, 1, width, n1)
    for k in range(a.shape[1]):
        a0 = a[r, k]
        for jj in range(width):
            tile[jj] += a0 * panel0[k, np.uint64(jj)]
            second[jj] += a0 * panel1[k, np.uint64(jj)]
    for jj in range(n0):
        out[r, j0 + jj] = tile[jj]
    for jj in range(n1):
        out[r, j1 + jj] = second[jj]


@njit(inline="always", **JIT_OPTIONS)
def panel_accumulate(a, panel, out, n_rows, j0, n_valid, tall):
    """``out[:n_rows, j0:j0 + n_valid] += a[:n_rows] @ panel[:, :n_valid]``
    for one column panel, in the tiles of ``_tiles.tile_schedule``.

    Inlined into its callers, tiles included: every call that passes arrays
    costs atomic reference-count updates on each of them, which were 58% of
    a one-row step's time (H=64).
    """
    prefer_vector_width()
    n_tall, n_four, one_left = tile_schedule(n_rows, tall)
    for t in range(n_tall):
        _tile_6_rows(a, panel, out, t * TALL_TILE_ROWS, j0, n_valid)
    first = n_tall * TALL_TILE_ROWS
    last = n_rows - 1
    for t in range(n_four):
        r0, r1, r2, r3 = four_rows(first, t, last)
        _tile_4_rows(a, panel, out, r0, r1, r2, r3, j0, n_valid)
    if one_left:
        _tile_1_row(a, panel, out, last, j0, n_valid)


def _is_float_panels(weights) -> bool:
    return isinstance(weights, types.Array) and isinstance(weights.dtype, types.Float)


@overload(_dispatch.prepare_rows, inline="always", jit_options=INLINE_JIT_OPTIONS)
def _prepare_rows(a, n_rows, weights, scratch):
    if _is_float_panels(weights):
        return lambda a, n_rows, weights, scratch: a


@overload(_dispatch.panel_product, inline="always", jit_options=INLINE_JIT_OPTIONS)
def _panel_product(operand, weights, p, out, n_rows, j0, n_valid, tall):
    if _is_float_panels(weights):
        def impl(operand, weights, p, out, n_rows, j0, n_valid, tall):
            panel_accumulate(operand, weights[p], out, n_rows, j0, n_valid, tall)
        return impl


@overload(_dispatch.pairs_panels, inline="always", jit_options=INLINE_JIT_OPTIONS)
def _pairs_panels(weights, n_rows):
    if _is_float_panels(weights):
        return lambda weights, n_rows: n_rows == 1


@overload(_dispatch.panel_pair_product, inline="always", jit_options=INLINE_JIT_OPTIONS)
def _panel_pair_product(operand, weights, p, q, out, j0p, nvp, j0q, nvq):
    if _is_float_panels(weights):
        def impl(operand, weights, p, q, out, j0p, nvp, j0q, nvq):
            _tile_1_row_2_panels(operand, weights[p], weights[q], out, 0, j0p, nvp, j0q, nvq)
        return impl


@overload(_dispatch.panel_count, inline="always", jit_options=INLINE_JIT_OPTIONS)
def _panel_count(weights):
    if _is_float_panels(weights):
        return lambda weights: weights.shape[0]


@overload(_dispatch.new_scratch, inline="always", jit_options=INLINE_JIT_OPTIONS)
def _new_scratch(weights, rows, inner, fixed_range):
    if _is_float_panels(weights):
        return lambda weights, rows, inner, fixed_range: 0


@overload(_dispatch.direction, inline="always", jit_options=INLINE_JIT_OPTIONS)
def _direction(weights, d):
    if _is_float_panels(weights):
        return lambda weights, d: weights[d]
