"""Reliability of nblstm.LSTM / LSTMCell: numerics, train/eval, input handling,
fresh results, thread safety, determinism, fork safety, no torch import."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import warnings

import numpy as np
import pytest

import nblstm
from nblstm.packing import PackedSequence

from lstm_helpers import DTYPE_IDS, DTYPES, random_state

# BIG is the realistic size of the threading acceptance test (row groups),
# MED the cheap one that still runs the parallel kernels (the test machine
# does ~2 GFLOP/s).
BIG = dict(input_size=64, hidden_size=256, n=64, length=20)
MED = dict(input_size=32, hidden_size=64, n=64, length=10)
# Bidirectional layers run one thread per direction (each projecting its own
# input); one direction of 8-63 rows runs in row groups (given ROW_GROUP_MIN_MACS).
PAR = dict(input_size=32, hidden_size=64, n=8, length=40)
# One direction, small weights, input enough for the parallel Numba
# projection, then row groups.
CHUNKS = dict(input_size=32, hidden_size=64, n=16, length=20)
# Large recurrent weights (over 2 MiB) at a batch under 8 rows, sequences too
# short for the split-units kernel (whose threads meet every step): serial.
WIDE = dict(input_size=32, hidden_size=1024, proj_size=256, n=3, length=6)
# One direction under 8 rows, H a multiple of the tile width: the split-units
# kernel, whose threads meet once a step.
SPLIT = dict(input_size=32, hidden_size=256, n=3, length=40, proj_size=96)


def _model(dtype=np.float32, **kw):
    kw.setdefault("seed", 0)
    return nblstm.LSTM(kw.pop("input_size", 6), kw.pop("hidden_size", 8), dtype=dtype, **kw)


def _x(shape, dtype=np.float32, seed=0, scale=1.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(dtype)


def _packed(x, lengths):
    """Time-major padded -> PackedSequence, unsorted (independent of nblstm.packing)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(-lengths, kind="stable")
    batch_sizes = np.array([(lengths > t).sum() for t in range(lengths.max())], dtype=np.int64)
    rows = [x[t, order[:bs]] for t, bs in enumerate(batch_sizes)]
    return PackedSequence(np.ascontiguousarray(np.concatenate(rows)), batch_sizes,
                          order.astype(np.int64), np.argsort(order).astype(np.int64))


def _flat(result):
    """(output, (h, c)) -> list of arrays (output data if packed)."""
    out, (h, c) = result
    if isinstance(out, PackedSequence):
        out = out.data
    return [out, h, c]


def _assert_results_equal(a, b, what=""):
    for name, u, v in zip(("output", "h_n", "c_n"), _flat(a), _flat(b)):
        assert u.shape == v.shape, f"{what} {name}: {u.shape} != {v.shape}"
        assert np.array_equal(u, v, equal_nan=True), f"{what} {name} differs"


def _copy_result(r):
    out, (h, c) = r
    if isinstance(out, PackedSequence):
        out = out._replace(data=out.data.copy())
    else:
        out = out.copy()
    return out, (h.copy(), c.copy())


# =========================================================================== numerics

