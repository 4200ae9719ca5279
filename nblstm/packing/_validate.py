"""Argument checking for the public packing functions.

Every check raises :class:`TypeError` (wrong kind of object) or
:class:`ValueError` (right kind, wrong value) with a message that names the
argument, shows the offending value and says how to fix it. Nothing here
copies or modifies the caller's data.
"""

from __future__ import annotations

import numbers
from typing import Any, NamedTuple, Optional, Sequence

import numpy as np

_NUMERIC_KINDS = "biufc"

UNSORTED_MESSAGE = (
    "`lengths` array must be sorted in decreasing order when `enforce_sorted` is True. "
    "You can pass `enforce_sorted=False` to pack_padded_sequence and/or pack_sequence to "
    "sidestep this requirement if you do not need ONNX exportability."
)


def _show(values: np.ndarray) -> str:
    return np.array2string(np.asarray(values), threshold=12, edgeitems=4, separator=", ")


def as_data(x: Any, name: str) -> np.ndarray:
    """``x`` as a numeric ndarray (no copy when it already is one)."""
    try:
        arr = np.asarray(x)
    except Exception as exc:  # e.g. ragged nested lists
        raise TypeError(
            f"`{name}` must be a numeric array (NumPy array, nested list or CPU tensor); "
            f"converting the {type(x).__name__} failed: {exc}"
        ) from exc
    if arr.dtype.kind not in _NUMERIC_KINDS:
        raise TypeError(
            f"`{name}` must hold numbers (bool, integer, float or complex), got dtype "
            f"{arr.dtype}. Convert it first, e.g. np.asarray({name}, dtype=np.float32)."
        )
    return arr


def as_lengths(lengths: Any, name: str = "lengths") -> np.ndarray:
    """A 1-D integer array-like as a fresh int64 array."""
    arr = np.asarray(lengths)
    if arr.size == 0 and arr.dtype.kind == "f" and not isinstance(lengths, np.ndarray):
        arr = arr.astype(np.int64)  # np.asarray([]) is float64
    if arr.dtype.kind not in "iu":
        raise TypeError(
            f"`{name}` must contain integers, got dtype {arr.dtype}: {_show(arr)}. "
            f"Pass whole numbers, e.g. np.asarray({name}, dtype=np.int64)."
        )
    if arr.ndim != 1:
        raise ValueError(
            f"`{name}` must be 1-D (one length per sequence), got shape {arr.shape}. "
            f"Pass a flat list or 1-D array of lengths."
        )
    if arr.dtype.kind == "u" and arr.size and arr.max() > np.iinfo(np.int64).max:
        raise ValueError(f"`{name}` holds a value too large for int64: {int(arr.max())}.")
    return arr.astype(np.int64)


def check_lengths(lengths: np.ndarray, batch: int, steps: int, name: str = "lengths",
                  what: str = "padded input") -> None:
    """Count, sign and upper bound of ``lengths``."""
    if lengths.shape[0] != batch:
        raise ValueError(
            f"Expected `len({name})` to be equal to batch_size, but got {lengths.shape[0]} "
            f"(batch_size={batch}). Pass exactly one length per sequence of the {what} "
            f"(the batch dimension is dimension 1, or 0 when batch_first=True)."
        )
    if batch == 0:
        return
    low = int(np.argmin(lengths))
    if lengths[low] < 0:
        raise ValueError(
            f"Length of all samples has to be >= 0, but found {name}[{low}] = {int(lengths[low])} "
            f"in {name}={_show(lengths)}. Lengths count time steps; zero-length sequences "
            f"are allowed, negative ones are not."
        )
    high = int(np.argmax(lengths))
    if lengths[high] > steps:
        raise ValueError(
            f"Found {name}[{high}] = {int(lengths[high])}, longer than the {steps} time steps of "
            f"the {what} (time is dimension 0, or 1 when batch_first=True). Check `batch_first` "
            f"and the lengths, or pad the input to at least {int(lengths[high])} steps."
        )


def check_sorted(lengths: np.ndarray) -> None:
    """Non-increasing lengths, as ``enforce_sorted=True`` requires."""
    if lengths.shape[0] > 1 and np.any(lengths[1:] > lengths[:-1]):
        raise ValueError(f"{UNSORTED_MESSAGE} Got lengths={_show(lengths)}.")


