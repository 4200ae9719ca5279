"""The packed representation: :class:`PackedSequence` and its offset table."""

from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np


class PackedSequence(NamedTuple):
    """A batch of variable-length sequences, packed time-major.

    Attributes
    ----------
    data : ndarray, shape (total_rows, *features)
        The rows of every sequence, step by step: first the rows of step 0 of
        every sequence that has one (in sorted order, longest first), then
        those of step 1, and so on.
    batch_sizes : ndarray of int64, shape (max_length,)
        How many sequences have a row at each time step (non-increasing).
    sorted_indices : ndarray of int64, shape (batch,), or None
        ``sorted_indices[i]`` is the caller's index of the ``i``-th sequence in
        the packed (length-sorted) order.
    unsorted_indices : ndarray of int64, shape (batch,), or None
        The inverse permutation of ``sorted_indices``.
    """

    data: np.ndarray
    batch_sizes: np.ndarray
    sorted_indices: Optional[np.ndarray] = None
    unsorted_indices: Optional[np.ndarray] = None


def step_offsets(batch_sizes: np.ndarray) -> np.ndarray:
    """The offset table: the first row in ``data`` of each time step.

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