@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("kw", [
    dict(),
    dict(num_layers=3, bidirectional=True),
    dict(num_layers=2, bias=False, batch_first=True),
    dict(num_layers=2, bidirectional=True, proj_size=3),
    dict(hidden_size=128),
], ids=["plain", "3L-bi", "2L-nobias-bf", "2L-bi-proj", "split-units"])
@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
def test_huge_inputs_finite_and_bounded_no_warnings(dtype, kw, packed):
    """Inputs of +-1e30 give finite outputs in [-1, 1] and no warnings."""
    m = _model(dtype, **{"input_size": 6, "hidden_size": 8, **kw})
    rng = np.random.default_rng(1)
    length = 33  # the split-units kernel runs from 32 steps on
    x = (rng.choice([-1.0, 1.0], size=(length, 4, 6)) * 1e30).astype(dtype)
    x[:, 1, ::2] = rng.standard_normal((length, 3))  # mixed with ordinary values
    inp = x
    if packed:
        inp = _packed(x, [length, 3, 5, 1])
    elif kw.get("batch_first"):
        inp = np.ascontiguousarray(x.transpose(1, 0, 2))
    with warnings.catch_warnings(), np.errstate(divide="warn", over="warn", invalid="warn",
                                                under="ignore"):
        warnings.simplefilter("error")
        out, (h, c) = m(inp)
    if packed:
        out = out.data
    for name, a in (("output", out), ("h_n", h), ("c_n", c)):
        assert np.all(np.isfinite(a)), name
    if kw.get("proj_size"):
        # projected: |h| <= sum_j |W_hr[i, j]| since |o * tanh(c)| <= 1
        sd = m.state_dict()
        bound = max(np.abs(v).sum(axis=1).max() for k, v in sd.items() if k.startswith("weight_hr"))
        assert np.all(np.abs(out) <= bound * (1 + 1e-6))
    else:
        assert np.all(np.abs(out) <= 1) and np.all(np.abs(h) <= 1)
    # |c_t| <= |c_0| + t
    assert np.all(np.abs(c) <= length + 1e-6)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_huge_inputs_cell(dtype):
    cell = nblstm.LSTMCell(6, 8, dtype=dtype, seed=0)
    x = (np.random.default_rng(2).choice([-1.0, 1.0], size=(5, 6)) * 1e30).astype(dtype)
    with warnings.catch_warnings(), np.errstate(divide="warn", over="warn", invalid="warn",
                                                under="ignore"):
        warnings.simplefilter("error")
        h, c = cell(x)
    assert np.all(np.isfinite(h)) and np.all(np.abs(h) <= 1)
    assert np.all(np.isfinite(c)) and np.all(np.abs(c) <= 1)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("kw,layout", [
    (dict(), "tm"),
    (dict(num_layers=3, bidirectional=True, proj_size=4), "tm"),
    (dict(num_layers=2, bidirectional=True, batch_first=True), "bf"),
    (dict(num_layers=2, bidirectional=True), "packed"),
    (dict(num_layers=2, bidirectional=True, proj_size=4), "big"),
    (dict(num_layers=2), "split"),
    (dict(num_layers=2, proj_size=100), "split"),
], ids=["plain", "3L-bi-proj", "2L-bi-bf", "2L-bi-packed", "big", "split-units",
        "split-units-proj"])
def test_nan_stays_in_its_sequence(dtype, kw, layout):
    big = layout == "big"
    n, length, hin, hid = (MED["n"], MED["length"], MED["input_size"], MED["hidden_size"]) if big \
        else (5, 40, 6, 128) if layout == "split" else (5, 6, 6, 8)
    m = _model(dtype, input_size=hin, hidden_size=hid, **kw)
    x = _x((length, n, hin), dtype, seed=3)
    hx = random_state(m, n, dtype, np.random.default_rng(4))
    bad = 2
    x_nan = x.copy()
    x_nan[3, bad, 1] = np.nan

    def run(a):
        if layout == "bf":
            return m(np.ascontiguousarray(a.transpose(1, 0, 2)), hx)
        if layout == "packed":
            return m(_packed(a, [6, 4, 5, 6, 2][:n]), hx)  # the NaN sequence has length 5 > 3
        return m(a, hx)

    ref, got = run(x), run(x_nan)
    others = np.array([b for b in range(n) if b != bad])
    out_r, (h_r, c_r) = ref
    out_g, (h_g, c_g) = got
    if layout == "packed":
        # compare rows belonging to other sequences
        p = _packed(x, [6, 4, 5, 6, 2])
        seq_of_row = np.concatenate([p.sorted_indices[:bs] for bs in p.batch_sizes])
        rows = np.isin(seq_of_row, others)
        o_r, o_g = out_r.data[rows], out_g.data[rows]
        assert np.isnan(out_g.data[seq_of_row == bad]).any()
    elif layout == "bf":
        o_r, o_g = out_r[others], out_g[others]
        assert np.isnan(out_g[bad]).any()
    else:
        o_r, o_g = out_r[:, others], out_g[:, others]
        assert np.isnan(out_g[:, bad]).any()
    assert np.all(np.isfinite(o_g)), "NaN leaked into other sequences' output"
    assert np.all(np.isfinite(h_g[:, others])) and np.all(np.isfinite(c_g[:, others]))
    np.testing.assert_array_equal(o_g, o_r)
    np.testing.assert_array_equal(h_g[:, others], h_r[:, others])
    np.testing.assert_array_equal(c_g[:, others], c_r[:, others])
    assert np.isnan(h_g[:, bad]).any() and np.isnan(c_g[:, bad]).any()


