"""Sigmoid and tanh that vectorise inside Numba loops.

llvmlite has no SVML, so ``np.tanh``/``np.exp`` in a Numba loop become scalar
libm calls. For float32 we use a clamped odd rational approximation of tanh
(the form used by Eigen's ``ptanh_float``: max error a few ulp), which is plain
arithmetic and vectorises. Float64 uses ``tanh(a) = 1 - 2 / (exp(2a) + 1)``
with ``exp`` computed by a Taylor polynomial and repeated squaring: within
~5e-15 of libm, so results stay within 1e-10 of PyTorch, and it vectorises too.

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
    # exp(2|x|) = exp(y) ** 64 with y = |x| / 32 <= 0.625: Taylor to y**17 / 17!
    # (truncation < 4e-20), then six squarings (they multiply the rounding
    # error by 64: ~1e-14 relative, ~5e-15 absolute on tanh). Arithmetic
    # only -- no rounding, no float-to-int, no table -- so it vectorises.
    y = abs(x) * 0.03125
    p = 2.8114572543455206e-15
    p = p * y + 4.779477332387385e-14
    p = p * y + 7.647163731819816e-13
    p = p * y + 1.1470745597729725e-11
    p = p * y + 1.6059043836821613e-10
    p = p * y + 2.08767569878681e-09
    p = p * y + 2.505210838544172e-08
    p = p * y + 2.755731922398589e-07
    p = p * y + 2.7557319223985893e-06
    p = p * y + 2.48015873015873e-05
    p = p * y + 0.0001984126984126984
    p = p * y + 0.001388888888888889
    p = p * y + 0.008333333333333333
    p = p * y + 0.041666666666666664
    p = p * y + 0.16666666666666666
    p = p * y + 0.5
    p = p * y + 1.0
    p = p * y + 1.0
    p = p * p
    p = p * p
    p = p * p
    p = p * p
    p = p * p
    p = p * p
    t = 1.0 - 2.0 / (p + 1.0)
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
