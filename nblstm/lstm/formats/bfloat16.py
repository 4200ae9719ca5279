"""bfloat16 weights: rounding to bf16, pair-interleaved panels, AMX and vdpbf16ps tiles.

The format
    A weight matrix ``W`` (N, K) (torch's layout) is stored as bfloat16: the
    top 16 bits of a float32, kept as ``uint16`` bit patterns (``bits << 16``
    viewed as float32 is the weight). nblstm rounds float32 to it to nearest
    even (:func:`round_to_bfloat16`; a NaN stays a quiet NaN of the same sign).
    The activations entering each product are rounded the same way when they
    enter it; products accumulate in float32 as ``vdpbf16ps`` does (below);
    biases, gates, ``c`` and ``h`` stay float32.

Panels
    ``W.T`` (K, N) is cut into column panels of ``width`` columns
    (``tile_columns(float32)``: 64 with AVX-512), each gate on panels of its
    own (as the float and int8 panels). A panel is (G, 2 * width) uint16,
    G = ceil(K / 2) rounded up to even: row ``g`` holds, for each column, its
    weights of rows ``2g`` and ``2g + 1`` -- the operand layout of
    ``vdpbf16ps``, whose 32-bit lanes each hold a pair of bf16 (the even row
    in the low half), and of AMX's ``tdpbf16ps`` weight tiles (16 pair rows
    x 16 columns). The tiles read a panel as (G, width) uint32 pairs. K is
    zero-padded (to whole AMX tiles, 32, for the AMX path); the activation
    rows are padded with zeros too (a 0 weight times a NaN or inf would not
    add nothing).

Numerics: what vdpbf16ps computes
    Measured on this CPU (Sapphire Rapids class, ``avx512bf16``) against the
    NumPy twin in ``tests/naive_bfloat16.py``, and as Intel documents it: for
    each float32 lane, with activations ``(a0, a1)`` and weights ``(w0, w1)``
    of a pair, ::

        acc = flush(fma(a1, w1, acc))     # the odd (high) element first
        acc = flush(fma(a0, w0, acc))

    each a fused multiply-add (one rounding to nearest even), with denormal
    operands read as zero (DAZ) and every result that is tiny after rounding
    to 24 bits with an unbounded exponent (|r| < 2**-126) flushed to a zero of
    its sign (FTZ); MXCSR is neither read nor written. Neither the even-first
    order, nor the two products added first, nor one rounding of the three
    terms matches (5-10% of random lanes differ). A NaN result is a quiet NaN
    whose payload may differ from a float32 FMA's (not part of the contract).
    A tile starts its sums from 0 and adds them to ``out`` at the end (one
    float32 addition), so ``acc`` never enters a step as a denormal.

AMX (:class:`Bf16PanelsAMX`, where the CPU has AMX-BF16 and Linux grants
the tile state)
    Every product, whatever its rows, runs on ``tdpbf16ps`` blocks of 32
    rows x 32 columns (tail blocks configured to the rows and columns left;
    :func:`amx_panels`), accumulating onto ``out`` itself. Its sums are its
    own: no order of float32 FMAs reproduces them (measured; 7-63% of the
    results differ from vdpbf16ps's in the last bits, all within float32
    rounding of the exact sum), so AMX models differ from the other paths
    in the last bits. Each row's result depends only on that row, so on
    this path too any batch, cut, thread count or stream chunking gives
    bitwise the same results. ``tdpbf16ps`` reads denormal operands as zero
    and flushes denormal results, as vdpbf16ps does. Measured here: the
    b64_h512 benchmark case (2 threads) 21.9 ms against 152 ms on the
    vdpbf16ps tiles; one row (H=128, 1 thread) 2.30 against 3.88 us a step.

Tiles
    4 (or 6, or 1) rows x ``width`` columns of float32 sums stay in registers
    while the reduction runs over the pairs (a single row on vdpbf16ps takes
    two panels at a time, for 8 independent accumulators); every row,
    whatever tile it is in, sums its pairs in the same order, so how the rows
    are cut (plans, threads) changes no bit. ``vdpbf16ps`` where the CPU has
    AVX512-BF16 (:class:`Bf16Panels`); elsewhere (:class:`Bf16PanelsPortable`) float32
    FMAs in the same order on the widened values (``bits << 16``). The FMAs
    equal ``vdpbf16ps`` bit for bit (NaN payloads aside) whenever no operand
    or partial sum can be denormal: when the biased exponents of every nonzero
    activation and weight of a product add up to at least
    :data:`FAST_MIN_EXPONENTS` (|a| |w| >= about 2**-110), every product and
    so every partial sum is a multiple of 2**-124, never tiny. The weights
    record their smallest exponent when built, the rows theirs when rounded;
    a product below the bound (values under about 2**-56, or denormals) runs
    an exact emulation of DAZ and FTZ instead (much slower, never seen with
    real activations). So both paths give bitwise the same results.

    Speed, measured here: ``vdpbf16ps`` retires about one instruction every two
    cycles (61 GMAC/s in a loop of independent ones) against two float32 FMAs
    a cycle (119 GMAC/s), so the portable tiles (2 FMAs a pair plus widening)
    run compute-bound products about 1.2x faster than the vdpbf16ps ones on
    this CPU (69 against 58 GMAC/s for 64 x 512 x 2048); both halve the bytes
    of weights streamed against float32.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import numpy as np
from llvmlite import ir
from numba import carray, njit, types
from numba.extending import intrinsic, overload

from ..._codegen import fused_multiply_add, prefer_vector_width
from ..._config import INLINE_JIT_OPTIONS, JIT_OPTIONS
from .. import _cpu
from . import _amx, _dispatch
from ._tiles import TALL_TILE_ROWS, TILE_ROWS, _tile_buffer, four_rows, prefetch_row, \
    tile_columns, tile_schedule, writes_row
from ._x86 import bf16_fma_4_rows, dpbf16ps_1_row_2_panels

#: Columns of one bfloat16 panel (and tile): the float32 tile's, so every
#: format splits the hidden units on the same panel boundaries.
WIDTH = tile_columns(np.float32)
#: Smallest sum of the biased exponents of an activation and a weight (both
#: nonzero) for which the portable FMA tiles are exact without emulating
#: DAZ/FTZ: 2**(Ea - 134) * 2**(Ew - 134) >= 2**-124 (see the module doc).
FAST_MIN_EXPONENTS = 144
#: "Smallest exponent" of values that are all zero, and of values holding a
#: denormal (which always takes the exact tiles).
NO_NONZERO = 1000
HAS_DENORMAL = -1000

_HIGH = np.uint32(0xFFFF0000)
_FLT_MIN = np.float32(2.0 ** -126)
_SCALE_IN = np.float32(2.0 ** 32)
_SCALE_ACC = np.float32(2.0 ** 64)
_SCALED_FLT_MIN = np.float32(2.0 ** -62)


class Bf16Panels(NamedTuple):
    """One layer's (or one direction's) bfloat16 weights, for the vdpbf16ps tiles.

    Attributes
    ----------
    panels : (..., n_panels, G, 2 * WIDTH) uint16 -- see the module doc
    min_exponent : int -- the smallest biased exponent of a nonzero weight
        (HAS_DENORMAL with a denormal, NO_NONZERO if all are zero)
    """

    panels: np.ndarray
    min_exponent: int

    #: A one-row product runs two panels at a time (see _dispatch.pairs_panels).
    PAIR_TILE = True


class Bf16PanelsPortable(Bf16Panels):
    """:class:`Bf16Panels` for the portable (float32 FMA) tiles; same fields."""

    PAIR_TILE = False


class Bf16PanelsAVX2(Bf16Panels):
    """:class:`Bf16Panels` for the portable tiles' FMAs as explicit AVX2
    steps (``_x86.bf16_fma_4_rows``: 4 rows x 16 columns a pass, within
    AVX2's 16 registers); same fields, the portable tiles' bits."""

    PAIR_TILE = False


class Bf16PanelsAMX(Bf16Panels):
    """:class:`Bf16Panels` whose products, whatever their rows, run on AMX
    tiles (``tdpbf16ps``, see the module doc); G is a multiple of
    ``_amx.GROUPS_PER_TILE`` (whole tiles of K)."""

    WHOLE_PRODUCT = True  # all panels in one call: see _dispatch.whole_product
    ROW_BLOCK = 32  # whole AMX blocks: see _dispatch.row_block
    PAIR_TILE = False


class Bf16Rows(NamedTuple):
    """Scratch: activation rows rounded to bfloat16 for one product.

    Attributes
    ----------
    q : (rows, 4 * ceil(K / 4)) uint16
    min_exponent : (1,) int64 -- as :attr:`Bf16Panels.min_exponent`, over
        the rows of the product
    """

    q: np.ndarray
    min_exponent: np.ndarray


_BF16_CLASSES = (Bf16Panels, Bf16PanelsPortable, Bf16PanelsAMX, Bf16PanelsAVX2)
#: The weights class of each kernel path.
KERNELS = {"amx": Bf16PanelsAMX, "avx512bf16": Bf16Panels, "avx2": Bf16PanelsAVX2,
           "portable": Bf16PanelsPortable}
#: What each path but the portable one needs: (available, its name in errors).
_NEEDS = {"amx": (lambda: _cpu.use_amx_bf16(), "AMX bfloat16 tiles"),  # also asks Linux for the tile state
          "avx512bf16": (lambda: _cpu.HAS_AVX512_BF16, "AVX512-BF16"),
          "avx2": (lambda: _cpu.HAS_AVX2 and _cpu.HAS_FMA, "AVX2 and FMA")}


def default_kernels() -> str:
    """The best kernel path this CPU allows (see ``_cpu``)."""
    if _cpu.use_amx_bf16():
        return "amx"
    if _cpu.USE_AVX512_BF16:
        return "avx512bf16"
    return "avx2" if _cpu.USE_AVX2 and _cpu.HAS_FMA else "portable"


def kernels_of(weights: Bf16Panels) -> str:
    """The kernel path (a key of KERNELS) of these weights."""
    return next(name for name, cls in KERNELS.items() if type(weights) is cls)


# ----------------------------------------------------------------- rounding (NumPy side)


def round_to_bfloat16(x: Any) -> np.ndarray:
    """uint16 bit patterns of ``x`` (cast to float32) rounded to bfloat16,
    nearest even: ties to the even pattern, overflow to inf, denormals kept,
    a NaN to a quiet NaN of the same sign (``bits >> 16 | 0x40``)."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded = (u + (np.uint32(0x7FFF) + ((u >> 16) & 1))) >> 16
    nan = (u & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)
    return np.where(nan, (u >> 16) | np.uint32(0x40), rounded).astype(np.uint16)


def widen(bits: np.ndarray) -> np.ndarray:
    """float32 values of bfloat16 bit patterns (exact)."""
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def lowest_exponent(bits: np.ndarray) -> int:
    """The smallest biased exponent of the nonzero bfloat16 ``bits``:
    HAS_DENORMAL if one is denormal, NO_NONZERO if all are zero."""
    magnitude = np.asarray(bits, dtype=np.uint16) & np.uint16(0x7FFF)
    fields = magnitude[magnitude != 0] >> 7
    if fields.size == 0:
        return NO_NONZERO
    lowest = int(fields.min())
    return HAS_DENORMAL if lowest == 0 else lowest


def is_torch_bfloat16(value: Any) -> bool:
    """Whether ``value`` is a torch tensor of dtype bfloat16 (torch not imported)."""
    return str(getattr(value, "dtype", "")) == "torch.bfloat16" and hasattr(value, "view")


def torch_bfloat16_bits(tensor: Any) -> np.ndarray:
    """The uint16 bit patterns of a bfloat16 torch tensor (NumPy has no bfloat16)."""
    import torch

    return tensor.detach().cpu().contiguous().view(torch.int16).numpy().view(np.uint16).copy()


# ----------------------------------------------------------------- scalar helpers (jitted)


@intrinsic
def _as_float32(typingctx, bits):
    """The float32 whose bit pattern is the low 32 bits of integer ``bits``."""
    if not isinstance(bits, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        value = args[0]
        if bits.bitwidth > 32:
            value = builder.trunc(value, ir.IntType(32))
        elif bits.bitwidth < 32:
            value = builder.zext(value, ir.IntType(32))
        return builder.bitcast(value, ir.FloatType())

    return types.float32(bits), codegen


@intrinsic
def _float32_bits(typingctx, value):
    """The bit pattern of float32 ``value`` as a uint32."""
    if value != types.float32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return types.uint32(value), codegen


@njit(**JIT_OPTIONS)
def _round_row(a, r, q, n_pad):
    """``q[r, :K] = round_to_bfloat16(a[r])``, ``q[r, K:n_pad] = 0``; returns
    the row's smallest exponent (as :func:`lowest_exponent`)."""
    prefer_vector_width()
    lowest = np.int64(NO_NONZERO)
    n_inner = a.shape[1]
    for k in range(n_inner):
        u = np.int64(_float32_bits(a[r, np.uint64(k)]))
        if (u & 0x7FFFFFFF) > 0x7F800000:
            b = (u >> 16) | 0x40
        else:
            b = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
        q[r, np.uint64(k)] = np.uint16(b & 0xFFFF)
        field = (b >> 7) & 0xFF
        if (b & 0x7FFF) == 0:
            field = NO_NONZERO
        elif field == 0:
            field = HAS_DENORMAL
        lowest = min(lowest, field)
    for k in range(n_inner, n_pad):
        q[r, np.uint64(k)] = 0
    return lowest


@njit(**JIT_OPTIONS)
def round_rows(a, n_rows, rows, n_pad):
    """Round rows ``[0, n_rows)`` of ``a`` (n, K) float32 into ``rows``
    (:class:`Bf16Rows`), zero-padded to ``n_pad`` columns."""
    lowest = np.int64(NO_NONZERO)
    for r in range(n_rows):
        lowest = min(lowest, _round_row(a, r, rows.q, n_pad))
    rows.min_exponent[0] = lowest


@njit(**JIT_OPTIONS)
def _daz(bits):
    """The float32 of the low 32 bits of ``bits``, a denormal read as zero."""
    b = np.int64(bits) & 0xFFFFFFFF
    if (b & 0x7F800000) == 0:
        b &= 0x80000000
    return _as_float32(b)


@njit(**JIT_OPTIONS)
def _signed_zero(x):
    return _as_float32(np.int64(_float32_bits(x)) & 0x80000000)


@njit(**JIT_OPTIONS)
def _exact_step(acc, a, w):
    """One ``vdpbf16ps`` half step ``flush(fma(a, w, acc))`` for DAZ'd ``a``,
    ``w`` and a normal or zero ``acc``. The float32 FMA rounds a result next
    to 2**-126 with denormal precision; where it gives exactly 2**-126, the
    product is recomputed scaled by 2**64 (exact: both factors are then small,
    see the module doc) to round it with 24 bits as the instruction does."""
    r = fused_multiply_add(a, w, acc)
    magnitude = abs(r)
    if magnitude < _FLT_MIN:
        return _signed_zero(r)
    if magnitude == _FLT_MIN:
        s = fused_multiply_add(a * _SCALE_IN, w * _SCALE_IN, acc * _SCALE_ACC)
        if abs(s) < _SCALED_FLT_MIN:
            return _signed_zero(s)
    return r


# ----------------------------------------------------------------- tiles


def _reduction_step_4(tile, pairs, r0, r1, r2, r3, g, panel, weights):
    raise NotImplementedError


def _reduction_step_6(tile, pairs, r, g, panel, weights):
    raise NotImplementedError


def _reduction_step_1(tile, pairs, r, g, panel, weights):
    raise NotImplementedError


def _needs_exact(rows, weights):
    raise NotImplementedError


@njit(inline="always", **JIT_OPTIONS)
def _pair_fma(acc, i, pair, w0, w1):
    """``acc[i]`` += a bf16 pair (uint32) . weights ``(w0, w1)`` (float32), as
    vdpbf16ps orders it: the odd (high) element first."""
    odd = fused_multiply_add(_as_float32(pair & _HIGH), w1, acc[i])
    acc[i] = fused_multiply_add(_as_float32(pair << 16), w0, odd)


@njit(inline="always", **JIT_OPTIONS)
def _portable_step_4(tile, pairs, r0, r1, r2, r3, g, panel):
    """Tile rows 0..3 += pair ``g`` of rows ``r0..r3`` . ``panel[g]``, each
    loaded (and widened) weight feeding every row."""
    acc = carray(tile, (TALL_TILE_ROWS * WIDTH,))
    p0, p1, p2, p3 = pairs[r0, g], pairs[r1, g], pairs[r2, g], pairs[r3, g]
    for jj in range(WIDTH):
        w = panel[g, np.uint64(jj)]
        w0 = _as_float32(w << 16)
        w1 = _as_float32(w & _HIGH)
        _pair_fma(acc, jj, p0, w0, w1)
        _pair_fma(acc, WIDTH + jj, p1, w0, w1)
        _pair_fma(acc, 2 * WIDTH + jj, p2, w0, w1)
        _pair_fma(acc, 3 * WIDTH + jj, p3, w0, w1)


@njit(inline="always", **JIT_OPTIONS)
def _portable_step_6(tile, pairs, r, g, panel):
    acc = carray(tile, (TALL_TILE_ROWS * WIDTH,))
    p0, p1, p2 = pairs[r, g], pairs[r + 1, g], pairs[r + 2, g]
    p3, p4, p5 = pairs[r + 3, g], pairs[r + 4, g], pairs[r + 5, g]
    for jj in range(WIDTH):
        w = panel[g, np.uint64(jj)]
        w0 = _as_float32(w << 16)
        w1 = _as_float32(w & _HIGH)
        _pair_fma(acc, jj, p0, w0, w1)
        _pair_fma(acc, WIDTH + jj, p1, w0, w1)
        _pair_fma(acc, 2 * WIDTH + jj, p2, w0, w1)
        _pair_fma(acc, 3 * WIDTH + jj, p3, w0, w1)
        _pair_fma(acc, 4 * WIDTH + jj, p4, w0, w1)
        _pair_fma(acc, 5 * WIDTH + jj, p5, w0, w1)


@njit(inline="always", **JIT_OPTIONS)
def _portable_step_1(tile, pairs, r, g, panel):
    acc = carray(tile, (TALL_TILE_ROWS * WIDTH,))
    p0 = pairs[r, g]
    for jj in range(WIDTH):
        w = panel[g, np.uint64(jj)]
        _pair_fma(acc, jj, p0, _as_float32(w << 16), _as_float32(w & _HIGH))


@njit(**JIT_OPTIONS)
def _exact_row(pairs, r, panel, out, j0, n_valid):
    """``out[r, j0:j0 + n_valid] += row r . panel`` with vdpbf16ps's DAZ and
    FTZ emulated, one column at a time, straight into ``out`` (the rare path:
    operands near the float32 denormal range)."""
    for jj in range(n_valid):
        acc = np.float32(0)
        for g in range(panel.shape[0]):
            pair = pairs[r, g]
            w = panel[g, jj]
            acc = _exact_step(acc, _daz(pair & _HIGH), _daz(w & _HIGH))
            acc = _exact_step(acc, _daz(pair << 16), _daz(w << 16))
        out[r, j0 + jj] += acc


@overload(_needs_exact, inline="always", jit_options=INLINE_JIT_OPTIONS)
def _needs_exact_overload(rows, weights):
    if weights.instance_class in (Bf16Panels, Bf16PanelsAMX):
        return lambda rows, weights: False  # the instruction itself: always exact

    def portable(rows, weights):
        return weights.min_exponent + rows.min_exponent[0] < FAST_MIN_EXPONENTS
    return portable


@overload(_reduction_step_4, inline="always", jit_options=INLINE_JIT_OPTIONS)
def _reduction_step_4_overload(tile, pairs, r0, r1, r2, r3, g, panel, weights):
    if weights.instance_class is Bf16Panels:
        from ._x86 import dpbf16ps_4_rows

        def avx512(tile, pairs, r0, r1, r2, r3, g, panel, weights):
            dpbf16ps_4_rows(tile, pairs, r0, r1, r2, r3, panel, g)
        return avx512

    def portable(tile, pairs, r0, r1, r2, r3, g, panel, weights):
        _portable_step_4(tile, pairs, r0, r1, r2, r3, g, panel)
    return portable


@overload(_reduction_step_6, inline="always", jit_options=INLINE_JIT_OPTIONS)
def _reduction_step_6_overload(tile, pairs, r, g, panel, weights):
    if weights.instance_class is Bf16Panels:
        from ._x86 import dpbf16ps_6_rows

        def avx512(tile, pairs, r, g, panel, weights):
            dpbf16ps_6_rows(tile, pairs, r, panel, g)
        return avx512

    def portable(tile, pairs, r, g, panel, weights):
        _portable_step_6(tile, pairs, r, g, panel)
    return portable


@overload(_reduction_step_1, inline="always", jit_options=INLINE_JIT_OPTIONS)
def _reduction_step_1_overload(tile, pairs, r, g, panel, weights):
    if weights.instance_class is Bf16Panels:
        from ._x86 import dpbf16ps_1_row

        def avx512(tile, pairs, r, g, panel, weights):
            dpbf16ps_1_row(tile, pairs, r, panel, g)
        return avx512

    def portable(tile, pairs, r, g, panel, weights):
        _portable_step_1(tile, pairs, r, g, panel)
    return portable


@njit(inline="always", **JIT_OPTIONS)
def _clear(tile, n):
    acc = carray(tile, (TALL_TILE_ROWS * WIDTH,))
    for i in range(n):
        acc[i] = 0


@njit(inline="always", **JIT_OPTIONS)
def _add_row(tile, lanes, slot, out, r, j0, n_valid):
    """``out[r, j0:j0 + n_valid] += tile row slot`` (one float32 addition),
    the tile's rows ``lanes`` floats apart (WIDTH; an AVX2 pass's columns)."""
    prefer_vector_width()
    acc = carray(tile, (TALL_TILE_ROWS * WIDTH,))
    base = slot * lanes
    for jj in range(n_valid):
        out[r, j0 + jj] += acc[base + jj]


@njit(inline="always", **JIT_OPTIONS)
def _tile_4_rows(pairs, exact, weights, panel, out, r0, r1, r2, r3, j0, n_valid):
    """Rows ``r0 <= r1 <= r2 <= r3`` (the last may repeat, for 2 or 3 rows;
    a repeated row is written once)."""
    prefer_vector_width()
    tile_rows = (r0, r1, r2, r3)
    if exact:
        for slot in range(TILE_ROWS):  # one call site: see _tiles.tile_schedule
            if writes_row(tile_rows, slot):
                _exact_row(pairs, tile_rows[slot], panel, out, j0, n_valid)
    else:
        tile = _tile_buffer(out)
        _clear(tile, 4 * WIDTH)
        for slot in range(TILE_ROWS):
            prefetch_row(out, tile_rows[slot], j0, n_valid)
        for g in range(panel.shape[0]):
            _reduction_step_4(tile, pairs, r0, r1, r2, r3, g, panel, weights)
        for slot in range(TILE_ROWS):
            if writes_row(tile_rows, slot):
                _add_row(tile, WIDTH, slot, out, tile_rows[slot], j0, n_valid)


@njit(inline="always", **JIT_OPTIONS)
def _tile_6_rows(pairs, exact, weights, panel, out, r, j0, n_valid):
    prefer_vector_width()
    if exact:
        for i in range(6):
            _exact_row(pairs, r + i, panel, out, j0, n_valid)
    else:
        tile = _tile_buffer(out)
        _clear(tile, 6 * WIDTH)
        for slot in range(6):
            prefetch_row(out, r + slot, j0, n_valid)
        for g in range(panel.shape[0]):
            _reduction_step_6(tile, pairs, r, g, panel, weights)
        for slot in range(6):
            _add_row(tile, WIDTH, slot, out, r + slot, j0, n_valid)


@njit(inline="always", **JIT_OPTIONS)
def _tile_1_row(pairs, exact, weights, panel, out, r, j0, n_valid):
    """One row, one accumulator per column: the same sums in the same order
    as a row of the taller tiles (a second accumulator set, as the float and
    int8 one-row tiles have, would round differently)."""
    prefer_vector_width()
    if exact:
        _exact_row(pairs, r, panel, out, j0, n_valid)
    else:
        tile = _tile_buffer(out)
        _clear(tile, WIDTH)
        prefetch_row(out, r, j0, n_valid)
        for g in range(panel.shape[0]):
            _reduction_step_1(tile, pairs, r, g, panel, weights)
        _add_row(tile, WIDTH, 0, out, r, j0, n_valid)


@njit(inline="always", **JIT_OPTIONS)
def _tile_1_row_2_panels(pairs, panel0, panel1, out, r, j0, n0, j1, n1):
    """Row ``r`` through two panels at once (vdpbf16ps only, never exact):
    :func:`_tile_1_row`'s sums for each panel, so the same bits, with 8
    accumulator vectors in flight instead of 4."""
    prefer_vector_width()
    tile = _tile_buffer(out)
    _clear(tile, 2 * WIDTH)
    prefetch_row(out, r, j0, n0)
    prefetch_row(out, r, j1, n1)
    for g in range(panel0.shape[0]):
        dpbf16ps_1_row_2_panels(tile, pairs, r, panel0, panel1, g)
    _add_row(tile, WIDTH, 0, out, r, j0, n0)
    _add_row(tile, WIDTH, 1, out, r, j1, n1)


#: Columns of one pass of the AVX2 4-row tile (two float32 vectors).
_AVX2_PASS_COLUMNS = 16


@njit(inline="always", **JIT_OPTIONS)
def _avx2_tile_4_rows(pairs, panel, out, r0, r1, r2, r3, j0, n_valid):
    """:func:`_tile_4_rows` (not exact) in passes of 16 columns, each step
    one ``_x86.bf16_fma_4_rows``: the same FMAs in the same order."""
    prefer_vector_width()
    tile = _tile_buffer(out)
    lanes = _AVX2_PASS_COLUMNS
    tile_rows = (r0, r1, r2, r3)
    for slot in range(TILE_ROWS):
        prefetch_row(out, tile_rows[slot], j0, n_valid)
    for c0 in range(0, n_valid, lanes):
        _clear(tile, 4 * lanes)
        for g in range(panel.shape[0]):
            bf16_fma_4_rows(tile, pairs, r0, r1, r2, r3, g, panel, c0)
        jc = j0 + c0
        n_cols = min(lanes, n_valid - c0)
        for slot in range(TILE_ROWS):
            if writes_row(tile_rows, slot):
                _add_row(tile, lanes, slot, out, tile_rows[slot], jc, n_cols)


@njit(inline="always", **JIT_OPTIONS)
def _avx2_rows(pairs, exact, weights, panel, out, n_rows, j0, n_valid):
    """Every row on the AVX2 tiles: 4 at a time (2 or 3 left: the last
    repeated), 1 alone on the portable one-row tile; the exact emulation
    where the product needs it."""
    if exact:
        for r in range(n_rows):
            _exact_row(pairs, r, panel, out, j0, n_valid)
        return
    _, n_four, one_left = tile_schedule(n_rows, False)
    last = n_rows - 1
    for f in range(n_four):
        r0, r1, r2, r3 = four_rows(0, f, last)
        _avx2_tile_4_rows(pairs, panel, out, r0, r1, r2, r3, j0, n_valid)
    if one_left:
        _tile_1_row(pairs, False, weights, panel, out, last, j0, n_valid)


@njit(inline="always", **JIT_OPTIONS)
def _scheduled_rows(pairs, exact, weights, panel, out, n_rows, j0, n_valid, tall):
    """Every row on the register tiles of ``_tiles.tile_schedule``."""
    n_tall, n_four, one_left = tile_schedule(n_rows, tall)
    for t in range(n_tall):
        _tile_6_rows(pairs, exact, weights, panel, out, t * TALL_TILE_ROWS, j0, n_valid)
    start = n_tall * TALL_TILE_ROWS
    last = n_rows - 1
    for f in range(n_four):
        r0, r1, r2, r3 = four_rows(start, f, last)
        _tile_4_rows(pairs, exact, weights, panel, out, r0, r1, r2, r3, j0, n_valid)
    if one_left:
        _tile_1_row(pairs, exact, weights, panel, out, last, j0, n_valid)


def _register_rows(pairs, exact, weights, panel, out, n_rows, j0, n_valid, tall):
    """The rows of a product on the tiles of the weights' path."""
    raise NotImplementedError


@overload(_register_rows, inline="always", jit_options=INLINE_JIT_OPTIONS)
def _register_rows_overload(pairs, exact, weights, panel, out, n_rows, j0, n_valid, tall):
    if weights.instance_class is Bf16PanelsAVX2:
        def avx2(pairs, exact, weights, panel, out, n_rows, j0, n_valid, tall):
            _avx2_rows(pairs, exact, weights, panel, out, n_rows, j0, n_valid)
        return avx2

    def scheduled(pairs, exact, weights, panel, out, n_rows, j0, n_valid, tall):
        _scheduled_rows(pairs, exact, weights, panel, out, n_rows, j0, n_valid, tall)
    return scheduled


@njit(inline="always", **JIT_OPTIONS)
def panel_accumulate(rows, weights, panel, out, n_rows, j0, n_valid, tall):
    """``out[:n_rows, j0:j0 + n_valid] += bf16 rows @ panel`` (``panel``
    (G, WIDTH) uint32 pairs) on the register tiles (inlined, see
    ``float.panel_accumulate``)."""
    prefer_vector_width()
    pairs = rows.q.view(np.uint32)
    exact = _needs_exact(rows, weights)
    _register_rows(pairs, exact, weights, panel, out, n_rows, j0, n_valid, tall)


@njit(inline="always", **JIT_OPTIONS)
def _amx_block(q, r0, panel, c0, out, j, n_row_tiles, n_weight_tiles):
    """One block of ``_amx``'s ``accumulate_RxC`` onto ``out[r0:, j:]``."""
    if n_row_tiles == 2:
        if n_weight_tiles == 2:
            _amx.accumulate_2x2(q, r0, panel, c0, out, r0, j)
        else:
            _amx.accumulate_2x1(q, r0, panel, c0, out, r0, j)
    elif n_weight_tiles == 2:
        _amx.accumulate_1x2(q, r0, panel, c0, out, r0, j)
    else:
        _amx.accumulate_1x1(q, r0, panel, c0, out, r0, j)


@njit(inline="always", **JIT_OPTIONS)
def _amx_pass(q, panels, out, r_lo, r_hi, row_tiles, n_blocks, block_cols, b0, b1, tail):
    """Blocks of rows ``[r_lo, r_hi)`` (32 at a time, or one block of
    ``row_tiles`` tiles) over panels ``[b0, b1)`` of every column block:
    their whole 32 columns, or with ``tail`` only the columns past the last
    whole 32 of each block's last panel (the tiles configured to fit).

    A panel (K x 64 weights) is the outer loop, so it is read from L2 once
    for every block of rows (the rows outer, streaming all the weights once
    per 32 rows, ran 0.71-0.87x; the rows innermost 0.83-1.0x, on products
    of 128 rows x K 80-1536 x N 1024-6144 here)."""
    per_block = (block_cols + WIDTH - 1) // WIDTH
    for g in range(n_blocks):
        for b in range(b0, b1):
            panel = panels[g * per_block + b].view(np.uint32)
            j0 = g * block_cols + b * WIDTH
            n_cols = min(WIDTH, block_cols - b * WIDTH)
            whole_cols = n_cols // _amx.BLOCK_COLUMNS * _amx.BLOCK_COLUMNS
            weight_tiles = 1 + (n_cols - whole_cols > _amx.BLOCK_COLUMNS // 2)
            for r0 in range(r_lo, r_hi, _amx.BLOCK_ROWS):
                if tail:
                    if whole_cols < n_cols:
                        _amx_block(q, r0, panel, whole_cols, out, j0 + whole_cols, row_tiles,
                                   weight_tiles)
                else:
                    for c0 in range(0, whole_cols, _amx.BLOCK_COLUMNS):
                        _amx_block(q, r0, panel, c0, out, j0 + c0, row_tiles, 2)


@njit(**JIT_OPTIONS)
def amx_panels(q, panels, out, n_rows, n_blocks, block_cols, b0, b1):
    """``out[:n_rows] +=`` bf16 rows ``q`` times panels ``[b0, b1)`` of each
    of the ``n_blocks`` column blocks (``_dispatch.whole_product``) on AMX
    tiles; ``panels`` (n_panels, G, 2 WIDTH) uint16 with G whole tiles of K.

    Blocks of 32 rows x 32 columns; ``tdpbf16ps`` accumulates onto ``out``
    itself (loaded into the accumulator tiles, stored back). The rows past
    the last 32 and the columns past the last 32 of a block go in tail
    blocks, with the tiles configured to exactly what is left,
    so nothing outside the rows and columns asked for is read from ``out``
    or written (another thread may own it): at most four configurations a
    product. Each row's sums depend only on that row, its value in ``out``
    and the panel, never on the block, the tile shape or the position it is
    in, so how rows are cut changes no bit. A call of its own, not inlined
    (the tile state would weigh on every step of the kernels that hold it,
    as ``int8._amx_blocks`` measured)."""
    half = _amx.BLOCK_ROWS // 2
    whole_rows = n_rows // _amx.BLOCK_ROWS * _amx.BLOCK_ROWS
    tail_rows = n_rows - whole_rows
    tail_cols = block_cols % _amx.BLOCK_COLUMNS
    has_tail_cols = tail_cols > 0 and b1 * WIDTH >= block_cols  # only the last panel has one
    cols_0 = min(half, tail_cols)
    cols_1 = max(0, tail_cols - half)
    if whole_rows > 0:
        _amx.configure()
        _amx_pass(q, panels, out, 0, whole_rows, 2, n_blocks, block_cols, b0, b1, False)
        if has_tail_cols:
            _amx.configure_shape(half, half, cols_0, cols_1)
            _amx_pass(q, panels, out, 0, whole_rows, 2, n_blocks, block_cols, b0, b1, True)
    if tail_rows > 0:
        row_tiles = 1 + (tail_rows > half)
        rows_0 = min(half, tail_rows)
        rows_1 = max(0, tail_rows - half)
        _amx.configure_shape(rows_0, rows_1, half, half)
        _amx_pass(q, panels, out, whole_rows, n_rows, row_tiles, n_blocks, block_cols, b0, b1,
                  False)
        if has_tail_cols:
            _amx.configure_shape(rows_0, rows_1, cols_0, cols_1)
            _amx_pass(q, panels, out, whole_rows, n_rows, row_tiles, n_blocks, block_cols, b0,
                      b1, True)
    _amx.release()


# ----------------------------------------------------------------- the format interface


def _is_bf16(weights) -> bool:
    return isinstance(weights, types.BaseNamedTuple) and weights.instance_class in _BF16_CLASSES


@overload(_dispatch.new_scratch, inline="always", jit_options=INLINE_JIT_OPTIONS)
def _new_scratch(weights, rows, inner, fixed_range):
    if _is_bf16(weights):
        # AMX tiles read 32 bf16 of K a row (zeros past K); the register tiles pairs.
        inner_multiple = 2 * _amx.GROUPS_PER_TILE if weights.instance_class is Bf16PanelsAMX \
            else 4

        def impl(weights, rows, inner, fixed_range):
            padded = (inner + inner_multiple - 1) // inner_multiple * inner_multiple
            return Bf16Rows(np.zeros((rows, padded), np.uint16), np.zeros(1, np.int64))
        return impl


@overload(_dispatch.prepare_rows, inline="always", jit_options=INLINE_JIT_OPTIONS)
def _prepare_rows(a, n_rows, weights, scratch):
    if _is_bf16(weights):
        def impl(a, n_rows, weights, scratch):
            round_rows(a, n_rows, scratch, 2 * weights.panels.shape[1])
            return scratch
        return impl


@overload(_dispatch.panel_product, inline="always", jit_options=INLINE_JIT_OPTIONS)
def _panel_product(operand, weights, p, out, n_rows, j0, n_valid, tall):
    if _is_bf16(weights) and weights.instance_class is Bf16PanelsAMX:
        def amx(operand, weights, p, out, n_rows, j0, n_valid, tall):
            amx_panels(operand.q, weights.panels[p:p + 1], out[:, j0:j0 + n_valid], n_rows,
                       np.int64(1), np.int64(n_valid), np.int64(0), np.int64(1))
        return amx
    if _is_bf16(weights):
        def impl(operand, weights, p, out, n_rows, j0, n_valid, tall):
            panel_accumulate(operand, weights, weights.panels[p].view(np.uint32), out, n_rows,
                             j0, n_valid, tall)
        return impl


@overload(_dispatch.pairs_panels, inline="always", jit_options=INLINE_JIT_OPTIONS)
def _pairs_panels(weights, n_rows):
    if _is_bf16(weights) and weights.instance_class.PAIR_TILE:
        return lambda weights, n_rows: n_rows == 1


@overload(_dispatch.panel_pair_product, inline="always", jit_options=INLINE_JIT_OPTIONS)
def _panel_pair_product(operand, weights, p, q, out, j0p, nvp, j0q, nvq):
    if _is_bf16(weights) and weights.instance_class.PAIR_TILE:
        def impl(operand, weights, p, q, out, j0p, nvp, j0q, nvq):
            _tile_1_row_2_panels(operand.q.view(np.uint32), weights.panels[p].view(np.uint32),
                                 weights.panels[q].view(np.uint32), out, 0, j0p, nvp, j0q, nvq)
        return impl


@overload(_dispatch.whole_product, inline="always", jit_options=INLINE_JIT_OPTIONS)
def _whole_product(operand, weights, out, n_rows, n_blocks, block_cols, b0, b1):
    if _is_bf16(weights) and weights.instance_class is Bf16PanelsAMX:
        def amx(operand, weights, out, n_rows, n_blocks, block_cols, b0, b1):
            amx_panels(operand.q, weights.panels, out, n_rows, n_blocks, block_cols, b0, b1)
            return True
        return amx


@overload(_dispatch.panel_count, inline="always", jit_options=INLINE_JIT_OPTIONS)
def _panel_count(weights):
    if _is_bf16(weights):
        return lambda weights: weights.panels.shape[0]


@overload(_dispatch.direction, inline="always", jit_options=INLINE_JIT_OPTIONS)
def _direction(weights, d):
    if _is_bf16(weights):
        cls = weights.instance_class

        def impl(weights, d):
            return cls(weights.panels[d], weights.min_exponent)
        return impl


# ----------------------------------------------------------------- layout


def bfloat16_panels(w_t: np.ndarray, blocks: int, kernels: Optional[str] = None) -> Bf16Panels:
    """The bfloat16 weights of ``W.T`` (..., K, N) uint16 bit patterns.

    ``blocks`` equal column blocks (the gates) each get panels of their own;
    K is zero-padded to a multiple of 4 (an even number of pairs), of 32 for
    AMX (whole tiles). ``kernels`` is a key of KERNELS (None:
    :func:`default_kernels`); its class is returned.
    """
    from .._weights import column_panels

    _cpu.check_kernels(kernels, KERNELS, _NEEDS)
    cls = KERNELS[kernels or default_kernels()]
    *lead, n_inner, n_cols = w_t.shape
    pair_multiple = _amx.GROUPS_PER_TILE if cls is Bf16PanelsAMX else 2
    n_pairs = pair_multiple * -(-n_inner // (2 * pair_multiple))
    padded = np.zeros((*lead, 2 * n_pairs, n_cols), np.uint16)
    padded[..., :n_inner, :] = w_t
    # (..., pairs, 2, N) -> (..., pairs, N, 2): each column's 2 weights of a pair together.
    pairs = np.swapaxes(padded.reshape(*lead, n_pairs, 2, n_cols), -1, -2)
    panels = column_panels(np.ascontiguousarray(pairs).reshape(*lead, n_pairs, 2 * n_cols),
                           width=2 * WIDTH, blocks=blocks)
    return cls(panels, lowest_exponent(w_t))


def weight_from_panels(weights: Bf16Panels, direction: int, n_inner: int, n_cols: int,
                       blocks: int) -> np.ndarray:
    """Torch's (N, K) uint16 weight of ``direction`` back from its panels."""
    from .._weights import weight_from_column_panels

    return weight_from_column_panels(weights.panels[direction], n_inner, n_cols, blocks, 2)
