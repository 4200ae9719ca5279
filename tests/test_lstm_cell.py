"""nblstm.LSTMCell against torch.nn.LSTMCell, plus its errors and weights."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import nblstm  # noqa: E402

from lstm_helpers import (  # noqa: E402
    DTYPE_IDS,
    DTYPES,
    assert_close,
    assert_msg_has,
    make_cell_pair,
    shape_re,
    t2n,
    torch_dtype,
)

HYP = settings(max_examples=min(60, settings().max_examples), deadline=None,
               suppress_health_check=[HealthCheck.too_slow])


def torch_cell(tc, x, hx=None):
    with torch.inference_mode():
        thx = None if hx is None else tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in hx)
        h, c = tc(torch.from_numpy(np.ascontiguousarray(x)), thx)
    return t2n(h), t2n(c)


@HYP
@given(input_size=st.integers(1, 64), hidden_size=st.integers(1, 64),
       n=st.one_of(st.none(), st.integers(1, 8)), bias=st.booleans(),
       dtype=st.sampled_from(DTYPES), with_hx=st.booleans(),
       seed=st.integers(0, 1000), data_seed=st.integers(0, 2**32 - 1),
       scale=st.sampled_from([0.1, 1.0, 4.0]))
def test_cell_matches_torch(input_size, hidden_size, n, bias, dtype, with_hx, seed, data_seed, scale):
    tc, c = make_cell_pair(input_size, hidden_size, bias=bias, dtype=dtype, seed=seed)
    rng = np.random.default_rng(data_seed)
    lead = () if n is None else (n,)
    x = (rng.standard_normal(lead + (input_size,)) * scale).astype(dtype)
    hx = None
    if with_hx:
        hx = (rng.standard_normal(lead + (hidden_size,)).astype(dtype),
              rng.standard_normal(lead + (hidden_size,)).astype(dtype))
    h1, c1 = c(x, hx)
    eh, ec = torch_cell(tc, x, hx)
    for name, a in (("h_1", h1), ("c_1", c1)):
        assert isinstance(a, np.ndarray), name
        assert a.dtype == dtype, name
    assert_close(h1, eh, dtype, "h_1")
    assert_close(c1, ec, dtype, "c_1")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("batched", [True, False])
@pytest.mark.parametrize("with_hx", [True, False])
def test_cell_matches_torch_grid(dtype, bias, batched, with_hx):
    tc, c = make_cell_pair(6, 9, bias=bias, dtype=dtype, seed=7)
    rng = np.random.default_rng(3)
    lead = (4,) if batched else ()
    x = rng.standard_normal(lead + (6,)).astype(dtype)
    hx = (rng.standard_normal(lead + (9,)).astype(dtype),
          rng.standard_normal(lead + (9,)).astype(dtype)) if with_hx else None
    h1, c1 = c(x, hx)
    eh, ec = torch_cell(tc, x, hx)
    assert h1.shape == eh.shape and c1.shape == ec.shape
    assert_close(h1, eh, dtype, "h_1")
    assert_close(c1, ec, dtype, "c_1")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_cell_unrolled_equals_lstm(dtype):
    """Stepping the cell over a sequence gives torch.nn.LSTM's result (one layer)."""
    torch.manual_seed(0)
    tl = torch.nn.LSTM(5, 8, dtype=torch_dtype(dtype))
    cell = nblstm.LSTMCell(5, 8, dtype=dtype)
    cell.load_state_dict({k[:-3]: v for k, v in tl.state_dict().items()})  # strip "_l0"
    x = np.random.default_rng(0).standard_normal((7, 3, 5)).astype(dtype)
    with torch.inference_mode():
        eout, (eh, ec) = tl(torch.from_numpy(x))
    hx = None
    outs = []
    for t in range(7):
        hx = cell(x[t], hx)
        outs.append(hx[0])
    assert_close(np.stack(outs), t2n(eout), dtype, "outputs")
    assert_close(hx[1], t2n(ec)[0], dtype, "c_n")


def test_cell_state_dict_keys_and_shapes():
    for bias in (True, False):
        torch.manual_seed(0)
        tc = torch.nn.LSTMCell(3, 5, bias=bias)
        c = nblstm.LSTMCell.from_torch(tc)
        sd = c.state_dict()
        expected = {k: tuple(v.shape) for k, v in tc.state_dict().items()}
        assert list(sd) == list(expected)
        assert {k: tuple(np.shape(v)) for k, v in sd.items()} == expected
        if bias:
            assert set(sd) == {"weight_ih", "weight_hh", "bias_ih", "bias_hh"}
        else:
            assert set(sd) == {"weight_ih", "weight_hh"}
        for k, v in tc.state_dict().items():
            assert isinstance(sd[k], np.ndarray)
            np.testing.assert_array_equal(sd[k], t2n(v))


def test_cell_attributes_and_defaults():
    c = nblstm.LSTMCell(3, 5, seed=0)
    assert c.input_size == 3 and c.hidden_size == 5 and c.bias is True
    assert np.dtype(c.dtype) == np.float32
    bound = 1 / np.sqrt(5)
    for k, v in c.state_dict().items():
        assert v.dtype == np.float32, k
        assert np.all(np.abs(v) <= bound), k
    c2 = nblstm.LSTMCell(3, 5, seed=0)
    for k, v in c.state_dict().items():
        np.testing.assert_array_equal(v, c2.state_dict()[k])


