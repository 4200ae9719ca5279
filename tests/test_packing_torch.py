"""Differential tests: nblstm.packing against torch.nn.utils.rnn, bit for bit.

torch refuses sequences of length 0, so when a batch has some, nblstm's result
is compared with torch's on the non-empty sequences only, and the empty ones
are checked to be pure padding / empty arrays.
"""

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import naive_packing as naive
import nblstm.packing as P
from nblstm.packing._plan import sort_order

torch = pytest.importorskip("torch")
rnn = torch.nn.utils.rnn


def t2n(t):
    return None if t is None else t.numpy()


def as_ours(packed):
    """A torch PackedSequence as nblstm's (NumPy fields)."""
    return P.PackedSequence(*(t2n(f) for f in packed))


def assert_same(a, b):
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype, (a.dtype, b.dtype)
    assert a.shape == b.shape, (a.shape, b.shape)
    assert np.array_equal(a, b), (a, b)


def select_batch(x, keep, batch_first):
    return x[keep] if batch_first else x[:, keep]


def torch_pack_nonempty(x, lengths, batch_first, enforce_sorted):
    """torch's packing of the non-empty sequences, and their caller indices."""
    keep = np.flatnonzero(lengths > 0)
    if keep.size == 0:
        return None, keep
    xt = torch.from_numpy(np.ascontiguousarray(select_batch(x, keep, batch_first)))
    packed = rnn.pack_padded_sequence(xt, torch.from_numpy(lengths[keep]), batch_first=batch_first,
                                      enforce_sorted=enforce_sorted)
    return packed, keep


@given(naive.padded_batches())
def test_pack_padded_sequence(batch):
    x, lengths = batch["x"], batch["lengths"]
    x0, lengths0 = x.copy(), lengths.copy()
    ours = P.pack_padded_sequence(x, lengths, batch["batch_first"], batch["enforce_sorted"])
    assert_same(x, x0) and assert_same(lengths, lengths0)
    theirs, keep = torch_pack_nonempty(x, lengths, batch["batch_first"], batch["enforce_sorted"])
    has_empty = keep.size < lengths.size
    if theirs is None:
        assert ours.data.shape == (0,) + x.shape[2:] and ours.data.dtype == x.dtype
        assert_same(ours.batch_sizes, np.zeros(0, np.int64))
    else:
        assert_same(ours.data, t2n(theirs.data))
        assert_same(ours.batch_sizes, t2n(theirs.batch_sizes))
    if batch["enforce_sorted"] and not has_empty:
        assert ours.sorted_indices is None and ours.unsorted_indices is None
        return
    if batch["enforce_sorted"]:
        assert_same(ours.sorted_indices, np.arange(lengths.size))
    elif theirs is not None:
        assert_same(ours.sorted_indices[: keep.size], keep[t2n(theirs.sorted_indices)])
    assert_same(ours.unsorted_indices[ours.sorted_indices], np.arange(lengths.size))


@given(naive.padded_batches(), st.booleans(), naive.padding_values, st.integers(0, 2), st.booleans())
def test_pad_packed_sequence(batch, batch_first, padding_value, extra, use_total):
    x, lengths = batch["x"], batch["lengths"]
    packed = P.pack_padded_sequence(x, lengths, batch["batch_first"], batch["enforce_sorted"])
    fields = [None if f is None else f.copy() for f in packed]
    steps = int(lengths.max())
    total = steps + extra if use_total else None
    padded, out_lengths = P.pad_packed_sequence(packed, batch_first, padding_value, total)
    for f, g in zip(packed, fields):
        assert (f is None and g is None) or np.array_equal(f, g)
    assert_same(out_lengths, lengths)
    steps_out = total if use_total else steps
    shape = ((lengths.size, steps_out) if batch_first else (steps_out, lengths.size)) + x.shape[2:]
    assert padded.shape == shape and padded.dtype == x.dtype
    theirs, keep = torch_pack_nonempty(x, lengths, batch["batch_first"], batch["enforce_sorted"])
    if theirs is not None:
        t_padded, t_lengths = rnn.pad_packed_sequence(theirs, batch_first, padding_value, total)
        t_padded = t2n(t_padded)
        assert_same(select_batch(padded, keep, batch_first), t_padded)
        assert_same(out_lengths[keep], t2n(t_lengths))
    empty = np.flatnonzero(lengths == 0)
    expected = np.full_like(select_batch(padded, empty, batch_first), padding_value)
    assert_same(select_batch(padded, empty, batch_first), expected)


@given(naive.padded_batches(), st.booleans())
def test_pad_packed_sequence_of_torch_packed(batch, batch_first):
    """A torch PackedSequence (as NumPy) pads exactly as torch pads it."""
    x, lengths = batch["x"], batch["lengths"]
    assume(lengths.min() > 0)
    theirs = rnn.pack_padded_sequence(torch.from_numpy(x), torch.from_numpy(lengths),
                                      batch["batch_first"], batch["enforce_sorted"])
    padded, out_lengths = P.pad_packed_sequence(as_ours(theirs), batch_first)
    t_padded, t_lengths = rnn.pad_packed_sequence(theirs, batch_first)
    assert_same(padded, t2n(t_padded))
    assert_same(out_lengths, t2n(t_lengths))


