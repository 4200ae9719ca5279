"""int8 weights: per-row scales, VNNI/AMX/AVX2 panels, dynamic activation quantisation.

The format
    A weight matrix ``W`` (N, K) (torch's layout: N outputs) is stored as int8
    ``Q`` with one float32 scale per output row, ``W ~ scale[:, None] * Q``.
    Our own quantisation (:func:`quantize_weight`) is symmetric, ``|Q| <= 127``
    (torch's own weights are taken as they are, -128 included). The
    activations ``a`` entering each product are quantised when they enter it,
    to uint8 with a zero point: ``a ~ s_a * (A - z_a)``, and the product is
    computed exactly in int32::

        out[r, j] += float32(sum_k A[r, k] Q[j, k] - z_a[r] * colsum[j])
                     * (s_a[r] * scale[j])

    with ``colsum[j] = sum_k Q[j, k]`` computed once. nblstm's own models
    quantise each activation row on its own over the full uint8 range
    (``qmax`` 255, ``per_tensor`` False); models imported from torch's
    dynamically quantised LSTM use torch's numerics: one scale for all the
    rows of a product and the range [0, 127] (``qmax`` 127, ``per_tensor``
    True), see ``_torch_quantized``.

Panels
    ``Q.T`` (K, N) is cut into column panels of ``width`` columns
    (``tile_columns(float32)``: 64 with AVX-512), each gate on panels of its
    own (as the float panels). A panel is (ceil(K / 4), 4 * width) int8: row
    ``g`` holds, for each column, its 4 weights of rows ``4g..4g+3`` -- the
    operand layout of ``vpdpbusd``, which multiplies 4 uint8 activations by
    4 int8 weights and adds the four products into one int32 lane, and of
    AMX's ``tdpbusd`` weight tiles. K is zero-padded to a multiple of 8 (64
    for AMX); the padding weights are zero, so whatever the activation
    padding holds adds nothing. The epilogue writes
    ``fma(float32(sum - z_a * colsum), float32(s_a * scale), out)``, one
    rounding, as fbgemm's dequantisation.

Tiles
    4 (or 6, or 1) rows x ``width`` columns of int32 sums stay in registers
    while the reduction runs over the k groups; the epilogue applies the
    zero-point correction and the scales. Four kernel paths with identical
    integer sums, chosen by the class of the weights when a kernel is
    compiled (KERNELS): ``vpdpbusd`` register tiles where the CPU has VNNI
    (:class:`Int8Panels`); AMX blocks of 32 rows x 32 columns for products of
    AMX_MIN_ROWS rows or more, the rows left on the VNNI tiles
    (:class:`Int8PanelsAMX`, ``_amx``); ``vpmaddwd`` tiles where the CPU has
    AVX2 but no VNNI (:class:`Int8PanelsAVX2`); plain integer arithmetic
    elsewhere (:class:`Int8PanelsPortable`). Integer sums are exact, so all
    four give bitwise the same results.

    Without VNNI, x86 multiplies bytes with ``vpmaddubsw``, whose 16-bit pair
    sums saturate for uint8 x int8 (255 * 127 * 2 > 32767; fbgemm and ONNX
    Runtime accept that or quantise activations to 7 bits). The AVX2 tiles
    instead widen both operands to 16 bits (activations are stored as
    uint16, weights sign-extended when loaded) and multiply with
    ``vpmaddwd``: exact for every range, and as many multiply-adds a cycle
    as the two ``vpmaddubsw`` + ``vpmaddwd`` steps would give (measured on
    Zen 3: 70 GMAC/s a core, 1.7x single-thread sgemm; 48 with the widening
    of uint8 activations in the loop).

Exactness bound
    An int32 sum holds K * 255 * 128: K up to 65,793 inputs; quantize()
    refuses larger inputs.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np
from numba import carray, njit, types
from numba.extending import overload

from ..._codegen import fused_multiply_add, maximum, minimum, prefer_vector_width
from ..._config import EXACT_JIT_OPTIONS, INLINE_JIT_OPTIONS, JIT_OPTIONS
from .. import _cpu
from . import _amx, _dispatch
from ._tiles import TALL_TILE_ROWS, TILE_ROWS, _tile_buffer, four_rows, prefetch_row, \
    tile_columns, tile_schedule, writes_row
from ._x86 import pmaddwd_1_row, pmaddwd_4_rows

#: Columns of one int8 panel (and tile): the float32 tile's, so every format
#: splits the hidden units on the same panel boundaries.
WIDTH = tile_columns(np.float32)
#: Largest K whose int32 sums cannot overflow (K * 255 * 128 < 2**31).
MAX_INNER = (2 ** 31 - 1) // (255 * 128)
#: Largest magnitude of nblstm's own int8 weights (symmetric range).
WEIGHT_QMAX = 127


class Int8Panels(NamedTuple):
    """One layer's (or one direction's) int8 weights, for the VNNI tiles.

    Attributes
    ----------
    panels : (..., n_panels, ceil(K / 4), 4 * WIDTH) int8 -- see module doc
    scales : (..., N) float32 -- the scale of each output (column of ``Q.T``)
    col_sums : (..., N) int32 -- ``sum_k Q.T[k, j]``, for the zero-point term
    qmax : int -- activations are quantised to [0, qmax]
    per_tensor : bool -- one activation scale per product (torch) or per row
    """

    panels: np.ndarray
    scales: np.ndarray
    col_sums: np.ndarray
    qmax: int
    per_tensor: bool

    #: dtype of the quantised activations the tiles read (QuantizedRows.q).
    ACTIVATION_DTYPE = np.uint8


class Int8PanelsPortable(Int8Panels):
    """:class:`Int8Panels` for the portable tiles (plain integer arithmetic,
    any CPU); same fields."""


class Int8PanelsAVX2(Int8Panels):
    """:class:`Int8Panels` for the AVX2 ``vpmaddwd`` tiles (no VNNI); same
    fields. Its activations are quantised into uint16 (see module doc)."""

    ACTIVATION_DTYPE = np.uint16


class Int8PanelsAMX(Int8Panels):
    """:class:`Int8Panels` whose products of many rows run on AMX tiles
    (``_amx``; fewer rows on the VNNI tiles); K is padded to whole AMX tiles
    (a multiple of 64)."""

    ROW_BLOCK = 32  # rows past whole AMX blocks run on the VNNI tiles: _dispatch.row_block


class QuantizedRows(NamedTuple):
    """Scratch: activation rows quantised for one product.

    Attributes
    ----------
    q : (rows, 4 * ceil(K / 4)) uint8, or uint16 for :class:`Int8PanelsAVX2`
    scale : (rows,) float32
    zero : (rows,) int32
    fixed_range : (2,) float32 (min, max) for a per-tensor product whose
        range was measured over all its rows in advance, or (0,)
    """

    q: np.ndarray
    scale: np.ndarray
    zero: np.ndarray
    fixed_range: np.ndarray


_INT8_CLASSES = (Int8Panels, Int8PanelsPortable, Int8PanelsAMX, Int8PanelsAVX2)
#: The weights class of each kernel path.
KERNELS = {"vnni": Int8Panels, "portable": Int8PanelsPortable, "amx": Int8PanelsAMX,
           "avx2": Int8PanelsAVX2}
#: What each path but the portable one needs: (available, its name in errors).
_NEEDS = {"amx": (lambda: _cpu.use_amx_int8(), "AMX int8 tiles"),  # also asks Linux for the tile state
          "vnni": (lambda: _cpu.HAS_VNNI, "AVX512-VNNI or AVX-VNNI"),
          "avx2": (lambda: _cpu.HAS_AVX2, "AVX2")}
#: Products of at least this many rows use AMX blocks (32 rows each).
AMX_MIN_ROWS = 32


def default_kernels() -> str:
    """The best kernel path this CPU allows (see ``_cpu``)."""
    if _cpu.use_amx_int8():
        return "amx"
    if _cpu.USE_VNNI:
        return "vnni"
    return "avx2" if _cpu.USE_AVX2 else "portable"


def kernels_of(weights: Int8Panels) -> str:
    """The kernel path (a key of KERNELS) of these weights."""
    return next(name for name, cls in KERNELS.items() if type(weights) is cls)


# ----------------------------------------------------------------- quantisation


def quantize_weight(weight: np.ndarray):
    """Symmetric per-row int8 quantisation of ``weight`` (N, K) float.

    Returns ``(q, scale)``: int8 (N, K) with ``|q| <= 127`` and float32 (N,),
    ``scale = max|row| / 127`` (1 for an all-zero row), ``q = rint(w / scale)``.
    """
    w = np.asarray(weight, dtype=np.float32)
    peak = np.abs(w).max(axis=1) if w.shape[1] else np.zeros(w.shape[0], np.float32)
    scale = np.where(peak > 0, peak / np.float32(WEIGHT_QMAX), np.float32(1)).astype(np.float32)
    q = np.clip(np.rint(w / scale[:, None]), -WEIGHT_QMAX, WEIGHT_QMAX).astype(np.int8)
    return q, scale


#: fbgemm's ``SMALL_SCALE_THRESHOLD``: the smallest activation scale.
SMALL_SCALE = np.float32(6.1e-5)


@njit(**EXACT_JIT_OPTIONS)
def choose_qparams(lo, hi, qmax):
    """(scale, zero point) of uint8 quantisation [0, qmax] of float32 values
    in [lo, hi]: fbgemm's ``ChooseQuantizationParams``, which torch's dynamic
    quantisation uses (``_torch_quantized.activation_qparams`` states the
    rules step by step). The range is widened to hold 0 (so 0 is exact), the
    scale computed in float64, 0.1 for a zero-width range, at least
    SMALL_SCALE; the zero point from whichever end loses less, rounded to
    nearest even. A NaN bound gives a NaN scale (the rows come out NaN, as
    in float).
    """
    lo = min(lo, np.float32(0.0))
    hi = max(hi, np.float32(0.0))
    if lo != lo or hi != hi:
        return np.float32(np.nan), np.int32(0)
    scale = (np.float64(hi) - np.float64(lo)) / qmax
    if np.float32(scale) == 0.0 or np.isinf(np.float32(1.0) / np.float32(scale)):
        scale = 0.1
    if scale < np.float64(SMALL_SCALE):
        old = np.float32(scale)
        scale = np.float64(SMALL_SCALE)
        if lo == 0.0:
            hi = np.float32(SMALL_SCALE * np.float32(qmax))
        elif hi == 0.0:
            lo = np.float32(-SMALL_SCALE * np.float32(qmax))
        else:
            amplifier = np.float32(SMALL_SCALE / old)
            lo = np.float32(lo * amplifier)
            hi = np.float32(hi * amplifier)
    from_min = -np.float64(lo) / scale
    from_max = qmax - np.float64(hi) / scale
    if -abs(np.float64(lo) / scale) < qmax - abs(np.float64(hi) / scale):
        initial = from_min
    else:
        initial = from_max
    if initial < 0.0:
        zero = 0
    elif initial > qmax:
        zero = qmax
    else:
        # Half to even, spelled out (fbgemm's nearbyint in the default rounding
        # mode). An exact 63.5 here once gave 63: compiled first from a
        # fast-math kernel, this function inherited its ``arcp`` (see
        # EXACT_JIT_OPTIONS).
        below = np.floor(initial)
        zero = int(below)
        if initial - below > 0.5 or (initial - below == 0.5 and zero % 2 == 1):
            zero += 1
    return np.float32(scale), np.int32(zero)


@njit(**JIT_OPTIONS)
def _row_range(a, r):
    """(min, max) of row ``r`` of ``a``; NaN if the row holds a NaN (the
    NaN-propagating min/max, whose reduction LLVM vectorises)."""
    prefer_vector_width()
    lo = np.float32(np.inf)
    hi = np.float32(-np.inf)
    for k in range(a.shape[1]):
        v = a[r, np.uint64(k)]
        lo = minimum(lo, v)
        hi = maximum(hi, v)
    return lo, hi


@njit(**JIT_OPTIONS)
def _quantize_row(a, r, scale, zero, q):
    """``q[r, :K] = clip(rint(fma(a[r], 1 / scale, zero)), 0, 255)``: fbgemm's
    rule (one rounding of ``x * inv + zero``, then half to even; the clip is
    to the whole uint8 range even when ``qmax`` is 127, as fbgemm's)."""
    prefer_vector_width()
    inverse = np.float32(1.0) / scale
    zero_f = np.float32(zero)
    for k in range(a.shape[1]):
        v = np.int32(np.rint(fused_multiply_add(a[r, np.uint64(k)], inverse, zero_f)))
        q[r, np.uint64(k)] = np.uint8(min(max(v, 0), 255))


@njit(**JIT_OPTIONS)
def quantize_rows(a, n_rows, rows, qmax, per_tensor):
    """Quantise rows ``[0, n_rows)`` of ``a`` (n, K) float32 into ``rows``
    (:class:`QuantizedRows`): each row with its own range, or with
    ``per_tensor`` one range over all of them (``rows.fixed_range`` if given)."""
    if per_tensor:
        if rows.fixed_range.shape[0] == 2:
            lo, hi = rows.fixed_range[0], rows.fixed_range[1]
        else:
            lo = np.float32(np.inf)
            hi = np.float32(-np.inf)
            for r in range(n_rows):
                row_lo, row_hi = _row_range(a, r)
                if row_lo != row_lo:  # NaN: the whole product is NaN
                    lo = hi = row_lo
                    break
                lo = min(lo, row_lo)
                hi = max(hi, row_hi)
        scale, zero = choose_qparams(lo, hi, qmax)
        for r in range(n_rows):
            rows.scale[r] = scale
            rows.zero[r] = zero
            _quantize_row(a, r, scale, zero, rows.q)
    else:
        for r in range(n_rows):
            row_lo, row_hi = _row_range(a, r)
            scale, zero = choose_qparams(row_lo, row_hi, qmax)
            rows.scale[r] = scale
            rows.zero[r] = zero
            _quantize_row(a, r, scale, zero, rows.q)


# ----------------------------------------------------------------- tiles
# The helpers that take the tile's stack pointer are inlined (Numba's
# inline="always"): a pointer passed to a call escapes, and LLVM then keeps the
# accumulators in memory instead of registers (217 against 347 GMAC/s).


def _reduction_step_4(tile, q, r0, r1, r2, r3, k, panel, g, weights):
    raise NotImplementedError


def _reduction_step_6(tile, q, r, k, panel, g, weights):
    raise NotImplementedError


def _reduction_step_1(tile, q, r, k, panel, g, weights):
    raise NotImplementedError


@njit(inline="always", **JIT_OPTIONS)
def _portable_row_step(tile, slot, q, r, k, panel, g):
    """Tile row ``slot`` += ``q[r, k:k + 4]`` . ``panel[g]`` in int32."""
    prefer_vector_width()
    acc = carray(tile, (TALL_TILE_ROWS * WIDTH,))
    a0 = np.int32(q[r, k])
    a1 = np.int32(q[r, k + 1])
    a2 = np.int32(q[r, k + 2])
    a3 = np.int32(q[r, k + 3])
    base = slot * WIDTH
    for jj in range(WIDTH):
        c = np.uint64(4 * jj)
        acc[base + jj] += (a0 * np.int32(panel[g, c]) + a1 * np.int32(panel[g, c + 1])
                           + a2 * np.int32(panel[g, c + 2]) + a3 * np.int32(panel[g, c + 3]))


@overload(_reduction_step_4, inline="always", jit_options=INLINE_JIT_OPTIONS)
def _reduction_step_4_overload(tile, q, r0, r1, r2, r3, k, panel, g, weights):
    if weights.instance_class in (Int8Panels, Int8PanelsAMX):
        from ._x86 import dpbusd_4_rows

        def vnni(tile, q, r0, r1, r2, r3, k, panel, g, weights):
            dpbusd_4_rows(tile, q, r0, r1, r2, r3, k, panel, g)
        return vnni

    def portable(tile, q, r0, r1, r2, r3, k, panel, g, weights):
        tile_rows = (r0, r1, r2, r3)
        for slot in range(TILE_ROWS):
            _portable_row_step(tile, slot, q, tile_rows[slot], k, panel, g)
    return portable


@overload(_reduction_step_6, inline="always", jit_options=INLINE_JIT_OPTIONS)
def _reduction_step_6_overload(tile, q, r, k, panel, g, weights):
    if weights.instance_class in (Int8Panels, Int8PanelsAMX):
        from ._x86 import dpbusd_6_rows

        def vnni(tile, q, r, k, panel, g, weights):
            dpbusd_6_rows(tile, q, r, k, panel, g)
        return vnni

    def portable(tile, q, r, k, panel, g, weights):
        for i in range(6):
            _portable_row_step(tile, i, q, r + i, k, panel, g)
    return portable


@overload(_reduction_step_1, inline="always", jit_options=INLINE_JIT_OPTIONS)
def _reduction_step_1_overload(tile, q, r, k, panel, g, weights):
    """Two k groups (g, g + 1) of one row, into tile rows 0 and 1."""
    if weights.instance_class in (Int8Panels, Int8PanelsAMX):
        from ._x86 import dpbusd_1_row

        def vnni(tile, q, r, k, panel, g, weights):
            dpbusd_1_row(tile, q, r, k, panel, g)
        return vnni

    def portable(tile, q, r, k, panel, g, weights):
        _portable_row_step(tile, 0, q, r, k, panel, g)
        _portable_row_step(tile, 1, q, r, k + 4, panel, g + 1)
    return portable


@njit(inline="always", **JIT_OPTIONS)
def _corrected(total, zero, col_sum):
    """``total - zero * col_sum`` as int32: the exact sum of ``(A - z_a) Q``.
    Every term fits int32 (``zero * col_sum`` and the result are at most
    255 * 128 * MAX_INNER), and Numba's own promotion to int64 would halve
    the epilogue's vectors (8 lanes, with 64-bit multiplies and int64 to
    float32 conversions)."""
    return np.int32(total - np.int32(zero * col_sum))


@njit(inline="always", **JIT_OPTIONS)
def _dequantize_row(tile, slot, rows, weights, out, r, j0, n_valid):
    """``out[r, j0 + jj] = fma(float32(sum - zero * colsum), float32(s_a *
    scale), out)``: fbgemm's dequantisation (one rounding), with ``out``
    holding the bias and what is already summed."""
    prefer_vector_width()
    acc = carray(tile, (TALL_TILE_ROWS * WIDTH,))
    scale = rows.scale[r]
    zero = rows.zero[r]
    base = slot * WIDTH
    for jj in range(n_valid):
        j = j0 + jj
        exact = _corrected(acc[base + jj], zero, weights.col_sums[j])
        out[r, j] = fused_multiply_add(np.float32(exact), scale * weights.scales[j], out[r, j])


@njit(inline="always", **JIT_OPTIONS)
def _clear(tile, n):
    acc = carray(tile, (TALL_TILE_ROWS * WIDTH,))
    for i in range(n):
        acc[i] = 0


@njit(inline="always", **JIT_OPTIONS)
def _tile_4_rows(rows, weights, panel, out, r0, r1, r2, r3, j0, n_valid):
    """Rows ``r0 <= r1 <= r2 <= r3`` (the last may repeat, for 2 or 3 rows;
    a repeated row is written once)."""
    prefer_vector_width()
    tile = _tile_buffer(weights.col_sums)
    _clear(tile, 4 * WIDTH)
    tile_rows = (r0, r1, r2, r3)
    for slot in range(TILE_ROWS):
        prefetch_row(out, tile_rows[slot], j0, n_valid)
    q = rows.q
    for g in range(panel.shape[0]):
        _reduction_step_4(tile, q, r0, r1, r2, r3, 4 * g, panel, g, weights)
    for slot in range(TILE_ROWS):  # one call site: see _tiles.tile_schedule
        if writes_row(tile_rows, slot):
            _dequantize_row(tile, slot, rows, weights, out, tile_rows[slot], j0, n_valid)


@njit(inline="always", **JIT_OPTIONS)
def _tile_6_rows(rows, weights, panel, out, r, j0, n_valid):
    prefer_vector_width()
    tile = _tile_buffer(weights.col_sums)
    _clear(tile, 6 * WIDTH)
    for i in range(6):
        prefetch_row(out, r + i, j0, n_valid)
    q = rows.q
    for g in range(panel.shape[0]):
        _reduction_step_6(tile, q, r, 4 * g, panel, g, weights)
    for i in range(6):
        _dequantize_row(tile, i, rows, weights, out, r + i, j0, n_valid)


@njit(inline="always", **JIT_OPTIONS)
def _tile_1_row(rows, weights, panel, out, r, j0, n_valid):
    """One row, two accumulator sets (even and odd k groups) added at the end."""
    prefer_vector_width()
    tile = _tile_buffer(weights.col_sums)
    _clear(tile, 2 * WIDTH)
    prefetch_row(out, r, j0, n_valid)
    q = rows.q
    for g in range(0, panel.shape[0], 2):  # an even count: see int8_panels
        _reduction_step_1(tile, q, r, 4 * g, panel, g, weights)
    acc = carray(tile, (TALL_TILE_ROWS * WIDTH,))
    for jj in range(WIDTH):
        acc[jj] += acc[WIDTH + jj]
    _dequantize_row(tile, 0, rows, weights, out, r, j0, n_valid)


@njit(inline="always", **JIT_OPTIONS)
def _vnni_rows(rows, weights, panel, out, first, n_rows, j0, n_valid, tall):
    """Rows ``[first, n_rows)`` on the register tiles of ``_tiles.tile_schedule``."""
    prefer_vector_width()
    n_tall, n_four, one_left = tile_schedule(n_rows - first, tall)
    for t in range(n_tall):
        _tile_6_rows(rows, weights, panel, out, first + t * TALL_TILE_ROWS, j0, n_valid)
    start = first + n_tall * TALL_TILE_ROWS
    last = n_rows - 1
    for t in range(n_four):
        r0, r1, r2, r3 = four_rows(start, t, last)
        _tile_4_rows(rows, weights, panel, out, r0, r1, r2, r3, j0, n_valid)
    if one_left:
        _tile_1_row(rows, weights, panel, out, last, j0, n_valid)


def _amx_rows(rows, weights, panel, out, n_rows, j0, n_valid):
    """Rows ``[0, 32 * (n_rows // 32))`` on AMX blocks; returns that count."""
    raise NotImplementedError


@overload(_amx_rows, inline="always", jit_options=INLINE_JIT_OPTIONS)
def _amx_rows_overload(rows, weights, panel, out, n_rows, j0, n_valid):
    if weights.instance_class is not Int8PanelsAMX:
        return lambda rows, weights, panel, out, n_rows, j0, n_valid: np.int64(0)

    def impl(rows, weights, panel, out, n_rows, j0, n_valid):
        if n_rows < AMX_MIN_ROWS:
            return np.int64(0)
        return _amx_blocks(rows, weights, panel, out, n_rows, j0, n_valid)
    return impl


@njit(**JIT_OPTIONS)
def _amx_blocks(rows, weights, panel, out, n_rows, j0, n_valid):
    """The AMX blocks of :func:`_amx_rows`, a call of its own: inlined, its
    tile state and 4 KiB of stack made every one-row step of the kernels that
    hold it 0.4 us slower (T2000 B1 H64: 3.2 against 2.4 ms)."""
    n_blocks = n_rows // _amx.BLOCK_ROWS
    sums = carray(_amx.sums_buffer(weights.col_sums), (_amx.BLOCK_ROWS, _amx.BLOCK_COLUMNS))
    _amx.configure()
    for b in range(n_blocks):
        r0 = b * _amx.BLOCK_ROWS
        for c0 in range(0, WIDTH, _amx.BLOCK_COLUMNS):
            _amx.block_product(rows.q, r0, panel, c0, sums)
            _dequantize_block(sums, rows, weights, out, r0, j0, c0, n_valid)
    _amx.release()
    return np.int64(n_blocks * _amx.BLOCK_ROWS)


@njit(inline="always", **JIT_OPTIONS)
def _dequantize_block(sums, rows, weights, out, r0, j0, c0, n_valid):
    """:func:`_dequantize_row` for the rows of one AMX block, its columns
    ``[c0, c0 + 32)`` of the panel (those below ``n_valid``)."""
    prefer_vector_width()
    n_cols = min(sums.shape[1], max(np.int64(n_valid) - c0, 0))
    for i in range(sums.shape[0]):
        r = r0 + i
        scale = rows.scale[r]
        zero = rows.zero[r]
        for jj in range(n_cols):
            j = j0 + np.uint64(c0 + jj)
            exact = _corrected(sums[i, jj], zero, weights.col_sums[j])
            out[r, j] = fused_multiply_add(np.float32(exact), scale * weights.scales[j], out[r, j])


# ----------------------------------------------------------------- AVX2 tiles


@njit(inline="always", **JIT_OPTIONS)
def _dequantize_halves(tile, lanes, slot, rows, weights, out, r, j_first, n_cols):
    """:func:`_dequantize_row` of a ``vpmaddwd`` tile row: slot ``slot`` of
    ``lanes`` int32 holds each column's sum in two halves (lanes ``2c``,
    ``2c + 1``); the same int32 sum, so the same bits."""
    prefer_vector_width()
    acc = carray(tile, (TALL_TILE_ROWS * WIDTH,))
    scale = rows.scale[r]
    zero = rows.zero[r]
    base = slot * lanes
    for jj in range(n_cols):
        j = j_first + jj
        exact = _corrected(acc[base + 2 * jj] + acc[base + 2 * jj + 1], zero,
                           weights.col_sums[j])
        out[r, j] = fused_multiply_add(np.float32(exact), scale * weights.scales[j], out[r, j])


#: Columns of one pass of the 4-row AVX2 tile (two vectors of 4 columns x 2 halves).
_AVX2_PASS_COLUMNS = 8
#: Columns of one pass of the 1-row AVX2 tile (eight vectors).
_AVX2_ROW_COLUMNS = 32


@njit(inline="always", **JIT_OPTIONS)
def _avx2_tile_4_rows(rows, weights, panel, out, r0, r1, r2, r3, j0, n_valid):
    """Rows ``r0 <= r1 <= r2 <= r3`` (the last may repeat) in passes of 8
    columns: 4 x 2 accumulators, so that 4 rows share each loaded weight
    vector within AVX2's 16 registers (6 rows or 16 columns spill: 47-51
    against 70 GMAC/s)."""
    prefer_vector_width()
    tile = _tile_buffer(weights.col_sums)
    q = rows.q
    lanes = 2 * _AVX2_PASS_COLUMNS
    tile_rows = (r0, r1, r2, r3)
    for slot in range(TILE_ROWS):
        prefetch_row(out, tile_rows[slot], j0, n_valid)
    for c0 in range(0, n_valid, _AVX2_PASS_COLUMNS):
        _clear(tile, 4 * lanes)
        for g in range(panel.shape[0]):
            pmaddwd_4_rows(tile, q, r0, r1, r2, r3, 4 * g, panel, g, c0)
        n_cols = min(_AVX2_PASS_COLUMNS, n_valid - c0)
        for slot in range(TILE_ROWS):
            if writes_row(tile_rows, slot):
                _dequantize_halves(tile, lanes, slot, rows, weights, out, tile_rows[slot],
                                   j0 + c0, n_cols)


@njit(inline="always", **JIT_OPTIONS)
def _avx2_tile_1_row(rows, weights, panel, out, r, j0, n_valid):
    """One row in passes of 32 columns (8 accumulators)."""
    prefer_vector_width()
    tile = _tile_buffer(weights.col_sums)
    q = rows.q
    lanes = 2 * _AVX2_ROW_COLUMNS
    prefetch_row(out, r, j0, n_valid)
    for c0 in range(0, n_valid, _AVX2_ROW_COLUMNS):
        _clear(tile, lanes)
        for g in range(panel.shape[0]):
            pmaddwd_1_row(tile, q, r, 4 * g, panel, g, c0)
        n_cols = min(_AVX2_ROW_COLUMNS, n_valid - c0)
        _dequantize_halves(tile, lanes, 0, rows, weights, out, r, j0 + c0, n_cols)


@njit(inline="always", **JIT_OPTIONS)
def _avx2_rows(rows, weights, panel, out, first, n_rows, j0, n_valid):
    """Rows ``[first, n_rows)`` on the AVX2 tiles: 4 rows at a time (2 or 3
    left: a 4-row tile repeating its last row), 1 row alone (``tile_schedule``
    without tall tiles)."""
    _, n_four, one_left = tile_schedule(n_rows - first, False)
    last = n_rows - 1
    for t in range(n_four):
        r0, r1, r2, r3 = four_rows(first, t, last)
        _avx2_tile_4_rows(rows, weights, panel, out, r0, r1, r2, r3, j0, n_valid)
    if one_left:
        _avx2_tile_1_row(rows, weights, panel, out, last, j0, n_valid)


def _register_rows(rows, weights, panel, out, first, n_rows, j0, n_valid, tall):
    """Rows ``[first, n_rows)`` on the register tiles of the weights' path."""
    raise NotImplementedError


@overload(_register_rows, inline="always", jit_options=INLINE_JIT_OPTIONS)
def _register_rows_overload(rows, weights, panel, out, first, n_rows, j0, n_valid, tall):
    if weights.instance_class is Int8PanelsAVX2:
        def avx2(rows, weights, panel, out, first, n_rows, j0, n_valid, tall):
            _avx2_rows(rows, weights, panel, out, first, n_rows, j0, n_valid)
        return avx2

    def vnni_or_portable(rows, weights, panel, out, first, n_rows, j0, n_valid, tall):
        _vnni_rows(rows, weights, panel, out, first, n_rows, j0, n_valid, tall)
    return vnni_or_portable


@njit(inline="always", **JIT_OPTIONS)
def panel_accumulate(rows, weights, panel, out, n_rows, j0, n_valid, tall):
    """``out[:n_rows, j0:j0 + n_valid] += dequantised rows @ panel``: AMX
    blocks of 32 rows where the weights are :class:`Int8PanelsAMX`, the
    register tiles for the rest (inlined, see ``float.panel_accumulate``)."""
    first = _amx_rows(rows, weights, panel, out, n_rows, j0, n_valid)
    _register_rows(rows, weights, panel, out, first, n_rows, j0, n_valid, tall)


# ----------------------------------------------------------------- the format interface


def _is_int8(weights) -> bool:
    return isinstance(weights, types.BaseNamedTuple) and weights.instance_class in _INT8_CLASSES


@overload(_dispatch.new_scratch, inline="always", jit_options=INLINE_JIT_OPTIONS)
def _new_scratch(weights, rows, inner, fixed_range):
    if _is_int8(weights):
        # AMX loads whole tiles: 32-row blocks (rows past ``rows`` are computed
        # and dropped) of 64 bytes of K; the register tiles read 8 values at a time.
        row_multiple, inner_multiple = (32, 64) if weights.instance_class is Int8PanelsAMX \
            else (1, 8)
        dtype = weights.instance_class.ACTIVATION_DTYPE

        def impl(weights, rows, inner, fixed_range):
            padded = (inner + inner_multiple - 1) // inner_multiple * inner_multiple
            rows_padded = (rows + row_multiple - 1) // row_multiple * row_multiple
            return QuantizedRows(np.empty((rows_padded, padded), dtype),
                                 np.empty(rows_padded, np.float32),
                                 np.empty(rows_padded, np.int32), fixed_range)
        return impl


@overload(_dispatch.prepare_rows, inline="always", jit_options=INLINE_JIT_OPTIONS)
def _prepare_rows(a, n_rows, weights, scratch):
    if _is_int8(weights):
        def impl(a, n_rows, weights, scratch):
            quantize_rows(a, n_rows, scratch, weights.qmax, weights.per_tensor)
            return scratch
        return impl


@overload(_dispatch.panel_product, inline="always", jit_options=INLINE_JIT_OPTIONS)
def _panel_product(operand, weights, p, out, n_rows, j0, n_valid, tall):
    if _is_int8(weights):
        def impl(operand, weights, p, out, n_rows, j0, n_valid, tall):
            panel_accumulate(operand, weights, weights.panels[p], out, n_rows, j0, n_valid, tall)
        return impl


@overload(_dispatch.panel_count, inline="always", jit_options=INLINE_JIT_OPTIONS)
def _panel_count(weights):
    if _is_int8(weights):
        return lambda weights: weights.panels.shape[0]


@overload(_dispatch.direction, inline="always", jit_options=INLINE_JIT_OPTIONS)
def _direction(weights, d):
    if _is_int8(weights):
        cls = weights.instance_class

        def impl(weights, d):
            return cls(weights.panels[d], weights.scales[d], weights.col_sums[d], weights.qmax,
                       weights.per_tensor)
        return impl


# ----------------------------------------------------------------- layout


def int8_panels(q_t: np.ndarray, scales: np.ndarray, blocks: int, qmax: int = 255,
                per_tensor: bool = False, kernels: Optional[str] = None) -> Int8Panels:
    """The int8 weights of ``Q.T`` (..., K, N) int8 with ``scales`` (..., N).

    ``blocks`` equal column blocks (the gates) each get panels of their own;
    K is zero-padded to a multiple of 8 (an even number of 4-row groups, which
    the one-row tile takes two at a time), of 64 for AMX (whole tiles).
    ``kernels`` is a key of KERNELS (None: :func:`default_kernels`); its
    class is returned.
    """
    _cpu.check_kernels(kernels, KERNELS, _NEEDS)
    cls = KERNELS[kernels or default_kernels()]
    from .._weights import column_panels

    *lead, n_inner, n_cols = q_t.shape
    if n_inner > MAX_INNER:
        raise ValueError(f"int8 weights support at most {MAX_INNER} inputs per product (int32 "
                         f"sums stay exact), got {n_inner}; keep this model in float32")
    group_multiple = 16 if cls is Int8PanelsAMX else 2
    n_groups = group_multiple * -(-n_inner // (4 * group_multiple))
    padded = np.zeros((*lead, 4 * n_groups, n_cols), np.int8)
    padded[..., :n_inner, :] = q_t
    # (..., groups, 4, N) -> (..., groups, N, 4): each column's 4 weights of a group together.
    quads = np.swapaxes(padded.reshape(*lead, n_groups, 4, n_cols), -1, -2)
    panels = column_panels(np.ascontiguousarray(quads).reshape(*lead, n_groups, 4 * n_cols),
                           width=4 * WIDTH, blocks=blocks)
    col_sums = q_t.astype(np.int32).sum(axis=-2, dtype=np.int32)
    return cls(panels, np.ascontiguousarray(scales, np.float32), np.ascontiguousarray(col_sums),
               int(qmax), bool(per_tensor))


def weight_from_panels(weights: Int8Panels, direction: int, n_inner: int, n_cols: int,
                       blocks: int) -> np.ndarray:
    """Torch's (N, K) int8 weight of ``direction`` back from its panels."""
    from .._weights import weight_from_column_panels

    return weight_from_column_panels(weights.panels[direction], n_inner, n_cols, blocks, 4)
