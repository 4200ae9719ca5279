"""Differential tests of nblstm.LSTM against torch.nn.LSTM (the oracle).

Acceptance: float32 within 2e-5 absolute of torch, float64 within 1e-10, on
hypothesis-generated configurations (sizes 1..64, 1..3 layers, every flag,
random lengths); the seed document's output/h_n relations hold bitwise.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import nblstm  # noqa: E402
from nblstm.packing import PackedSequence  # noqa: E402

from lstm_helpers import (  # noqa: E402
    DTYPE_IDS,
    DTYPES,
    assert_close,
    make_lstm_pair,
    random_state,
    t2n,
    torch_lstm,
    unpack,
)

# The example count comes from the active hypothesis profile (e.g. ``ci``,
# registered in conftest.py), capped at 60 for these differential tests.
N_EXAMPLES = min(60, settings().max_examples)
N_EXAMPLES_PACKED = min(40, settings().max_examples)
HYP = settings(max_examples=N_EXAMPLES, deadline=None,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
HYP_PACKED = settings(HYP, max_examples=N_EXAMPLES_PACKED)


# --------------------------------------------------------------------------- strategies

@st.composite
def lstm_configs(draw, batch_first=None):
    hidden = draw(st.integers(1, 64))
    if hidden > 1:
        proj = draw(st.one_of(st.just(0), st.integers(1, hidden - 1)))
    else:
        proj = 0
    return dict(
        input_size=draw(st.integers(1, 64)),
        hidden_size=hidden,
        num_layers=draw(st.integers(1, 3)),
        bias=draw(st.booleans()),
        batch_first=draw(st.booleans()) if batch_first is None else batch_first,
        bidirectional=draw(st.booleans()),
        proj_size=proj,
        dtype=draw(st.sampled_from(DTYPES)),
        seed=draw(st.integers(0, 1000)),
    )


data_seeds = st.integers(0, 2**32 - 1)
scales = st.sampled_from([0.1, 1.0, 4.0])


def _inputs(m, shape, dtype, seed, scale):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) * scale).astype(dtype), rng


def _check_result_types(out, h, c, dtype):
    for name, a in (("output", out), ("h_n", h), ("c_n", c)):
        assert isinstance(a, np.ndarray), f"{name} is {type(a)}, expected ndarray"
        assert a.dtype == dtype, f"{name}.dtype {a.dtype} != {np.dtype(dtype)}"


# --------------------------------------------------------------------------- padded

def _assert_matches_torch(m, tm, x, hx, dtype):
    """nblstm and torch on the same padded or unbatched input agree."""
    out, (h, c) = m(x, hx)
    eout, (eh, ec) = torch_lstm(tm, x, hx)
    _check_result_types(out, h, c, dtype)
    assert_close(out, eout, dtype, "output")
    assert_close(h, eh, dtype, "h_n")
    assert_close(c, ec, dtype, "c_n")



@HYP
@given(cfg=lstm_configs(), n=st.integers(1, 6), length=st.integers(1, 10),
       with_hx=st.booleans(), seed=data_seeds, scale=scales)
def test_padded_matches_torch(cfg, n, length, with_hx, seed, scale):
    tm, m = make_lstm_pair(**cfg)
    dtype = cfg["dtype"]
    shape = (n, length, cfg["input_size"]) if cfg["batch_first"] else (length, n, cfg["input_size"])
    x, rng = _inputs(m, shape, dtype, seed, scale)
    hx = random_state(m, n, dtype, rng) if with_hx else None

    _assert_matches_torch(m, tm, x, hx, dtype)


@HYP
@given(cfg=lstm_configs(), length=st.integers(1, 10), with_hx=st.booleans(),
       seed=data_seeds, scale=scales)
def test_unbatched_matches_torch(cfg, length, with_hx, seed, scale):
    tm, m = make_lstm_pair(**cfg)
    dtype = cfg["dtype"]
    x, rng = _inputs(m, (length, cfg["input_size"]), dtype, seed, scale)
    hx = random_state(m, None, dtype, rng) if with_hx else None

    _assert_matches_torch(m, tm, x, hx, dtype)


FLAG_COMBOS = list(itertools.product([True, False], [False, True], [False, True], [0, 3], DTYPES))


@pytest.mark.parametrize(
    "bias,batch_first,bidirectional,proj_size,dtype", FLAG_COMBOS,
    ids=[f"bias{b:d}-bf{bf:d}-bi{bi:d}-proj{p}-{np.dtype(d).name}" for b, bf, bi, p, d in FLAG_COMBOS])
@pytest.mark.parametrize("with_hx", [False, True], ids=["hx0", "hx"])
def test_every_flag_combination_matches_torch(bias, batch_first, bidirectional, proj_size, dtype, with_hx):
    """Deterministic coverage of every flag combination (independent of hypothesis luck)."""
    tm, m = make_lstm_pair(5, 7, num_layers=2, bias=bias, batch_first=batch_first,
                           bidirectional=bidirectional, proj_size=proj_size, dtype=dtype, seed=3)
    n, length = 3, 6
    shape = (n, length, 5) if batch_first else (length, n, 5)
    x, rng = _inputs(m, shape, dtype, 11, 1.0)
    hx = random_state(m, n, dtype, rng) if with_hx else None
    out, (h, c) = m(x, hx)
    eout, (eh, ec) = torch_lstm(tm, x, hx)
    _check_result_types(out, h, c, dtype)
    assert_close(out, eout, dtype, "output")
    assert_close(h, eh, dtype, "h_n")
    assert_close(c, ec, dtype, "c_n")

    # unbatched too
    xu = x[0] if batch_first else x[:, 0]  # unbatched is (L, H_in) either way
    hxu = None if hx is None else (hx[0][:, 0], hx[1][:, 0])
    out, (h, c) = m(xu, hxu)
    eout, (eh, ec) = torch_lstm(tm, xu, hxu)
    assert_close(out, eout, dtype, "unbatched output")
    assert_close(h, eh, dtype, "unbatched h_n")
    assert_close(c, ec, dtype, "unbatched c_n")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_forward_is_call(dtype):
    tm, m = make_lstm_pair(4, 6, num_layers=2, bidirectional=True, dtype=dtype, seed=1)
    x = np.random.default_rng(0).standard_normal((5, 2, 4)).astype(dtype)
    out1, (h1, c1) = m(x)
    out2, (h2, c2) = m.forward(x)
    np.testing.assert_array_equal(out1, out2)
    np.testing.assert_array_equal(h1, h2)
    np.testing.assert_array_equal(c1, c2)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_attributes_mirror_torch(dtype):
    tm, m = make_lstm_pair(4, 6, num_layers=3, bias=False, batch_first=True,
                           bidirectional=True, proj_size=2, dtype=dtype, seed=1)
    for name in ("input_size", "hidden_size", "num_layers", "bias", "batch_first",
                 "dropout", "bidirectional", "proj_size"):
        assert getattr(m, name) == getattr(tm, name), name
    assert np.dtype(m.dtype) == np.dtype(dtype)


# --------------------------------------------------------------------------- relations

@HYP
@given(cfg=lstm_configs(batch_first=False), n=st.integers(1, 5), length=st.integers(1, 8),
       with_hx=st.booleans(), seed=data_seeds)
def test_output_h_n_relations_are_bitwise(cfg, n, length, with_hx, seed):
    """unidirectional output[-1] == h_n[-1]; bidirectional output[-1, :, :H] == h_n[-2]
    and output[0, :, H:] == h_n[-1] -- exactly."""
    _, m = make_lstm_pair(**cfg)
    dtype = cfg["dtype"]
    x, rng = _inputs(m, (length, n, cfg["input_size"]), dtype, seed, 1.0)
    hx = random_state(m, n, dtype, rng) if with_hx else None
    out, (h, _) = m(x, hx)
    hsz = cfg["proj_size"] or cfg["hidden_size"]
    if cfg["bidirectional"]:
        assert np.array_equal(out[-1, :, :hsz], h[-2])
        assert np.array_equal(out[0, :, hsz:], h[-1])
    else:
        assert np.array_equal(out[-1], h[-1])


# --------------------------------------------------------------------------- packed

@st.composite
def packed_cases(draw, min_length=1):
    cfg = draw(lstm_configs())
    n = draw(st.integers(1, 6))
    lengths = draw(st.lists(st.integers(min_length, 10), min_size=n, max_size=n))
    enforce_sorted = draw(st.booleans())
    if enforce_sorted:
        lengths = sorted(lengths, reverse=True)
    return dict(cfg=cfg, lengths=lengths, enforce_sorted=enforce_sorted,
                pack_batch_first=draw(st.booleans()), with_hx=draw(st.booleans()),
                seed=draw(data_seeds), scale=draw(scales))


def _padded_for_pack(m, case):
    cfg, lengths = case["cfg"], case["lengths"]
    n, t_max = len(lengths), max(max(lengths), 1)
    dtype = cfg["dtype"]
    rng = np.random.default_rng(case["seed"])
    x = (rng.standard_normal((t_max, n, cfg["input_size"])) * case["scale"]).astype(dtype)
    x[~(np.arange(t_max)[:, None] < np.asarray(lengths)[None, :])] = 0  # padding
    hx = random_state(m, n, dtype, rng) if case["with_hx"] else None
    xp = np.ascontiguousarray(x.transpose(1, 0, 2)) if case["pack_batch_first"] else x
    return x, xp, hx


def _torch_pack(xp, lengths, batch_first, enforce_sorted):
    return torch.nn.utils.rnn.pack_padded_sequence(
        torch.from_numpy(xp), torch.as_tensor(lengths, dtype=torch.int64),
        batch_first=batch_first, enforce_sorted=enforce_sorted)


def _optional_equal(a, b, name):
    if a is None or b is None:
        assert a is None and b is None, f"{name}: {a!r} vs {b!r}"
    else:
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=name)


def _from_torch_pack(tp):
    return PackedSequence(
        t2n(tp.data).copy(), t2n(tp.batch_sizes).astype(np.int64),
        None if tp.sorted_indices is None else t2n(tp.sorted_indices).astype(np.int64),
        None if tp.unsorted_indices is None else t2n(tp.unsorted_indices).astype(np.int64))


@HYP_PACKED
@given(case=packed_cases())
def test_packed_from_torch_layout_matches_torch(case):
    """Packed input laid out by torch itself: output data must match row for row."""
    cfg = case["cfg"]
    dtype = cfg["dtype"]
    tm, m = make_lstm_pair(**cfg)
    x, xp, hx = _padded_for_pack(m, case)
    tp = _torch_pack(xp, case["lengths"], case["pack_batch_first"], case["enforce_sorted"])
    packed = _from_torch_pack(tp)

    out, (h, c) = m(packed, hx)
    eout, (eh, ec) = torch_lstm(tm, tp, hx)

    assert isinstance(out, PackedSequence), type(out)
    np.testing.assert_array_equal(out.batch_sizes, packed.batch_sizes)
    _optional_equal(out.sorted_indices, packed.sorted_indices, "sorted_indices")
    _optional_equal(out.unsorted_indices, packed.unsorted_indices, "unsorted_indices")
    assert out.data.dtype == dtype
    assert_close(out.data, t2n(eout.data), dtype, "output.data")
    assert_close(h, eh, dtype, "h_n")
    assert_close(c, ec, dtype, "c_n")


@HYP_PACKED
@given(case=packed_cases())
def test_packed_nblstm_pack_matches_torch(case):
    """Packed with nblstm.packing.pack_padded_sequence; compared in padded caller order."""
    cfg = case["cfg"]
    dtype = cfg["dtype"]
    lengths = case["lengths"]
    tm, m = make_lstm_pair(**cfg)
    x, xp, hx = _padded_for_pack(m, case)
    packed = nblstm.packing.pack_padded_sequence(
        xp, np.asarray(lengths), batch_first=case["pack_batch_first"],
        enforce_sorted=case["enforce_sorted"])
    tp = _torch_pack(xp, lengths, case["pack_batch_first"], case["enforce_sorted"])

    out, (h, c) = m(packed, hx)
    eout, (eh, ec) = torch_lstm(tm, tp, hx)

    assert isinstance(out, PackedSequence), type(out)
    np.testing.assert_array_equal(out.batch_sizes, packed.batch_sizes)
    _optional_equal(out.sorted_indices, packed.sorted_indices, "sorted_indices")
    _optional_equal(out.unsorted_indices, packed.unsorted_indices, "unsorted_indices")
    _check_result_types(out.data, h, c, dtype)
    got = unpack(out.data, out.batch_sizes, out.sorted_indices, n=len(lengths))
    expected, _ = torch.nn.utils.rnn.pad_packed_sequence(eout)
    assert_close(got, t2n(expected), dtype, "padded output")
    assert_close(h, eh, dtype, "h_n")
    assert_close(c, ec, dtype, "c_n")


@HYP_PACKED
@given(case=packed_cases(min_length=0), zero_at=st.integers(0, 5))
def test_packed_zero_length_sequences(case, zero_at):
    """Length-0 sequences: non-empty ones match torch run on only them; empty
    ones keep the initial state and come back as padding."""
    cfg = case["cfg"]
    dtype = cfg["dtype"]
    lengths = np.asarray(case["lengths"], dtype=np.int64)
    lengths[zero_at % len(lengths)] = 0  # at least one empty sequence
    if case["enforce_sorted"]:  # empty ones last (nblstm then records the batch size in sorted_indices)
        lengths = np.sort(lengths)[::-1].copy()
    case = dict(case, lengths=lengths.tolist())
    tm, m = make_lstm_pair(**cfg)
    x, xp, hx = _padded_for_pack(m, case)
    n = len(lengths)
    packed = nblstm.packing.pack_padded_sequence(
        xp, lengths, batch_first=case["pack_batch_first"], enforce_sorted=case["enforce_sorted"])

    out, (h, c) = m(packed, hx)

    assert isinstance(out, PackedSequence)
    np.testing.assert_array_equal(out.batch_sizes, packed.batch_sizes)
    _optional_equal(out.sorted_indices, packed.sorted_indices, "sorted_indices")
    _optional_equal(out.unsorted_indices, packed.unsorted_indices, "unsorted_indices")
    d = 2 if cfg["bidirectional"] else 1
    hsz = cfg["proj_size"] or cfg["hidden_size"]
    assert out.data.shape == (int(lengths.sum()), d * hsz)
    assert h.shape == (d * cfg["num_layers"], n, hsz)
    assert c.shape == (d * cfg["num_layers"], n, cfg["hidden_size"])

    empty = lengths == 0
    nz = np.flatnonzero(~empty)
    # empty sequences: final state == initial state, output is padding
    h0 = np.zeros_like(h) if hx is None else hx[0]
    c0 = np.zeros_like(c) if hx is None else hx[1]
    np.testing.assert_array_equal(h[:, empty], h0[:, empty])
    np.testing.assert_array_equal(c[:, empty], c0[:, empty])
    got = unpack(out.data, out.batch_sizes, out.sorted_indices, n=n)
    if got.shape[0]:
        assert np.all(got[:, empty] == 0)

    if nz.size:
        # torch on only the non-empty sequences (it refuses length 0)
        tp = torch.nn.utils.rnn.pack_padded_sequence(
            torch.from_numpy(np.ascontiguousarray(x[:, nz])), torch.as_tensor(lengths[nz]),
            enforce_sorted=False)
        thx = None if hx is None else (np.ascontiguousarray(hx[0][:, nz]),
                                       np.ascontiguousarray(hx[1][:, nz]))
        eout, (eh, ec) = torch_lstm(tm, tp, thx)
        expected, _ = torch.nn.utils.rnn.pad_packed_sequence(eout)
        assert_close(got[:, nz], t2n(expected), dtype, "padded output of non-empty sequences")
        assert_close(h[:, nz], eh, dtype, "h_n of non-empty sequences")
        assert_close(c[:, nz], ec, dtype, "c_n of non-empty sequences")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("with_hx", [False, True], ids=["hx0", "hx"])
def test_packed_all_sequences_empty(dtype, with_hx):
    _, m = make_lstm_pair(3, 5, num_layers=2, bidirectional=True, proj_size=2, dtype=dtype, seed=2)
    n = 3
    rng = np.random.default_rng(5)
    packed = PackedSequence(np.zeros((0, 3), dtype=dtype), np.zeros(0, dtype=np.int64),
                            np.arange(n, dtype=np.int64), np.arange(n, dtype=np.int64))
    hx = random_state(m, n, dtype, rng) if with_hx else None
    out, (h, c) = m(packed, hx)
    assert isinstance(out, PackedSequence)
    assert out.data.shape == (0, 4)
    assert h.shape == (4, n, 2) and c.shape == (4, n, 5)
    if hx is None:
        assert not h.any() and not c.any()
    else:
        np.testing.assert_array_equal(h, hx[0])
        np.testing.assert_array_equal(c, hx[1])


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_packed_hx_in_caller_order_explicit(dtype):
    """A hand-checked case: unsorted lengths, hx given in the caller's order."""
    tm, m = make_lstm_pair(4, 6, num_layers=2, bidirectional=True, proj_size=3, dtype=dtype, seed=9)
    lengths = [2, 5, 1, 4]
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, 4, 4)).astype(dtype)
    hx = random_state(m, 4, dtype, rng)
    packed = nblstm.packing.pack_padded_sequence(x, lengths, enforce_sorted=False)
    out, (h, c) = m(packed, hx)
    # Reference: each sequence alone through torch, unbatched, with its own state.
    for b, length in enumerate(lengths):
        eout, (eh, ec) = torch_lstm(tm, x[:length, b], (hx[0][:, b], hx[1][:, b]))
        got = unpack(out.data, out.batch_sizes, out.sorted_indices, n=4)[:length, b]
        assert_close(got, eout, dtype, f"output of sequence {b}")
        assert_close(h[:, b], eh, dtype, f"h_n of sequence {b}")
        assert_close(c[:, b], ec, dtype, f"c_n of sequence {b}")


