"""The packed representation: :class:`PackedSequence` and its offset table."""

from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np


class PackedSequence(NamedTuple):
    """A batch of variable-length sequences, packed time-major.

    Made by :func:`~nblstm.packing.pack_padded_sequence` or
    :func:`~nblstm.packing.pack_sequence`; a plain NamedTuple, so
    ``PackedSequence(data, batch_sizes, sorted_indices, unsorted_indices)``
    and tuple unpacking work as in torch.

    Attributes
    ----------
    data : ndarray, shape (total_rows, *features)
        The rows of every sequence, step by step: first the rows of step 0 of
        every sequence that has one (in sorted order, longest first), then
        those of step 1, and so on. ``total_rows == sum(batch_sizes)``.
    batch_sizes : ndarray of int64, shape (max_length,)
        How many sequences have a row at each time step (positive,
        non-increasing). Steps that no sequence reaches are not listed, so
        zero-length sequences do not show here.
    sorted_indices : ndarray of int64, shape (batch,), or None
        ``sorted_indices[i]`` is the caller's index of the ``i``-th sequence in
        the packed (length-sorted) order. ``None`` means the identity.
    unsorted_indices : ndarray of int64, shape (batch,), or None
        The inverse permutation of ``sorted_indices``: the packed position of
        each of the caller's sequences.

    Notes
    -----
    The batch size is ``len(sorted_indices)`` (or ``len(unsorted_indices)``)
    when present, else ``batch_sizes[0]`` (0 if ``batch_sizes`` is empty).
    Because zero-length sequences are invisible in ``batch_sizes``, the
    packing functions always fill in both index fields when some length is 0
    (the identity permutation if the batch was already sorted).
    """

    data: np.ndarray
    batch_sizes: np.ndarray
    sorted_indices: Optional[np.ndarray] = None
    unsorted_indices: Optional[np.ndarray] = None


def step_offsets(batch_sizes: np.ndarray) -> np.ndarray:
    """The offset table: the first row in ``data`` of each time step.

    This is how the packing kernels address packed data: step ``t`` of the
    sequence at sorted position ``i`` (``i < batch_sizes[t]``) is row
    ``offsets[t] + i``.

    Parameters
    ----------
    batch_sizes : array_like of int, shape (max_length,)

    Returns
    -------
    ndarray of int64, shape (max_length + 1,)
        ``offsets[t]`` is the first row of step ``t``; rows of step ``t`` are
        ``data[offsets[t]:offsets[t + 1]]`` and ``offsets[-1]`` is the total
        number of rows.
    """
    batch_sizes = np.asarray(batch_sizes, dtype=np.int64)
    offsets = np.zeros(batch_sizes.shape[0] + 1, dtype=np.int64)
    np.cumsum(batch_sizes, out=offsets[1:])
    return offsets


def reversed_rows(batch_sizes: np.ndarray) -> np.ndarray:
    """The packed row of each packed row's mirror in its own sequence.

    Row ``offsets[t] + i`` (step ``t`` of the sequence at sorted position
    ``i``, of length ``L_i``) maps to ``offsets[L_i - 1 - t] + i``: taking the
    rows of ``data`` in this order reverses every sequence within its own
    length, and the batch sizes stay the same. The map is its own inverse.

    Parameters
    ----------
    batch_sizes : int64 ndarray, shape (max_length,), non-increasing

    Returns
    -------
    ndarray of int64, shape (total_rows,)
    """
    batch_sizes = np.asarray(batch_sizes, dtype=np.int64)
    offsets = step_offsets(batch_sizes)
    steps = np.repeat(np.arange(batch_sizes.shape[0], dtype=np.int64), batch_sizes)
    positions = np.arange(offsets[-1], dtype=np.int64) - offsets[steps]
    # Steps with more than i rows (batch sizes never grow) = length of sequence i.
    lengths = np.searchsorted(-batch_sizes, -positions, side="left")
    return offsets[lengths - 1 - steps] + positions
