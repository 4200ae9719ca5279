"""NumPy twins of the int8 format's numerics (``nblstm.lstm.formats.int8``),
which are fbgemm's as torch's dynamic quantisation uses them (see
``nblstm.lstm._torch_quantized`` for the rules and how they were checked).
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

#: fbgemm / ATen ``SMALL_SCALE_THRESHOLD`` (a float32 constant).
SMALL_SCALE_THRESHOLD = np.float32(6.1e-5)


def activation_qparams(x_min, x_max, qmin: int = 0, qmax: int = 127) -> Tuple[np.float32, int]:
    """(scale, zero_point) of fbgemm's ``ChooseQuantizationParams`` (the copy
    in ATen ``quant_utils``), for an activation whose float32 extremes over
    the whole quantized tensor are ``x_min``, ``x_max``.

    torch calls it with (qmin, qmax) = (0, 255) and ``reduce_range=True``,
    which halves both: (0, 127), the defaults here. Step by step, exactly as
    the C++ (float32 where it uses ``float``, float64 where ``double``):

    1. ``min = min(x_min, 0)``, ``max = max(x_max, 0)`` (float32): 0 must be
       exactly representable.
    2. ``scale = (double(max) - double(min)) / (qmax - qmin)``, in float64.
    3. If ``float32(scale) == 0`` (max == min == 0, e.g. a zero h0) or
       ``1 / float32(scale)`` overflows float32: ``scale = 0.1``.
    4. If ``scale < 6.1e-5`` (``SMALL_SCALE_THRESHOLD``, float32 constant):
       ``scale = 6.1e-5`` and min/max are rescaled in float32 (to
       ``+-6.1e-5 * (qmax - qmin)`` if the other end is 0, else both times
       ``6.1e-5 / float32(old scale)``).
    5. Zero point, in float64 with the float64 scale (not the float32 one
       returned): ``zp_min = qmin - min / scale``, ``zp_max = qmax - max /
       scale``; take ``zp_min`` if ``|qmin| - |min/scale| < |qmax| -
       |max/scale|`` else ``zp_max`` (fbgemm's error heuristic, kept as is).
    6. Nudge: below qmin -> qmin, above qmax -> qmax, else ``nearbyint``
       (round half to even, the default FP mode).
    7. Return ``float32(scale)`` and the integer zero point.

    Matches ``torch._choose_qparams_per_tensor(x, reduce_range=True)`` on
    thousands of random and edge-case tensors. NaNs are not handled (fbgemm's
    min/max would be ill-defined too).
    """
    mn = np.float32(x_min)
    mx = np.float32(x_max)
    if not mn <= mx:
        raise ValueError("activation_qparams: min must be <= max")
    mn = min(mn, np.float32(0.0))
    mx = max(mx, np.float32(0.0))
    scale = (float(mx) - float(mn)) / (qmax - qmin)
    with np.errstate(divide="ignore", over="ignore"):
        if np.float32(scale) == 0.0 or np.isinf(np.float32(1.0) / np.float32(scale)):
            scale = 0.1
    if scale < float(SMALL_SCALE_THRESHOLD):
        org_scale = np.float32(scale)
        scale = float(SMALL_SCALE_THRESHOLD)
        if mn == 0.0:
            mx = np.float32(SMALL_SCALE_THRESHOLD * np.float32(qmax - qmin))
        elif mx == 0.0:
            mn = np.float32(-SMALL_SCALE_THRESHOLD * np.float32(qmax - qmin))
        else:
            amplifier = np.float32(SMALL_SCALE_THRESHOLD / org_scale)
            mn = np.float32(mn * amplifier)
            mx = np.float32(mx * amplifier)
    zp_from_min = qmin - float(mn) / scale
    zp_from_max = qmax - float(mx) / scale
    err_min = abs(qmin) - abs(float(mn) / scale)
    err_max = abs(qmax) - abs(float(mx) / scale)
    initial = zp_from_min if err_min < err_max else zp_from_max
    if initial < qmin:
        zero_point = qmin
    elif initial > qmax:
        zero_point = qmax
    else:
        zero_point = int(np.rint(initial))
    return np.float32(scale), int(zero_point)


def _fma_to_float32(a, b, c) -> np.ndarray:
    """float32(a * b + c) with a single rounding, as a float32 fused
    multiply-add, for float32 inputs (broadcast): the product is exact in
    float64; the float64 sum is made round-to-odd (nudged one ulp towards the
    lost remainder when inexact and even), which makes the final rounding to
    float32 a correct single rounding (53 >= 2 * 24 + 2)."""
    p = (np.asarray(a, dtype=np.float32).astype(np.float64)
         * np.asarray(b, dtype=np.float32).astype(np.float64))
    c = np.asarray(c, dtype=np.float32).astype(np.float64)
    s = p + c
    # TwoSum: err = (p + c) - s exactly
    bv = s - p
    err = (p - (s - bv)) + (c - bv)
    fix = (err != 0) & ((s.view(np.int64) & 1) == 0)
    if np.any(fix):
        s = np.where(fix, np.nextafter(s, np.where(err > 0, np.inf, -np.inf)), s)
    return s.astype(np.float32)


def quantize_activation(x: np.ndarray, scale, zero_point) -> np.ndarray:
    """uint8 values of fbgemm's ``QuantizeAvx2`` (the ``LEGACY=true`` path
    that ``PackAWithQuantRowOffset`` uses), element-wise::

        inv_scale = float32(1.0f / scale)            # float32 division
        q = clamp(nearbyint(fma(x, inv_scale, float(zero_point))), 0, 255)

    * multiply by the float32 reciprocal, not divide by the scale;
    * the zero point is added *before* rounding, in one fused multiply-add
      (``_mm256_fmadd_ps``): a single float32 rounding of ``x*inv + zp``;
      neither ``rint(x*inv) + zp`` nor an unfused ``x*inv + zp`` matches
      torch at ties (checked on crafted half-way inputs);
    * round half to even (``_mm256_cvtps_epi32``, default MXCSR);
    * clamp to the uint8 range [0, 255], *not* [0, qmax]: with qmax 127 the
      largest element can round to 128 (seen in torch).
    """
    inv_scale = np.float32(np.float32(1.0) / np.float32(scale))
    t = _fma_to_float32(np.asarray(x, dtype=np.float32), inv_scale, np.float32(zero_point))
    return np.clip(np.rint(t), 0, 255).astype(np.uint8)


def dequantize(acc: np.ndarray, x_scale, w_scale, bias) -> np.ndarray:
    """float32 output of fbgemm's ``requantizeForFloatAvx2`` for the exact
    integer accumulator ``acc`` (..., N) = sum (xq - x_zp) * (wq - w_zp)::

        multiplier = float32(float32(x_scale) * float32(w_scale))  # scalar or (N,)
        out = fma(float32(acc), multiplier, bias)                  # ONE rounding

    The source writes ``_mm256_add_ps(_mm256_mul_ps(cvt(acc), multiplier),
    bias)``, but GCC (torch's x86 wheels, ``-ffp-contract=fast`` default,
    FMA enabled for that file) fuses it: the fused form matched torch's
    ``quantized.linear_dynamic`` bit for bit on 300 random cases (per tensor
    and per channel), the unfused one on only 9 (off by 1-2 ulp). A build
    that does not contract (another compiler) would give the unfused result.
    ``float32(acc)`` rounds to nearest even (only matters past 2**24)."""
    multiplier = (np.float32(x_scale) * np.asarray(w_scale, dtype=np.float32)).astype(np.float32)
    return _fma_to_float32(np.asarray(acc).astype(np.float32), multiplier, bias)


def quantize_rows(a: np.ndarray, qmax: int, per_tensor: bool, fixed_range=None):
    """Twin of ``formats.int8.quantize_rows``: (q, scale, zero) of the rows of
    ``a`` (n, K) float32, each row on its own or one range for all."""
    n = a.shape[0]
    if per_tensor:
        if fixed_range is not None:
            lo, hi = fixed_range
        else:
            lo, hi = (a.min(), a.max()) if a.size else (np.float32(0), np.float32(0))
        ranges = [(lo, hi)] * n
    else:
        ranges = [(row.min(), row.max()) if row.size else (np.float32(0), np.float32(0))
                  for row in a]
    q = np.empty(a.shape, np.uint8)
    scale = np.empty(n, np.float32)
    zero = np.empty(n, np.int32)
    for r, (lo, hi) in enumerate(ranges):
        scale[r], zero[r] = activation_qparams(lo, hi, 0, qmax)
        q[r] = quantize_activation(a[r], scale[r], zero[r])
    return q, scale, zero


def int8_matmul_accumulate(a, q_t, w_scale, out, n_rows, qmax=255, per_tensor=False,
                           fixed_range=None):
    """Twin of ``_kernels.matmul_accumulate`` on int8 weights: ``out[:n_rows]
    = fma(float32(sum (A - z) Q), float32(s_a * s_w), out)`` with the exact
    integer sum (``q_t`` (K, N) int8, ``w_scale`` (N,))."""
    q, scale, zero = quantize_rows(a[:n_rows], qmax, per_tensor, fixed_range)
    acc = (q.astype(np.int64) - zero[:, None]) @ q_t.astype(np.int64)
    multiplier = (scale[:, None] * w_scale[None, :]).astype(np.float32)
    out[:n_rows] = _fma_to_float32(acc.astype(np.float32), multiplier, out[:n_rows])


def weight_quantize(w: np.ndarray):
    """Twin of ``formats.int8.quantize_weight``, written from its contract:
    symmetric per output row, ``scale = max|row| / 127``."""
    w = np.asarray(w, np.float32)
    peak = np.abs(w).max(axis=1)
    scale = np.where(peak > 0, peak / np.float32(127), np.float32(1)).astype(np.float32)
    q = np.clip(np.rint(w / scale[:, None]), -127, 127).astype(np.int8)
    return q, scale