# --------------------------------------------------------------------------- dropout vs torch

@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_training_dropout_one_matches_torch(dtype):
    """dropout=1 in training mode zeroes every between-layer input: deterministic,
    so it can be compared with torch in training mode."""
    tm, m = make_lstm_pair(4, 6, num_layers=3, bidirectional=True, dtype=dtype, seed=4, dropout=1.0)
    x = np.random.default_rng(2).standard_normal((5, 3, 4)).astype(dtype)
    tm_train = torch.nn.LSTM(4, 6, num_layers=3, bidirectional=True, dropout=1.0,
                             dtype=tm.weight_ih_l0.dtype)
    tm_train.load_state_dict(tm.state_dict())
    tm_train.train()
    m.train()
    try:
        out, (h, c) = m(x)
    finally:
        m.eval()
    with torch.no_grad():
        eout, (eh, ec) = tm_train(torch.from_numpy(x))
    assert_close(out, t2n(eout), dtype, "output")
    assert_close(h, t2n(eh), dtype, "h_n")
    assert_close(c, t2n(ec), dtype, "c_n")
    # ...and it really differs from eval mode
    out_eval, _ = m(x)
    assert not np.allclose(out, out_eval)


# --------------------------------------------------------------------------- large batches
# Batches of 8 rows and more run in row groups on separate threads (smaller
# ones serially or with split units); packed batches cross that threshold
# from step to step.

