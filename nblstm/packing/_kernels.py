"""Numba kernels that move rows between the padded, packed and list layouts.

Every layout of a batch of variable-length sequences stores step ``t`` of
sequence ``b`` in one row of a 2-D ``(rows, width)`` array, at row
``step_base[t] + seq_base[b]``:

=====================  ======================  ======================
layout                 ``step_base[t]``        ``seq_base[b]``
=====================  ======================  ======================
padded ``(T, B, *)``   ``t * B``               ``b``
padded ``(B, T, *)``   ``t``                   ``b * T``
packed                 ``offsets[t]``          sorted position of ``b``
concatenated list      ``t``                   first row of ``b``
=====================  ======================  ======================

(``offsets`` is the offset table of :func:`~nblstm.packing.step_offsets`.)
So every conversion is two steps: :func:`row_map` builds, for every
destination row, the source row it comes from (``-1`` for padding), and
:func:`take_rows` moves the rows. Only :func:`take_rows` touches the data,
and it sees the data as rows of unsigned integers of the widest size that
divides the row (see :mod:`._plan`), so one compiled signature per integer
width serves every dtype and feature shape.

Kernels take only arrays and scalars, never allocate their result, and
never write to their inputs.
"""

from __future__ import annotations

from numba import njit, prange

from .._config import JIT_OPTIONS, PARALLEL_JIT_OPTIONS


@njit(**JIT_OPTIONS)
def row_map(dst_step, dst_seq, src_step, src_seq, lengths, rows):  # pragma: no cover - jitted
    """Fill ``rows`` with the source row of every destination row.

    For every sequence ``b`` and step ``t < lengths[b]``::

        rows[dst_step[t] + dst_seq[b]] = src_step[t] + src_seq[b]

    Entries of ``rows`` that belong to no step of any sequence (padding) are
    left as they are; the caller initialises them (to ``-1``).

    Parameters
    ----------
    dst_step, src_step : int64 array, shape (steps,)
        Per-step row base of the destination and source layouts.
    dst_seq, src_seq : int64 array, shape (batch,)
        Per-sequence row base of the destination and source layouts.
    lengths : int64 array, shape (batch,)
        ``0 <= lengths[b] <= steps``.
    rows : int64 array, shape (destination_rows,)
        Output.
    """
    for b in range(lengths.shape[0]):
        d = dst_seq[b]
        s = src_seq[b]
        for t in range(lengths[b]):
            rows[dst_step[t] + d] = src_step[t] + s


@njit(**JIT_OPTIONS)
def take_rows(src, rows, fill, dst):  # pragma: no cover - jitted
    """``dst[j] = src[rows[j]]``, or ``fill[0]`` where ``rows[j] < 0``.

    Parameters
    ----------
    src : array, shape (source_rows, width)
    rows : int64 array, shape (destination_rows,)
        Source row of each destination row, ``-1`` for padding.
    fill : array, shape (1, width)
        The padding row (same dtype as ``src``).
    dst : array, shape (destination_rows, width)
        Output (same dtype as ``src``).
    """
    take_row_range(src, rows, fill, dst, 0, rows.shape[0])


@njit(**JIT_OPTIONS)
def take_row_range(src, rows, fill, dst, start, stop):  # pragma: no cover - jitted
    """:func:`take_rows` for destination rows ``[start, stop)``."""
    width = dst.shape[1]
    for j in range(start, stop):
        r = rows[j]
        if r >= 0:
            for k in range(width):
                dst[j, k] = src[r, k]
        else:
            for k in range(width):
                dst[j, k] = fill[0, k]


@njit(**PARALLEL_JIT_OPTIONS)
def take_rows_parallel(src, rows, fill, dst, block):  # pragma: no cover - jitted
    """:func:`take_rows` with blocks of ``block`` destination rows run in parallel.

    The destination rows of one block are the rows of a few consecutive time
    steps (or sequences), so threads write disjoint, contiguous memory.
    """
    n = rows.shape[0]
    n_blocks = (n + block - 1) // block
    for i in prange(n_blocks):
        take_row_range(src, rows, fill, dst, i * block, min(n, (i + 1) * block))
