"""NumPy twins of the bfloat16 format's numerics (``nblstm.lstm.formats.bfloat16``),
written from their contracts rather than from the kernels' bit tricks:

* rounding float32 to bfloat16, nearest even, by comparing a value with its two
  bfloat16 neighbours in float64;
* ``vdpbf16ps`` as measured on an AVX512-BF16 CPU (and as Intel documents it):
  per float32 lane and bf16 pair, ``acc = flush(fma(a1, w1, acc))`` then
  ``acc = flush(fma(a0, w0, acc))``, denormal operands read as zero, each FMA
  rounded once to 24 bits with an unbounded exponent, a result below 2**-126
  in magnitude flushed to a zero of its sign.
"""

from __future__ import annotations

import numpy as np

FLT_MIN = 2.0 ** -126


def widen(bits) -> np.ndarray:
    """float32 values of bfloat16 bit patterns."""
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def round_to_bfloat16(x) -> np.ndarray:
    """uint16 bfloat16 bit patterns of float32 ``x``: the nearer of the two
    bfloat16 values around ``x`` (the even pattern on a tie; past the largest
    finite value, the midpoint to 2**128 decides for inf); NaN -> a quiet NaN
    keeping the sign and the top payload bits."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    u = x.view(np.uint32)
    sign = ((u >> 16) & 0x8000).astype(np.uint32)
    below = ((u & 0x7FFFFFFF) >> 16).astype(np.uint32)  # |x| truncated: the neighbour below
    above = below + 1
    with np.errstate(invalid="ignore", over="ignore"):
        magnitude = np.abs(x.astype(np.float64))
        low = widen(below).astype(np.float64)
        high = np.where(above == 0x7F80, np.float64(2.0 ** 128),
                        widen(np.minimum(above, 0x7F80)).astype(np.float64))
        up = ((high - magnitude) < (magnitude - low)) | (
            ((high - magnitude) == (magnitude - low)) & ((below & 1) == 1))
    chosen = np.where((magnitude == low) | ~up, below, above)
    bits = sign | chosen
    nan = np.isnan(x)
    bits = np.where(nan, (u >> 16) | 0x40, bits)
    return bits.astype(np.uint16)


def _daz(x: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.where(np.abs(x) < FLT_MIN, np.copysign(np.float32(0), x), x).astype(np.float32)


def _exact_sum_round_to_odd(p: np.ndarray, c: np.ndarray) -> np.ndarray:
    """float64 ``p + c`` rounded to odd (so that one more rounding to 24 bits
    is a correct single rounding), for finite results."""
    s = p + c
    bv = s - p
    err = (p - (s - bv)) + (c - bv)
    fix = np.isfinite(s) & (err != 0) & ((s.view(np.int64) & 1) == 0)
    return np.where(fix, np.nextafter(s, np.where(err > 0, np.inf, -np.inf)), s)


def dpbf16_step(acc, a, w) -> np.ndarray:
    """``flush(fma(daz(a), daz(w), acc))`` in float32, broadcast: the exact
    product (bf16 x bf16 fits float64), one rounding of the sum to 24 bits
    with an unbounded exponent, then |r| < 2**-126 -> a zero of its sign."""
    with np.errstate(invalid="ignore", over="ignore"):
        p = _daz(np.asarray(a, np.float32)).astype(np.float64) \
            * _daz(np.asarray(w, np.float32)).astype(np.float64)
        s = _exact_sum_round_to_odd(p, np.asarray(acc, np.float32).astype(np.float64))
        small = np.abs(s) < 2.0 ** -100
        scaled = (np.where(small, s, 0.0) * 2.0 ** 100).astype(np.float32)  # 24-bit rounding
        tiny = small & (np.abs(scaled) < 2.0 ** -26)
        r = np.where(small, scaled.astype(np.float64) * 2.0 ** -100, s).astype(np.float32)
        return np.where(tiny, np.copysign(np.float32(0), s), r).astype(np.float32)


def dpbf16_pair(acc, a0, a1, w0, w1) -> np.ndarray:
    """One ``vdpbf16ps`` lane: the odd element first, then the even one."""
    return dpbf16_step(dpbf16_step(acc, a1, w1), a0, w0)


def bf16_matmul_accumulate(a, w_t_bits, out, n_rows) -> None:
    """Twin of ``_kernels.matmul_accumulate`` on bfloat16 weights ``w_t_bits``
    (K, N) uint16: ``out[:n_rows] += sums`` in float32, where each sum starts
    from 0 and takes the pairs of K in order, through :func:`dpbf16_pair`, of
    the activations rounded to bfloat16. K is zero-padded to a multiple of 4
    as the panels are: a padding pair adds 0 x 0 = +0, which turns a sum of
    -0 into +0."""
    x = widen(round_to_bfloat16(np.asarray(a, np.float32)[:n_rows]))
    w = widen(w_t_bits)
    n_inner, n_cols = w.shape
    pad = -n_inner % 4
    x = np.concatenate([x, np.zeros((n_rows, pad), np.float32)], axis=1)
    w = np.concatenate([w, np.zeros((pad, n_cols), np.float32)], axis=0)
    acc = np.zeros((n_rows, n_cols), np.float32)
    for g in range(x.shape[1] // 2):
        acc = dpbf16_pair(acc, x[:, 2 * g, None], x[:, 2 * g + 1, None], w[None, 2 * g],
                          w[None, 2 * g + 1])
    with np.errstate(invalid="ignore", over="ignore"):
        out[:n_rows] = (out[:n_rows] + acc).astype(np.float32)
