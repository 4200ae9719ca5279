"""The interface a weight format gives the kernels.

The step loops and the projection (``_kernels``) are written once against
these five functions (and the optional ones below); each format registers
Numba overloads of them for its own weight type (``float.py``: float arrays
of panels, ``int8.py``: its named tuples), so the choice is made when a
kernel is compiled, never in its loops. A format's weights for one
direction are an object ``weights`` that holds column panels of the
transposed matrix ``w_t`` (K, N):

* ``panel_count(weights)``: how many panels (each ``width`` columns wide,
  ``width`` = ``_tiles.tile_columns(np.float32)`` for every reduced format).
* ``new_scratch(weights, rows, inner, fixed_range)``: what the format needs
  to prepare up to ``rows`` activation rows of up to ``inner`` features
  (nothing for floats; quantised rows for int8), allocated once per kernel
  call, never per step. ``fixed_range`` (2,) float32 is the (min, max) to
  quantise with when the format quantises per tensor over a range known in
  advance (torch's numerics); empty otherwise.
* ``prepare_rows(a, n_rows, weights, scratch)``: the operand the tiles read
  for rows ``[0, n_rows)`` of the float activations ``a`` (n, K): ``a``
  itself for floats, its quantised rows for int8.
* ``panel_product(operand, weights, p, out, n_rows, j0, n_valid, tall)``:
  ``out[:n_rows, j0:j0 + n_valid] += a[:n_rows] @ panel p[:, :n_valid]``, in
  float32/float64 ``out``.
* ``direction(weights, d)``: direction ``d``'s weights from the stacked
  (D, ...) weights of a layer.

A format may instead compute all the panels of a product in one call:
``whole_product(operand, weights, out, n_rows, n_blocks, block_cols, b0,
b1)`` does what the loop over ``panel_product`` would (``out[:n_rows] +=``
the operand times panels ``[b0, b1)`` of each of the ``n_blocks`` column
blocks) and returns True, or returns False and the loop runs. Only AMX
bfloat16 weights take it: their tile configuration and blocking span panels.

``row_block(weights)`` is the rows a product of many rows is best cut into
whole multiples of: the tallest register tile (``_tiles.TALL_TILE_ROWS``),
or a weights class's ``ROW_BLOCK`` (an AMX block, 32).

Where ``pairs_panels(weights, n_rows)`` is true, the loops run two panels at
once: ``panel_pair_product(operand, weights, p, q, out, j0p, nvp, j0q, nvq)``
is ``panel_product`` of panels ``p`` and ``q`` for one row. The float
format and the vdpbf16ps bfloat16 weights (a weights class whose
``PAIR_TILE`` is true) have such a tile: a row of two panels, 8
accumulators, where one panel's 4 chains stall on the latency of the FMA or
vdpbf16ps; for the others it is false.
"""

from __future__ import annotations

from numba import types
from numba.extending import overload

from ..._config import INLINE_JIT_OPTIONS
from ._tiles import TALL_TILE_ROWS

_JIT_ONLY = "a weight-format interface function is only callable from jitted code"


def prepare_rows(a, n_rows, weights, scratch):
    raise NotImplementedError(_JIT_ONLY)


def panel_product(operand, weights, p, out, n_rows, j0, n_valid, tall):
    raise NotImplementedError(_JIT_ONLY)


def panel_count(weights):
    raise NotImplementedError(_JIT_ONLY)


def new_scratch(weights, rows, inner, fixed_range):
    raise NotImplementedError(_JIT_ONLY)


def direction(weights, d):
    raise NotImplementedError(_JIT_ONLY)


def pairs_panels(weights, n_rows):
    raise NotImplementedError(_JIT_ONLY)


def whole_product(operand, weights, out, n_rows, n_blocks, block_cols, b0, b1):
    raise NotImplementedError(_JIT_ONLY)


def row_block(weights):
    raise NotImplementedError(_JIT_ONLY)


def panel_pair_product(operand, weights, p, q, out, j0p, nvp, j0q, nvq):
    raise NotImplementedError(_JIT_ONLY)


def _has_pair_tile(weights) -> bool:
    return isinstance(weights, types.BaseNamedTuple) \
        and getattr(weights.instance_class, "PAIR_TILE", False)


@overload(pairs_panels, inline="always", jit_options=INLINE_JIT_OPTIONS)
def _pairs_panels(weights, n_rows):
    if not (isinstance(weights, types.Array) or _has_pair_tile(weights)):
        return lambda weights, n_rows: False


@overload(panel_pair_product, inline="always", jit_options=INLINE_JIT_OPTIONS)
def _no_pair_tile(operand, weights, p, q, out, j0p, nvp, j0q, nvq):
    if not (isinstance(weights, types.Array) or _has_pair_tile(weights)):
        return lambda operand, weights, p, q, out, j0p, nvp, j0q, nvq: None  # never called


@overload(whole_product, inline="always", jit_options=INLINE_JIT_OPTIONS)
def _no_whole_product(operand, weights, out, n_rows, n_blocks, block_cols, b0, b1):
    if not (isinstance(weights, types.BaseNamedTuple)
            and getattr(weights.instance_class, "WHOLE_PRODUCT", False)):
        return lambda operand, weights, out, n_rows, n_blocks, block_cols, b0, b1: False


@overload(row_block, inline="always", jit_options=INLINE_JIT_OPTIONS)
def _row_block(weights):
    rows = TALL_TILE_ROWS
    if isinstance(weights, types.BaseNamedTuple):
        rows = getattr(weights.instance_class, "ROW_BLOCK", TALL_TILE_ROWS)
    return lambda weights: rows