def test_cell_load_state_dict_from_numpy_and_torch():
    torch.manual_seed(1)
    tc = torch.nn.LSTMCell(4, 6, dtype=torch.float64)
    x = np.random.default_rng(0).standard_normal((3, 4))
    eh, ec = torch_cell(tc, x)
    for sd in (tc.state_dict(), {k: t2n(v).copy() for k, v in tc.state_dict().items()}):
        c = nblstm.LSTMCell(4, 6, dtype=np.float64, seed=123)
        c.load_state_dict(sd)
        h1, c1 = c(x)
        assert_close(h1, eh, np.float64, "h_1")
        assert_close(c1, ec, np.float64, "c_1")


def test_cell_load_state_dict_strict_errors():
    c = nblstm.LSTMCell(4, 6, seed=0)
    good = c.state_dict()
    missing = dict(good)
    del missing["bias_hh"]
    with pytest.raises((KeyError, ValueError, RuntimeError), match="bias_hh"):
        c.load_state_dict(missing)
    with pytest.raises((KeyError, ValueError, RuntimeError), match="bogus"):
        c.load_state_dict(dict(good, bogus=np.zeros(3, np.float32)))
    with pytest.raises((ValueError, RuntimeError), match="weight_hh"):
        c.load_state_dict(dict(good, weight_hh=np.zeros((24, 5), np.float32)))


# --------------------------------------------------------------------------- errors

@pytest.fixture(scope="module")
def cell():
    return nblstm.LSTMCell(5, 7, seed=0)


def test_cell_wrong_ndim(cell):
    with pytest.raises(ValueError, match="input") as ei:
        cell(np.zeros((2, 3, 5), np.float32))
    assert_msg_has(ei, r"3-?D|3 dim|ndim|2, 3, 5")


def test_cell_wrong_feature_size(cell):
    with pytest.raises(ValueError, match="input_size|input") as ei:
        cell(np.zeros((2, 11), np.float32))
    assert_msg_has(ei, "11")


def test_cell_hx_wrong_shape(cell):
    x = np.zeros((2, 5), np.float32)
    bad = np.zeros((3, 7), np.float32)
    ok = np.zeros((2, 7), np.float32)
    with pytest.raises(ValueError, match="hx|h_0|hidden|h_1|state") as ei:
        cell(x, (bad, ok))
    assert_msg_has(ei, shape_re((3, 7)))
    with pytest.raises(ValueError, match="hx|c_0|cell|state") as ei:
        cell(x, (ok, np.zeros((2, 13), np.float32)))
    assert_msg_has(ei, shape_re((2, 13)))


def test_cell_hx_ndim_mismatch(cell):
    # batched input with unbatched state
    with pytest.raises(ValueError, match="hx|h_0|hidden|state"):
        cell(np.zeros((2, 5), np.float32), (np.zeros(7, np.float32), np.zeros(7, np.float32)))


def test_cell_hx_wrong_dtype(cell):
    x = np.zeros((2, 5), np.float32)
    with pytest.raises((TypeError, ValueError), match="float64"):
        cell(x, (np.zeros((2, 7), np.float64), np.zeros((2, 7), np.float64)))


def test_cell_non_numeric_input(cell):
    with pytest.raises(TypeError):
        cell(np.array([["a"] * 5]))
    with pytest.raises(TypeError):
        cell(np.array([[object()] * 5], dtype=object))


@pytest.mark.parametrize("kwargs,name,value", [
    (dict(input_size=0, hidden_size=4), "input_size", "0"),
    (dict(input_size=3, hidden_size=-2), "hidden_size", "-2"),
])
def test_cell_bad_sizes(kwargs, name, value):
    with pytest.raises(ValueError, match=name) as ei:
        nblstm.LSTMCell(**kwargs)
    assert_msg_has(ei, value)


def test_cell_bad_types():
    with pytest.raises(TypeError, match="hidden_size") as ei:
        nblstm.LSTMCell(3, 4.5)
    assert_msg_has(ei, r"4\.5")
    with pytest.raises(TypeError, match="dtype") as ei:
        nblstm.LSTMCell(3, 4, dtype=np.float16)
    assert_msg_has(ei, "float16")
    with pytest.raises(TypeError, match="bias") as ei:
        nblstm.LSTMCell(3, 4, bias="yes")
    assert_msg_has(ei, "yes")


def test_cell_strict_rejects_lstm_layer_keys():
    """torch.nn.LSTMCell's keys have no ``_l0`` suffix: under strict=True an
    ``_l0`` key is unexpected (torch raises), and it must never silently
    override the real key."""
    c = nblstm.LSTMCell(4, 6, seed=0)
    sd = c.state_dict()
    with pytest.raises((KeyError, ValueError, RuntimeError), match="weight_ih_l0"):
        c.load_state_dict(dict(sd, weight_ih_l0=np.zeros((24, 4), np.float32)))
    np.testing.assert_array_equal(c.state_dict()["weight_hh"], sd["weight_hh"])
    torch.manual_seed(0)
    lstm_sd = torch.nn.LSTM(4, 6).state_dict()
    with pytest.raises((KeyError, ValueError, RuntimeError), match="_l0"):
        c.load_state_dict(lstm_sd)
