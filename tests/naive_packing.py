"""Pure NumPy / pure Python reference twins of the packing kernels.

One twin per Numba kernel in ``nblstm.packing._kernels`` and
``nblstm.packing._sort``, written for clarity rather than speed, plus
straightforward references of the public conversions built only on NumPy
(no offset table, no row maps) for tests that do not need torch.
"""

from __future__ import annotations

import numpy as np


# --- twins of the kernels ---------------------------------------------------

#: How often :func:`argsort_desc` fell back to heapsort (tests check coverage).
HEAPSORT_CALLS = [0]


def row_map(dst_step, dst_seq, src_step, src_seq, lengths, rows):
    """Twin of ``_kernels.row_map`` (vectorised per sequence)."""
    for b, n in enumerate(lengths):
        t = np.arange(n)
        rows[dst_step[t] + dst_seq[b]] = src_step[t] + src_seq[b]


def take_rows(src, rows, fill, dst):
    """Twin of ``_kernels.take_rows``."""
    dst[...] = np.where((rows >= 0)[:, None], src[np.maximum(rows, 0)] if len(src) else fill, fill)


def take_rows_parallel(src, rows, fill, dst, block):
    """Twin of ``_kernels.take_rows_parallel`` (``block`` changes nothing)."""
    take_rows(src, rows, fill, dst)