N_EXAMPLES_LARGE = min(15, settings().max_examples)


@settings(HYP, max_examples=N_EXAMPLES_LARGE)
@given(cfg=lstm_configs(), n=st.integers(28, 48), length=st.integers(1, 6),
       mode=st.sampled_from(["padded", "packed", "packed_zero"]), with_hx=st.booleans(),
       seed=data_seeds)
def test_large_batch_matches_torch(cfg, n, length, mode, with_hx, seed):
    """Batches of 28-48 rows: with ROW_GROUP_MIN_MACS lifted, single
    directions run the row-group kernel even on these small sizes."""
    from nblstm.lstm import _driver

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_driver, "ROW_GROUP_MIN_MACS", 0)
        _check_large_batch(cfg, n, length, mode, with_hx, seed)


def _check_large_batch(cfg, n, length, mode, with_hx, seed):
    tm, m = make_lstm_pair(**cfg)
    dtype = cfg["dtype"]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((length, n, cfg["input_size"])).astype(dtype)
    hx = random_state(m, n, dtype, rng) if with_hx else None
    if mode == "padded":
        inp = np.ascontiguousarray(x.transpose(1, 0, 2)) if cfg["batch_first"] else x
        out, (h, c) = m(inp, hx)
        eout, (eh, ec) = torch_lstm(tm, inp, hx)
        assert_close(out, eout, dtype, "output")
        assert_close(h, eh, dtype, "h_n")
        assert_close(c, ec, dtype, "c_n")
        return
    lengths = rng.integers(0 if mode == "packed_zero" else 1, length + 1, n)
    lengths[rng.integers(n)] = length
    nz = np.flatnonzero(lengths > 0)
    packed = nblstm.packing.pack_padded_sequence(x, lengths, enforce_sorted=False)
    out, (h, c) = m(packed, hx)
    got = unpack(out.data, out.batch_sizes, out.sorted_indices, n=n)
    tp = torch.nn.utils.rnn.pack_padded_sequence(
        torch.from_numpy(np.ascontiguousarray(x[:, nz])), torch.as_tensor(lengths[nz]),
        enforce_sorted=False)
    thx = None if hx is None else (np.ascontiguousarray(hx[0][:, nz]), np.ascontiguousarray(hx[1][:, nz]))
    eout, (eh, ec) = torch_lstm(tm, tp, thx)
    expected, _ = torch.nn.utils.rnn.pad_packed_sequence(eout)
    assert_close(got[:, nz], t2n(expected), dtype, "padded output")
    assert_close(h[:, nz], eh, dtype, "h_n")
    assert_close(c[:, nz], ec, dtype, "c_n")
    empty = lengths == 0
    assert np.all(got[:, empty] == 0)
    h0 = np.zeros_like(h) if hx is None else hx[0]
    c0 = np.zeros_like(c) if hx is None else hx[1]
    np.testing.assert_array_equal(h[:, empty], h0[:, empty])
    np.testing.assert_array_equal(c[:, empty], c0[:, empty])


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("proj_size", [0, 5])
def test_large_batch_relations_bitwise(dtype, bidirectional, proj_size):
    _, m = make_lstm_pair(8, 16, num_layers=2, bidirectional=bidirectional, proj_size=proj_size,
                          dtype=dtype, seed=5)
    x = np.random.default_rng(0).standard_normal((6, 64, 8)).astype(dtype)
    out, (h, _) = m(x)
    hsz = proj_size or 16
    if bidirectional:
        assert np.array_equal(out[-1, :, :hsz], h[-2])
        assert np.array_equal(out[0, :, hsz:], h[-1])
    else:
        assert np.array_equal(out[-1], h[-1])


