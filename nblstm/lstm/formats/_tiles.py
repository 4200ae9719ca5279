"""Register-tile geometry that every weight format shares, and the stack
buffer the tiles accumulate in."""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, overload
from numba.np.numpy_support import as_dtype

from numba import njit

from ..._codegen import prefetch
from ..._config import INLINE_JIT_OPTIONS, JIT_OPTIONS, PREFERRED_VECTOR_BITS
from ..._memory import CACHE_LINE_BYTES

#: Bytes of one row of a register tile: four vector registers (4 x 4
#: accumulators for a 4-row tile, of the 32 registers AVX-512 has).
TILE_ROW_BYTES = 4 * (PREFERRED_VECTOR_BITS or 256) // 8


def tile_columns(dtype) -> int:
    """Columns one register tile (and one weight panel) covers for ``dtype``:
    64 float32 or 32 float64 with AVX-512."""
    return TILE_ROW_BYTES // np.dtype(dtype).itemsize


#: Vector registers of a tile row that one pass over K keeps: all 4 with
#: AVX-512 (32 registers); 2 with AVX2, whose 16 registers a 4- or 6-row tile
#: of 4 would overflow (float32 spilled to 47% of single-thread sgemm on Zen
#: 3; 6 rows x 2 vectors is BLIS's Haswell kernel).
PASS_VECTORS = 4 if PREFERRED_VECTOR_BITS else 2


def pass_columns(dtype) -> int:
    """Columns of ``dtype`` one pass of a many-row tile covers: the panel's
    :func:`tile_columns` with AVX-512, half of them with AVX2."""
    return tile_columns(dtype) * PASS_VECTORS // 4


def _tile_width(a):
    """:func:`tile_columns` of ``a.dtype``, as a compile-time constant in kernels."""
    raise NotImplementedError("only callable from jitted code")


@overload(_tile_width, inline="always", jit_options=INLINE_JIT_OPTIONS)
def _tile_width_overload(a):
    width = tile_columns(as_dtype(a.dtype))
    return lambda a: width


def _pass_width(a):
    """:func:`pass_columns` of ``a.dtype``, a compile-time constant in kernels."""
    raise NotImplementedError("only callable from jitted code")


@overload(_pass_width, inline="always", jit_options=INLINE_JIT_OPTIONS)
def _pass_width_overload(a):
    width = pass_columns(as_dtype(a.dtype))
    return lambda a: width


#: Rows of ``out`` one register tile covers (4 x 4 vector accumulators).
TILE_ROWS = 4
#: Rows of the taller tile (6 x 4 accumulators) for products with many rows,
#: such as the input projection: more FMAs per loaded panel row. Measured
#: here 1.3x faster from about 48 rows on, and slower for 8-16 rows.
TALL_TILE_ROWS = 6
#: From this many rows on, a step's recurrent product uses the taller tile.
TALL_MIN_ROWS = 24


@intrinsic
def _tile_buffer(typingctx, dtype):
    """A stack array for a tile of TALL_TILE_ROWS rows of ``dtype``.

    A stack array is provably distinct from every other array, so LLVM keeps
    the tile in registers across the reduction loop instead of reloading and
    storing it at every step (which it must do for a heap array that could
    alias the weights).
    """
    element = dtype.dtype

    def codegen(context, builder, signature, args):
        # float32 columns: the widest tile any format has (int32 sums count alike).
        columns = max(tile_columns(as_dtype(element)), tile_columns(np.float32))
        size = ir.Constant(ir.IntType(64), TALL_TILE_ROWS * columns)
        return cgutils.alloca_once(builder, context.get_value_type(element), size=size)

    return types.CPointer(element)(dtype), codegen


@njit(**JIT_OPTIONS)
def tile_schedule(n_rows, tall):
    """How a panel product covers ``n_rows`` rows: ``(n_tall, n_four,
    one_left)`` -- rows ``[0, 6 n_tall)`` in TALL_TILE_ROWS-row tiles (with
    ``tall``), then ``n_four`` TILE_ROWS-row tiles (rows:
    :func:`four_rows`), the last of which may hold only the 2 or 3 rows
    left, repeating the last row (one pass over the panel instead of one per
    row, 1.8-2.7x the useful FMAs per loaded weight); ``one_left``: a single
    row is left, for the 1-row tile (row ``n_rows - 1``). As many tall tiles
    as leave a multiple of TILE_ROWS (32 rows: 4 x 6 + 2 x 4, not 5 x 6 + 2
    single rows), when the count allows.

    Every format's tiles follow it, each tile function called at one place
    only: Numba copies a function's IR at every place it is inlined, and
    that copying was most of the kernels' compile time.

    Scalars only, and not inlined: the formats' ``panel_accumulate`` is
    inlined into the kernels, where one definition per name keeps Numba's
    SSA reconstruction quiet.
    """
    n_tall = n_rows // TALL_TILE_ROWS if tall else 0
    if n_tall > 0 and (n_rows - n_tall * TALL_TILE_ROWS) % TILE_ROWS != 0 \
            and (n_rows - (n_tall - 1) * TALL_TILE_ROWS) % TILE_ROWS == 0:
        n_tall -= 1
    rest = n_rows - n_tall * TALL_TILE_ROWS
    n_four = rest // TILE_ROWS
    left = rest - n_four * TILE_ROWS
    if left >= 2:
        n_four += 1
    return n_tall, n_four, left == 1


@njit(**JIT_OPTIONS)
def four_rows(start, t, last):
    """Rows ``(r0, r1, r2, r3)`` of the ``t``-th 4-row tile from row
    ``start`` (see :func:`tile_schedule`): the last tile repeats row
    ``last`` for the rows it lacks (tiles write a repeated row once)."""
    r0 = start + t * TILE_ROWS
    return r0, r0 + 1, min(r0 + 2, last), min(r0 + 3, last)


@njit(**JIT_OPTIONS)
def writes_row(tile_rows, slot):
    """Whether slot ``slot`` of a 4-row tile of rows ``tile_rows``
    (:func:`four_rows`) writes its row: a repeated row is written once."""
    return slot == 0 or tile_rows[slot] != tile_rows[slot - 1]


@njit(inline="always", **JIT_OPTIONS)
def prefetch_row(out, r, j0, n_valid):
    """Prefetch the cache lines of ``out[r, j0:j0 + n_valid]``: a tile whose
    epilogue adds to ``out`` (int8, bfloat16) asks for its rows before its
    reduction, so that they arrive while it runs. A step's gates were
    projected a window earlier and come from memory: the epilogue's loads
    of them were the hottest instructions of an int8 step at batch 64."""
    step = CACHE_LINE_BYTES // out.itemsize
    for jj in range(0, n_valid, step):
        prefetch(out, r, j0 + np.uint64(jj))
