"""nblstm.packing on its own (no torch): literal cases, round trips, dtypes, layouts."""

import subprocess
import sys
import threading

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import naive_packing as naive
import nblstm.packing as P
from nblstm.packing import _plan


def fields_equal(packed, data, batch_sizes, sorted_indices=None, unsorted_indices=None):
    assert np.array_equal(packed.data, data)
    assert packed.batch_sizes.dtype == np.int64
    assert np.array_equal(packed.batch_sizes, batch_sizes)
    for got, want in ((packed.sorted_indices, sorted_indices),
                      (packed.unsorted_indices, unsorted_indices)):
        if want is None:
            assert got is None
        else:
            assert got.dtype == np.int64 and np.array_equal(got, want)


# --- literal cases ----------------------------------------------------------------

def test_torch_docstring_example():
    seq = np.array([[1, 2, 0], [3, 0, 0], [4, 5, 6]])
    packed = P.pack_padded_sequence(seq, [2, 1, 3], batch_first=True, enforce_sorted=False)
    fields_equal(packed, [4, 1, 3, 5, 2, 6], [3, 2, 1], [2, 0, 1], [1, 2, 0])
    padded, lengths = P.pad_packed_sequence(packed, batch_first=True)
    assert np.array_equal(padded, seq) and padded.dtype == seq.dtype
    assert lengths.dtype == np.int64 and np.array_equal(lengths, [2, 1, 3])


def test_pack_sequence_example():
    packed = P.pack_sequence([np.array([1, 2, 3]), np.array([4, 5]), np.array([6])])
    fields_equal(packed, [1, 4, 6, 2, 5, 3], [3, 2, 1])
    assert [s.tolist() for s in P.unpack_sequence(packed)] == [[1, 2, 3], [4, 5], [6]]


def test_zero_lengths_unsorted():
    x = np.arange(12).reshape(3, 4)  # (T=3, B=4): x[t, b] = 4 t + b
    packed = P.pack_padded_sequence(x, [2, 0, 3, 0], enforce_sorted=False)
    fields_equal(packed, [2, 0, 6, 4, 10], [2, 2, 1], [2, 0, 1, 3], [1, 2, 0, 3])
    padded, lengths = P.pad_packed_sequence(packed, padding_value=-1)
    assert np.array_equal(padded, [[0, -1, 2, -1], [4, -1, 6, -1], [-1, -1, 10, -1]])
    assert np.array_equal(lengths, [2, 0, 3, 0])
    assert [s.tolist() for s in P.unpack_sequence(packed)] == [[0, 4], [], [2, 6, 10], []]


def test_zero_lengths_sorted_get_identity_indices():
    x = np.arange(12).reshape(4, 3)
    packed = P.pack_padded_sequence(x, [3, 1, 0])
    fields_equal(packed, [0, 1, 3, 6], [2, 1, 1], [0, 1, 2], [0, 1, 2])
    padded, lengths = P.pad_packed_sequence(packed, batch_first=True, total_length=4)
    assert np.array_equal(padded, [[0, 3, 6, 0], [1, 0, 0, 0], [0, 0, 0, 0]])
    assert np.array_equal(lengths, [3, 1, 0])
    # without zero lengths the indices stay None, as in torch
    fields_equal(P.pack_padded_sequence(x, [3, 1, 1]), [0, 1, 2, 3, 6], [3, 1, 1])


def test_all_lengths_zero():
    x = np.ones((2, 3, 5), np.float32)
    packed = P.pack_padded_sequence(x, [0, 0, 0])
    assert packed.data.shape == (0, 5) and packed.data.dtype == np.float32
    fields_equal(packed, np.zeros((0, 5)), np.zeros(0), [0, 1, 2], [0, 1, 2])
    padded, lengths = P.pad_packed_sequence(packed)
    assert padded.shape == (0, 3, 5) and np.array_equal(lengths, [0, 0, 0])
    padded, _ = P.pad_packed_sequence(packed, batch_first=True, padding_value=2, total_length=2)
    assert padded.shape == (3, 2, 5) and np.all(padded == 2)
    unpacked = P.unpack_sequence(packed)
    assert [u.shape for u in unpacked] == [(0, 5)] * 3
    assert P.pad_sequence([np.zeros((0, 5))] * 3).shape == (0, 3, 5)
    assert P.pack_sequence([np.zeros(0)], enforce_sorted=False).data.shape == (0,)