# =========================================================================== train / eval

def test_training_flag_defaults_and_toggles():
    m = _model(num_layers=2, dropout=0.5)
    assert m.training is False
    assert m.train() is m and m.training is True
    assert m.train(False) is m and m.training is False
    m.train(True)
    assert m.eval() is m and m.training is False


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_eval_ignores_dropout_and_is_deterministic(dtype):
    m = _model(dtype, num_layers=3, dropout=0.5, bidirectional=True)
    ref = _model(dtype, num_layers=3, dropout=0.0, bidirectional=True, seed=123)
    ref.load_state_dict(m.state_dict())
    x = _x((6, 4, 6), dtype)
    r1, r2 = m(x), m(x)
    _assert_results_equal(r1, r2, "eval repeat")
    _assert_results_equal(r1, ref(x), "eval vs dropout=0")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_training_dropout_is_monte_carlo(dtype):
    m = _model(dtype, num_layers=3, dropout=0.5, bidirectional=True)
    x = _x((6, 4, 6), dtype)
    ev = m(x)
    m.train()
    outs = [m(x)[0] for _ in range(4)]
    for i in range(4):
        assert not np.array_equal(outs[i], ev[0]), "training output equals eval output"
        for j in range(i):
            assert not np.array_equal(outs[i], outs[j]), "dropout masks repeat between calls"
        assert np.all(np.isfinite(outs[i]))
    m.eval()
    _assert_results_equal(m(x), ev, "eval after train")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("kw", [dict(num_layers=3, dropout=0.0), dict(num_layers=1, dropout=0.5)],
                         ids=["3L-p0", "1L-p0.5"])
def test_training_without_effective_dropout_equals_eval(dtype, kw):
    if kw["num_layers"] == 1:
        with warnings.catch_warnings():  # torch warns here; nblstm may too
            warnings.simplefilter("ignore")
            m = _model(dtype, bidirectional=True, **kw)
    else:
        m = _model(dtype, bidirectional=True, **kw)
    x = _x((6, 4, 6), dtype)
    ev = m(x)
    m.train()
    _assert_results_equal(m(x), ev, "train vs eval")
    _assert_results_equal(m(_packed(x, [6, 2, 5, 1])), m.eval()(_packed(x, [6, 2, 5, 1])),
                          "packed train vs eval")


# =========================================================================== input handling

@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("kind", ["padded", "batch_first", "unbatched", "packed"])
def test_inputs_never_modified(dtype, kind):
    m = _model(dtype, num_layers=2, bidirectional=True, proj_size=3,
               batch_first=(kind == "batch_first"))
    rng = np.random.default_rng(7)
    x = _x((5, 4, 6), dtype)
    if kind == "batch_first":
        inp = np.ascontiguousarray(x.transpose(1, 0, 2))
        hx = random_state(m, 4, dtype, rng)
    elif kind == "unbatched":
        inp = x[:, 0].copy()
        hx = random_state(m, None, dtype, rng)
    elif kind == "packed":
        inp = _packed(x, [5, 2, 4, 1])
        hx = random_state(m, 4, dtype, rng)
    else:
        inp = x
        hx = random_state(m, 4, dtype, rng)
    if kind == "packed":
        saved = [a.copy() for a in inp]
    else:
        saved = [inp.copy()]
    saved_hx = [a.copy() for a in hx]
    m(inp, hx)
    m(inp)
    now = list(inp) if kind == "packed" else [inp]
    for a, b in zip(now, saved):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == b.dtype
    for a, b in zip(hx, saved_hx):
        np.testing.assert_array_equal(a, b)


