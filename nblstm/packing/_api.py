"""Public packing functions: validate, then hand over to :mod:`._drivers`.

Semantics are those of ``torch.nn.utils.rnn`` (torch 2.13) with NumPy arrays
in and out, plus support for sequences of length 0.

Zero-length sequences
    They occupy no rows of ``data`` and ``batch_sizes`` covers only steps
    ``1 .. max(lengths)``, so ``batch_sizes[0]`` no longer tells how many
    sequences the batch holds. Whenever some length is 0 the packing functions
    therefore always return ``sorted_indices`` and ``unsorted_indices``
    (the identity permutation when ``enforce_sorted=True``). The batch size of
    a :class:`PackedSequence` is ``len(sorted_indices)`` (or
    ``len(unsorted_indices)``) when present, else ``batch_sizes[0]`` (0 when
    ``batch_sizes`` is empty). Without zero lengths the results are exactly
    torch's, ``None`` indices included.

Sort order
    With ``enforce_sorted=False`` sequences are ordered exactly as
    ``torch.sort(lengths, descending=True)`` orders them on CPU, ties
    included (see :mod:`._sort`): stable for up to 16 sequences, a fixed but
    not stable order beyond. Zero-length sequences take part in the sort and
    end up last.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np
from numpy.typing import ArrayLike

from . import _drivers
from ._packed import PackedSequence
from ._validate import (
    as_lengths, as_packed, as_padded, as_sequences, check_lengths, check_padding_side,
    check_padding_value, check_sorted, check_total_length,
)

__all__ = [
    "pack_padded_sequence", "pad_packed_sequence", "pad_sequence", "unpad_sequence",
    "pack_sequence", "unpack_sequence",
]


def pack_padded_sequence(
    input: ArrayLike,
    lengths: ArrayLike,
    batch_first: bool = False,
    enforce_sorted: bool = True,
) -> PackedSequence:
    """Pack a padded batch of variable-length sequences.

    Parameters
    ----------
    input : array_like, shape (T, B, *) or (B, T, *) if `batch_first`
        Padded sequences; ``*`` is any number of trailing dimensions. Any
        numeric dtype; the packed data keep it.
    lengths : array_like of int, shape (B,)
        Length of each sequence, ``0 <= lengths[b] <= T``. Steps past a
        sequence's length are ignored.
    batch_first : bool, default False
        Whether `input` is ``(B, T, *)``.
    enforce_sorted : bool, default True
        If True, `lengths` must be non-increasing and the batch is packed in
        the given order. If False, the batch is sorted longest first (in the
        order of ``torch.sort(lengths, descending=True)``) and the permutation
        is returned in ``sorted_indices``.

    Returns
    -------
    PackedSequence
        ``data`` of shape ``(sum(lengths), *)``, int64 ``batch_sizes`` of
        shape ``(max(lengths),)``. ``sorted_indices``/``unsorted_indices`` are
        int64 ``(B,)`` when `enforce_sorted` is False or some length is 0
        (identity then; see the module notes), else None.

    Raises
    ------
    TypeError
        Non-numeric `input`, non-integer `lengths`.
    ValueError
        `input` with fewer than 2 dimensions; `lengths` not 1-D, not one per
        sequence, negative, longer than ``T``, or unsorted while
        `enforce_sorted` is True.
    """
    x = as_padded(input, "input")
    lengths = as_lengths(lengths, "lengths")
    steps, batch = (x.shape[1], x.shape[0]) if batch_first else x.shape[:2]
    check_lengths(lengths, batch, steps)
    if enforce_sorted:
        check_sorted(lengths)
    return _drivers.pack_padded(x, lengths, bool(batch_first), bool(enforce_sorted))


def pad_packed_sequence(
    sequence: PackedSequence,
    batch_first: bool = False,
    padding_value: float = 0.0,
    total_length: Optional[int] = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """Pad a packed batch; the inverse of :func:`pack_padded_sequence`.

    Parameters
    ----------
    sequence : PackedSequence
        As made by :func:`pack_padded_sequence` or :func:`pack_sequence`
        (a torch ``PackedSequence`` of CPU tensors is accepted too). Its
        fields are checked for consistency.
    batch_first : bool, default False
        Return ``(B, T, *)`` instead of ``(T, B, *)``.
    padding_value : scalar, default 0.0
        Value of the padded elements, cast to the data dtype.
    total_length : int, optional
        Pad to this many steps instead of ``len(batch_sizes)``; must not be
        smaller.

    Returns
    -------
    padded : ndarray, shape (T, B, *) or (B, T, *) if `batch_first`
        Fresh array, dtype of ``sequence.data``, batch in the caller's
        original order. ``B`` includes zero-length sequences (see the
        module notes).
    lengths : ndarray of int64, shape (B,)
        Length of each sequence, in the caller's order.

    Raises
    ------
    TypeError
        `sequence` not a PackedSequence; non-numeric data or `padding_value`;
        non-integer `total_length` or fields.
    ValueError
        Fields that disagree (``batch_sizes`` not positive and non-increasing,
        ``data`` rows != ``sum(batch_sizes)``, indices that are not inverse
        permutations covering the batch); `total_length` too small.
    """
    packed = as_packed(sequence)
    check_padding_value(padding_value)
    steps = packed.batch_sizes.shape[0]
    total = steps if total_length is None else check_total_length(total_length, steps)
    return _drivers.pad_packed(packed.data, packed.batch_sizes, packed.positions,
                               bool(batch_first), padding_value, total)


def pad_sequence(
    sequences: Sequence[ArrayLike],
    batch_first: bool = False,
    padding_value: float = 0.0,
    padding_side: str = "right",
) -> np.ndarray:
    """Stack variable-length sequences into one padded array.

    Parameters
    ----------
    sequences : sequence of array_like, each of shape (L_i, *)
        At least one; ``L_i`` may be 0; all share ``*``. The result has the
        dtype of the first (others are cast, as in torch).
    batch_first : bool, default False
        Return ``(B, T, *)`` instead of ``(T, B, *)``.
    padding_value : scalar, default 0.0
        Value of the padded elements, cast to the result dtype.
    padding_side : {"right", "left"}, default "right"
        Where the padding goes.

    Returns
    -------
    ndarray, shape (T, B, *) or (B, T, *) if `batch_first`
        ``T = max(L_i)``.

    Raises
    ------
    TypeError
        Non-numeric sequences or `padding_value`.
    ValueError
        Empty `sequences`, 0-d sequences, mismatched trailing shapes, bad
        `padding_side`.
    """
    check_padding_side(padding_side)
    check_padding_value(padding_value)
    seqs = as_sequences(sequences)
    flat = _drivers.concatenate(seqs.arrays, seqs.dtype)
    return _drivers.pad_list(flat, seqs.lengths, bool(batch_first), padding_value,
                             padding_side == "left")


def unpad_sequence(
    padded_sequences: ArrayLike,
    lengths: ArrayLike,
    batch_first: bool = False,
) -> List[np.ndarray]:
    """Split a padded array into its sequences; the inverse of :func:`pad_sequence`.

    Parameters
    ----------
    padded_sequences : array_like, shape (T, B, *) or (B, T, *) if `batch_first`
        Right-padded sequences. Not modified (torch transposes its argument
        in place; this does not).
    lengths : array_like of int, shape (B,)
        ``0 <= lengths[b] <= T``.
    batch_first : bool, default False

    Returns
    -------
    list of B ndarrays, shapes (lengths[b], *)
        Non-overlapping views of one fresh buffer.

    Raises
    ------
    TypeError, ValueError
        As :func:`pack_padded_sequence` (sortedness is not required).
    """
    x = as_padded(padded_sequences, "padded_sequences")
    lengths = as_lengths(lengths, "lengths")
    steps, batch = (x.shape[1], x.shape[0]) if batch_first else x.shape[:2]
    check_lengths(lengths, batch, steps)
    return _drivers.unpad(x, lengths, bool(batch_first))


def pack_sequence(sequences: Sequence[ArrayLike], enforce_sorted: bool = True) -> PackedSequence:
    """Pack a list of variable-length sequences.

    Same result as ``pack_padded_sequence(pad_sequence(sequences), lengths,
    enforce_sorted=enforce_sorted)`` without building the padded array.

    Parameters
    ----------
    sequences : sequence of array_like, each of shape (L_i, *)
        At least one; ``L_i`` may be 0; all share ``*``; dtype of the first.
    enforce_sorted : bool, default True
        If True, the ``L_i`` must be non-increasing.

    Returns
    -------
    PackedSequence
        As :func:`pack_padded_sequence`.

    Raises
    ------
    TypeError, ValueError
        As :func:`pad_sequence`; unsorted lengths while `enforce_sorted`.
    """
    seqs = as_sequences(sequences)
    if enforce_sorted:
        check_sorted(seqs.lengths)
    flat = _drivers.concatenate(seqs.arrays, seqs.dtype)
    return _drivers.pack_list(flat, seqs.lengths, bool(enforce_sorted))


def unpack_sequence(packed_sequences: PackedSequence) -> List[np.ndarray]:
    """Split a packed batch into its sequences; the inverse of :func:`pack_sequence`.

    Parameters
    ----------
    packed_sequences : PackedSequence

    Returns
    -------
    list of B ndarrays, shapes (L_b, *)
        In the caller's original order, zero-length sequences included;
        non-overlapping views of one fresh buffer.

    Raises
    ------
    TypeError, ValueError
        As :func:`pad_packed_sequence`.
    """
    packed = as_packed(packed_sequences, "packed_sequences")
    return _drivers.unpack(packed.data, packed.batch_sizes, packed.positions)
