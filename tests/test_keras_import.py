"""``nblstm.LSTM.from_keras``: Keras 3 LSTM layers, with Keras as the oracle.

Keras runs on its torch backend (on CPU its LSTM is Keras's own loop, not
``torch.nn.LSTM``; ``use_cudnn=False`` runs the generic ``LSTMCell`` loop).
Every expected value comes from Keras itself, from an analytic one-step
formula, or from ``torch.nn.LSTM``; none from nblstm. float32 within 1e-5
absolute of Keras, float64 within 1e-10.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import nblstm  # noqa: E402

ATOL32 = 1e-5
ATOL64 = 1e-10


# --------------------------------------------------------------------------- helpers

def k2n(value):
    return keras.ops.convert_to_numpy(value)


def keras_outputs(layer, x, **kwargs):
    """The layer's call as a list of NumPy arrays."""
    result = layer(x, **kwargs)
    if isinstance(result, (list, tuple)):
        return [k2n(r) for r in result]
    return [k2n(result)]


def random_weights(rng, units, input_size, use_bias=True, dtype=np.float32, scale=None):
    """Keras-layout LSTM weights, U(-s, s) with s = 1/sqrt(units) unless given;
    non-zero biases in every gate block."""
    s = scale if scale is not None else 1.0 / np.sqrt(units)
    weights = [rng.uniform(-s, s, (input_size, 4 * units)),
               rng.uniform(-s, s, (units, 4 * units))]
    if use_bias:
        weights.append(rng.uniform(-s, s, 4 * units))
    return [w.astype(dtype) for w in weights]


def keras_lstm(units, input_size, seed=0, dtype=np.float32, batch=None, **kwargs):
    """A built ``keras.layers.LSTM`` with seeded random weights."""
    layer = keras.layers.LSTM(units, **kwargs)
    layer.build((batch, None, input_size))
    rng = np.random.default_rng(seed)
    layer.set_weights(random_weights(rng, units, input_size,
                                     kwargs.get("use_bias", True), dtype))
    return layer


def keras_bidirectional(units, input_size, seed=0, merge_mode="concat", **kwargs):
    layer = keras.layers.Bidirectional(keras.layers.LSTM(units, **kwargs),
                                       merge_mode=merge_mode)
    layer.build((None, None, input_size))
    rng = np.random.default_rng(seed)
    use_bias = kwargs.get("use_bias", True)
    layer.set_weights(random_weights(rng, units, input_size, use_bias)
                      + random_weights(rng, units, input_size, use_bias))
    return layer