def test_cell_inputs_never_modified():
    cell = nblstm.LSTMCell(6, 8, seed=0)
    x = _x((3, 6))
    hx = (_x((3, 8), seed=1), _x((3, 8), seed=2))
    saved = [x.copy(), hx[0].copy(), hx[1].copy()]
    cell(x, hx)
    for a, b in zip([x, *hx], saved):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
def test_later_call_never_overwrites_earlier_result(packed):
    m = _model(num_layers=2, bidirectional=True)
    x1, x2 = _x((5, 4, 6), seed=1), _x((5, 4, 6), seed=2)
    if packed:
        x1, x2 = _packed(x1, [5, 3, 4, 1]), _packed(x2, [5, 3, 4, 1])
    r1 = m(x1)
    saved = _copy_result(r1)
    r2 = m(x2)
    _assert_results_equal(r1, saved, "first result after second call")
    # results are fresh, writable arrays: scribbling on them changes nothing later
    for a in _flat(r1) + _flat(r2):
        a[...] = 42.0
    _assert_results_equal(m(x1), saved, "recomputed after scribbling")


def test_cell_later_call_never_overwrites_earlier_result():
    cell = nblstm.LSTMCell(6, 8, seed=0)
    x1, x2 = _x((3, 6), seed=1), _x((3, 6), seed=2)
    h1, c1 = cell(x1)
    saved = h1.copy(), c1.copy()
    cell(x2)
    np.testing.assert_array_equal(h1, saved[0])
    np.testing.assert_array_equal(c1, saved[1])


def test_results_do_not_alias_inputs():
    """h_n/c_n are fresh even where they equal the initial state (empty sequences)."""
    m = _model(num_layers=1)
    x = _x((3, 3, 6))
    hx = random_state(m, 3, np.float32, np.random.default_rng(0))
    lengths = np.array([3, 0, 2])
    order = np.array([0, 2, 1])
    p = PackedSequence(np.concatenate([x[0, [0, 2]], x[1, [0, 2]], x[2, [0]]]),
                       np.array([2, 2, 1], np.int64), order, np.argsort(order))
    assert (lengths[order][:, None] > np.arange(3)).sum(0).tolist() == [2, 2, 1]
    out, (h, c) = m(p, hx)
    for a in (out.data, h, c):
        for b in (p.data, hx[0], hx[1]):
            assert not np.shares_memory(a, b)
    saved = [a.copy() for a in hx]
    h[...] = 9.0
    c[...] = 9.0
    np.testing.assert_array_equal(hx[0], saved[0])
    np.testing.assert_array_equal(hx[1], saved[1])


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("int_dtype", [np.int64, np.int32, np.int8, np.uint8])
def test_integer_input_is_cast(dtype, int_dtype):
    m = _model(dtype, num_layers=2)
    xi = np.random.default_rng(0).integers(0 if int_dtype == np.uint8 else -3, 4,
                                           size=(5, 3, 6)).astype(int_dtype)
    got = m(xi)
    assert got[0].dtype == dtype and got[1][0].dtype == dtype
    _assert_results_equal(got, m(xi.astype(dtype)), "int input")