@given(naive.sequence_lists(), st.booleans(), naive.padding_values, st.sampled_from(["right", "left"]))
def test_pad_sequence(case, batch_first, padding_value, padding_side):
    sequences, _ = case
    copies = [s.copy() for s in sequences]
    ours = P.pad_sequence(sequences, batch_first, padding_value, padding_side)
    theirs = rnn.pad_sequence([torch.from_numpy(s) for s in sequences], batch_first,
                              padding_value, padding_side)
    assert_same(ours, t2n(theirs))
    for s, c in zip(sequences, copies):
        assert_same(s, c)


@given(naive.sequence_lists())
def test_pack_sequence(case):
    sequences, enforce_sorted = case
    ours = P.pack_sequence(sequences, enforce_sorted)
    keep = np.array([i for i, s in enumerate(sequences) if len(s)], dtype=np.int64)
    if keep.size == 0:
        assert ours.data.shape[0] == 0 and ours.batch_sizes.size == 0
        assert_same(ours.unsorted_indices[ours.sorted_indices], np.arange(len(sequences)))
        return
    theirs = rnn.pack_sequence([torch.from_numpy(sequences[i]) for i in keep], enforce_sorted)
    assert_same(ours.data, t2n(theirs.data))
    assert_same(ours.batch_sizes, t2n(theirs.batch_sizes))
    if theirs.sorted_indices is not None:
        assert_same(ours.sorted_indices[: keep.size], keep[t2n(theirs.sorted_indices)])
    elif keep.size == len(sequences):
        assert ours.sorted_indices is None and ours.unsorted_indices is None
    else:
        assert_same(ours.sorted_indices, np.arange(len(sequences)))


@given(naive.padded_batches())
def test_unpad_sequence(batch):
    x, lengths = batch["x"], batch["lengths"]
    x0 = x.copy()
    ours = P.unpad_sequence(x, lengths, batch["batch_first"])
    assert_same(x, x0)
    # torch transposes its argument in place, so hand it a copy
    theirs = rnn.unpad_sequence(torch.from_numpy(x.copy()), torch.from_numpy(lengths),
                                batch["batch_first"])
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert_same(a, t2n(b))


@given(naive.sequence_lists())
def test_unpack_sequence(case):
    sequences, enforce_sorted = case
    ours = P.unpack_sequence(P.pack_sequence(sequences, enforce_sorted))
    keep = [i for i, s in enumerate(sequences) if len(s)]
    if keep:
        theirs = rnn.unpack_sequence(
            rnn.pack_sequence([torch.from_numpy(sequences[i]) for i in keep], enforce_sorted))
        for i, t in zip(keep, theirs):
            assert_same(ours[i], t2n(t))
    for i, s in enumerate(sequences):
        assert_same(ours[i], s)


# --- tie order at every batch size --------------------------------------------

@pytest.mark.parametrize("n", [1, 2, 16, 17, 18, 31, 64, 100, 257, 1000, 5000])
def test_sort_order_matches_torch_sort(n):
    rng = np.random.default_rng(n)
    cases = [rng.integers(0, hi, n) for hi in (2, 3, max(2, n // 4), n + 1, 10**9)]
    cases += [np.arange(n), np.arange(n)[::-1].copy(), np.arange(n) % 7, np.zeros(n, np.int64)]
    if 64 <= n <= 1000:
        cases.append(naive.antiqsort(n))
    for lengths in cases:
        lengths = lengths.astype(np.int64)
        expected = torch.sort(torch.from_numpy(lengths), descending=True)[1].numpy()
        assert_same(sort_order(lengths), expected)


@pytest.mark.parametrize("batch", [17, 40, 300])
def test_pack_padded_sequence_ties_beyond_16(batch):
    """Beyond 16 sequences torch's order is not stable; nblstm reproduces it anyway."""
    rng = np.random.default_rng(batch)
    lengths = rng.integers(1, 4, batch)
    x = rng.standard_normal((3, batch, 2)).astype(np.float32)
    ours = P.pack_padded_sequence(x, lengths, enforce_sorted=False)
    theirs = rnn.pack_padded_sequence(torch.from_numpy(x), torch.from_numpy(lengths),
                                      enforce_sorted=False)
    assert not np.array_equal(t2n(theirs.sorted_indices), naive.stable_order(lengths))
    for a, b in zip(ours, theirs):
        assert_same(a, t2n(b))


def test_accepts_torch_tensors():
    x = torch.arange(24.0).reshape(4, 3, 2)
    lengths = torch.tensor([4, 2, 3])
    ours = P.pack_padded_sequence(x, lengths, enforce_sorted=False)
    theirs = rnn.pack_padded_sequence(x, lengths, enforce_sorted=False)
    assert isinstance(ours.data, np.ndarray)
    for a, b in zip(ours, theirs):
        assert_same(a, t2n(b))
    assert_same(P.pad_sequence([x[:, 0], x[:2, 1]]), t2n(rnn.pad_sequence([x[:, 0], x[:2, 1]])))
