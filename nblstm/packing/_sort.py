"""Sorting lengths longest-first exactly as ``torch.sort(lengths, descending=True)``.

PyTorch's CPU sort of an int64 vector with ``stable=False`` (what
``pack_padded_sequence(..., enforce_sorted=False)`` uses) is libstdc++'s
``std::sort`` (introsort: median-of-three quicksort, heapsort past a depth
limit, insertion sort below 16 elements) on (key, index) pairs with a
``key_a > key_b`` comparator. It is deterministic but *not* stable: ties keep
their original order only for at most 16 sequences. :func:`argsort_desc`
replays that algorithm step for step, so ``sorted_indices`` (and the packed
data) are identical to torch's for every input, ties included.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .._config import JIT_OPTIONS

_THRESHOLD = 16  # libstdc++ _S_threshold


@njit(**JIT_OPTIONS)
def _swap(keys, perm, i, j):  # pragma: no cover - jitted
    k = keys[i]
    keys[i] = keys[j]
    keys[j] = k
    p = perm[i]
    perm[i] = perm[j]
    perm[j] = p


@njit(**JIT_OPTIONS)
def _adjust_heap(keys, perm, first, hole, length, vkey, vidx):  # pragma: no cover - jitted
    """libstdc++ ``__adjust_heap`` followed by ``__push_heap`` (max-heap for ``>``)."""
    top = hole
    child = hole
    while child < (length - 1) // 2:
        child = 2 * (child + 1)
        if keys[first + child] > keys[first + child - 1]:
            child -= 1
        keys[first + hole] = keys[first + child]
        perm[first + hole] = perm[first + child]
        hole = child
    if (length & 1) == 0 and child == (length - 2) // 2:
        child = 2 * (child + 1)
        keys[first + hole] = keys[first + child - 1]
        perm[first + hole] = perm[first + child - 1]
        hole = child - 1
    parent = (hole - 1) // 2
    while hole > top and keys[first + parent] > vkey:
        keys[first + hole] = keys[first + parent]
        perm[first + hole] = perm[first + parent]
        hole = parent
        parent = (hole - 1) // 2
    keys[first + hole] = vkey
    perm[first + hole] = vidx


@njit(**JIT_OPTIONS)
def _heap_sort(keys, perm, first, last):  # pragma: no cover - jitted
    """libstdc++ ``__partial_sort(first, last, last)``: make_heap then sort_heap."""
    length = last - first
    if length >= 2:
        parent = (length - 2) // 2
        while True:
            _adjust_heap(keys, perm, first, parent, length, keys[first + parent], perm[first + parent])
            if parent == 0:
                break
            parent -= 1
    while last - first > 1:
        last -= 1
        vkey = keys[last]
        vidx = perm[last]
        keys[last] = keys[first]
        perm[last] = perm[first]
        _adjust_heap(keys, perm, first, 0, last - first, vkey, vidx)


@njit(**JIT_OPTIONS)
def _partition(keys, perm, first, last):  # pragma: no cover - jitted
    """libstdc++ ``__unguarded_partition_pivot``: returns the cut."""
    mid = first + (last - first) // 2
    a = first + 1
    c = last - 1
    if keys[a] > keys[mid]:
        if keys[mid] > keys[c]:
            _swap(keys, perm, first, mid)
        elif keys[a] > keys[c]:
            _swap(keys, perm, first, c)
        else:
            _swap(keys, perm, first, a)
    elif keys[a] > keys[c]:
        _swap(keys, perm, first, a)
    elif keys[mid] > keys[c]:
        _swap(keys, perm, first, c)
    else:
        _swap(keys, perm, first, mid)
    pivot = keys[first]
    lo = first + 1
    hi = last
    while True:
        while keys[lo] > pivot:
            lo += 1
        hi -= 1
        while pivot > keys[hi]:
            hi -= 1
        if not lo < hi:
            return lo
        _swap(keys, perm, lo, hi)
        lo += 1


@njit(**JIT_OPTIONS)
def _linear_insert(keys, perm, i):  # pragma: no cover - jitted
    """libstdc++ ``__unguarded_linear_insert``."""
    vkey = keys[i]
    vidx = perm[i]
    j = i - 1
    while vkey > keys[j]:
        keys[i] = keys[j]
        perm[i] = perm[j]
        i = j
        j -= 1
    keys[i] = vkey
    perm[i] = vidx


@njit(**JIT_OPTIONS)
def _insertion_sort(keys, perm, first, last):  # pragma: no cover - jitted
    """libstdc++ ``__insertion_sort``."""
    for i in range(first + 1, last):
        if keys[i] > keys[first]:
            vkey = keys[i]
            vidx = perm[i]
            for j in range(i, first, -1):
                keys[j] = keys[j - 1]
                perm[j] = perm[j - 1]
            keys[first] = vkey
            perm[first] = vidx
        else:
            _linear_insert(keys, perm, i)


@njit(**JIT_OPTIONS)
def argsort_desc(keys, perm):  # pragma: no cover - jitted
    """Sort ``keys`` in place, longest first, carrying ``perm`` along (torch's order).

    Parameters
    ----------
    keys : int64 array, shape (n,)
        The lengths; sorted in place (non-increasing) on return.
    perm : int64 array, shape (n,)
        Must hold ``0 .. n-1`` on entry; holds the ``sorted_indices`` on return.
    """
    n = keys.shape[0]
    if n < 2:
        return
    depth = 0
    m = n
    while m > 1:  # depth limit is 2 * floor(log2(n)), as std::__lg
        m >>= 1
        depth += 1
    depth *= 2
    # Explicit stack in place of __introsort_loop's recursion. Sub-ranges are
    # disjoint, so the order they are processed in does not change the result.
    stack = np.empty((2 * depth + 2, 3), dtype=np.int64)
    top = 0
    stack[0, 0] = 0
    stack[0, 1] = n
    stack[0, 2] = depth
    top = 1
    while top > 0:
        top -= 1
        first = stack[top, 0]
        last = stack[top, 1]
        limit = stack[top, 2]
        while last - first > _THRESHOLD:
            if limit == 0:
                _heap_sort(keys, perm, first, last)
                break
            limit -= 1
            cut = _partition(keys, perm, first, last)
            stack[top, 0] = cut
            stack[top, 1] = last
            stack[top, 2] = limit
            top += 1
            last = cut
    if n > _THRESHOLD:
        _insertion_sort(keys, perm, 0, _THRESHOLD)
        for i in range(_THRESHOLD, n):
            _linear_insert(keys, perm, i)
    else:
        _insertion_sort(keys, perm, 0, n)
