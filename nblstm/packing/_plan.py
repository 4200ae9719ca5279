"""Drivers: plan a conversion between layouts and run the kernels.

This layer trusts its arguments (validated by :mod:`._validate`). It builds
the per-step and per-sequence row bases of each layout (see
:mod:`._kernels`), asks :func:`~._kernels.row_map` for the row map and hands
the data to :func:`~._kernels.take_rows` as rows of unsigned integers.

Data are only moved, never computed on, so a row of ``F`` items of
``itemsize`` bytes is moved as ``F * itemsize / u`` unsigned integers of
``u`` bytes, ``u`` the widest of 8, 4, 2, 1 that divides the row and the
source address. Every dtype and feature shape therefore shares at most four
compiled signatures of the data kernels.
"""

from __future__ import annotations

import numpy as np

from .._threads import parallel_section
from ._kernels import row_map, take_rows, take_rows_parallel
from ._sort import argsort_desc

#: Moves of at least this many bytes run in parallel.
PARALLEL_MIN_BYTES = 1 << 21
#: Destination rows per parallel work item (at least).
_BLOCK_MIN_ROWS = 16
#: Bytes per parallel work item (at least).
_BLOCK_MIN_BYTES = 1 << 16

_UNITS = (np.uint64, np.uint32, np.uint16, np.uint8)


def _unit(row_bytes: int, *arrays: np.ndarray):
    """The widest unsigned type dividing the row size and every array's address."""
    addresses = [a.__array_interface__["data"][0] for a in arrays]
    for unit in _UNITS:
        size = np.dtype(unit).itemsize
        if row_bytes % size == 0 and all(addr % size == 0 for addr in addresses):
            return unit
    return np.uint8  # pragma: no cover - size 1 always fits


def move_rows(src: np.ndarray, rows: np.ndarray, out: np.ndarray, padding_value=0) -> np.ndarray:
    """``out[j] = src[rows[j]]`` (``padding_value`` where ``rows[j] < 0``), row = first axis.

    Parameters
    ----------
    src : C-contiguous array, shape (source_rows, *features)
    rows : int64 array, shape (destination_rows,)
    out : C-contiguous array, shape (destination_rows, *features), same dtype
    padding_value : scalar
        Cast to ``out.dtype`` as NumPy's unsafe cast does (as torch's ``fill_``).

    Returns
    -------
    out
    """
    n = rows.shape[0]
    row_items = int(np.prod(out.shape[1:], dtype=np.int64))
    row_bytes = row_items * out.dtype.itemsize
    if n == 0 or row_bytes == 0:
        return out
    fill = np.empty(row_items, dtype=out.dtype)
    if out.dtype.kind in "fc" or np.asarray(padding_value).dtype.kind in "biu":
        fill[...] = np.asarray(padding_value).astype(out.dtype)
    else:  # float to integer: NaN and overflow cast as torch's fill_ does, silently
        with np.errstate(all="ignore"):
            fill[...] = np.asarray(padding_value).astype(out.dtype)
    unit = _unit(row_bytes, src, out)
    src2 = src.reshape(src.shape[0], row_items).view(np.uint8).view(unit)
    out2 = out.reshape(n, row_items).view(np.uint8).view(unit)
    fill2 = fill.reshape(1, row_items).view(np.uint8).view(unit)
    if n * row_bytes >= PARALLEL_MIN_BYTES:
        block = max(_BLOCK_MIN_ROWS, -(-_BLOCK_MIN_BYTES // row_bytes))
        with parallel_section():
            take_rows_parallel(src2, rows, fill2, out2, block)
    else:
        take_rows(src2, rows, fill2, out2)
    return out


def build_rows(n_rows: int, dst_step, dst_seq, src_step, src_seq, lengths, padded: bool) -> np.ndarray:
    """The row map (:func:`~._kernels.row_map`); ``-1`` marks padding when ``padded``."""
    rows = np.full(n_rows, -1, dtype=np.int64) if padded else np.empty(n_rows, dtype=np.int64)
    row_map(
        np.ascontiguousarray(dst_step, dtype=np.int64),
        np.ascontiguousarray(dst_seq, dtype=np.int64),
        np.ascontiguousarray(src_step, dtype=np.int64),
        np.ascontiguousarray(src_seq, dtype=np.int64),
        np.ascontiguousarray(lengths, dtype=np.int64),
        rows,
    )
    return rows


def padded_bases(steps: int, batch: int, batch_first: bool):
    """Row bases ``(step_base, seq_base)`` of a padded ``(T, B, *)`` / ``(B, T, *)`` array."""
    t = np.arange(steps, dtype=np.int64)
    b = np.arange(batch, dtype=np.int64)
    return (t, b * steps) if batch_first else (t * batch, b)


def sort_order(lengths: np.ndarray) -> np.ndarray:
    """``sorted_indices`` of ``torch.sort(lengths, descending=True)`` (see :mod:`._sort`)."""
    keys = np.array(lengths, dtype=np.int64)
    perm = np.arange(keys.shape[0], dtype=np.int64)
    argsort_desc(keys, perm)
    return perm


def invert_permutation(perm: np.ndarray) -> np.ndarray:
    """The inverse permutation, int64."""
    inv = np.empty_like(perm, dtype=np.int64)
    inv[perm] = np.arange(perm.shape[0], dtype=np.int64)
    return inv


def batch_sizes_of(sorted_lengths: np.ndarray) -> np.ndarray:
    """``batch_sizes[t]`` = how many of the (non-increasing) lengths exceed ``t``."""
    steps = int(sorted_lengths[0]) if sorted_lengths.shape[0] else 0
    counts = np.bincount(sorted_lengths, minlength=steps + 1)
    return (sorted_lengths.shape[0] - np.cumsum(counts[:steps])).astype(np.int64)


def lengths_of(batch_sizes: np.ndarray, batch: int) -> np.ndarray:
    """Length of the sequence at each sorted position ``0 .. batch-1``."""
    return np.searchsorted(-batch_sizes, -np.arange(batch, dtype=np.int64), side="left").astype(np.int64)


def seq_starts(lengths: np.ndarray) -> np.ndarray:
    """First row of each sequence when the sequences are concatenated."""
    starts = np.zeros(lengths.shape[0], dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    return starts