def test_float64_input_to_float32_model_is_converted():
    m = _model(np.float32, num_layers=2)
    x = _x((5, 3, 6), np.float64)
    got = m(x)
    assert got[0].dtype == np.float32
    _assert_results_equal(got, m(x.astype(np.float32)), "float64 input")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_strided_and_fortran_inputs(dtype):
    m = _model(dtype, num_layers=2, bidirectional=True)
    mbf = _model(dtype, num_layers=2, bidirectional=True, batch_first=True)
    big = _x((10, 8, 12), dtype)
    x = big[::2, ::2, ::2]                       # (5, 4, 6), strided in every axis
    assert not x.flags.c_contiguous
    xc = np.ascontiguousarray(x)
    ref = m(xc)
    hx = random_state(m, 4, dtype, np.random.default_rng(1))
    ref_hx = m(xc, hx)
    _assert_results_equal(m(x), ref, "strided")
    _assert_results_equal(m(np.asfortranarray(xc)), ref, "fortran")
    _assert_results_equal(m(xc[::-1][::-1]), ref, "double reversed view")
    rev = np.ascontiguousarray(xc[::-1])
    _assert_results_equal(m(rev[::-1]), ref, "negative strides")
    _assert_results_equal(m(x, tuple(np.asfortranarray(a) for a in hx)), ref_hx, "fortran hx")
    _assert_results_equal(m(x, tuple(np.repeat(a, 2, axis=2)[:, :, ::2] for a in hx)), ref_hx,
                          "strided hx")
    # batch_first model given a transposed (non-contiguous) view
    _assert_results_equal(mbf(xc.transpose(1, 0, 2)), mbf(np.ascontiguousarray(xc.transpose(1, 0, 2))),
                          "transposed view")
    # unbatched strided
    _assert_results_equal(m(x[:, 1]), m(np.ascontiguousarray(x[:, 1])), "unbatched strided")
    # packed data strided
    p = _packed(xc, [5, 2, 4, 3])
    wide = np.repeat(p.data, 2, axis=1)[:, ::2]
    assert np.array_equal(wide, p.data) and not wide.flags.c_contiguous
    _assert_results_equal(m(p._replace(data=wide)), m(p), "packed strided")
    _assert_results_equal(m(p._replace(data=np.asfortranarray(p.data))), m(p), "packed fortran")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_lists_accepted(dtype):
    m = _model(dtype, num_layers=2)
    x = _x((4, 3, 6), dtype)
    _assert_results_equal(m(x.tolist()), m(x), "list input")
    _assert_results_equal(m(x[:, 0].tolist()), m(x[:, 0]), "unbatched list input")
    cell = nblstm.LSTMCell(6, 8, dtype=dtype, seed=0)
    for a, b in zip(cell(x[0].tolist()), cell(x[0])):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_torch_tensors_accepted(dtype):
    torch = pytest.importorskip("torch")
    m = _model(dtype, num_layers=2, bidirectional=True)
    x = _x((4, 3, 6), dtype)
    ref = m(x)
    got = m(torch.from_numpy(x.copy()))
    assert isinstance(got[0], np.ndarray)
    _assert_results_equal(got, ref, "tensor input")
    _assert_results_equal(m(torch.from_numpy(np.ascontiguousarray(x.transpose(1, 0, 2))).transpose(0, 1)),
                          ref, "non-contiguous tensor input")
    _assert_results_equal(m(torch.from_numpy(x.copy()).requires_grad_(True)), ref,
                          "tensor input with requires_grad")
    cell = nblstm.LSTMCell(6, 8, dtype=dtype, seed=0)
    for a, b in zip(cell(torch.from_numpy(x[0].copy())), cell(x[0])):
        np.testing.assert_array_equal(a, b)


# =========================================================================== determinism

@pytest.mark.parametrize("size", ["small", "big"])
def test_repeated_calls_bitwise_identical(size):
    if size == "big":
        m = _model(input_size=MED["input_size"], hidden_size=MED["hidden_size"], num_layers=2,
                   bidirectional=True)
        x = _x((MED["length"], MED["n"], MED["input_size"]))
        lengths = np.random.default_rng(0).integers(1, MED["length"] + 1, MED["n"])
    else:
        m = _model(num_layers=2, bidirectional=True, proj_size=3)
        x = _x((5, 4, 6))
        lengths = [5, 1, 3, 4]
    ref = _copy_result(m(x))
    p = _packed(x, lengths)
    ref_p = _copy_result(m(p))
    for _ in range(4):
        _assert_results_equal(m(x), ref, "repeat")
        _assert_results_equal(m(p), ref_p, "repeat packed")


# =========================================================================== threads