# --------------------------------------------------------------------------- MC dropout semantics

@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_training_dropout_masks_and_scaling(dtype):
    """Training-mode output must be torch's second layer applied to the first
    layer's output times some 0/1 mask scaled by 1/(1-p), with masks kept at
    rate 1-p.  hidden_size=1 and 2x2 steps/sequences make all 16 masks
    enumerable, so every Monte-Carlo output can be checked exactly."""
    p = 0.3
    tm, m = make_lstm_pair(3, 1, num_layers=2, dtype=dtype, seed=12, dropout=p)
    sd = tm.state_dict()
    tdt = torch_dtype_of(tm)
    l1, l2 = torch.nn.LSTM(3, 1, dtype=tdt).eval(), torch.nn.LSTM(1, 1, dtype=tdt).eval()
    l1.load_state_dict({k: v for k, v in sd.items() if k.endswith("_l0")})
    l2.load_state_dict({k.replace("_l1", "_l0"): v for k, v in sd.items() if k.endswith("_l1")})
    x = np.random.default_rng(0).standard_normal((2, 2, 3)).astype(dtype)
    with torch.inference_mode():
        y1, (h1, c1) = l1(torch.from_numpy(x))
        masks = np.array(list(itertools.product([0, 1], repeat=4)), dtype=bool).reshape(16, 2, 2, 1)
        cands = []
        for mask in masks:
            inp = y1 * torch.from_numpy(mask.astype(dtype)) / (1 - p)
            cands.append(t2n(l2(inp)[0]))
    cands = np.stack(cands)
    m.train()
    try:
        kept = []
        for _ in range(150):
            out, (h, c) = m(x)
            assert_close(h[0], t2n(h1)[0], dtype, "layer-1 h_n is not affected by dropout")
            err = np.abs(cands - out[None]).reshape(16, -1).max(axis=1)
            k = int(np.argmin(err))
            assert err[k] <= 2e-5 if dtype == np.float32 else err[k] <= 1e-10, \
                f"output matches no dropout mask (best error {err[k]})"
            kept.append(masks[k])
    finally:
        m.eval()
    rate = np.mean(kept)
    assert abs(rate - (1 - p)) < 0.08, f"kept fraction {rate}, expected {1 - p}"


