"""The conversions between padded, packed and list layouts, on validated arrays.

Each function describes its source and destination layouts by their row
bases (see :mod:`._kernels`), builds the row map and moves the rows once.
Sorting and unsorting are folded into the row map: the data are never
reordered in a separate pass.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import numpy as np

from ._packed import PackedSequence, step_offsets
from ._plan import (
    batch_sizes_of, build_rows, invert_permutation, lengths_of, move_rows, padded_bases,
    seq_starts, sort_order,
)


def pack(src: np.ndarray, src_step: np.ndarray, src_seq: np.ndarray, lengths: np.ndarray,
         order: Optional[np.ndarray]) -> PackedSequence:
    """Pack the sequences found at rows ``src_step[t] + src_seq[b]`` of ``src``.

    Parameters
    ----------
    src : C-contiguous array, shape (source_rows, *features)
    src_step, src_seq : int64 arrays, shapes (steps,), (batch,)
    lengths : int64 array, shape (batch,), caller order
    order : int64 array of shape (batch,) or None
        ``sorted_indices``; ``None`` when ``lengths`` are already non-increasing.

    Returns
    -------
    PackedSequence
        With ``sorted_indices``/``unsorted_indices`` when ``order`` was given
        or some length is 0 (identity then), else ``None``.
    """
    batch = lengths.shape[0]
    sorted_indices = order if order is not None else np.arange(batch, dtype=np.int64)
    sorted_lengths = lengths[sorted_indices]
    batch_sizes = batch_sizes_of(sorted_lengths)
    offsets = step_offsets(batch_sizes)
    n_rows = int(offsets[-1])
    rows = build_rows(n_rows, offsets[:-1], np.arange(batch, dtype=np.int64),
                      src_step, src_seq[sorted_indices], sorted_lengths, padded=False)
    data = np.empty((n_rows,) + src.shape[1:], dtype=src.dtype)
    move_rows(src, rows, data)
    if order is None and not (batch and sorted_lengths[-1] == 0):
        return PackedSequence(data, batch_sizes, None, None)
    return PackedSequence(data, batch_sizes, sorted_indices, invert_permutation(sorted_indices))


def pack_padded(x: np.ndarray, lengths: np.ndarray, batch_first: bool,
                enforce_sorted: bool) -> PackedSequence:
    """:func:`pack` for a padded ``(T, B, *)`` or ``(B, T, *)`` array."""
    steps, batch = (x.shape[1], x.shape[0]) if batch_first else x.shape[:2]
    src_step, src_seq = padded_bases(steps, batch, batch_first)
    order = None if enforce_sorted else sort_order(lengths)
    src = x.reshape((steps * batch,) + x.shape[2:])
    return pack(src, src_step, src_seq, lengths, order)


def concatenate(arrays: List[np.ndarray], dtype: np.dtype) -> np.ndarray:
    """The sequences stacked along time into one C-contiguous ``(sum L, *)`` array."""
    if len(arrays) == 1:
        return np.ascontiguousarray(arrays[0], dtype=dtype)
    return np.concatenate(arrays, axis=0, dtype=dtype, casting="unsafe")


def pack_list(flat: np.ndarray, lengths: np.ndarray, enforce_sorted: bool) -> PackedSequence:
    """:func:`pack` for sequences concatenated into ``flat``."""
    steps = int(lengths.max())
    order = None if enforce_sorted else sort_order(lengths)
    return pack(flat, np.arange(steps, dtype=np.int64), seq_starts(lengths), lengths, order)


def pad_list(flat: np.ndarray, lengths: np.ndarray, batch_first: bool, padding_value,
             left: bool) -> np.ndarray:
    """Pad sequences concatenated into ``flat`` to ``(T, B, *)`` or ``(B, T, *)``."""
    batch = lengths.shape[0]
    steps = int(lengths.max())
    dst_step, dst_seq = padded_bases(steps, batch, batch_first)
    if left:
        dst_seq = dst_seq + (steps - lengths) * (1 if batch_first else batch)
    rows = build_rows(steps * batch, dst_step, dst_seq, np.arange(steps, dtype=np.int64),
                      seq_starts(lengths), lengths, padded=True)
    shape = (batch, steps) if batch_first else (steps, batch)
    out = np.empty(shape + flat.shape[1:], dtype=flat.dtype)
    move_rows(flat, rows, out.reshape((steps * batch,) + flat.shape[1:]), padding_value)
    return out


def pad_packed(data: np.ndarray, batch_sizes: np.ndarray, positions: np.ndarray,
               batch_first: bool, padding_value, total_length: int) -> Tuple[np.ndarray, np.ndarray]:
    """Unpack to a padded array of ``total_length`` steps, in the caller's batch order.

    Parameters
    ----------
    data : C-contiguous array, shape (rows, *features)
    batch_sizes : int64 array, shape (steps,)
    positions : int64 array, shape (batch,)
        Sorted position of each caller sequence (``unsorted_indices``).
    """
    batch = positions.shape[0]
    lengths = lengths_of(batch_sizes, batch)[positions]
    dst_step, dst_seq = padded_bases(total_length, batch, batch_first)
    rows = build_rows(total_length * batch, dst_step, dst_seq, step_offsets(batch_sizes)[:-1],
                      positions, lengths, padded=True)
    shape = (batch, total_length) if batch_first else (total_length, batch)
    out = np.empty(shape + data.shape[1:], dtype=data.dtype)
    move_rows(data, rows, out.reshape((total_length * batch,) + data.shape[1:]), padding_value)
    return out, lengths


def split_list(src: np.ndarray, src_step: np.ndarray, src_seq: np.ndarray,
               lengths: np.ndarray) -> List[np.ndarray]:
    """The sequences at rows ``src_step[t] + src_seq[b]`` as a list of ``(L_b, *)`` arrays.

    The arrays are consecutive, non-overlapping views of one fresh buffer.
    """
    starts = seq_starts(lengths)
    n_rows = int(lengths.sum())
    rows = build_rows(n_rows, np.arange(src_step.shape[0], dtype=np.int64), starts,
                      src_step, src_seq, lengths, padded=False)
    flat = np.empty((n_rows,) + src.shape[1:], dtype=src.dtype)
    move_rows(src, rows, flat)
    return np.split(flat, starts[1:], axis=0) if lengths.shape[0] else []


def unpad(x: np.ndarray, lengths: np.ndarray, batch_first: bool) -> List[np.ndarray]:
    """:func:`split_list` for a padded array."""
    steps, batch = (x.shape[1], x.shape[0]) if batch_first else x.shape[:2]
    src_step, src_seq = padded_bases(steps, batch, batch_first)
    return split_list(x.reshape((steps * batch,) + x.shape[2:]), src_step, src_seq, lengths)


def unpack(data: np.ndarray, batch_sizes: np.ndarray, positions: np.ndarray) -> List[np.ndarray]:
    """:func:`split_list` for packed data, in the caller's batch order."""
    lengths = lengths_of(batch_sizes, positions.shape[0])[positions]
    return split_list(data, step_offsets(batch_sizes)[:-1], positions, lengths)