def test_empty_batch():
    packed = P.pack_padded_sequence(np.zeros((4, 0, 2)), [])
    fields_equal(packed, np.zeros((0, 2)), np.zeros(0))
    padded, lengths = P.pad_packed_sequence(packed)
    assert padded.shape == (0, 0, 2) and lengths.shape == (0,)
    assert P.unpack_sequence(packed) == []
    assert P.unpad_sequence(np.zeros((4, 0)), []) == []


def test_pad_sequence_sides():
    a, b = np.array([1, 2]), np.array([3])
    assert np.array_equal(P.pad_sequence([a, b]), [[1, 3], [2, 0]])
    assert np.array_equal(P.pad_sequence([a, b], padding_side="left"), [[1, 0], [2, 3]])
    assert np.array_equal(P.pad_sequence([a, b], True, 9, "left"), [[1, 2], [9, 3]])


def test_padding_value_cast_like_torch():
    assert P.pad_sequence([np.array([1]), np.array([], dtype=np.int64)], padding_value=2.7).tolist() == [[1, 2]]
    out = P.pad_sequence([np.array([1], np.uint8), np.zeros(0, np.uint8)], padding_value=-1)
    assert out.dtype == np.uint8 and out.tolist() == [[1, 255]]


def test_dtype_of_first_sequence_wins():
    out = P.pad_sequence([np.array([1, 2], np.int32), np.array([3.7])])
    assert out.dtype == np.int32 and out.tolist() == [[1, 3], [2, 0]]


@given(naive.padded_batches())
def test_step_offsets_address_packed_rows(batch):
    """Step t of the sequence at sorted position i is row offsets[t] + i of the data."""
    x, lengths, bf = batch["x"], batch["lengths"], batch["batch_first"]
    packed = P.pack_padded_sequence(x, lengths, bf, batch["enforce_sorted"])
    offsets = P.step_offsets(packed.batch_sizes)
    assert offsets.dtype == np.int64 and offsets[-1] == packed.data.shape[0]
    order = np.arange(lengths.size) if packed.sorted_indices is None else packed.sorted_indices
    xt = np.swapaxes(x, 0, 1) if bf else x
    for t, n in enumerate(packed.batch_sizes):
        for i in range(n):
            assert np.array_equal(packed.data[offsets[t] + i], xt[t, order[i]])


def test_step_offsets():
    offsets = P.step_offsets(np.array([3, 2, 2, 1]))
    assert offsets.dtype == np.int64 and offsets.tolist() == [0, 3, 5, 7, 8]
    assert P.step_offsets([]).tolist() == [0]


# --- round trips and references ------------------------------------------------------

def masked(x, lengths, batch_first, value):
    """``x`` with every step past its sequence's length set to ``value``."""
    t = np.arange(x.shape[1 if batch_first else 0])
    keep = t[None, :] < lengths[:, None] if batch_first else t[:, None] < lengths[None, :]
    keep = keep.reshape(keep.shape + (1,) * (x.ndim - 2))
    return np.where(keep, x, np.asarray(value).astype(x.dtype))