def check_padding_side(padding_side: Any) -> None:
    if not isinstance(padding_side, str) or padding_side not in ("left", "right"):
        raise ValueError(
            f"Expected padding_side to be one of left or right, but got {padding_side!r}. "
            f"Pass padding_side='right' (default) or padding_side='left'."
        )


def check_padding_value(padding_value: Any) -> None:
    kind = np.asarray(padding_value).dtype.kind
    if np.ndim(padding_value) != 0 or kind not in _NUMERIC_KINDS:
        raise TypeError(
            f"`padding_value` must be a number, got {padding_value!r}. Pass e.g. padding_value=0.0."
        )


def check_total_length(total_length: Any, max_length: int) -> int:
    if isinstance(total_length, (bool, np.bool_)) or not isinstance(total_length, numbers.Integral):
        raise TypeError(
            f"`total_length` must be an integer or None, got {total_length!r} "
            f"({type(total_length).__name__}). Pass e.g. total_length={max_length}."
        )
    total_length = int(total_length)
    if total_length < max_length:
        raise ValueError(
            "Expected total_length to be at least the length of the longest sequence in input, "
            f"but got total_length={total_length} and max sequence length being {max_length}. "
            f"Pass total_length >= {max_length} or None."
        )
    return total_length


def as_padded(x: Any, name: str) -> np.ndarray:
    """A padded batch: numeric, at least 2-D, C-contiguous."""
    arr = as_data(x, name)
    if arr.ndim < 2:
        raise ValueError(
            f"`{name}` must have at least 2 dimensions, (T, B, *) or (B, T, *) with "
            f"batch_first=True, but got shape {arr.shape}. For a single sequence add a batch "
            f"axis, e.g. {name}[:, None]."
        )
    return np.ascontiguousarray(arr)


class Sequences(NamedTuple):
    arrays: list
    lengths: np.ndarray
    features: tuple
    dtype: np.dtype


def as_sequences(sequences: Any, name: str = "sequences") -> Sequences:
    """A non-empty list of numeric arrays ``(L_i, *)`` sharing ``*``.

    As in torch the dtype of the first sequence is the dtype of the result.
    """
    if isinstance(sequences, (str, bytes)) or not hasattr(sequences, "__iter__"):
        raise TypeError(
            f"`{name}` must be a list of arrays of shape (L, *), got {type(sequences).__name__}."
        )
    items = list(sequences)
    if not items:
        raise ValueError(
            f"received an empty list of sequences: `{name}` must hold at least one array of "
            f"shape (L, *) (L may be 0)."
        )
    arrays = [as_data(item, f"{name}[{i}]") for i, item in enumerate(items)]
    features = None
    for i, arr in enumerate(arrays):
        if arr.ndim < 1:
            raise ValueError(
                f"`{name}[{i}]` must have at least 1 dimension (L, *), got a 0-d array "
                f"{arr!r}. Wrap scalars, e.g. np.atleast_1d(x)."
            )
        if features is None:
            features = arr.shape[1:]
        elif arr.shape[1:] != features:
            raise ValueError(
                f"All sequences must share their trailing shape: `{name}[0]` has shape "
                f"(L, {', '.join(map(str, features))}) but `{name}[{i}]` has shape {arr.shape}. "
                f"Reshape or pad the features to match."
            )
    lengths = np.array([arr.shape[0] for arr in arrays], dtype=np.int64)
    return Sequences(arrays, lengths, tuple(features), arrays[0].dtype)


class Packed(NamedTuple):
    """A validated packed batch."""

    data: np.ndarray  # C-contiguous, (rows, *)
    batch_sizes: np.ndarray  # int64, (steps,)
    positions: np.ndarray  # int64, (batch,): sorted position of each caller sequence
    sorted_indices: Optional[np.ndarray]
    batch: int