def torch_dtype_of(tm):
    return tm.weight_ih_l0.dtype


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_realistic_size_packed_matches_torch(dtype):
    """Wider than the hypothesis sizes: hidden 128 with projection, 100 unsorted sequences."""
    tm, m = make_lstm_pair(48, 128, num_layers=2, bidirectional=True, proj_size=40, dtype=dtype, seed=3)
    rng = np.random.default_rng(0)
    n = 100
    x = rng.standard_normal((10, n, 48)).astype(dtype)
    lengths = rng.integers(1, 11, n)
    lengths[5] = 10
    hx = random_state(m, n, dtype, rng)
    packed = nblstm.packing.pack_padded_sequence(x, lengths, enforce_sorted=False)
    out, (h, c) = m(packed, hx)
    tp = torch.nn.utils.rnn.pack_padded_sequence(torch.from_numpy(x), torch.as_tensor(lengths),
                                                 enforce_sorted=False)
    eout, (eh, ec) = torch_lstm(tm, tp, hx)
    got = unpack(out.data, out.batch_sizes, out.sorted_indices, n=n)
    assert_close(got, t2n(torch.nn.utils.rnn.pad_packed_sequence(eout)[0]), dtype, "padded output")
    assert_close(h, eh, dtype, "h_n")
    assert_close(c, ec, dtype, "c_n")