@given(naive.padded_batches(), naive.padding_values)
def test_pad_pack_pad_round_trip(batch, padding_value):
    x, lengths, bf = batch["x"], batch["lengths"], batch["batch_first"]
    x0 = x.copy()
    packed = P.pack_padded_sequence(x, lengths, bf, batch["enforce_sorted"])
    padded, out_lengths = P.pad_packed_sequence(packed, bf, padding_value, x.shape[1 if bf else 0])
    assert np.array_equal(padded, masked(x, lengths, bf, padding_value))
    assert np.array_equal(out_lengths, lengths)
    assert np.array_equal(x, x0)
    assert not np.shares_memory(padded, x) and not np.shares_memory(packed.data, x)


@given(naive.padded_batches())
def test_pack_padded_matches_reference(batch):
    x, lengths, bf = batch["x"], batch["lengths"], batch["batch_first"]
    packed = P.pack_padded_sequence(x, lengths, bf, batch["enforce_sorted"])
    order = None if batch["enforce_sorted"] else naive.stable_order(lengths)
    data, batch_sizes = naive.pack_padded(x, lengths, bf, order)
    assert np.array_equal(packed.data, data) and packed.data.dtype == x.dtype
    assert np.array_equal(packed.batch_sizes, batch_sizes)
    if order is not None:
        assert np.array_equal(packed.sorted_indices, order)
        assert np.array_equal(packed.unsorted_indices, np.argsort(order))


@given(naive.sequence_lists())
def test_pack_unpack_round_trip(case):
    sequences, enforce_sorted = case
    copies = [s.copy() for s in sequences]
    packed = P.pack_sequence(sequences, enforce_sorted)
    unpacked = P.unpack_sequence(packed)
    assert len(unpacked) == len(sequences)
    for u, s, c in zip(unpacked, sequences, copies):
        assert u.dtype == s.dtype and u.shape == s.shape and np.array_equal(u, s)
        assert np.array_equal(s, c)
    # pack_sequence is pad_sequence followed by pack_padded_sequence
    lengths = np.array([len(s) for s in sequences])
    via_padded = P.pack_padded_sequence(P.pad_sequence(sequences), lengths, False, enforce_sorted)
    for a, b in zip(packed, via_padded):
        assert (a is None and b is None) or np.array_equal(a, b)


@given(naive.sequence_lists(), st.booleans(), naive.padding_values, st.sampled_from(["right", "left"]))
def test_pad_sequence_matches_reference(case, batch_first, padding_value, side):
    sequences, _ = case
    out = P.pad_sequence(sequences, batch_first, padding_value, side)
    assert np.array_equal(out, naive.pad_list(sequences, batch_first, padding_value, side))
    assert out.dtype == sequences[0].dtype and out.flags.c_contiguous


@given(naive.sequence_lists(), st.booleans())
def test_pad_unpad_round_trip(case, batch_first):
    sequences, _ = case
    padded = P.pad_sequence(sequences, batch_first)
    padded0 = padded.copy()
    lengths = [len(s) for s in sequences]
    for u, s in zip(P.unpad_sequence(padded, lengths, batch_first), sequences):
        assert u.shape == s.shape and np.array_equal(u, s)
    assert np.array_equal(padded, padded0)


# --- dtypes, memory layouts, argument forms -----------------------------------------

@pytest.mark.parametrize("dtype", [np.int8, np.uint16, np.int32, np.float16, np.float32, np.int64,
                                   np.float64, np.complex128, np.bool_])
@pytest.mark.parametrize("features", [(), (3,), (2, 5)])
def test_dtypes_moved_bit_for_bit(dtype, features):
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 256, (6, 4) + features + (np.dtype(dtype).itemsize,), dtype=np.uint8)
    x = raw.view(dtype).reshape((6, 4) + features)  # arbitrary bit patterns, NaNs included
    lengths = np.array([2, 6, 0, 3])
    packed = P.pack_padded_sequence(x, lengths, enforce_sorted=False)
    data, _ = naive.pack_padded(x, lengths, False, naive.stable_order(lengths))
    assert packed.data.dtype == x.dtype
    assert packed.data.tobytes() == data.tobytes()
    padded, _ = P.pad_packed_sequence(packed, total_length=6)
    expect = masked(x, lengths, False, 0)
    assert padded.dtype == x.dtype and padded.tobytes() == expect.tobytes()