def _run_threads(fn, args, n_threads=8, rounds=3):
    barrier = threading.Barrier(n_threads)
    all_results = []
    for _ in range(rounds):
        results = [None] * n_threads
        errors = []

        def work(i):
            try:
                barrier.wait(timeout=60)
                results[i] = fn(args[i])
            except BaseException as e:  # noqa: BLE001
                errors.append(e)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(n_threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        assert not any(t.is_alive() for t in threads), "a thread hung"
        assert not errors, errors
        all_results.append(results)
    return all_results


@pytest.mark.parametrize("size,packed,rounds", [
    ("big", False, 2), ("med", False, 3), ("med", True, 3), ("small", False, 3), ("small", True, 3),
    ("wide", False, 2), ("wide", True, 2), ("groups", False, 3), ("groups", True, 3),
    ("chunks", False, 3), ("chunks", True, 3), ("split", False, 3), ("split", True, 3),
    ("split-proj", False, 3), ("split-proj", True, 3)])
def test_eight_threads_match_sequential(size, packed, rounds):
    if size == "big":
        m = _model(input_size=BIG["input_size"], hidden_size=BIG["hidden_size"])
        shape = (BIG["length"], BIG["n"], BIG["input_size"])
    elif size == "med":
        m = _model(input_size=MED["input_size"], hidden_size=MED["hidden_size"], num_layers=2,
                   bidirectional=True, proj_size=16)
        shape = (MED["length"], MED["n"], MED["input_size"])
    elif size == "groups":  # one direction, 8-15 rows: the row-group parallel kernel
        m = _model(input_size=PAR["input_size"], hidden_size=PAR["hidden_size"], num_layers=2)
        shape = (PAR["length"], PAR["n"], PAR["input_size"])
    elif size in ("split", "split-proj"):  # the second phase splits the projection
        m = _model(input_size=SPLIT["input_size"], hidden_size=SPLIT["hidden_size"], num_layers=2,
                   proj_size=SPLIT["proj_size"] if size == "split-proj" else 0)
        shape = (SPLIT["length"], SPLIT["n"], SPLIT["input_size"])
    elif size == "chunks":
        m = _model(input_size=CHUNKS["input_size"], hidden_size=CHUNKS["hidden_size"])
        shape = (CHUNKS["length"], CHUNKS["n"], CHUNKS["input_size"])
    elif size == "wide":
        m = _model(input_size=WIDE["input_size"], hidden_size=WIDE["hidden_size"],
                   proj_size=WIDE["proj_size"])
        shape = (WIDE["length"], WIDE["n"], WIDE["input_size"])
    else:
        m = _model(num_layers=2, bidirectional=True, proj_size=3)
        shape = (5, 4, 6)
    inputs = []
    for i in range(8):
        x = _x(shape, seed=100 + i)
        if packed:
            lengths = np.random.default_rng(i).integers(1, shape[0] + 1, shape[1])
            lengths[0] = shape[0]
            x = _packed(x, lengths)
        inputs.append(x)
    hxs = [random_state(m, shape[1], np.float32, np.random.default_rng(200 + i)) for i in range(8)]
    args = list(zip(inputs, hxs))
    sequential = [_copy_result(m(x, hx)) for x, hx in args]
    for results in _run_threads(lambda a: m(*a), args, rounds=rounds):
        for i, r in enumerate(results):
            _assert_results_equal(r, sequential[i], f"thread {i}")


def test_eight_threads_cell_match_sequential():
    cell = nblstm.LSTMCell(64, 256, seed=0)
    args = [_x((64, 64), seed=i) for i in range(8)]  # 64 rows: parallel path
    sequential = [tuple(a.copy() for a in cell(x)) for x in args]
    for results in _run_threads(cell, args):
        for i, (h, c) in enumerate(results):
            np.testing.assert_array_equal(h, sequential[i][0])
            np.testing.assert_array_equal(c, sequential[i][1])


def _run_code(code, timeout=300):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=timeout)


def test_threads_never_abort_fresh_process():
    """In a fresh process the very first parallel calls come from 8 threads at once."""
    code = f"""
        import threading, numpy as np, nblstm
        m = nblstm.LSTM({PAR['input_size']}, {PAR['hidden_size']}, num_layers=2, bidirectional=True, seed=0)
        xs = [np.random.default_rng(i).standard_normal(({PAR['length']}, {PAR['n']}, {PAR['input_size']})).astype(np.float32)
              for i in range(8)]
        res = [None] * 8
        b = threading.Barrier(8)
        def work(i):
            b.wait()
            res[i] = m(xs[i])[0]
        for _ in range(2):
            ts = [threading.Thread(target=work, args=(i,)) for i in range(8)]
            [t.start() for t in ts]
            [t.join() for t in ts]
            assert all(np.array_equal(res[i], m(xs[i])[0]) for i in range(8))
        print("THREADS-OK")
    """
    r = _run_code(code)
    assert r.returncode == 0, f"rc={r.returncode}\nstdout={r.stdout}\nstderr={r.stderr[-3000:]}"
    assert "THREADS-OK" in r.stdout


