"""Weights of nblstm.LSTM: torch's state_dict keys and shapes, loading, init."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import nblstm  # noqa: E402

from lstm_helpers import DTYPE_IDS, DTYPES, assert_close, t2n, torch_dtype, torch_lstm  # noqa: E402

COMBOS = list(itertools.product([1, 2, 3], [True, False], [False, True], [0, 2]))
COMBO_IDS = [f"L{nl}-bias{b:d}-bi{bi:d}-proj{p}" for nl, b, bi, p in COMBOS]


def _torch(nl, bias, bi, proj, dtype=np.float32, seed=0, **kw):
    torch.manual_seed(seed)
    return torch.nn.LSTM(4, 5, num_layers=nl, bias=bias, bidirectional=bi, proj_size=proj,
                         dtype=torch_dtype(dtype), **kw).eval()


def _np_sd(tm):
    return {k: t2n(v).copy() for k, v in tm.state_dict().items()}


@pytest.mark.parametrize("nl,bias,bi,proj", COMBOS, ids=COMBO_IDS)
def test_state_dict_keys_and_shapes_match_torch(nl, bias, bi, proj):
    tm = _torch(nl, bias, bi, proj)
    m = nblstm.LSTM(4, 5, num_layers=nl, bias=bias, bidirectional=bi, proj_size=proj, seed=0)
    sd = m.state_dict()
    expected = {k: tuple(v.shape) for k, v in tm.state_dict().items()}
    assert set(sd) == set(expected)
    assert list(sd) == list(expected), "key order differs from torch's"
    for k, v in sd.items():
        assert isinstance(v, np.ndarray), k
        assert v.shape == expected[k], k
        assert v.dtype == np.float32, k
    # naming sanity independent of torch
    suffixes = [""] + (["_reverse"] if bi else [])
    for layer in range(nl):
        for sfx in suffixes:
            assert f"weight_ih_l{layer}{sfx}" in sd
            assert f"weight_hh_l{layer}{sfx}" in sd
            assert (f"bias_ih_l{layer}{sfx}" in sd) == bias
            assert (f"bias_hh_l{layer}{sfx}" in sd) == bias
            assert (f"weight_hr_l{layer}{sfx}" in sd) == bool(proj)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("nl,bias,bi,proj", COMBOS, ids=COMBO_IDS)
def test_from_torch_round_trip(nl, bias, bi, proj, dtype):
    tm = _torch(nl, bias, bi, proj, dtype=dtype, seed=nl * 7 + proj)
    m = nblstm.LSTM.from_torch(tm)
    assert np.dtype(m.dtype) == np.dtype(dtype)
    sd = m.state_dict()
    tsd = tm.state_dict()
    assert list(sd) == list(tsd)
    for k, v in tsd.items():
        assert sd[k].dtype == dtype, k
        np.testing.assert_array_equal(sd[k], t2n(v), err_msg=k)
    for name in ("input_size", "hidden_size", "num_layers", "bias", "batch_first",
                 "dropout", "bidirectional", "proj_size"):
        assert getattr(m, name) == getattr(tm, name), name


def test_from_torch_copies_weights():
    tm = _torch(2, True, True, 0)
    m = nblstm.LSTM.from_torch(tm)
    before = m.state_dict()
    with torch.no_grad():
        for p in tm.parameters():
            p.add_(1.0)
    after = m.state_dict()
    for k in before:
        np.testing.assert_array_equal(before[k], after[k], err_msg=k)


def test_from_torch_keeps_batch_first_and_dropout():
    torch.manual_seed(0)
    tm = torch.nn.LSTM(3, 4, num_layers=2, batch_first=True, dropout=0.3)
    m = nblstm.LSTM.from_torch(tm)
    assert m.batch_first is True
    assert m.dropout == pytest.approx(0.3)


@pytest.mark.parametrize("source", ["torch", "numpy"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_load_state_dict_then_matches_torch(source, dtype):
    tm = _torch(2, True, True, 3, dtype=dtype, seed=5)
    m = nblstm.LSTM(4, 5, num_layers=2, bidirectional=True, proj_size=3, dtype=dtype, seed=99)
    sd = tm.state_dict() if source == "torch" else _np_sd(tm)
    m.load_state_dict(sd)
    x = np.random.default_rng(0).standard_normal((6, 3, 4)).astype(dtype)
    out, (h, c) = m(x)
    eout, (eh, ec) = torch_lstm(tm, x)
    assert_close(out, eout, dtype, "output")
    assert_close(h, eh, dtype, "h_n")
    assert_close(c, ec, dtype, "c_n")
    for k, v in m.state_dict().items():
        assert v.dtype == dtype, k


def test_load_state_dict_accepts_lists():
    tm = _torch(1, True, False, 0)
    m = nblstm.LSTM(4, 5, seed=1)
    m.load_state_dict({k: t2n(v).tolist() for k, v in tm.state_dict().items()})
    for k, v in tm.state_dict().items():
        np.testing.assert_array_equal(m.state_dict()[k], t2n(v))


def test_load_state_dict_copies_input():
    tm = _torch(1, True, False, 0)
    m = nblstm.LSTM(4, 5, seed=1)
    sd = _np_sd(tm)
    m.load_state_dict(sd)
    ref = {k: v.copy() for k, v in sd.items()}
    for v in sd.values():
        v[...] = 123.0
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(v, ref[k], err_msg=k)


def test_state_dict_returns_copies():
    m = nblstm.LSTM(4, 5, num_layers=2, seed=3)
    x = np.random.default_rng(0).standard_normal((3, 2, 4)).astype(np.float32)
    out_before, _ = m(x)
    sd = m.state_dict()
    ref = {k: v.copy() for k, v in sd.items()}
    for v in sd.values():
        v[...] = 0.0
    sd2 = m.state_dict()
    for k in ref:
        np.testing.assert_array_equal(sd2[k], ref[k], err_msg=k)
    out_after, _ = m(x)
    np.testing.assert_array_equal(out_after, out_before)
    # two state_dicts do not alias each other
    a, b = m.state_dict(), m.state_dict()
    for k in a:
        assert not np.shares_memory(a[k], b[k]), k


# --------------------------------------------------------------------------- strict

@pytest.fixture
def model_and_sd():
    m = nblstm.LSTM(4, 5, num_layers=2, bidirectional=True, proj_size=2, seed=0)
    other = nblstm.LSTM(4, 5, num_layers=2, bidirectional=True, proj_size=2, seed=1)
    return m, other.state_dict()


def test_strict_missing_key(model_and_sd):
    m, sd = model_and_sd
    del sd["weight_hh_l1_reverse"]
    with pytest.raises((KeyError, ValueError, RuntimeError), match="weight_hh_l1_reverse"):
        m.load_state_dict(sd)
    with pytest.raises((KeyError, ValueError, RuntimeError), match="weight_hh_l1_reverse"):
        m.load_state_dict(sd, strict=True)


def test_strict_unexpected_key(model_and_sd):
    m, sd = model_and_sd
    sd["weight_ih_l7"] = np.zeros((20, 4), np.float32)
    with pytest.raises((KeyError, ValueError, RuntimeError), match="weight_ih_l7"):
        m.load_state_dict(sd)


def test_strict_bias_keys_for_biasless_model():
    m = nblstm.LSTM(4, 5, bias=False, seed=0)
    sd = nblstm.LSTM(4, 5, bias=True, seed=1).state_dict()
    with pytest.raises((KeyError, ValueError, RuntimeError), match="bias_ih_l0"):
        m.load_state_dict(sd)


@pytest.mark.parametrize("strict", [True, False])
@pytest.mark.parametrize("key,shape", [
    ("weight_ih_l0", (20, 5)),
    ("weight_hh_l1_reverse", (20, 3)),
    ("bias_ih_l1", (21,)),
    ("weight_hr_l0", (5, 2)),
])
def test_wrong_shape_raises(model_and_sd, key, shape, strict):
    m, sd = model_and_sd
    sd[key] = np.zeros(shape, np.float32)
    with pytest.raises((ValueError, RuntimeError), match=key):
        m.load_state_dict(sd, strict=strict)


def test_non_strict_ignores_missing_and_unexpected(model_and_sd):
    m, sd = model_and_sd
    before = m.state_dict()
    partial = {"weight_ih_l0": sd["weight_ih_l0"], "bias_hh_l1_reverse": sd["bias_hh_l1_reverse"],
               "not_a_parameter": np.zeros(3, np.float32)}
    m.load_state_dict(partial, strict=False)
    after = m.state_dict()
    for k in before:
        if k in partial:
            np.testing.assert_array_equal(after[k], sd[k], err_msg=k)
        else:
            np.testing.assert_array_equal(after[k], before[k], err_msg=k)


# --------------------------------------------------------------------------- init

def test_default_init_within_bound_and_seeded():
    for hidden, proj in ((5, 0), (16, 3), (64, 0)):
        m = nblstm.LSTM(7, hidden, num_layers=2, bidirectional=True, proj_size=proj, seed=42)
        bound = 1.0 / np.sqrt(hidden)
        allv = []
        for k, v in m.state_dict().items():
            assert np.all(np.abs(v) <= bound), k
            assert np.all(np.isfinite(v)), k
            allv.append(v.ravel())
        allv = np.concatenate(allv)
        # it is uniform over the whole interval, not a constant or a narrower law
        assert allv.min() < -0.9 * bound and allv.max() > 0.9 * bound
        assert abs(allv.mean()) < 0.1 * bound
        assert np.std(allv) == pytest.approx(bound / np.sqrt(3), rel=0.15)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_seed_reproducible(dtype):
    kw = dict(num_layers=2, bidirectional=True, proj_size=2, dtype=dtype)
    a = nblstm.LSTM(4, 5, seed=7, **kw).state_dict()
    b = nblstm.LSTM(4, 5, seed=7, **kw).state_dict()
    c = nblstm.LSTM(4, 5, seed=8, **kw).state_dict()
    assert list(a) == list(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert any(not np.array_equal(a[k], c[k]) for k in a)
    # seed=None draws fresh entropy
    d = nblstm.LSTM(4, 5, **kw).state_dict()
    e = nblstm.LSTM(4, 5, **kw).state_dict()
    assert any(not np.array_equal(d[k], e[k]) for k in d)