def argsort_desc(keys, perm):
    """Twin of ``_sort.argsort_desc``: libstdc++ ``std::sort`` with ``a > b``, recursive.

    A line-by-line transcription of ``std::__introsort_loop``,
    ``std::__partial_sort`` and ``std::__final_insertion_sort`` (GCC's
    ``bits/stl_algo.h`` / ``stl_heap.h``) on a list of (key, index) pairs.
    """
    a = list(zip(keys.tolist(), perm.tolist()))
    n = len(a)

    def comp(x, y):
        return x[0] > y[0]

    def adjust_heap(first, hole, length, value):
        top = second = hole
        while second < (length - 1) // 2:
            second = 2 * (second + 1)
            if comp(a[first + second], a[first + second - 1]):
                second -= 1
            a[first + hole] = a[first + second]
            hole = second
        if length % 2 == 0 and second == (length - 2) // 2:
            second = 2 * (second + 1)
            a[first + hole] = a[first + second - 1]
            hole = second - 1
        parent = (hole - 1) // 2
        while hole > top and comp(a[first + parent], value):
            a[first + hole] = a[first + parent]
            hole = parent
            parent = (hole - 1) // 2
        a[first + hole] = value

    def partial_sort(first, last):
        HEAPSORT_CALLS[0] += 1
        length = last - first
        if length >= 2:
            for parent in range((length - 2) // 2, -1, -1):
                adjust_heap(first, parent, length, a[first + parent])
        while last - first > 1:
            last -= 1
            value = a[last]
            a[last] = a[first]
            adjust_heap(first, 0, last - first, value)

    def move_median_to_first(result, x, y, z):
        if comp(a[x], a[y]):
            if comp(a[y], a[z]):
                m = y
            elif comp(a[x], a[z]):
                m = z
            else:
                m = x
        elif comp(a[x], a[z]):
            m = x
        elif comp(a[y], a[z]):
            m = z
        else:
            m = y
        a[result], a[m] = a[m], a[result]

    def unguarded_partition(first, last, pivot):
        while True:
            while comp(a[first], a[pivot]):
                first += 1
            last -= 1
            while comp(a[pivot], a[last]):
                last -= 1
            if not first < last:
                return first
            a[first], a[last] = a[last], a[first]
            first += 1

    def introsort_loop(first, last, depth):
        while last - first > 16:
            if depth == 0:
                partial_sort(first, last)
                return
            depth -= 1
            mid = first + (last - first) // 2
            move_median_to_first(first, first + 1, mid, last - 1)
            cut = unguarded_partition(first + 1, last, first)
            introsort_loop(cut, last, depth)
            last = cut

    def unguarded_linear_insert(i):
        value = a[i]
        j = i - 1
        while comp(value, a[j]):
            a[i] = a[j]
            i = j
            j -= 1
        a[i] = value

    def insertion_sort(first, last):
        for i in range(first + 1, last):
            if comp(a[i], a[first]):
                value = a[i]
                a[first + 1:i + 1] = a[first:i]
                a[first] = value
            else:
                unguarded_linear_insert(i)

    if n:
        introsort_loop(0, n, 2 * (n.bit_length() - 1))
        if n > 16:
            insertion_sort(0, 16)
            for i in range(16, n):
                unguarded_linear_insert(i)
        else:
            insertion_sort(0, n)
    keys[:] = [k for k, _ in a]
    perm[:] = [i for _, i in a]


def antiqsort(n):
    """McIlroy's adversary for median-of-3 quicksort: drives std::sort into heapsort."""
    vals = [None] * n
    state = {"solid": 0, "candidate": 0}

    class Key:
        __slots__ = ("i",)

        def __init__(self, i):
            self.i = i

        def __gt__(self, other):
            x, y = self.i, other.i
            if vals[x] is None and vals[y] is None:
                z = x if x == state["candidate"] else y
                vals[z] = 10 * n - state["solid"]
                state["solid"] += 1
            if vals[x] is None:
                state["candidate"] = x
            elif vals[y] is None:
                state["candidate"] = y
            return (-1 if vals[x] is None else vals[x]) > (-1 if vals[y] is None else vals[y])

    keys = np.empty(n, dtype=object)  # the twin's algorithm run on lazy keys
    keys[:] = [Key(i) for i in range(n)]
    argsort_desc(keys, np.arange(n))
    return np.array([-1 if v is None else v for v in vals], dtype=np.int64)


# --- references of the public conversions -----------------------------------

def stable_order(lengths):
    """Longest first, ties in caller order (torch's order for batches of at most 16)."""
    return np.argsort(-np.asarray(lengths), kind="stable")


def pack_padded(x, lengths, batch_first=False, order=None):
    """(data, batch_sizes) by slicing, step by step."""
    x = np.asarray(x)
    if batch_first:
        x = np.swapaxes(x, 0, 1)
    lengths = np.asarray(lengths)
    order = np.arange(len(lengths)) if order is None else np.asarray(order)
    sl = lengths[order]
    steps = int(sl.max()) if len(sl) else 0
    batch_sizes = np.array([(sl > t).sum() for t in range(steps)], dtype=np.int64)
    chunks = [x[t, order[: batch_sizes[t]]] for t in range(steps)]
    data = np.concatenate(chunks) if chunks else np.empty((0,) + x.shape[2:], x.dtype)
    return data, batch_sizes


def pad_list(sequences, batch_first=False, padding_value=0.0, padding_side="right"):
    """``pad_sequence`` by slice assignment."""
    sequences = [np.asarray(s) for s in sequences]
    steps = max(len(s) for s in sequences)
    out = np.empty((steps, len(sequences)) + sequences[0].shape[1:], sequences[0].dtype)
    out[...] = np.asarray(padding_value).astype(out.dtype)
    for b, s in enumerate(sequences):
        if padding_side == "right":
            out[: len(s), b] = s
        else:
            out[steps - len(s):, b] = s
    return np.swapaxes(out, 0, 1).copy() if batch_first else out


# --- random batches for property tests --------------------------------------

try:
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover - hypothesis is a test requirement
    st = None

FEATURES = [(), (3,), (2, 3)]
DTYPES = [np.float32, np.float64, np.int64]


def random_values(rng, shape, dtype):
    """Random data of ``dtype`` (integers in [-1000, 1000), floats normal)."""
    if np.dtype(dtype).kind in "iu":
        return rng.integers(-1000, 1000, size=shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


if st is not None:

    @st.composite
    def padded_batches(draw, max_batch=8, max_length=12, sorted_lengths=None):
        """``dict(x, lengths, batch_first, enforce_sorted)``; ``x`` holds junk in its padding."""
        lengths = draw(st.lists(st.integers(0, max_length), min_size=1, max_size=max_batch))
        enforce_sorted = draw(st.booleans()) if sorted_lengths is None else sorted_lengths
        if enforce_sorted:
            lengths = sorted(lengths, reverse=True)
        batch_first = draw(st.booleans())
        steps = max(lengths) + draw(st.integers(0, 2))
        features = draw(st.sampled_from(FEATURES))
        dtype = draw(st.sampled_from(DTYPES))
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        shape = ((len(lengths), steps) if batch_first else (steps, len(lengths))) + features
        return dict(x=random_values(rng, shape, dtype), lengths=np.array(lengths, dtype=np.int64),
                    batch_first=batch_first, enforce_sorted=enforce_sorted)

    @st.composite
    def sequence_lists(draw, max_batch=8, max_length=12, sorted_lengths=None):
        """``(list of arrays (L_i, *), enforce_sorted)``."""
        lengths = draw(st.lists(st.integers(0, max_length), min_size=1, max_size=max_batch))
        enforce_sorted = draw(st.booleans()) if sorted_lengths is None else sorted_lengths
        if enforce_sorted:
            lengths = sorted(lengths, reverse=True)
        features = draw(st.sampled_from(FEATURES))
        dtype = draw(st.sampled_from(DTYPES))
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        return [random_values(rng, (n,) + features, dtype) for n in lengths], enforce_sorted

    padding_values = st.sampled_from([0.0, -1.0, 7.0, 2.5])