def _assert_ragged_matches_torch(tm, m, x, lengths, hx, dtype):
    """nblstm on ``pack_padded_sequence(x, lengths)`` equals torch on torch's."""
    packed = nblstm.packing.pack_padded_sequence(x, lengths, enforce_sorted=False)
    out, (h, c) = m(packed, hx)
    tp = torch.nn.utils.rnn.pack_padded_sequence(torch.from_numpy(x), torch.from_numpy(lengths),
                                                 enforce_sorted=False)
    eout, (eh, ec) = torch_lstm(tm, tp, hx)
    assert_close(out.data, t2n(eout.data), dtype, "output.data")
    assert_close(h, eh, dtype, "h_n")
    assert_close(c, ec, dtype, "c_n")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("batch", [3, 9, 20])
@pytest.mark.parametrize("bidirectional,proj_size", [(False, 0), (True, 0), (True, 5)])
def test_many_projection_windows_match_torch(monkeypatch, dtype, batch, bidirectional,
                                             proj_size):
    """Windows of a few steps (the reverse direction takes them from the end)
    over a ragged batch: every path (serial, row groups, one thread per
    direction) must stitch the windows exactly as one long window."""
    from nblstm.lstm import _driver

    monkeypatch.setattr(_driver, "WINDOW_BYTES", 3 * 4 * 12 * batch * np.dtype(dtype).itemsize)
    monkeypatch.setattr(_driver, "ROW_GROUP_MIN_MACS", 0)  # row groups from 8 rows at any size
    if batch >= _driver.ROW_GROUP_MIN_ROWS and not bidirectional:
        assert _driver.plan_unidirectional(batch, 22, 12, 0, dtype, 2)[0] == "row_groups"
    cfg = dict(input_size=7, hidden_size=12, num_layers=2, bidirectional=bidirectional,
               proj_size=proj_size, dtype=dtype)
    tm, m = make_lstm_pair(**cfg)
    rng = np.random.default_rng(batch)
    lengths = rng.integers(1, 23, batch)
    x = rng.standard_normal((int(lengths.max()), batch, 7)).astype(dtype)
    packed = nblstm.packing.pack_padded_sequence(x, lengths, enforce_sorted=False)
    offsets = nblstm.packing.step_offsets(packed.batch_sizes)
    assert len(_driver.plan_windows(offsets, 12, np.dtype(dtype).itemsize)) >= 3
    _assert_ragged_matches_torch(tm, m, x, lengths, None, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("batch", [1, 3, 7, 9])
@pytest.mark.parametrize("small_windows", [False, True])
@pytest.mark.parametrize("whole_panels", [True, False], ids=["whole", "partial"])
@pytest.mark.parametrize("projected", [False, True], ids=["", "proj"])
def test_split_units_match_torch(monkeypatch, dtype, batch, small_windows, whole_panels,
                                 projected):
    """Batches under 8 rows, or over 8 with large recurrent weights, run the
    split-units kernel (threads share each step's hidden units, then with a
    projection its output columns), with H (and P) a multiple of the tile
    width or not (each gate then ends on a partial panel); ragged, with
    initial state, over one window or many."""
    from nblstm.lstm import _driver, _kernels

    width = _kernels.tile_columns(dtype)  # 16-64: the last panel partial by 27 % width
    hidden = 2 * width - (0 if whole_panels else 27 % width)
    if batch >= _driver.ROW_GROUP_MIN_ROWS:  # weights too large to stream per row group
        hidden = 416 if dtype == np.float32 else 288
        hidden -= 0 if whole_panels else 27
    monkeypatch.setattr(_driver, "SPLIT_UNITS_MIN_MACS", 0)  # the split even on small sizes
    proj = 0
    if projected:
        proj = hidden // 2 if batch < _driver.ROW_GROUP_MIN_ROWS else (352 if dtype == np.float32
                                                                       else 256)
        proj += 0 if whole_panels else 3
    if small_windows:
        monkeypatch.setattr(_driver, "WINDOW_BYTES", 5 * 4 * hidden * batch * np.dtype(dtype).itemsize)
    assert _driver.plan_unidirectional(batch, 40, hidden, proj, dtype, 2)[0] == "split_units"
    tm, m = make_lstm_pair(input_size=9, hidden_size=hidden, num_layers=2, proj_size=proj,
                           dtype=dtype)
    rng = np.random.default_rng(batch)
    lengths = rng.integers(1, 41, batch)
    lengths[0] = 40
    x = rng.standard_normal((40, batch, 9)).astype(dtype)
    hx = tuple(rng.standard_normal((2, batch, n)).astype(dtype) for n in (proj or hidden, hidden))
    _assert_ragged_matches_torch(tm, m, x, lengths, hx, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_short_sequence_split_units_match_torch(dtype):
    """Short sequences with enough recurrent work also split the hidden
    units (8 steps of H=256 at one row), including through a projection."""
    from nblstm.lstm import _driver

    for steps, proj in ((8, 0), (12, 192)):
        assert _driver.plan_unidirectional(1, steps, 256, proj, dtype, 2)[0] == "split_units"
        tm, m = make_lstm_pair(input_size=12, hidden_size=256, proj_size=proj, dtype=dtype)
        rng = np.random.default_rng(proj)
        x = rng.standard_normal((steps, 1, 12)).astype(dtype)
        hx = tuple(rng.standard_normal((1, 1, n)).astype(dtype) for n in (proj or 256, 256))
        _assert_matches_torch(m, tm, x, hx, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
@pytest.mark.parametrize("batch,steps", [(3, 6), (1, 40)], ids=["short", "one-row"])
def test_large_weights_at_few_rows_match_torch(dtype, packed, batch, steps):
    """A single direction with over 2 MiB of recurrent weights at a batch
    under 8 rows runs serially over too few steps for the split-units kernel,
    and splits its units over a longer sequence, a single row through a
    projection included (where BLAS once ran both)."""
    from nblstm.lstm import _driver

    tm, m = make_lstm_pair(input_size=16, hidden_size=1024, proj_size=256, dtype=dtype)
    expected = "serial" if steps == 6 else "split_units"
    assert _driver.plan_unidirectional(batch, steps, 1024, 256, dtype, 2)[0] == expected
    rng = np.random.default_rng(7)
    x = rng.standard_normal((steps, batch, 16)).astype(dtype)
    hx = tuple(rng.standard_normal((1, batch, n)).astype(dtype) for n in (256, 1024))
    if packed:
        lengths = np.array([4, 6, 1]) if batch == 3 else np.array([steps])
        _assert_ragged_matches_torch(tm, m, x, lengths, hx, dtype)
        return
    _assert_matches_torch(m, tm, x, hx, dtype)