def inputs(n, steps, size, seed=1, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal((n, steps, size)).astype(dtype)


def close(actual, expected, atol=ATOL32):
    np.testing.assert_allclose(actual, expected, rtol=0, atol=atol)


# --------------------------------------------------------------------------- mapping

def test_gate_order_analytic_one_step():
    """Keras's bias blocks are (i, f, c, o) = torch's (i, f, g, o): with zero
    kernels, one step from (h0, c0) is c1 = s(b_f) c0 + s(b_i) tanh(b_c),
    h1 = s(b_o) tanh(c1); Keras and nblstm must both give that."""
    units, size = 3, 2
    layer = keras.layers.LSTM(units, return_state=True)
    layer.build((None, None, size))
    bias = np.concatenate([np.full(units, v, np.float32) for v in (1.5, -2.0, 0.7, -0.4)])
    bias += np.tile(np.arange(units, dtype=np.float32) * 0.1, 4)
    layer.set_weights([np.zeros((size, 4 * units), np.float32),
                       np.zeros((units, 4 * units), np.float32), bias])
    h0 = np.full((1, units), 0.3, np.float32)
    c0 = np.array([[0.9, -1.1, 2.0]], np.float32)
    x = np.ones((1, 1, size), np.float32)

    sig = lambda z: 1.0 / (1.0 + np.exp(-z))  # noqa: E731
    b_i, b_f, b_c, b_o = np.split(bias.astype(np.float64), 4)
    c1 = sig(b_f) * c0 + sig(b_i) * np.tanh(b_c)
    h1 = sig(b_o) * np.tanh(c1)

    k_out, k_h, k_c = keras_outputs(layer, x, initial_state=[h0, c0])
    close(k_out, h1, 1e-6)  # the oracle agrees with the torch-order formula
    close(k_c, c1, 1e-6)

    model = nblstm.LSTM.from_keras(layer)
    out, (h_n, c_n) = model(x, hx=(h0[None], c0[None]))
    close(out[:, -1], h1, 1e-6)
    close(c_n[0], c1, 1e-6)


def test_mapping_matches_torch_lstm():
    """kernel.T / recurrent_kernel.T / bias / zeros in a torch.nn.LSTM gives
    Keras's outputs (an oracle for the mapping independent of nblstm), and the
    model's state_dict is exactly that mapping."""
    torch = pytest.importorskip("torch")
    units, size = 5, 4
    layer = keras_lstm(units, size, seed=3, return_sequences=True)
    kernel, recurrent, bias = layer.get_weights()
    x = inputs(2, 6, size)

    ref = torch.nn.LSTM(size, units, batch_first=True)
    with torch.no_grad():
        ref.weight_ih_l0.copy_(torch.from_numpy(kernel.T.copy()))
        ref.weight_hh_l0.copy_(torch.from_numpy(recurrent.T.copy()))
        ref.bias_ih_l0.copy_(torch.from_numpy(bias))
        ref.bias_hh_l0.zero_()
        torch_out = ref(torch.from_numpy(x))[0].numpy()
    (k_out,) = keras_outputs(layer, x)
    close(torch_out, k_out)

    model = nblstm.LSTM.from_keras(layer)
    state = model.state_dict()
    np.testing.assert_array_equal(state["weight_ih_l0"], kernel.T)
    np.testing.assert_array_equal(state["weight_hh_l0"], recurrent.T)
    np.testing.assert_array_equal(state["bias_ih_l0"], bias)
    np.testing.assert_array_equal(state["bias_hh_l0"], np.zeros(4 * units, np.float32))
    assert (model.input_size, model.hidden_size, model.num_layers) == (size, units, 1)
    assert model.batch_first and not model.bidirectional and model.dtype == np.float32


# --------------------------------------------------------------------------- LSTM

@pytest.mark.parametrize("use_cudnn", ["auto", False], ids=["fused", "cell-loop"])
@pytest.mark.parametrize("use_bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("return_sequences", [True, False], ids=["seq", "last"])
def test_lstm_matches_keras(return_sequences, use_bias, use_cudnn):
    layer = keras_lstm(7, 5, seed=11, return_sequences=return_sequences,
                       use_bias=use_bias, use_cudnn=use_cudnn)
    x = inputs(3, 9, 5)
    (expected,) = keras_outputs(layer, x)
    model = nblstm.LSTM.from_keras(layer)
    assert model.bias is use_bias
    out, (h_n, _) = model(x)
    if return_sequences:
        assert out.shape == expected.shape == (3, 9, 7)
        close(out, expected)
    else:
        assert expected.shape == (3, 7)
        close(out[:, -1], expected)
        close(h_n[-1], expected)


def test_return_state():
    layer = keras_lstm(6, 4, seed=5, return_sequences=True, return_state=True)
    x = inputs(2, 8, 4)
    k_out, k_h, k_c = keras_outputs(layer, x)
    out, (h_n, c_n) = nblstm.LSTM.from_keras(layer)(x)
    close(out, k_out)
    close(h_n[0], k_h)
    close(c_n[0], k_c)


def test_initial_state():
    layer = keras_lstm(6, 4, seed=6, return_sequences=True, return_state=True)
    x = inputs(3, 5, 4)
    rng = np.random.default_rng(9)
    h0 = rng.standard_normal((3, 6)).astype(np.float32)
    c0 = rng.standard_normal((3, 6)).astype(np.float32)
    k_out, k_h, k_c = keras_outputs(layer, x, initial_state=[h0, c0])
    (zero_out, _, _) = keras_outputs(layer, x)
    assert np.abs(k_out - zero_out).max() > 1e-2  # the initial state matters here
    out, (h_n, c_n) = nblstm.LSTM.from_keras(layer)(x, hx=(h0[None], c0[None]))
    close(out, k_out)
    close(h_n[0], k_h)
    close(c_n[0], k_c)


def test_stateful_layer_state_is_the_callers():
    """A stateful Keras layer continues from its last state; the model does so
    when the previous call's (h_n, c_n) is passed as hx."""
    layer = keras_lstm(5, 3, seed=12, batch=2, return_sequences=True, stateful=True)
    x1, x2 = inputs(2, 4, 3, seed=1), inputs(2, 6, 3, seed=2)
    (k1,) = keras_outputs(layer, x1)
    (k2,) = keras_outputs(layer, x2)
    model = nblstm.LSTM.from_keras(layer)
    out1, state = model(x1)
    out2, _ = model(x2, hx=state)
    close(out1, k1)
    close(out2, k2)


def test_dropout_is_training_only():
    layer = keras_lstm(6, 4, seed=13, return_sequences=True, dropout=0.5,
                       recurrent_dropout=0.3)
    x = inputs(2, 7, 4)
    (expected,) = keras_outputs(layer, x)  # training=False: no dropout
    out, _ = nblstm.LSTM.from_keras(layer)(x)
    close(out, expected)


def test_rnn_of_lstm_cell():
    layer = keras.layers.RNN(keras.layers.LSTMCell(4), return_sequences=True)
    layer.build((None, None, 3))
    layer.set_weights(random_weights(np.random.default_rng(4), 4, 3))
    x = inputs(2, 5, 3)
    (expected,) = keras_outputs(layer, x)
    close(nblstm.LSTM.from_keras(layer)(x)[0], expected)


def test_tanh_and_sigmoid_from_keras_ops_and_torch():
    torch = pytest.importorskip("torch")
    layer = keras_lstm(4, 3, seed=14, return_sequences=True, activation=keras.ops.tanh,
                       recurrent_activation=torch.sigmoid)
    x = inputs(2, 5, 3)
    (expected,) = keras_outputs(layer, x)
    close(nblstm.LSTM.from_keras(layer)(x)[0], expected)


def test_float64_layer():
    layer = keras.layers.LSTM(6, return_sequences=True, return_state=True, dtype="float64")
    layer.build((None, None, 4))
    layer.set_weights(random_weights(np.random.default_rng(7), 6, 4, dtype=np.float64))
    x = inputs(2, 9, 4, dtype=np.float64)
    k_out, k_h, k_c = keras_outputs(layer, x)
    assert k_out.dtype == np.float64
    model = nblstm.LSTM.from_keras(layer)
    assert model.dtype == np.float64
    out, (h_n, c_n) = model(x)
    assert out.dtype == np.float64
    close(out, k_out, ATOL64)
    close(h_n[0], k_h, ATOL64)
    close(c_n[0], k_c, ATOL64)


@pytest.mark.parametrize("policy", ["bfloat16", "float16", "mixed_float16"])
def test_low_precision_policies_give_float32_models(policy):
    """float16/bfloat16 variables are widened exactly to float32; the model
    then equals a float32 Keras layer with those widened weights."""
    layer = keras.layers.LSTM(5, return_sequences=True, dtype=policy,
                              recurrent_initializer="glorot_uniform")
    layer.build((None, None, 3))
    layer.set_weights(random_weights(np.random.default_rng(8), 5, 3))
    widened = [np.asarray(w, np.float32) for w in layer.get_weights()]
    model = nblstm.LSTM.from_keras(layer)
    assert model.dtype == np.float32
    np.testing.assert_array_equal(model.state_dict()["weight_ih_l0"], widened[0].T)
    np.testing.assert_array_equal(model.state_dict()["bias_ih_l0"], widened[2])

    ref = keras.layers.LSTM(5, return_sequences=True)
    ref.build((None, None, 3))
    ref.set_weights(widened)
    x = inputs(2, 6, 3)
    (expected,) = keras_outputs(ref, x)
    close(model(x)[0], expected)
    (low,) = keras_outputs(layer, x)  # Keras in its own precision: roughly equal
    close(model(x)[0], low.astype(np.float32), 5e-2)


# --------------------------------------------------------------------------- Bidirectional

@pytest.mark.parametrize("return_sequences", [True, False], ids=["seq", "last"])
def test_bidirectional_concat(return_sequences):
    layer = keras_bidirectional(6, 4, seed=21, return_sequences=return_sequences,
                                return_state=True)
    x = inputs(3, 7, 4)
    k_out, k_hf, k_cf, k_hb, k_cb = keras_outputs(layer, x)
    model = nblstm.LSTM.from_keras(layer)
    assert model.bidirectional and model.hidden_size == 6
    out, (h_n, c_n) = model(x)
    if return_sequences:
        assert k_out.shape == out.shape == (3, 7, 12)
        close(out, k_out)
    else:
        assert k_out.shape == (3, 12)
        # Keras's last output: forward after x[:, -1], backward after x[:, 0]
        close(np.concatenate([out[:, -1, :6], out[:, 0, 6:]], axis=-1), k_out)
        close(np.concatenate([h_n[0], h_n[1]], axis=-1), k_out)
        assert np.abs(out[:, -1] - k_out).max() > 1e-3  # and not out[:, -1]
    close(h_n[0], k_hf)
    close(c_n[0], k_cf)
    close(h_n[1], k_hb)
    close(c_n[1], k_cb)


def test_bidirectional_initial_state_and_no_bias():
    layer = keras_bidirectional(5, 3, seed=22, return_sequences=True, use_bias=False)
    x = inputs(2, 6, 3)
    rng = np.random.default_rng(3)
    h_f, c_f, h_b, c_b = (rng.standard_normal((2, 5)).astype(np.float32) for _ in range(4))
    (expected,) = keras_outputs(layer, x, initial_state=[h_f, c_f, h_b, c_b])
    model = nblstm.LSTM.from_keras(layer)
    assert model.bias is False
    out, _ = model(x, hx=(np.stack([h_f, h_b]), np.stack([c_f, c_b])))
    close(out, expected)


def test_bidirectional_backward_half_is_keras_backward_layer():
    """Keras's backward half equals its backward layer (go_backwards) with its
    outputs flipped back to input order: torch's bidirectional layout."""
    layer = keras_bidirectional(4, 3, seed=23, return_sequences=True)
    x = inputs(2, 5, 3)
    (both,) = keras_outputs(layer, x)
    (backward,) = keras_outputs(layer.backward_layer, x)
    close(both[..., 4:], backward[:, ::-1], 1e-6)
    out, _ = nblstm.LSTM.from_keras(layer)(x)
    close(out[..., 4:], backward[:, ::-1])


# --------------------------------------------------------------------------- go_backwards
# These rely on nblstm.LSTM honouring ``_time_order = "backwards"`` (module.py,
# ``LSTM.time_order``): without it the model reads forwards and they fail.

def test_keras_go_backwards_is_processing_order():
    """Oracle semantics (Keras only): go_backwards on x is the forward layer on
    x reversed in time, outputs in processing order (not flipped back)."""
    fwd = keras_lstm(4, 3, seed=31, return_sequences=True)
    bwd = keras_lstm(4, 3, seed=31, return_sequences=True, go_backwards=True)
    x = inputs(2, 6, 3)
    (k_bwd,) = keras_outputs(bwd, x)
    (k_fwd_rev,) = keras_outputs(fwd, np.ascontiguousarray(x[:, ::-1]))
    close(k_bwd, k_fwd_rev, 1e-6)
    assert nblstm.LSTM.from_keras(bwd)._time_order == "backwards"
    assert getattr(nblstm.LSTM.from_keras(fwd), "_time_order", "forward") == "forward"


@pytest.mark.parametrize("return_sequences", [True, False], ids=["seq", "last"])
def test_go_backwards_matches_keras(return_sequences):
    layer = keras_lstm(5, 3, seed=32, return_sequences=return_sequences, return_state=True,
                       go_backwards=True)
    x = inputs(3, 7, 3)
    k_out, k_h, k_c = keras_outputs(layer, x)
    out, (h_n, c_n) = nblstm.LSTM.from_keras(layer)(x)
    if return_sequences:
        close(out, k_out)
    else:
        close(out[:, -1], k_out)
    close(h_n[0], k_h)
    close(c_n[0], k_c)


def test_go_backwards_initial_state():
    layer = keras_lstm(4, 2, seed=33, return_sequences=True, go_backwards=True)
    x = inputs(2, 5, 2)
    rng = np.random.default_rng(5)
    h0, c0 = (rng.standard_normal((2, 4)).astype(np.float32) for _ in range(2))
    (expected,) = keras_outputs(layer, x, initial_state=[h0, c0])
    out, _ = nblstm.LSTM.from_keras(layer)(x, hx=(h0[None], c0[None]))
    close(out, expected)


# --------------------------------------------------------------------------- models

def test_layers_of_a_sequential_model():
    model = keras.Sequential([keras.Input((None, 5)),
                              keras.layers.LSTM(6, return_sequences=True),
                              keras.layers.LSTM(4)])
    rng = np.random.default_rng(41)
    model.layers[0].set_weights(random_weights(rng, 6, 5))
    model.layers[1].set_weights(random_weights(rng, 4, 6))
    x = inputs(3, 8, 5)
    expected = k2n(model(x))
    first = nblstm.LSTM.from_keras(model.layers[0])
    second = nblstm.LSTM.from_keras(model.layers[1])
    out, _ = second(first(x)[0])
    close(out[:, -1], expected)


def test_layer_of_a_functional_model():
    source = keras.Input((None, 3))
    hidden = keras.layers.Bidirectional(keras.layers.LSTM(5, return_sequences=True))(source)
    model = keras.Model(source, keras.layers.Dense(2)(hidden))
    bidir = model.layers[1]
    rng = np.random.default_rng(42)
    bidir.set_weights(random_weights(rng, 5, 3) + random_weights(rng, 5, 3))
    x = inputs(2, 6, 3)
    expected = k2n(keras.Model(source, hidden)(x))
    out, _ = nblstm.LSTM.from_keras(bidir)(x)
    close(out, expected)


# --------------------------------------------------------------------------- property

@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(units=st.integers(1, 40), size=st.integers(1, 30), steps=st.integers(1, 12),
       batch=st.integers(1, 5), bidirectional=st.booleans(), use_bias=st.booleans(),
       seed=st.integers(0, 2**16))
def test_property_matches_keras(units, size, steps, batch, bidirectional, use_bias, seed):
    if bidirectional:
        layer = keras_bidirectional(units, size, seed=seed, return_sequences=True,
                                    return_state=True, use_bias=use_bias)
    else:
        layer = keras_lstm(units, size, seed=seed, return_sequences=True,
                           return_state=True, use_bias=use_bias)
    x = inputs(batch, steps, size, seed=seed + 1)
    k_out, *k_states = keras_outputs(layer, x)
    out, (h_n, c_n) = nblstm.LSTM.from_keras(layer)(x)
    close(out, k_out)
    close(h_n[0], k_states[0])
    close(c_n[0], k_states[1])
    if bidirectional:
        close(h_n[1], k_states[2])
        close(c_n[1], k_states[3])


# --------------------------------------------------------------------------- errors

def _built(layer, size=3):
    layer.build((None, None, size))
    return layer


@pytest.mark.parametrize("make, match", [
    (lambda: _built(keras.layers.GRU(4)), r"GRU"),
    (lambda: _built(keras.layers.SimpleRNN(4)), r"SimpleRNN"),
    (lambda: _built(keras.layers.Dense(4), 3), r"keras\.layers\.LSTM.*Dense"),
    (lambda: "lstm", r"keras\.layers\.LSTM.*str"),
    (lambda: keras.Sequential([keras.Input((None, 3)), keras.layers.LSTM(2)]),
     r"Sequential.*model\.layers\[i\]"),
    (lambda: _built(keras.layers.Bidirectional(keras.layers.GRU(4))),
     r"forward_layer.*GRU"),
], ids=["gru", "simple-rnn", "dense", "str", "sequential", "bidirectional-gru"])
def test_not_a_keras_lstm(make, match):
    with pytest.raises(TypeError, match=match):
        nblstm.LSTM.from_keras(make())


def test_torch_module_points_to_from_torch():
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match=r"torch.*from_torch"):
        nblstm.LSTM.from_keras(torch.nn.LSTM(3, 4))


@pytest.mark.parametrize("kwargs, match", [
    (dict(recurrent_activation="hard_sigmoid"),
     r"recurrent_activation='hard_sigmoid'.*sigmoid only"),
    (dict(recurrent_activation="tanh"), r"recurrent_activation='tanh'.*sigmoid only"),
    (dict(activation="relu"), r"activation='relu'.*tanh"),
], ids=["hard-sigmoid", "tanh-gates", "relu"])
def test_unsupported_activations(kwargs, match):
    with pytest.raises(ValueError, match=match):
        nblstm.LSTM.from_keras(_built(keras.layers.LSTM(4, **kwargs)))


def test_unsupported_activation_inside_bidirectional():
    layer = _built(keras.layers.Bidirectional(keras.layers.LSTM(4, activation="relu")))
    with pytest.raises(ValueError, match=r"layer\.forward_layer has activation='relu'"):
        nblstm.LSTM.from_keras(layer)


@pytest.mark.parametrize("merge_mode", ["sum", "mul", "ave", None])
def test_merge_modes_other_than_concat(merge_mode):
    layer = _built(keras.layers.Bidirectional(keras.layers.LSTM(4), merge_mode=merge_mode))
    match = rf"merge_mode={merge_mode!r}.*concat.*out\[\.\.\., :H\]"
    with pytest.raises(ValueError, match=match):
        nblstm.LSTM.from_keras(layer)


def test_merge_mode_fix_from_the_message():
    """The fix the merge_mode error suggests gives Keras's merge_mode='sum'."""
    summed = keras_bidirectional(4, 3, seed=24, merge_mode="sum", return_sequences=True)
    concat = _built(keras.layers.Bidirectional(keras.layers.LSTM(4, return_sequences=True),
                                               merge_mode="concat"))
    concat.set_weights(summed.get_weights())
    x = inputs(2, 5, 3)
    (expected,) = keras_outputs(summed, x)
    out, _ = nblstm.LSTM.from_keras(concat)(x)
    close(out[..., :4] + out[..., 4:], expected)


@pytest.mark.parametrize("make", [
    lambda: keras.layers.LSTM(4),
    lambda: keras.layers.Bidirectional(keras.layers.LSTM(4)),
], ids=["lstm", "bidirectional"])
def test_unbuilt_layer(make):
    with pytest.raises(ValueError, match=r"not built.*call it on an input first"):
        nblstm.LSTM.from_keras(make())


def test_bidirectional_with_different_units():
    layer = _built(keras.layers.Bidirectional(
        keras.layers.LSTM(4), backward_layer=keras.layers.LSTM(3, go_backwards=True)))
    with pytest.raises(ValueError, match=r"units=4.*units=3"):
        nblstm.LSTM.from_keras(layer)


def tanh(x):  # named tanh, but not Keras's or torch's: not assumed to be one
    return keras.ops.tanh(x)


def test_own_function_named_tanh_is_rejected():
    with pytest.raises(ValueError, match=r"activation=<function tanh.*tanh only"):
        nblstm.LSTM.from_keras(_built(keras.layers.LSTM(4, activation=tanh)))


def test_bidirectional_with_directions_swapped():
    layer = _built(keras.layers.Bidirectional(
        keras.layers.LSTM(4, go_backwards=True), backward_layer=keras.layers.LSTM(4)))
    match = r"forward_layer\.go_backwards=True.*go_backwards=True"
    with pytest.raises(ValueError, match=match):
        nblstm.LSTM.from_keras(layer)


def test_module_does_not_import_keras():
    code = ("import sys, nblstm, nblstm.io.keras_lstm; "
            "assert 'keras' not in sys.modules, 'keras imported'")
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=300)
