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
from . import _dispatch
from ._tiles import TALL_TILE_ROWS, TILE_ROWS, _tile_buffer, _tile_width


# The tile functions below compute ``out[r:r + rows, j0:j0 + n_valid] +=
# a[r:r + rows] @ panel[:, :n_valid]`` for one column panel (K, width), where
# ``width`` is the dtype's :func:`tile_columns`.
# Column indices are unsigned: Numba then emits no negative-index wraparound,
# and LLVM sees contiguous loads instead of gathers. The padding columns of a
# last panel start from zero and are never stored.


@njit(**JIT_OPTIONS)
def _tile_4_rows(a, panel, out, r0, r1, r2, r3, j0, n_valid):
    """Rows ``r0..r3``; a row may repeat (a tile of 2 or 3 distinct rows):
    its copies compute the same sums in the same order, so they store the
    same values, and the panel is still streamed once for all of them."""
    prefer_vector_width()
    width = _tile_width(out)
    tile = carray(_tile_buffer(out.dtype), (TALL_TILE_ROWS * width,))
    for jj in range(n_valid):
        tile[jj] = out[r0, j0 + jj]
        tile[width + jj] = out[r1, j0 + jj]
        tile[2 * width + jj] = out[r2, j0 + jj]
        tile[3 * width + jj] = out[r3, j0 + jj]
    for jj in range(n_valid, width):
        tile[jj] = tile[width + jj] = tile[2 * width + jj] = tile[3 * width + jj] = 0.0
    for k in range(a.shape[1]):
        a0 = a[r0, k]
        a1 = a[r1, k]
        a2 = a[r2, k]
        a3 = a[r3, k]
        for jj in range(width):
            bkj = panel[k, np.uint64(jj)]
            tile[jj] += a0 * bkj
            tile[width + jj] += a1 * bkj
            tile[2 * width + jj] += a2 * bkj
            tile[3 * width + jj] += a3 * bkj
    for jj in range(n_valid):
        out[r0, j0 + jj] = tile[jj]
        out[r1, j0 + jj] = tile[width + jj]
        out[r2, j0 + jj] = tile[2 * width + jj]
        out[r3, j0 + jj] = tile[3 * width + jj]


@njit(**JIT_OPTIONS)
def _tile_6_rows(a, panel, out, r, j0, n_valid):
    prefer_vector_width()
    width = _tile_width(out)
    tile = carray(_tile_buffer(out.dtype), (TALL_TILE_ROWS * width,))
    for jj in range(n_valid):
        for i in range(6):
            tile[i * width + jj] = out[r + i, j0 + jj]
    for jj in range(n_valid, width):
        for i in range(6):
            tile[i * width + jj] = 0.0
    for k in range(a.shape[1]):
        a0 = a[r, k]
        a1 = a[r + 1, k]
        a2 = a[r + 2, k]
        a3 = a[r + 3, k]
        a4 = a[r + 4, k]
        a5 = a[r + 5, k]
        for jj in range(width):
            bkj = panel[k, np.uint64(jj)]
            tile[jj] += a0 * bkj
            tile[width + jj] += a1 * bkj
            tile[2 * width + jj] += a2 * bkj
            tile[3 * width + jj] += a3 * bkj
            tile[4 * width + jj] += a4 * bkj
            tile[5 * width + jj] += a5 * bkj
    for jj in range(n_valid):
        for i in range(6):
            out[r + i, j0 + jj] = tile[i * width + jj]


@njit(**JIT_OPTIONS)
def _tile_1_row(a, panel, out, r, j0, n_valid):
    """Two reduction steps per iteration, which keeps LLVM vectorising along
    the columns rather than gathering down them."""
    prefer_vector_width()
    width = _tile_width(out)
    n_inner = a.shape[1]
    tile = carray(_tile_buffer(out.dtype), (TALL_TILE_ROWS * width,))
    for jj in range(n_valid):
        tile[jj] = out[r, j0 + jj]
    for jj in range(n_valid, width):
        tile[jj] = 0.0
    k = 0
    while k + 2 <= n_inner:
        a0 = a[r, k]
        a1 = a[r, k + 1]
        for jj in range(width):
            tile[jj] += a0 * panel[k, np.uint64(jj)] + a1 * panel[k + 1, np.uint64(jj)]
        k += 2
    if k < n_inner:
        a0 = a[r, k]
        for jj in range(width):
            tile[jj] += a0 * panel[k, np.uint64(jj)]
    for jj in range(n_valid):
        out[r, j0 + jj] = tile[jj]


@njit(**JIT_OPTIONS)
def panel_accumulate(a, panel, out, n_rows, j0, n_valid, tall):
    """``out[:n_rows, j0:j0 + n_valid] += a[:n_rows] @ panel[:, :n_valid]``
    for one column panel: tiles of TILE_ROWS rows (with ``tall``,
    TALL_TILE_ROWS first); 2 or 3 rows left share one 4-row tile (one pass
    over the panel instead of one per row: 1.8-2.7x the useful FMAs per
    loaded weight), a last single row takes the 1-row loop."""
    prefer_vector_width()
    r = np.int64(0)
    if tall:
        # As many tall tiles as leave a multiple of TILE_ROWS (32 rows: 4 x 6
        # + 2 x 4, not 5 x 6 + 2 single rows), when the row count allows.
        n_tall = n_rows // TALL_TILE_ROWS
        if n_tall > 0 and (n_rows - n_tall * TALL_TILE_ROWS) % TILE_ROWS != 0 \
                and (n_rows - (n_tall - 1) * TALL_TILE_ROWS) % TILE_ROWS == 0:
            n_tall -= 1
        for _ in range(n_tall):
            _tile_6_rows(a, panel, out, r, j0, n_valid)
            r += TALL_TILE_ROWS
    while r + TILE_ROWS <= n_rows:
        _tile_4_rows(a, panel, out, r, r + 1, r + 2, r + 3, j0, n_valid)
        r += TILE_ROWS
    if n_rows - r >= 2:
        last = n_rows - 1
        _tile_4_rows(a, panel, out, r, r + 1, min(r + 2, last), last, j0, n_valid)
    elif r < n_rows:
        _tile_1_row(a, panel, out, r, j0, n_valid)


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