def test_strided_fortran_unaligned_readonly_inputs():
    rng = np.random.default_rng(1)
    base = rng.standard_normal((7, 5, 6)).astype(np.float32)
    lengths = np.array([4, 7, 1, 0, 3])
    expect, _ = naive.pack_padded(base, lengths, False, naive.stable_order(lengths))
    buf = np.empty(base.size + 1, np.float32)[1:]  # 4-byte aligned, not 8-byte aligned
    buf[:] = base.ravel()
    readonly = base.copy()
    readonly.flags.writeable = False
    views = [np.asfortranarray(base), buf.reshape(base.shape), readonly,
             np.swapaxes(np.swapaxes(base, 0, 1).copy(), 0, 1)]
    for x in views:
        packed = P.pack_padded_sequence(x, lengths, enforce_sorted=False)
        assert np.array_equal(packed.data, expect)
    strided = np.zeros((7, 10, 6), np.float32)
    strided[:, ::2] = base
    assert np.array_equal(P.pack_padded_sequence(strided[:, ::2], lengths, enforce_sorted=False).data,
                          expect)


def test_argument_forms():
    x = [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]  # nested lists, (T=3, B=2)
    for lengths in ([3, 2], (3, 2), np.array([3, 2], np.int32), np.array([3, 2], np.uint8)):
        packed = P.pack_padded_sequence(x, lengths)
        assert packed.data.tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]
    as_tuple = tuple(P.pack_padded_sequence(x, [3, 2], enforce_sorted=False))
    padded, _ = P.pad_packed_sequence(P.PackedSequence(*as_tuple[:3]))  # unsorted_indices computed
    assert padded.tolist() == [[1.0, 2.0], [3.0, 4.0], [5.0, 0.0]]
    assert P.pad_sequence(np.arange(6).reshape(2, 3)).tolist() == [[0, 3], [1, 4], [2, 5]]
    assert P.pack_sequence(s for s in [[1, 2], [3]]).data.tolist() == [1, 3, 2]


def test_results_are_fresh():
    x = np.arange(6.0).reshape(3, 2)
    packed = P.pack_padded_sequence(x, [3, 3])
    first = P.pad_packed_sequence(packed)[0]
    first[...] = -1
    assert np.array_equal(P.pad_packed_sequence(packed)[0], x)
    single = np.arange(4.0)
    out = P.pack_sequence([single]).data
    out[0] = 99
    assert single[0] == 0


# --- parallel path and threads ------------------------------------------------------

def test_parallel_path_matches_serial(monkeypatch):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((40, 9, 7)).astype(np.float32)
    lengths = rng.integers(0, 41, 9)
    serial = P.pack_padded_sequence(x, lengths, enforce_sorted=False)
    serial_padded = P.pad_packed_sequence(serial, batch_first=True, padding_value=3.0)[0]
    monkeypatch.setattr(_plan, "PARALLEL_MIN_BYTES", 0)
    parallel = P.pack_padded_sequence(x, lengths, enforce_sorted=False)
    assert np.array_equal(parallel.data, serial.data)
    assert np.array_equal(P.pad_packed_sequence(parallel, batch_first=True, padding_value=3.0)[0],
                          serial_padded)


def test_concurrent_callers():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((300, 16, 128)).astype(np.float32)  # ~2.5 MB: parallel kernels
    lengths = rng.integers(0, 301, 16)
    expect = masked(x, lengths, False, 0)
    errors = []

    def work():
        try:
            for _ in range(3):
                packed = P.pack_padded_sequence(x, lengths, enforce_sorted=False)
                padded, _ = P.pad_packed_sequence(packed, total_length=300)
                assert np.array_equal(padded, expect)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_import_does_not_import_torch():
    code = "import sys, nblstm, nblstm.packing; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
