"""Argument checks and conversions shared by :class:`LSTM` and :class:`LSTMCell`.

Messages follow PyTorch's wording where it has one, and always name the
argument, the bad value and what to pass instead.
"""

from __future__ import annotations

import numbers
from typing import Any, Optional, Sequence, Tuple

import numpy as np

SUPPORTED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def check_dtype(dtype: Any) -> np.dtype:
    """The module dtype: float32 or float64, else ``TypeError``."""
    try:
        resolved = np.dtype(dtype)
    except TypeError:
        resolved = None
    if resolved not in SUPPORTED_DTYPES:
        raise TypeError(f"dtype must be np.float32 or np.float64, got {dtype!r}")
    return resolved


def check_size(value: Any, name: str, minimum: int = 1) -> int:
    """A size argument: an int (not a bool) of at least ``minimum``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} should be of type int, got: {type(value).__name__} "
                        f"({value!r})")
    if value < minimum:
        what = "greater than zero" if minimum == 1 else f"at least {minimum}"
        raise ValueError(f"{name} must be {what}, got {value}")
    return int(value)


def check_flag(value: Any, name: str) -> bool:
    """A boolean argument: ``bool`` or ``np.bool_`` only."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} should be of type bool, got: {type(value).__name__} "
                        f"({value!r})")
    return bool(value)


def check_dropout(value: Any) -> float:
    """Dropout probability, a real number in [0, 1]."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"dropout should be a number in range [0, 1] representing the "
                        f"probability of an element being zeroed, got {value!r}")
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"dropout should be a number in range [0, 1] representing the "
                         f"probability of an element being zeroed, got {value!r}")
    return float(value)


def check_proj_size(value: Any, hidden_size: int) -> int:
    """``proj_size``: 0 (no projection) or an int in [1, hidden_size)."""
    value = check_size(value, "proj_size", minimum=0)
    if value >= hidden_size:
        raise ValueError(f"proj_size has to be smaller than hidden_size, got "
                         f"proj_size={value} and hidden_size={hidden_size}")
    return value


def to_numpy(value: Any, name: str) -> np.ndarray:
    """``np.asarray`` for real-number data, without casting; CPU torch tensors
    (also ones that require grad) are accepted. Anything that is not real
    numbers is a ``TypeError``."""
    if hasattr(value, "detach") and hasattr(value, "cpu") and hasattr(value, "numpy"):
        value = value.detach().cpu().numpy()
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as error:
        raise TypeError(f"{name} must be an array of real numbers; it could not be "
                        f"converted ({error})") from None
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers (float or int), got an array of "
                        f"dtype {array.dtype}")
    return array


def as_float_array(value: Any, name: str, dtype: np.dtype) -> np.ndarray:
    """Convert array-like input to ``dtype`` without touching the caller's data.

    Integers and booleans are cast. No copy is made when ``value`` already is
    an array of ``dtype``.
    """
    return to_numpy(value, name).astype(dtype, copy=False)


def check_state(value: Any, name: str, expected_shape: Tuple[int, ...], dtype: np.dtype,
                hint: str) -> np.ndarray:
    """One initial state array (``h_0`` or ``c_0``) of the expected shape.

    An array (or tensor) of another floating dtype than the module's is an
    error, as in PyTorch, rather than a silent cast; lists and integer arrays
    are converted.
    """
    array = to_numpy(value, name)
    if hasattr(value, "dtype") and array.dtype.kind == "f" and array.dtype != dtype:
        raise TypeError(f"{name} must have the module's dtype {dtype}, got {array.dtype}. "
                        f"Cast it with .astype(np.{dtype.name}).")
    if array.shape != expected_shape:
        raise ValueError(f"Expected {name} size {expected_shape}, got {array.shape}. {hint}")
    return array.astype(dtype, copy=False)


def check_input_features(array: np.ndarray, name: str, input_size: int,
                         allowed_ndim: Tuple[int, ...], layout: str) -> None:
    """Rank and feature-size checks of the input."""
    if array.ndim not in allowed_ndim:
        expected = " or ".join(f"{n}-D" for n in allowed_ndim)
        raise ValueError(f"{name} must be {expected} ({layout}), got {array.ndim}-D input of "
                         f"shape {array.shape}")
    if array.shape[-1] != input_size:
        raise ValueError(f"{name}.size(-1) must be equal to input_size. Expected "
                         f"{input_size}, got {array.shape[-1]} (shape {array.shape})")


def check_out(value: Any, name: str, expected_shape: Tuple[int, ...],
              dtype: np.dtype) -> np.ndarray:
    """An ``out=`` buffer: a writeable, C-contiguous ndarray of exactly
    ``expected_shape`` and ``dtype`` (it is written, never converted)."""
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array to write into, got "
                        f"{type(value).__name__}; allocate it with "
                        f"np.empty({expected_shape}, np.{dtype.name})")
    if value.dtype != dtype:
        raise TypeError(f"{name} must have the module's dtype {dtype}, got {value.dtype}; "
                        f"allocate it with np.empty({expected_shape}, np.{dtype.name})")
    if value.shape != expected_shape:
        raise ValueError(f"Expected {name} of shape {expected_shape}, got {value.shape}")
    if not value.flags.c_contiguous or not value.flags.writeable:
        raise ValueError(f"{name} must be C-contiguous and writeable (got "
                         f"c_contiguous={value.flags.c_contiguous}, "
                         f"writeable={value.flags.writeable}); use np.empty({expected_shape}, "
                         f"np.{dtype.name})")
    return value


def overlapping_pair(outputs: Sequence[Tuple[str, np.ndarray]],
                     inputs: Sequence[Tuple[str, np.ndarray]],
                     same_ok: Sequence[Tuple[str, str]] = ()) -> Optional[Tuple[str, str]]:
    """The names of the first ``out=`` buffer that overlaps another buffer or
    an input and of what it overlaps, or None; the pairs in ``same_ok``
    (output, input) may be the very same array."""
    pairs = [(a, b) for i, a in enumerate(outputs) for b in outputs[i + 1:]]
    pairs += [(a, b) for a in outputs for b in inputs]
    for (out_name, out), (other_name, other) in pairs:
        if (out_name, other_name) in same_ok and out is other:
            continue
        if np.may_share_memory(out, other):
            return out_name, other_name
    return None


def check_no_overlap(outputs: Sequence[Tuple[str, np.ndarray]],
                     inputs: Sequence[Tuple[str, np.ndarray]],
                     same_ok: Sequence[Tuple[str, str]] = ()) -> None:
    """No ``out=`` buffer overlaps another or an input, except the pairs in
    ``same_ok`` (output, input), which may be the very same array."""
    pair = overlapping_pair(outputs, inputs, same_ok)
    if pair is not None:
        allowed = [f"{o} may be {i} itself" for o, i in same_ok]
        raise ValueError(f"{pair[0]} overlaps {pair[1]} in memory; out= buffers must "
                         f"not overlap each other or the inputs"
                         + (f" ({', '.join(allowed)})" if allowed else ""))