def _permutation(values: Any, name: str, batch: Optional[int], other: str) -> np.ndarray:
    """``values`` as an int64 permutation of ``0 .. n-1`` (``n == batch`` unless None)."""
    arr = as_lengths(values, name)
    if batch is not None and arr.shape[0] != batch:
        raise ValueError(
            f"`{name}` has {arr.shape[0]} entries but `{other}` has {batch}; they must be "
            f"inverse permutations of each other. Build the PackedSequence with "
            f"pack_padded_sequence or pack_sequence."
        )
    n = arr.shape[0]
    if n and (arr.min() < 0 or arr.max() >= n or np.unique(arr).shape[0] != n):
        raise ValueError(
            f"`{name}` must be a permutation of 0..{n - 1}, got {_show(arr)}. "
            f"Build the PackedSequence with pack_padded_sequence or pack_sequence."
        )
    return arr


def as_packed(sequence: Any, name: str = "sequence") -> Packed:
    """Check that the fields of a :class:`PackedSequence` agree with each other."""
    fields = ("data", "batch_sizes", "sorted_indices", "unsorted_indices")
    if not all(hasattr(sequence, f) for f in fields):
        raise TypeError(
            f"`{name}` must be a PackedSequence (from pack_padded_sequence or pack_sequence), "
            f"got {type(sequence).__name__}."
        )
    data = as_data(sequence.data, f"{name}.data")
    if data.ndim < 1:
        raise ValueError(f"`{name}.data` must have at least 1 dimension (rows, *), got a 0-d array.")
    batch_sizes = as_lengths(sequence.batch_sizes, f"{name}.batch_sizes")
    if batch_sizes.shape[0]:
        if batch_sizes.min() < 1:
            raise ValueError(
                f"`{name}.batch_sizes` must be positive, got {_show(batch_sizes)}. Steps that no "
                f"sequence reaches are not listed."
            )
        if np.any(batch_sizes[1:] > batch_sizes[:-1]):
            raise ValueError(
                f"`{name}.batch_sizes` must be non-increasing, got {_show(batch_sizes)}. Build the "
                f"PackedSequence with pack_padded_sequence or pack_sequence."
            )
    total = int(batch_sizes.sum())
    if data.shape[0] != total:
        raise ValueError(
            f"`{name}.data` has {data.shape[0]} rows but sum(`{name}.batch_sizes`) = {total}; "
            f"the data must hold one row per sequence and step."
        )
    sorted_indices = unsorted_indices = None
    if sequence.sorted_indices is not None:
        sorted_indices = _permutation(sequence.sorted_indices, f"{name}.sorted_indices", None, "")
    if sequence.unsorted_indices is not None:
        batch = None if sorted_indices is None else sorted_indices.shape[0]
        unsorted_indices = _permutation(sequence.unsorted_indices, f"{name}.unsorted_indices", batch,
                                        f"{name}.sorted_indices")
    if sorted_indices is not None and unsorted_indices is not None:
        if np.any(sorted_indices[unsorted_indices] != np.arange(sorted_indices.shape[0])):
            raise ValueError(
                f"`{name}.unsorted_indices` {_show(unsorted_indices)} is not the inverse of "
                f"`{name}.sorted_indices` {_show(sorted_indices)}. Pass unsorted_indices=None to "
                f"have it computed, or build the PackedSequence with pack_padded_sequence."
            )
    if unsorted_indices is not None:
        positions = unsorted_indices
    elif sorted_indices is not None:
        positions = np.empty_like(sorted_indices)
        positions[sorted_indices] = np.arange(sorted_indices.shape[0], dtype=np.int64)
    else:
        positions = None
    first = int(batch_sizes[0]) if batch_sizes.shape[0] else 0
    batch = first if positions is None else positions.shape[0]
    if batch < first:
        raise ValueError(
            f"`{name}.batch_sizes[0]` = {first} sequences but the indices of `{name}` list only "
            f"{batch}; the indices must cover every sequence."
        )
    if positions is None:
        positions = np.arange(batch, dtype=np.int64)
    return Packed(np.ascontiguousarray(data), batch_sizes, positions, sorted_indices, batch)


__all__: Sequence[str] = [
    "UNSORTED_MESSAGE", "as_data", "as_lengths", "check_lengths", "check_sorted",
    "check_padding_side", "check_padding_value", "check_total_length", "as_padded",
    "as_sequences", "as_packed", "Packed", "Sequences",
]
