"""Each Numba kernel of nblstm.packing equals its reference twin in naive_packing."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import naive_packing as naive
from nblstm.packing import _kernels, _plan, _sort
from nblstm.packing._packed import step_offsets

UNITS = [np.uint8, np.uint16, np.uint32, np.uint64]


@st.composite
def layouts(draw):
    """Random (source, destination) layouts of one batch, as row bases."""
    lengths = np.array(draw(st.lists(st.integers(0, 9), min_size=1, max_size=10)), dtype=np.int64)
    batch, steps = lengths.size, int(lengths.max())
    order = np.array(draw(st.permutations(range(batch))), dtype=np.int64)

    def layout(kind):
        if kind == "time_major":
            step, seq = _plan.padded_bases(steps, batch, False)
            return step, seq, steps * batch
        if kind == "batch_first":
            step, seq = _plan.padded_bases(steps, batch, True)
            return step, seq, steps * batch
        if kind == "list":  # concatenated in a random sequence order
            starts = np.empty(batch, np.int64)
            starts[order] = _plan.seq_starts(lengths[order])
            return np.arange(steps, dtype=np.int64), starts, int(lengths.sum())
        sorted_lengths = np.sort(lengths)[::-1]  # packed, positions by length
        positions = _plan.invert_permutation(naive.stable_order(lengths))
        offsets = step_offsets(_plan.batch_sizes_of(sorted_lengths))
        return offsets[:-1], positions, int(offsets[-1])

    kinds = st.sampled_from(["time_major", "batch_first", "list", "packed"])
    return lengths, layout(draw(kinds)), layout(draw(kinds))


@given(layouts())
def test_row_map(case):
    lengths, (src_step, src_seq, _), (dst_step, dst_seq, n_dst) = case
    ours = np.full(n_dst, -1, np.int64)
    twin = ours.copy()
    _kernels.row_map(dst_step, dst_seq, src_step, src_seq, lengths, ours)
    naive.row_map(dst_step, dst_seq, src_step, src_seq, lengths, twin)
    assert np.array_equal(ours, twin)


@st.composite
def row_moves(draw):
    unit = draw(st.sampled_from(UNITS))
    n_src, n_dst, width = draw(st.integers(0, 30)), draw(st.integers(0, 40)), draw(st.integers(1, 9))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    info = np.iinfo(unit)
    src = rng.integers(info.min, info.max, (n_src, width), dtype=unit, endpoint=True)
    fill = rng.integers(info.min, info.max, (1, width), dtype=unit, endpoint=True)
    rows = rng.integers(-1, n_src, n_dst) if n_src else np.full(n_dst, -1)
    return src, rows.astype(np.int64), fill


@given(row_moves())
def test_take_rows(case):
    src, rows, fill = case
    ours = np.empty((rows.size, src.shape[1]), src.dtype)
    twin = ours.copy()
    _kernels.take_rows(src, rows, fill, ours)
    naive.take_rows(src, rows, fill, twin)
    assert np.array_equal(ours, twin)


@given(row_moves(), st.integers(1, 50))
def test_take_rows_parallel(case, block):
    src, rows, fill = case
    ours = np.empty((rows.size, src.shape[1]), src.dtype)
    twin = ours.copy()
    _kernels.take_rows_parallel(src, rows, fill, ours, block)
    naive.take_rows_parallel(src, rows, fill, twin, block)
    assert np.array_equal(ours, twin)


@given(st.lists(st.integers(0, 12), max_size=120) | st.lists(st.integers(-2**62, 2**62), max_size=60))
def test_argsort_desc(values):
    keys = np.array(values, dtype=np.int64)
    ours_keys, ours_perm = keys.copy(), np.arange(keys.size, dtype=np.int64)
    twin_keys, twin_perm = keys.copy(), np.arange(keys.size, dtype=np.int64)
    _sort.argsort_desc(ours_keys, ours_perm)
    naive.argsort_desc(twin_keys, twin_perm)
    assert np.array_equal(ours_perm, twin_perm)
    assert np.array_equal(ours_keys, twin_keys)
    assert np.array_equal(ours_keys, keys[ours_perm])
    assert np.all(np.diff(ours_keys) <= 0)
    if keys.size <= 16:  # insertion sort only: stable
        assert np.array_equal(ours_perm, naive.stable_order(keys))


def test_argsort_desc_heapsort_fallback():
    """Inputs that exhaust the depth limit take the heapsort path; it matches the twin."""
    rng = np.random.default_rng(0)
    # McIlroy's adversary reaches the depth limit (the twin counts its heapsorts)
    cases = [naive.antiqsort(n) for n in (40, 100, 333)]
    cases += [np.r_[np.arange(n // 2), np.arange(n - n // 2)[::-1]] for n in (40, 333)]
    cases += [np.arange(100) % 5, rng.permutation(100), np.arange(100)]
    calls = naive.HEAPSORT_CALLS[0]
    for keys in cases:
        keys = keys.astype(np.int64)
        a, pa = keys.copy(), np.arange(keys.size, dtype=np.int64)
        b, pb = keys.copy(), np.arange(keys.size, dtype=np.int64)
        _sort.argsort_desc(a, pa)
        naive.argsort_desc(b, pb)
        assert np.array_equal(pa, pb)
    assert naive.HEAPSORT_CALLS[0] >= calls + 3
    # a forced heapsort on a sub-range, directly
    keys = rng.integers(0, 5, 50).astype(np.int64)
    perm = np.arange(50, dtype=np.int64)
    _sort._heap_sort(keys, perm, 3, 47)
    assert np.all(np.diff(keys[3:47]) <= 0)
    assert np.array_equal(np.sort(perm), np.arange(50))