def test_fork_after_parallel_forward():
    code = f"""
        import multiprocessing as mp, numpy as np, numba, nblstm
        m = nblstm.LSTM({PAR['input_size']}, {PAR['hidden_size']}, num_layers=2, bidirectional=True, seed=0)
        x = np.random.default_rng(0).standard_normal(({PAR['length']}, {PAR['n']}, {PAR['input_size']})).astype(np.float32)
        ref = m(x)[0]
        print("LAYER", numba.threading_layer())
        def work(i):
            return m(x)[0]
        with mp.get_context("fork").Pool(2) as pool:
            outs = pool.map(work, range(4), chunksize=1)
        assert all(np.array_equal(o, ref) for o in outs)
        assert np.array_equal(m(x)[0], ref)   # parent still fine after the fork
        print("FORK-OK")
    """
    r = _run_code(code, timeout=240)
    assert r.returncode == 0, f"rc={r.returncode}\nstdout={r.stdout}\nstderr={r.stderr[-3000:]}"
    assert "FORK-OK" in r.stdout


def test_import_does_not_import_torch():
    code = """
        import sys, numpy as np, nblstm
        m = nblstm.LSTM(3, 4, num_layers=2, bidirectional=True, seed=0)
        m(np.zeros((2, 1, 3), np.float32))
        nblstm.LSTMCell(3, 4, seed=0)(np.zeros(3, np.float32))
        m.state_dict()
        assert "torch" not in sys.modules, "nblstm imported torch"
        print("NO-TORCH-OK")
    """
    r = _run_code(code, timeout=180)
    assert r.returncode == 0, f"rc={r.returncode}\nstdout={r.stdout}\nstderr={r.stderr[-3000:]}"
    assert "NO-TORCH-OK" in r.stdout


def test_threading_layer_is_safe():
    import numba

    m = _model(input_size=PAR["input_size"], hidden_size=PAR["hidden_size"], bidirectional=True)
    m(_x((PAR["length"], PAR["n"], PAR["input_size"])))
    try:
        layer = numba.threading_layer()
    except ValueError:
        pytest.fail("no parallel Numba kernel ran during a large forward")
    print(f"numba threading layer: {layer}")
    assert layer in ("tbb", "omp"), f"threading layer is {layer!r}"


def test_keyword_arguments_as_torch():
    """torch's parameter names: forward(input, hx=None)."""
    m = _model(num_layers=2)
    x = _x((4, 3, 6))
    hx = random_state(m, 3, np.float32, np.random.default_rng(0))
    ref = m(x, hx)
    _assert_results_equal(m(x, hx=hx), ref, "hx=")
    _assert_results_equal(m.forward(input=x, hx=hx), ref, "input=, hx=")
    _assert_results_equal(m(input=x), m(x), "input=")
    cell = nblstm.LSTMCell(6, 8, seed=0)
    chx = (_x((3, 8), seed=1), _x((3, 8), seed=2))
    for a, b in zip(cell(input=x[0], hx=chx), cell(x[0], chx)):
        np.testing.assert_array_equal(a, b)


def test_packed_float64_data_for_float32_model():
    m = _model(np.float32, num_layers=2)
    x = _x((4, 3, 6), np.float64)
    p64 = _packed(x, [4, 2, 3])
    p32 = p64._replace(data=p64.data.astype(np.float32))
    got = m(p64)
    assert got[0].data.dtype == np.float32
    _assert_results_equal(got, m(p32), "float64 packed data")


