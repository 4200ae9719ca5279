"""Weight formats: what each stores and which register tiles it runs on.

``float.py`` (float32, float64), ``int8.py`` and ``bfloat16.py`` each give
their panel layout and tiles through the interface in ``_dispatch.py``; the
driver and the step loops are shared. This module holds what the Python side
asks of a format.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .int8 import AMX_MIN_ROWS, Int8Panels, Int8PanelsAMX

#: ``weight_format`` values, and the formats ``quantize()`` converts to.
FORMATS = ("float32", "float64", "int8", "bfloat16")
QUANTIZED_FORMATS = ("int8", "bfloat16")

_NO_RANGE = np.empty(0, np.float32)  # writeable: a read-only one is another Numba type


def direction(weights: Any, d: int) -> Any:
    """Direction ``d`` of a layer's stacked (D, ...) weights, any format: a
    float array, or a format's named tuple whose arrays all lead with D (its
    scalars are the layer's, shared by the directions)."""
    if isinstance(weights, np.ndarray):
        return weights[d]
    return type(weights)(*(f[d] if isinstance(f, np.ndarray) else f for f in weights))


def weight_itemsize(weights: Any) -> int:
    """Bytes per stored weight (int8: 1, bfloat16: 2): the panels' itemsize."""
    return getattr(weights, "panels", weights).itemsize


def per_tensor(weights: Any) -> bool:
    """Whether these are int8 weights with torch's numerics: one activation
    scale for all the rows of a product (so a step's rows are quantised
    together, never in groups)."""
    return isinstance(weights, Int8Panels) and weights.per_tensor


def input_range(layer: Any, x: np.ndarray) -> np.ndarray:
    """The ``fixed_range`` of a layer's input projection: (min, max) of all
    of ``x`` for int8 weights with torch's per-tensor numerics (torch
    quantises a layer's whole input at once), else empty."""
    if per_tensor(layer.w_ih_panels) and x.size:
        return np.array([x.min(), x.max()], dtype=np.float32)
    return _NO_RANGE


def for_rows(weights: Any, rows: int) -> Any:
    """The weights to run products of at most ``rows`` rows with: AMX int8
    weights below AMX_MIN_ROWS become their VNNI twin (the same arrays, the
    VNNI tiles' class), since those products never reach an AMX block and
    the AMX kernels' one-row steps measured 0.38 us slower (T2000 B1 H64)."""
    if type(weights) is Int8PanelsAMX and rows < AMX_MIN_ROWS:
        return Int8Panels(*weights)
    return weights
