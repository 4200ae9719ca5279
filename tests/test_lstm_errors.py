"""Clear errors from nblstm.LSTM: every message names the argument and the bad value.

Patterns match the argument name (and the bad value), never whole sentences,
so the wording can evolve.
"""

from __future__ import annotations

import numpy as np
import pytest

import nblstm
from nblstm.packing import PackedSequence

from lstm_helpers import assert_msg_has, shape_re


@pytest.fixture(scope="module")
def m32():
    return nblstm.LSTM(5, 7, num_layers=2, seed=0)


@pytest.fixture(scope="module")
def mproj():
    return nblstm.LSTM(5, 7, num_layers=1, bidirectional=True, proj_size=3, seed=0)


X = np.zeros((4, 2, 5), np.float32)  # (L, N, H_in)


# --------------------------------------------------------------------------- input

@pytest.mark.parametrize("shape", [(5,), (1, 4, 2, 5)], ids=["1d", "4d"])
def test_wrong_ndim(m32, shape):
    with pytest.raises(ValueError, match="input") as ei:
        m32(np.zeros(shape, np.float32))
    nd = len(shape)
    assert_msg_has(ei, rf"{nd}-?D|{nd} ?dim|ndim\D*{nd}|{shape_re(shape)}")


@pytest.mark.parametrize("shape", [(4, 2, 6), (4, 2, 11), (4, 9)], ids=["3d-6", "3d-11", "2d-9"])
def test_wrong_feature_size(m32, shape):
    with pytest.raises(ValueError, match="input_size|input") as ei:
        m32(np.zeros(shape, np.float32))
    assert_msg_has(ei, str(shape[-1]), "5")


def test_wrong_feature_size_batch_first():
    m = nblstm.LSTM(5, 7, batch_first=True, seed=0)
    with pytest.raises(ValueError, match="input_size|input") as ei:
        m(np.zeros((2, 4, 13), np.float32))
    assert_msg_has(ei, "13")


def test_wrong_feature_size_packed(m32):
    packed = PackedSequence(np.zeros((3, 13), np.float32), np.array([2, 1], np.int64),
                            np.array([0, 1], np.int64), np.array([0, 1], np.int64))
    with pytest.raises(ValueError, match="input_size|input") as ei:
        m32(packed)
    assert_msg_has(ei, "13")


@pytest.mark.parametrize("bad", [
    pytest.param(lambda: np.array([[["a"] * 5] * 2] * 4), id="str-array"),
    pytest.param(lambda: [[["a"] * 5] * 2] * 4, id="str-list"),
    pytest.param(lambda: np.full((4, 2, 5), None, dtype=object), id="object-None"),
    pytest.param(lambda: np.array([[[object()] * 5] * 2] * 4, dtype=object), id="object"),
    pytest.param(lambda: "hello", id="str"),
])
def test_non_numeric_input(m32, bad):
    with pytest.raises(TypeError):
        m32(bad())


# --------------------------------------------------------------------------- hx

def test_hx_wrong_h_shape(m32):
    c0 = np.zeros((2, 2, 7), np.float32)
    with pytest.raises(ValueError, match="hx|h_0|hidden") as ei:
        m32(X, (np.zeros((2, 3, 7), np.float32), c0))
    assert_msg_has(ei, shape_re((2, 3, 7)))
    with pytest.raises(ValueError, match="hx|h_0|hidden") as ei:
        m32(X, (np.zeros((1, 2, 7), np.float32), c0))  # wrong number of layers
    assert_msg_has(ei, shape_re((1, 2, 7)))


def test_hx_wrong_c_shape(m32):
    h0 = np.zeros((2, 2, 7), np.float32)
    with pytest.raises(ValueError, match="hx|c_0|cell") as ei:
        m32(X, (h0, np.zeros((2, 2, 8), np.float32)))
    assert_msg_has(ei, shape_re((2, 2, 8)))


def test_hx_proj_shapes_not_swapped(mproj):
    """With proj_size, h_0 has proj_size features and c_0 hidden_size; swapping is an error."""
    h_ok = np.zeros((2, 2, 3), np.float32)
    c_ok = np.zeros((2, 2, 7), np.float32)
    mproj(X, (h_ok, c_ok))  # fine
    with pytest.raises(ValueError, match="hx|h_0|c_0|hidden|cell"):
        mproj(X, (c_ok, h_ok))
    with pytest.raises(ValueError, match="hx|c_0|cell") as ei:
        mproj(X, (h_ok, h_ok))
    assert_msg_has(ei, shape_re((2, 2, 3)))


def test_hx_ndim_mismatch(m32):
    # batched (3-D) input needs 3-D state; unbatched input needs 2-D state
    with pytest.raises(ValueError, match="hx|h_0|hidden"):
        m32(X, (np.zeros((2, 7), np.float32), np.zeros((2, 7), np.float32)))
    with pytest.raises(ValueError, match="hx|h_0|hidden"):
        m32(X[:, 0], (np.zeros((2, 1, 7), np.float32), np.zeros((2, 1, 7), np.float32)))


