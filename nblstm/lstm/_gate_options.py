"""The gate arithmetic of one cell update, and ONNX's extra gate options.

torch's LSTM cell is ``c = f*c + i*g``, ``h = o*tanh(c)``. ONNX's ``LSTM``
operator (what ONNX Runtime runs) adds three options, which nblstm supports
for models loaded with ``LSTM.from_onnx``:

* peepholes ``P``: ``i`` and ``f`` also see ``p_i * c_prev``, ``p_f * c_prev``,
  and ``o`` sees ``p_o * c_new``;
* ``clip``: every gate's pre-activation is clamped to [-clip, clip];
* ``input_forget``: the forget gate is coupled to the input gate, ``f = 1 - i``.

A layer without them has ``gate_options`` None, which selects the plain
arithmetic when a kernel is compiled (:func:`update_units` is overloaded on
the type): the options cost nothing to models that do not use them.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import numpy as np
from numba import types
from numba.extending import overload, register_jitable

from .._config import INLINE_JIT_OPTIONS
from ._activations import sigmoid, tanh


class GateOptions(NamedTuple):
    """ONNX's gate options of one layer (``layer=True``: stacked directions).

    Attributes
    ----------
    peepholes : (D, 3, H) for a layer, (3, H) for one direction -- ``p_i``,
        ``p_f``, ``p_o`` in the model dtype (zeros without peepholes)
    clip : float -- the pre-activation bound (``inf``: no clipping)
    input_forget : bool -- ``f = 1 - i``
    """

    peepholes: np.ndarray
    clip: float
    input_forget: bool


def for_direction(options: Optional[GateOptions], d: int) -> Optional[GateOptions]:
    """Direction ``d``'s options of a layer's (None stays None); Python and jitted."""
    if options is None:
        return None
    return GateOptions(options.peepholes[d], options.clip, options.input_forget)


def describe(options: Optional[GateOptions]) -> str:
    """``peepholes, clip=3.0, input_forget`` for a repr ("" for None)."""
    if options is None:
        return ""
    parts = ["peepholes"] if np.any(options.peepholes) else []
    if np.isfinite(options.clip):
        parts.append(f"clip={options.clip:g}")
    if options.input_forget:
        parts.append("input_forget")
    return ", ".join(parts)


def update_units(options, gates, c, h_full, r, unit_lo, unit_hi):
    """Fused gates of row ``r``, hidden units ``[unit_lo, unit_hi)`` (jitted
    only): ``c = f*c + i*g``, ``h_full = o*tanh(c)``, with ``options``
    (:class:`GateOptions` of one direction) or without (None)."""
    raise NotImplementedError("update_units is only callable from jitted code")


@overload(for_direction, inline="always", jit_options=INLINE_JIT_OPTIONS)
def _for_direction(options, d):
    if isinstance(options, (types.NoneType, types.Omitted)):
        return lambda options, d: None
    return lambda options, d: GateOptions(options.peepholes[d], options.clip,
                                          options.input_forget)


@register_jitable(inline="always")
def _clamp(x, bound):
    """``x`` within [-bound, bound]; NaN stays NaN (comparisons, not min/max)."""
    if x > bound:
        return bound
    if x < -bound:
        return -bound
    return x


def _plain_update(options, gates, c, h_full, r, unit_lo, unit_hi):
    # Unsigned column indices: no negative-index wraparound is emitted, and
    # the loop vectorises with contiguous loads.
    hidden = np.uint64(c.shape[1])
    for j_signed in range(unit_lo, unit_hi):
        j = np.uint64(j_signed)
        i = sigmoid(gates[r, j])
        f = sigmoid(gates[r, hidden + j])
        g = tanh(gates[r, np.uint64(2) * hidden + j])
        o = sigmoid(gates[r, np.uint64(3) * hidden + j])
        c_new = f * c[r, j] + i * g
        c[r, j] = c_new
        h_full[r, j] = o * tanh(c_new)


def _onnx_update(options, gates, c, h_full, r, unit_lo, unit_hi):
    # ONNX Runtime's order: peephole, then clip, then the activation, per gate;
    # o sees the new c.
    hidden = np.uint64(c.shape[1])
    bound = c.dtype.type(options.clip)
    one = c.dtype.type(1.0)
    p = options.peepholes
    for j_signed in range(unit_lo, unit_hi):
        j = np.uint64(j_signed)
        c_prev = c[r, j]
        i = sigmoid(_clamp(gates[r, j] + p[0, j] * c_prev, bound))
        if options.input_forget:
            f = one - i
        else:
            f = sigmoid(_clamp(gates[r, hidden + j] + p[1, j] * c_prev, bound))
        g = tanh(_clamp(gates[r, np.uint64(2) * hidden + j], bound))
        c_new = f * c_prev + i * g
        o = sigmoid(_clamp(gates[r, np.uint64(3) * hidden + j] + p[2, j] * c_new, bound))
        c[r, j] = c_new
        h_full[r, j] = o * tanh(c_new)


@overload(update_units, inline="always", jit_options=INLINE_JIT_OPTIONS)
def _update_units(options, gates, c, h_full, r, unit_lo, unit_hi):
    if isinstance(options, (types.NoneType, types.Omitted)):
        return _plain_update
    return _onnx_update


def layer_options(peepholes: Any, clip: Optional[float], input_forget: bool, n_dirs: int,
                  hidden_size: int, dtype: Any) -> Optional[GateOptions]:
    """A layer's :class:`GateOptions`, None when it uses none of them.

    ``peepholes``: (D, 3, H) in the order (i, f, o), or None (zeros).
    """
    if peepholes is None and clip is None and not input_forget:
        return None
    if peepholes is None:
        peepholes = np.zeros((n_dirs, 3, hidden_size), dtype)
    return GateOptions(np.array(peepholes, dtype, order="C"),
                       float("inf") if clip is None else float(clip), bool(input_forget))
