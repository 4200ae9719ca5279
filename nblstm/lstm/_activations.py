"""Sigmoid and tanh that vectorise inside Numba loops.

llvmlite has no SVML, so ``np.tanh``/``np.exp`` in a Numba loop become scalar
libm calls. For float32 we use a clamped odd rational approximation of tanh
(the form used by Eigen's ``ptanh_float``: max error a few ulp), which is plain
arithmetic and vectorises. Float64 uses ``tanh(a) = 1 - 2 / (exp(2a) + 1)``
with ``exp`` range-reduced (``2a = n ln2 + r``), a degree-13 Taylor
polynomial for ``exp(r)`` and a table for ``2**n``: within a few ulp, so
results stay within 1e-10 of PyTorch, and it vectorises too.

Both saturate cleanly: ``±1e30`` gives ``±1`` (tanh) or ``0``/``1``
(sigmoid) without overflow, and NaN propagates as NaN.
"""

from __future__ import annotations

import math

import numpy as np
from numba import types
from numba.extending import overload

from .._config import INLINE_JIT_OPTIONS

# Beyond |x| = 7.99881172180175781, float32 tanh(x) rounds to +-1; clamping
# there keeps the rational form inside its accurate range.
_CLAMP32 = np.float32(7.99881172180175781)
_TINY32 = np.float32(0.0004)
_A1 = np.float32(4.89352455891786e-03)
_A3 = np.float32(6.37261928875436e-04)
_A5 = np.float32(1.48572235717979e-05)
_A7 = np.float32(5.12229709037114e-08)
_A9 = np.float32(-8.60467152213735e-11)
_A11 = np.float32(2.00018790482477e-13)
_A13 = np.float32(-2.76076847742355e-16)
_B0 = np.float32(4.89352518554385e-03)
_B2 = np.float32(2.26843463243900e-03)
_B4 = np.float32(1.18534705686654e-04)
_B6 = np.float32(1.19825839466702e-06)
_ONE32 = np.float32(1.0)
# float64: beyond |x| = 20, tanh(x) rounds to +-1.
_CLAMP64 = 20.0
_LN2_HI = 0.693147180369123816490  # Cody-Waite split of ln 2
_LN2_LO = 1.90821492927058770002e-10
_INV_LN2 = 1.4426950408889634
_POW2 = np.array([2.0 ** n for n in range(64)])
_INV_FACTORIALS = np.array([1.0 / float(np.prod(np.arange(1, k + 1))) for k in range(14)])
_HALF32 = np.float32(0.5)


def tanh(x):
    """Hyperbolic tangent of a float scalar (Numba-compiled; see module doc)."""
    return math.tanh(x)


def sigmoid(x):
    """Logistic sigmoid ``1 / (1 + exp(-x))`` of a float scalar."""
    return 0.5 * math.tanh(0.5 * x) + 0.5


def _tanh_float32(x):
    # Comparisons, not min/max, so that NaN falls through and propagates.
    if x > _CLAMP32:
        x = _CLAMP32
    elif x < -_CLAMP32:
        x = -_CLAMP32
    x2 = x * x
    p = _A13
    p = p * x2 + _A11
    p = p * x2 + _A9
    p = p * x2 + _A7
    p = p * x2 + _A5
    p = p * x2 + _A3
    p = p * x2 + _A1
    p = p * x
    q = _B6
    q = q * x2 + _B4
    q = q * x2 + _B2
    q = q * x2 + _B0
    r = p / q
    if abs(x) < _TINY32:
        r = x
    return r


def _tanh_float64(x):
    if x > _CLAMP64:
        x = _CLAMP64
    elif x < -_CLAMP64:
        x = -_CLAMP64
    is_nan = x != x
    # A NaN must not reach the float-to-int conversion (its result would be
    # undefined, and it indexes the table): compute on 0 and return x.
    two_a = 0.0 if is_nan else 2.0 * abs(x)
    n = int(two_a * _INV_LN2 + 0.5)  # two_a in [0, 40]: n in [0, 58]
    r = (two_a - n * _LN2_HI) - n * _LN2_LO  # |r| <= ln2 / 2
    p = _INV_FACTORIALS[13]
    for k in range(12, -1, -1):
        p = p * r + _INV_FACTORIALS[k]
    t = 1.0 - 2.0 / (p * _POW2[n] + 1.0)
    if is_nan:
        return x
    return t if x >= 0.0 else -t


@overload(tanh, jit_options=INLINE_JIT_OPTIONS)
def _tanh_overload(x):
    if isinstance(x, types.Float) and x.bitwidth == 32:
        return _tanh_float32
    if isinstance(x, types.Float):
        return _tanh_float64
    return None


@overload(sigmoid, jit_options=INLINE_JIT_OPTIONS)
def _sigmoid_overload(x):
    if isinstance(x, types.Float) and x.bitwidth == 32:
        return lambda x: _HALF32 * tanh(_HALF32 * x) + _HALF32
    if isinstance(x, types.Float):
        return lambda x: 0.5 * tanh(0.5 * x) + 0.5
    return None