def test_hx_packed_batch_mismatch(m32):
    packed = PackedSequence(np.zeros((3, 5), np.float32), np.array([2, 1], np.int64),
                            np.array([1, 0], np.int64), np.array([1, 0], np.int64))
    with pytest.raises(ValueError, match="hx|h_0|hidden") as ei:
        m32(packed, (np.zeros((2, 3, 7), np.float32), np.zeros((2, 3, 7), np.float32)))
    assert_msg_has(ei, shape_re((2, 3, 7)))


def test_hx_wrong_dtype(m32):
    """A float64 state for a float32 model is an error, not a silent cast."""
    with pytest.raises((TypeError, ValueError), match="float64") as ei:
        m32(X, (np.zeros((2, 2, 7), np.float64), np.zeros((2, 2, 7), np.float64)))
    assert_msg_has(ei, "hx|h_0|c_0|hidden|state")
    m64 = nblstm.LSTM(5, 7, dtype=np.float64, seed=0)
    with pytest.raises((TypeError, ValueError), match="float32"):
        m64(X.astype(np.float64), (np.zeros((1, 2, 7), np.float32), np.zeros((1, 2, 7), np.float32)))


@pytest.mark.parametrize("hx", [
    pytest.param(np.zeros((2, 2, 7), np.float32), id="single-array"),
    pytest.param((np.zeros((2, 2, 7), np.float32),), id="1-tuple"),
])
def test_hx_not_a_pair(m32, hx):
    with pytest.raises((TypeError, ValueError), match="hx|h_0|c_0|hidden"):
        m32(X, hx)


# --------------------------------------------------------------------------- constructor

@pytest.mark.parametrize("kwargs,name,value", [
    (dict(input_size=0, hidden_size=4), "input_size", "0"),
    (dict(input_size=-3, hidden_size=4), "input_size", "-3"),
    (dict(input_size=3, hidden_size=0), "hidden_size", "0"),
    (dict(input_size=3, hidden_size=-4), "hidden_size", "-4"),
    (dict(input_size=3, hidden_size=4, num_layers=0), "num_layers", "0"),
    (dict(input_size=3, hidden_size=4, num_layers=-2), "num_layers", "-2"),
    (dict(input_size=3, hidden_size=4, proj_size=-1), "proj_size", "-1"),
    (dict(input_size=3, hidden_size=4, proj_size=4), "proj_size", "4"),
    (dict(input_size=3, hidden_size=4, proj_size=9), "proj_size", "9"),
    (dict(input_size=3, hidden_size=4, dropout=-0.25), "dropout", r"-0\.25"),
    (dict(input_size=3, hidden_size=4, dropout=1.5), "dropout", r"1\.5"),
])
def test_constructor_value_errors(kwargs, name, value):
    with pytest.raises(ValueError, match=name) as ei:
        nblstm.LSTM(**kwargs)
    assert_msg_has(ei, value)


@pytest.mark.parametrize("kwargs,name,value", [
    (dict(input_size=3.0, hidden_size=4), "input_size", r"3\.0"),
    (dict(input_size=3, hidden_size=4.5), "hidden_size", r"4\.5"),
    (dict(input_size=3, hidden_size=4, num_layers=2.0), "num_layers", r"2\.0"),
    (dict(input_size=3, hidden_size=4, proj_size=1.0), "proj_size", r"1\.0"),
    (dict(input_size=3, hidden_size=4, bias="yes"), "bias", "yes"),
    (dict(input_size=3, hidden_size=4, bias=None), "bias", "None"),
    (dict(input_size=3, hidden_size=4, dtype=np.float16), "dtype", "float16"),
    (dict(input_size=3, hidden_size=4, dtype=int), "dtype", "int"),
    (dict(input_size=3, hidden_size=4, dtype=np.int32), "dtype", "int32"),
    (dict(input_size=3, hidden_size=4, dtype=np.complex64), "dtype", "complex64"),
])
def test_constructor_type_errors(kwargs, name, value):
    with pytest.raises(TypeError, match=name) as ei:
        nblstm.LSTM(**kwargs)
    assert_msg_has(ei, value)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_constructor_accepts_float_dtypes(dtype):
    m = nblstm.LSTM(3, 4, dtype=dtype, seed=0)
    assert np.dtype(m.dtype) == np.dtype(dtype)
    assert all(v.dtype == dtype for v in m.state_dict().values())


def test_constructor_boundary_values_accepted():
    nblstm.LSTM(1, 1, dropout=0.0)
    nblstm.LSTM(1, 2, num_layers=2, dropout=1.0, proj_size=1)


def test_packed_rows_do_not_match_batch_sizes(m32):
    packed = PackedSequence(np.zeros((4, 5), np.float32), np.array([2, 1], np.int64),
                            np.array([0, 1], np.int64), np.array([0, 1], np.int64))
    with pytest.raises(ValueError, match="batch_sizes") as ei:
        m32(packed)
    assert_msg_has(ei, "4", "3")