def test_threads_mixed_models_fresh_process():
    """8 threads, each its own model (both dtypes, 1-3 layers, bi, proj, packed with
    empty sequences, small and >= 32-row batches), all starting at once in a fresh
    process (concurrent first dispatch), then compared with sequential calls."""
    code = """
        import threading, numpy as np, nblstm
        from nblstm.packing import PackedSequence
        def pack(x, lengths):
            order = np.argsort(-lengths, kind="stable")
            bs = np.array([(lengths > t).sum() for t in range(lengths.max())], np.int64)
            data = np.concatenate([x[t, order[:b]] for t, b in enumerate(bs)])
            return PackedSequence(data, bs, order.astype(np.int64), np.argsort(order).astype(np.int64))
        cfgs = []
        for i in range(8):
            dt = (np.float32, np.float64)[i % 2]
            m = nblstm.LSTM(16, 32, num_layers=1 + i % 3, bidirectional=bool(i & 2),
                            proj_size=(8 if i & 4 else 0), dtype=dt, seed=i)
            n = 40 if i < 4 else 5
            x = np.random.default_rng(i).standard_normal((6, n, 16)).astype(dt)
            if i % 3 == 0:
                lengths = np.random.default_rng(i).integers(0, 7, n); lengths[0] = 6
                x = pack(x, lengths)
            cfgs.append((m, x))
        def flat(r):
            o = r[0] if isinstance(r[0], np.ndarray) else r[0].data
            return [o, r[1][0], r[1][1]]
        res = [None] * 8
        b = threading.Barrier(8)
        def work(i):
            b.wait()
            res[i] = [flat(cfgs[i][0](cfgs[i][1])) for _ in range(3)]
        for rnd in range(2):
            ts = [threading.Thread(target=work, args=(i,)) for i in range(8)]
            [t.start() for t in ts]; [t.join() for t in ts]
            for i, (m, x) in enumerate(cfgs):
                ref = flat(m(x))
                for r in res[i]:
                    assert all(np.array_equal(a, c) for a, c in zip(r, ref)), (rnd, i)
        print("MIX-OK")
    """
    r = _run_code(code)
    assert r.returncode == 0, f"rc={r.returncode}\nstdout={r.stdout}\nstderr={r.stderr[-3000:]}"
    assert "MIX-OK" in r.stdout


def test_reliability_sizes_take_the_paths_they_name():
    """The configurations above exercise the step loops their comments name."""
    from nblstm.lstm._driver import plan_unidirectional, projects_in_parallel

    def plan(cfg, proj=0):
        return plan_unidirectional(cfg["n"], cfg["length"], cfg["hidden_size"], proj,
                                   np.float32, 2)[0]

    assert plan(BIG) == "row_groups"
    assert plan(PAR) == "row_groups"  # the "groups" size of the eight-threads test
    assert plan(dict(n=8, length=2, hidden_size=128)) == "serial"  # too little to wake threads
    assert plan(CHUNKS) == "row_groups"
    assert projects_in_parallel(CHUNKS["n"] * CHUNKS["length"], CHUNKS["input_size"],
                                CHUNKS["hidden_size"], 2)
    assert not projects_in_parallel(24, 128, 128, 2)  # measured slower in parallel
    assert not projects_in_parallel(CHUNKS["n"] * CHUNKS["length"], CHUNKS["input_size"],
                                    CHUNKS["hidden_size"], 1)
    assert plan(SPLIT) == "split_units"
    assert plan(SPLIT, SPLIT["proj_size"]) == "split_units"
    assert plan(dict(n=9, length=40, hidden_size=416)) == "split_units"  # large W_hh
    assert plan(dict(n=64, length=40, hidden_size=416)) == "row_groups"
    assert plan(WIDE, WIDE["proj_size"]) == "serial"
    assert plan(dict(n=4, length=40, hidden_size=128)) == "split_units"  # NaN test, "split"
    assert plan(dict(n=1, length=8, hidden_size=256)) == "split_units"  # short, enough work
    assert plan(dict(n=1, length=24, hidden_size=128)) == "serial"
    assert plan(dict(n=1, length=16, hidden_size=512)) == "serial"
    assert plan(dict(n=4, length=33, hidden_size=128)) == "split_units"  # huge inputs
    assert plan(dict(n=5, length=40, hidden_size=128), 100) == "split_units"  # NaN, projected
