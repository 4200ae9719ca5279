"""``nblstm.LSTM.from_state_dict`` / ``nblstm.LSTMCell.from_state_dict``.

Torch is the oracle: a whole torch model (several submodules, of which some
are LSTMs, an LSTMCell, GRUs that must never be picked up) gives its
``state_dict()``; the model built from it under a key prefix must have the
torch module's configuration and give the torch module's outputs (float32
within 2e-5, float64 within 1e-10). The only comparisons between two nblstm
paths are the round trips of nblstm's own int8/bfloat16 state dicts, which
must be bitwise.
"""

from __future__ import annotations

import copy
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from torch import nn  # noqa: E402

import nblstm  # noqa: E402

pytestmark = pytest.mark.filterwarnings(
    "ignore:LSTM with projections is not supported with oneDNN:UserWarning")

ATOL = {np.float32: 2e-5, np.float64: 1e-10}
ENCODER, NESTED, DECODER = "encoder.0.", "a.b.rnn.", "decoder."
LSTM_PREFIXES = (NESTED, ENCODER)  # sorted, as the messages list them


# --------------------------------------------------------------------------- helpers

class Holder(nn.Module):
    """A plain container, for nesting modules (``a.b.rnn``)."""


class Net(nn.Module):
    """A whole model: a Linear, an nn.Sequential encoder holding an nn.LSTM,
    an nn.LSTMCell decoder, an nn.GRU and nn.GRUCell (never LSTMs), and a
    second nn.LSTM nested deeper at ``a.b.rnn``."""

    def __init__(self, input_size=5, hidden_size=6, num_layers=2, bias=True,
                 bidirectional=False, proj_size=0, batch_first=False, cell_input=4,
                 cell_hidden=3, cell_bias=True, nested=True, cell=True):
        super().__init__()
        self.embed = nn.Linear(3, input_size)
        self.encoder = nn.Sequential(
            nn.LSTM(input_size, hidden_size, num_layers=num_layers, bias=bias,
                    batch_first=batch_first, bidirectional=bidirectional, proj_size=proj_size),
            nn.Linear(hidden_size, 2))
        if cell:
            self.decoder = nn.LSTMCell(cell_input, cell_hidden, bias=cell_bias)
        # GRU sizes chosen so that 3H is a multiple of 4 (H = 4, 8): the
        # row count alone does not rule them out.
        self.gru = nn.GRU(input_size, 4, num_layers=2)
        self.grucell = nn.GRUCell(cell_input, 8)
        if nested:
            self.a = Holder()
            self.a.b = Holder()
            self.a.b.rnn = nn.LSTM(4, 8, bias=False, num_layers=1)


def make_net(seed=0, dtype=None, **kwargs):
    torch.manual_seed(seed)
    net = Net(**kwargs).eval()
    if dtype == np.float64:
        net = net.double()
    return net


def t2n(t):
    return t.detach().cpu().numpy()


def torch_run(module, x, hx=None):
    with torch.inference_mode():
        thx = None if hx is None else tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in hx)
        out, (h, c) = module(torch.from_numpy(np.ascontiguousarray(x)), thx)
    return t2n(out), (t2n(h), t2n(c))


def torch_cell_run(module, x, hx=None):
    with torch.inference_mode():
        thx = None if hx is None else tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in hx)
        h, c = module(torch.from_numpy(np.ascontiguousarray(x)), thx)
    return t2n(h), t2n(c)


def lstm_input(module, dtype, rng, t=4, n=2):
    shape = (n, t, module.input_size) if module.batch_first else (t, n, module.input_size)
    return rng.standard_normal(shape).astype(dtype)


def lstm_hx(module, dtype, rng, n=2):
    d = 2 if module.bidirectional else 1
    h_out = module.proj_size or module.hidden_size
    return (rng.standard_normal((d * module.num_layers, n, h_out)).astype(dtype),
            rng.standard_normal((d * module.num_layers, n, module.hidden_size)).astype(dtype))


def assert_close(got, expected, dtype, what=""):
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.dtype == np.dtype(dtype), f"{what}: dtype {got.dtype}, expected {dtype}"
    assert got.shape == expected.shape, f"{what}: shape {got.shape} != {expected.shape}"
    np.testing.assert_allclose(got, expected, rtol=0, atol=ATOL[np.dtype(dtype).type],
                               err_msg=what)


def assert_same_config(m, tm, batch_first=None):
    """nblstm's attributes equal the torch module's own."""
    assert m.input_size == tm.input_size
    assert m.hidden_size == tm.hidden_size
    assert m.bias == bool(tm.bias)
    if isinstance(tm, nn.LSTM):
        assert m.num_layers == tm.num_layers
        assert m.bidirectional == tm.bidirectional
        assert m.proj_size == tm.proj_size
        assert m.batch_first == (tm.batch_first if batch_first is None else batch_first)
        assert m.dropout == 0.0


def assert_lstm_matches(m, tm, dtype, seed=1, with_hx=True):
    """Output, h_n and c_n of ``m`` equal torch's ``tm``, without and with hx."""
    rng = np.random.default_rng(seed)
    x = lstm_input(tm, dtype, rng)
    cases = [None] + ([lstm_hx(tm, dtype, rng)] if with_hx else [])
    for hx in cases:
        out, (h, c) = m(x) if hx is None else m(x, hx)
        t_out, (t_h, t_c) = torch_run(tm, x, hx)
        what = "hx=None" if hx is None else "hx given"
        assert_close(out, t_out, dtype, f"output ({what})")
        assert_close(h, t_h, dtype, f"h_n ({what})")
        assert_close(c, t_c, dtype, f"c_n ({what})")


def assert_cell_matches(cell, tc, dtype, seed=2):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((3, tc.input_size)).astype(dtype)
    hx = (rng.standard_normal((3, tc.hidden_size)).astype(dtype),
          rng.standard_normal((3, tc.hidden_size)).astype(dtype))
    for state in (None, hx):
        h, c = cell(x) if state is None else cell(x, state)
        t_h, t_c = torch_cell_run(tc, x, state)
        assert_close(h, t_h, dtype, "h_1")
        assert_close(c, t_c, dtype, "c_1")


def as_numpy(state):
    return {k: t2n(v) for k, v in state.items()}


def snapshot(state):
    """Deep copy of a state dict's keys, value objects and contents."""
    return [(k, v, copy.deepcopy(v)) for k, v in state.items()]


def assert_unchanged(state, snap):
    assert list(state.keys()) == [k for k, _, _ in snap]
    for (key, obj, saved), value in zip(snap, state.values()):
        assert value is obj, f"{key}: the value object was replaced"
        if isinstance(saved, torch.Tensor):
            assert value.dtype == saved.dtype and value.shape == saved.shape, key
            assert torch.equal(value, saved), f"{key} was modified"
        else:
            assert value.dtype == saved.dtype and value.shape == saved.shape, key
            assert np.array_equal(value, saved), f"{key} was modified"


def bf16_bits(tensor):
    """uint16 bit patterns of a bfloat16 torch tensor (computed with torch)."""
    return t2n(tensor.contiguous().view(torch.int16)).view(np.uint16)


def assert_lists_prefixes(excinfo, prefixes):
    msg = str(excinfo.value)
    for p in prefixes:
        assert repr(p) in msg, f"{p!r} not listed in {msg!r}"


# --------------------------------------------------------------------------- configurations

CONFIGS = [
    dict(num_layers=1),
    dict(num_layers=2),
    dict(num_layers=3),
    dict(num_layers=2, bias=False),
    dict(num_layers=1, bidirectional=True),
    dict(num_layers=3, bidirectional=True, bias=False),
    dict(num_layers=1, proj_size=3),
    dict(num_layers=2, proj_size=2, bidirectional=True),
    dict(num_layers=3, proj_size=4, bias=False),
    dict(num_layers=2, batch_first=True, bidirectional=True),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_encoder_lstm_matches_torch(cfg, dtype):
    net = make_net(dtype=dtype, **cfg)
    tm = net.encoder[0]
    sd = net.state_dict()
    m = nblstm.LSTM.from_state_dict(sd, ENCODER, batch_first=tm.batch_first)
    assert isinstance(m, nblstm.LSTM)
    assert_same_config(m, tm)
    assert m.dtype == dtype and m.weight_format == np.dtype(dtype).name
    assert_lstm_matches(m, tm, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_nested_lstm_matches_torch(dtype):
    net = make_net(dtype=dtype)
    tm = net.a.b.rnn
    for prefix in ("a.b.rnn.", "a.b.rnn"):
        m = nblstm.LSTM.from_state_dict(net.state_dict(), prefix)
        assert_same_config(m, tm)
        assert m.bias is False and m.input_size == 4 and m.hidden_size == 8
        assert m.dtype == dtype
        assert_lstm_matches(m, tm, dtype)


def test_batch_first_is_passed_through():
    # torch's batch_first is not in the state dict: the caller's choice applies.
    net = make_net(num_layers=2, batch_first=True)
    tm = net.encoder[0]
    m = nblstm.LSTM.from_state_dict(net.state_dict(), ENCODER, batch_first=True)
    assert m.batch_first is True
    assert_lstm_matches(m, tm, np.float32)
    default = nblstm.LSTM.from_state_dict(net.state_dict(), ENCODER)
    assert default.batch_first is False
    x = lstm_input(tm, np.float32, np.random.default_rng(3))  # (N, T, I)
    out, _ = default(np.ascontiguousarray(x.transpose(1, 0, 2)))  # as (T, N, I)
    t_out, _ = torch_run(tm, x)
    assert_close(out.transpose(1, 0, 2), t_out, np.float32, "batch_first=False model")


@pytest.mark.parametrize("prefix", ["encoder.0.", "encoder.0"])
def test_prefix_with_and_without_final_dot(prefix):
    net = make_net(num_layers=2, bidirectional=True, proj_size=2)
    m = nblstm.LSTM.from_state_dict(net.state_dict(), prefix)
    assert_same_config(m, net.encoder[0])
    assert_lstm_matches(m, net.encoder[0], np.float32)


def test_prefix_that_starts_another_module_name():
    # "rnn" must pick "rnn." and not mix in the keys of "rnn2." / "rnn_b.".
    torch.manual_seed(4)
    outer = nn.Module()
    outer.rnn = nn.LSTM(3, 5, num_layers=1).eval()
    outer.rnn2 = nn.LSTM(3, 5, num_layers=2).eval()
    outer.rnn_b = nn.LSTM(3, 5, num_layers=1, bidirectional=True).eval()
    sd = outer.state_dict()
    for prefix, tm in (("rnn", outer.rnn), ("rnn2", outer.rnn2), ("rnn_b.", outer.rnn_b)):
        m = nblstm.LSTM.from_state_dict(sd, prefix)
        assert_same_config(m, tm)
        assert_lstm_matches(m, tm, np.float32)


def test_only_lstm_picked_without_prefix():
    # One nn.LSTM, plus an LSTMCell, a GRU, a GRUCell and a Linear.
    net = make_net(num_layers=3, proj_size=2, nested=False)
    sd = net.state_dict()
    assert any(k.startswith("gru.") for k in sd) and any(k.startswith(DECODER) for k in sd)
    m = nblstm.LSTM.from_state_dict(sd)
    assert_same_config(m, net.encoder[0])
    assert_lstm_matches(m, net.encoder[0], np.float32)


def test_plain_lstm_state_dict_and_top_level_lstm():
    torch.manual_seed(5)
    tm = nn.LSTM(4, 6, num_layers=2, bidirectional=True).eval()
    m = nblstm.LSTM.from_state_dict(tm.state_dict())
    assert_same_config(m, tm)
    assert_lstm_matches(m, tm, np.float32)
    # A top-level LSTM (prefix "") beside other modules' keys, which are ignored.
    head = nn.Linear(12, 2)
    sd = {**tm.state_dict(), **{"head." + k: v for k, v in head.state_dict().items()}}
    m = nblstm.LSTM.from_state_dict(sd)
    assert_lstm_matches(m, tm, np.float32)


def test_keys_of_modules_nested_below_the_prefix_are_ignored():
    class LSTMWithNorm(nn.LSTM):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.norm = nn.LayerNorm(self.hidden_size)

    torch.manual_seed(6)
    outer = nn.Module()
    outer.rnn = LSTMWithNorm(3, 5, num_layers=2).eval()
    sd = outer.state_dict()
    assert "rnn.norm.weight" in sd
    m = nblstm.LSTM.from_state_dict(sd, "rnn")
    assert_same_config(m, outer.rnn)
    assert_lstm_matches(m, outer.rnn, np.float32)


# --------------------------------------------------------------------------- LSTMCell

@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("bias", [True, False])
def test_cell_matches_torch(bias, dtype):
    net = make_net(dtype=dtype, cell_bias=bias)
    tc = net.decoder
    sd = net.state_dict()
    for prefix in ("decoder.", "decoder", ""):  # "": the only LSTMCell (GRUCell ignored)
        cell = nblstm.LSTMCell.from_state_dict(sd, prefix)
        assert isinstance(cell, nblstm.LSTMCell)
        assert_same_config(cell, tc)
        assert cell.dtype == dtype
        assert_cell_matches(cell, tc, dtype)


def test_plain_cell_state_dict():
    torch.manual_seed(7)
    tc = nn.LSTMCell(5, 7).eval()
    cell = nblstm.LSTMCell.from_state_dict(tc.state_dict())
    assert_same_config(cell, tc)
    assert_cell_matches(cell, tc, np.float32)


def test_lstm_does_not_pick_cell_keys_and_vice_versa():
    torch.manual_seed(8)
    only_cell = nn.Module()
    only_cell.decoder = nn.LSTMCell(4, 4)   # square weight_ih: shapes alone could mislead
    only_cell.gru = nn.GRU(4, 4)
    sd = only_cell.state_dict()
    with pytest.raises(ValueError, match="no nn.LSTM"):
        nblstm.LSTM.from_state_dict(sd)
    with pytest.raises(ValueError, match="no nn.LSTM under prefix 'decoder\\.?'.*none"):
        nblstm.LSTM.from_state_dict(sd, "decoder")

    only_lstm = nn.Module()
    only_lstm.rnn = nn.LSTM(4, 4)
    only_lstm.grucell = nn.GRUCell(4, 4)
    sd = only_lstm.state_dict()
    with pytest.raises(ValueError, match="no nn.LSTMCell"):
        nblstm.LSTMCell.from_state_dict(sd)
    with pytest.raises(ValueError, match=r"no nn.LSTMCell under prefix 'rnn\.'.*none"):
        nblstm.LSTMCell.from_state_dict(sd, "rnn.")

    # In the whole model each finds its own kind only.
    net = make_net(nested=False)
    cell = nblstm.LSTMCell.from_state_dict(net.state_dict())
    assert_same_config(cell, net.decoder)
    lstm = nblstm.LSTM.from_state_dict(net.state_dict())
    assert_same_config(lstm, net.encoder[0])


def test_several_cells_need_a_prefix():
    torch.manual_seed(9)
    outer = nn.Module()
    outer.dec1 = nn.LSTMCell(3, 4).eval()
    outer.dec2 = nn.LSTMCell(4, 2, bias=False).eval()
    sd = outer.state_dict()
    with pytest.raises(ValueError, match="several nn.LSTMCells") as ei:
        nblstm.LSTMCell.from_state_dict(sd)
    assert_lists_prefixes(ei, ("dec1.", "dec2."))
    with pytest.raises(ValueError, match="no nn.LSTMCell under prefix 'dec3.?'") as ei:
        nblstm.LSTMCell.from_state_dict(sd, "dec3")
    assert_lists_prefixes(ei, ("dec1.", "dec2."))
    cell = nblstm.LSTMCell.from_state_dict(sd, "dec2")
    assert_same_config(cell, outer.dec2)
    assert_cell_matches(cell, outer.dec2, np.float32)


# --------------------------------------------------------------------------- value kinds

def test_values_as_numpy_arrays():
    net = make_net(num_layers=2, bidirectional=True, proj_size=3)
    sd = as_numpy(net.state_dict())
    m = nblstm.LSTM.from_state_dict(sd, ENCODER)
    assert_same_config(m, net.encoder[0])
    assert_lstm_matches(m, net.encoder[0], np.float32)
    cell = nblstm.LSTMCell.from_state_dict(sd, DECODER)
    assert_cell_matches(cell, net.decoder, np.float32)


@pytest.mark.parametrize("as_dict", [False, True], ids=["NpzFile", "dict"])
def test_values_from_npz_round_trip(tmp_path, as_dict):
    net = make_net(dtype=np.float64, num_layers=3, bias=False)
    path = os.path.join(tmp_path, "model.npz")
    np.savez(path, **as_numpy(net.state_dict()))
    with np.load(path) as loaded:
        state = dict(loaded) if as_dict else loaded
        m = nblstm.LSTM.from_state_dict(state, "encoder.0")
        nested = nblstm.LSTM.from_state_dict(state, NESTED)
        cell = nblstm.LSTMCell.from_state_dict(state)
    assert m.dtype == np.float64
    assert_same_config(m, net.encoder[0])
    assert_lstm_matches(m, net.encoder[0], np.float64)
    assert_lstm_matches(nested, net.a.b.rnn, np.float64)
    assert_cell_matches(cell, net.decoder, np.float64)


def test_dtype_overrides_the_weights_dtype():
    # float32 weights, dtype=np.float64: a float64 model of those weights.
    net = make_net(num_layers=2, proj_size=2)
    m = nblstm.LSTM.from_state_dict(net.state_dict(), ENCODER, dtype=np.float64)
    assert m.dtype == np.float64 and m.weight_format == "float64"
    assert_lstm_matches(m, copy.deepcopy(net.encoder[0]).double(), np.float64)
    # float64 weights, dtype=np.float32.
    net64 = make_net(dtype=np.float64, num_layers=2, bidirectional=True)
    m = nblstm.LSTM.from_state_dict(net64.state_dict(), ENCODER, dtype=np.float32)
    assert m.dtype == np.float32
    assert_lstm_matches(m, copy.deepcopy(net64.encoder[0]).float(), np.float32)
    cell = nblstm.LSTMCell.from_state_dict(net64.state_dict(), dtype=np.float32)
    assert cell.dtype == np.float32
    assert_cell_matches(cell, copy.deepcopy(net64.decoder).float(), np.float32)


@pytest.mark.parametrize("kind", ["torch", "numpy"])
def test_float16_weights_give_float32_model(kind):
    net = make_net(num_layers=2, bidirectional=True, proj_size=2)
    half = copy.deepcopy(net).half()
    sd = half.state_dict() if kind == "torch" else as_numpy(half.state_dict())
    assert sd["encoder.0.weight_ih_l0"].dtype in (torch.float16, np.float16)
    m = nblstm.LSTM.from_state_dict(sd, ENCODER)
    assert m.dtype == np.float32 and m.weight_format == "float32"
    ref = copy.deepcopy(net.encoder[0]).half().float()  # the float16-rounded weights
    assert_lstm_matches(m, ref, np.float32)
    cell = nblstm.LSTMCell.from_state_dict(sd, DECODER)
    assert cell.dtype == np.float32
    assert_cell_matches(cell, copy.deepcopy(net.decoder).half().float(), np.float32)


# --------------------------------------------------------------------------- nblstm formats

def _float_lstm(tm):
    """An nblstm float32 model with the weights of ``tm`` (built with the
    constructor and load_state_dict, not with from_state_dict)."""
    m = nblstm.LSTM(tm.input_size, tm.hidden_size, tm.num_layers, bool(tm.bias),
                    tm.batch_first, 0.0, tm.bidirectional, tm.proj_size)
    m.load_state_dict(tm.state_dict())
    return m


def _float_cell(tc):
    c = nblstm.LSTMCell(tc.input_size, tc.hidden_size, bool(tc.bias))
    c.load_state_dict(tc.state_dict())
    return c


def _outputs(m, x, hx=None):
    out, (h, c) = m(x, hx)
    return out, h, c


@pytest.mark.parametrize("with_prefix", [False, True])
@pytest.mark.parametrize("fmt", ["int8", "bfloat16"])
@pytest.mark.parametrize("cfg", [dict(num_layers=1), dict(num_layers=2, bidirectional=True,
                                                         proj_size=3, bias=False)],
                         ids=["1layer", "2layers-bidir-proj-nobias"])
def test_round_trip_of_quantized_state_dict(cfg, fmt, with_prefix):
    net = make_net(**cfg)
    q = _float_lstm(net.encoder[0]).quantize(fmt)
    assert q.weight_format == fmt
    own = q.state_dict()
    if with_prefix:
        # Within a whole model's dict, beside torch's float keys of other modules.
        others = {k: v for k, v in net.state_dict().items() if not k.startswith(ENCODER)}
        sd = {**others, **{ENCODER + k: v for k, v in own.items()}}
        m = nblstm.LSTM.from_state_dict(sd, "encoder.0")
    else:
        sd = own
        m = nblstm.LSTM.from_state_dict(sd)
    assert m.weight_format == fmt
    assert_same_config(m, net.encoder[0])
    assert m.dtype == np.float32
    rng = np.random.default_rng(10)
    x = lstm_input(q, np.float32, rng, t=5, n=3)
    hx = lstm_hx(q, np.float32, rng, n=3)
    for state in (None, hx):
        for got, expected in zip(_outputs(m, x, state), _outputs(q, x, state)):
            assert got.dtype == np.float32
            assert np.array_equal(got, expected)
    # The weights came through as they were stored.
    back = m.state_dict()
    assert list(back) == list(own)
    for k in own:
        assert back[k].dtype == own[k].dtype and np.array_equal(back[k], own[k]), k


@pytest.mark.parametrize("fmt", ["int8", "bfloat16"])
def test_round_trip_of_quantized_cell(fmt, tmp_path):
    net = make_net()
    q = _float_cell(net.decoder).quantize(fmt)
    own = q.state_dict()
    path = os.path.join(tmp_path, "cell.npz")
    np.savez(path, **{"dec.cell." + k: v for k, v in own.items()})
    with np.load(path) as loaded:
        c = nblstm.LSTMCell.from_state_dict(loaded, "dec.cell")
    assert c.weight_format == fmt
    assert_same_config(c, net.decoder)
    rng = np.random.default_rng(11)
    x = rng.standard_normal((3, 4)).astype(np.float32)
    hx = (rng.standard_normal((3, 3)).astype(np.float32),
          rng.standard_normal((3, 3)).astype(np.float32))
    for state in (None, hx):
        for got, expected in zip(c(x, state), q(x, state)):
            assert np.array_equal(got, expected)


def test_int8_round_trip_through_npz_and_dtype_float32(tmp_path):
    net = make_net(num_layers=3, bidirectional=True)
    q = _float_lstm(net.encoder[0]).quantize("int8")
    path = os.path.join(tmp_path, "q.npz")
    np.savez(path, **{"model.rnn." + k: v for k, v in q.state_dict().items()})
    with np.load(path) as loaded:
        m = nblstm.LSTM.from_state_dict(loaded, "model.rnn.", dtype=np.float32)
    assert m.weight_format == "int8"
    x = lstm_input(q, np.float32, np.random.default_rng(12))
    for got, expected in zip(_outputs(m, x), _outputs(q, x)):
        assert np.array_equal(got, expected)


def test_torch_bfloat16_module_gives_bfloat16_model():
    net = make_net(num_layers=2, bidirectional=True, proj_size=2)
    bf = copy.deepcopy(net).to(torch.bfloat16)
    sd = bf.state_dict()
    m = nblstm.LSTM.from_state_dict(sd, ENCODER)
    assert m.weight_format == "bfloat16" and m.dtype == np.float32
    assert_same_config(m, net.encoder[0])
    # Its weights are torch's bfloat16 bits, its biases torch's values.
    back = m.state_dict()
    for name, value in bf.encoder[0].state_dict().items():
        if name.startswith("weight"):
            assert back[name].dtype == np.uint16
            assert np.array_equal(back[name], bf16_bits(value)), name
        else:
            assert np.array_equal(back[name], t2n(value.float())), name
    # Its outputs: those of the float32 model of the widened weights, with
    # the activations rounded to bfloat16 too; close to torch's float32.
    widened = copy.deepcopy(bf.encoder[0]).float()
    ref = _float_lstm(widened).quantize("bfloat16")
    x = lstm_input(widened, np.float32, np.random.default_rng(13))
    for got, expected in zip(_outputs(m, x), _outputs(ref, x)):
        assert np.array_equal(got, expected)
    t_out, (t_h, t_c) = torch_run(widened, x)
    out, (h, c) = m(x)
    np.testing.assert_allclose(out, t_out, atol=0.05, rtol=0)
    np.testing.assert_allclose(c, t_c, atol=0.1, rtol=0)
    # And the cell.
    cell = nblstm.LSTMCell.from_state_dict(sd, DECODER)
    assert cell.weight_format == "bfloat16"
    cell_back = cell.state_dict()
    assert np.array_equal(cell_back["weight_hh"], bf16_bits(bf.decoder.weight_hh))


def test_bfloat16_weights_widened_with_dtype_float64():
    net = make_net(num_layers=2, bidirectional=True, proj_size=2)
    bf = copy.deepcopy(net).to(torch.bfloat16)
    ref = copy.deepcopy(net).to(torch.bfloat16).double()  # torch's widened weights
    m = nblstm.LSTM.from_state_dict(bf.state_dict(), ENCODER, dtype=np.float64)
    assert m.dtype == np.float64 and m.weight_format == "float64"
    assert_same_config(m, net.encoder[0])
    assert_lstm_matches(m, ref.encoder[0], np.float64)
    cell = nblstm.LSTMCell.from_state_dict(bf.state_dict(), DECODER, dtype=np.float64)
    assert cell.dtype == np.float64 and cell.weight_format == "float64"
    assert_cell_matches(cell, ref.decoder, np.float64)
    # nblstm's own bfloat16 state dict (uint16 bit patterns), widened the same way.
    own = _float_lstm(bf.encoder[0].float()).quantize("bfloat16").state_dict()
    assert own["weight_ih_l0"].dtype == np.uint16
    m = nblstm.LSTM.from_state_dict({"enc." + k: v for k, v in own.items()}, "enc",
                                    dtype=np.float64)
    assert m.dtype == np.float64 and m.weight_format == "float64"
    assert_lstm_matches(m, ref.encoder[0], np.float64)


def test_uint16_bfloat16_state_dict_gives_bfloat16_model():
    # A bfloat16 state dict written by torch's bits (not by nblstm).
    net = make_net(num_layers=1)
    bf = copy.deepcopy(net.encoder[0]).to(torch.bfloat16)
    sd = {k: bf16_bits(v) if k.startswith("weight") else t2n(v.float())
          for k, v in bf.state_dict().items()}
    m = nblstm.LSTM.from_state_dict(sd)
    assert m.weight_format == "bfloat16"
    from_torch_tensors = nblstm.LSTM.from_state_dict(bf.state_dict())
    x = lstm_input(bf, np.float32, np.random.default_rng(14))
    for got, expected in zip(_outputs(m, x), _outputs(from_torch_tensors, x)):
        assert np.array_equal(got, expected)


# --------------------------------------------------------------------------- errors

@pytest.fixture(scope="module")
def whole():
    net = make_net(num_layers=2)
    return net, net.state_dict()


def test_several_lstms_without_prefix(whole):
    _, sd = whole
    with pytest.raises(ValueError, match="several nn.LSTMs.*'a.b.rnn.', 'encoder.0.'") as ei:
        nblstm.LSTM.from_state_dict(sd)
    assert_lists_prefixes(ei, LSTM_PREFIXES)
    assert "gru" not in str(ei.value) and DECODER not in str(ei.value)


@pytest.mark.parametrize("prefix", ["decoderx.", "encoder", "encoder.1.", "a.b.", "gru", "gru.",
                                    "grucell.", "decoder.", "embed."])
def test_prefix_matching_no_lstm(whole, prefix):
    _, sd = whole
    with pytest.raises(ValueError, match="no nn.LSTM under prefix") as ei:
        nblstm.LSTM.from_state_dict(sd, prefix)
    assert_lists_prefixes(ei, LSTM_PREFIXES)


@pytest.mark.parametrize("prefix", ["gru", "grucell.", "encoder.0.", "nothing"])
def test_cell_prefix_matching_no_cell(whole, prefix):
    _, sd = whole
    with pytest.raises(ValueError, match="no nn.LSTMCell under prefix") as ei:
        nblstm.LSTMCell.from_state_dict(sd, prefix)
    assert_lists_prefixes(ei, (DECODER,))


def test_empty_dict():
    with pytest.raises(ValueError, match="holds no nn.LSTM"):
        nblstm.LSTM.from_state_dict({})
    with pytest.raises(ValueError, match="holds no nn.LSTMCell"):
        nblstm.LSTMCell.from_state_dict({})
    with pytest.raises(ValueError, match="no nn.LSTM under prefix 'rnn.'.*none"):
        nblstm.LSTM.from_state_dict({}, "rnn.")


def test_only_gru_is_no_lstm():
    torch.manual_seed(15)
    outer = nn.Module()
    outer.gru = nn.GRU(4, 4, num_layers=2)
    outer.rnn = nn.RNN(4, 8)
    outer.grucell = nn.GRUCell(4, 8)
    sd = outer.state_dict()
    with pytest.raises(ValueError, match="holds no nn.LSTM"):
        nblstm.LSTM.from_state_dict(sd)
    with pytest.raises(ValueError, match="holds no nn.LSTMCell"):
        nblstm.LSTMCell.from_state_dict(sd)


@pytest.mark.parametrize("state", [[("weight_ih_l0", np.zeros((4, 1)))], "weights", None, 3])
def test_not_a_mapping(state):
    with pytest.raises(TypeError, match="expects a mapping"):
        nblstm.LSTM.from_state_dict(state)
    with pytest.raises(TypeError, match="expects a mapping"):
        nblstm.LSTMCell.from_state_dict(state)


def test_torch_module_is_not_a_mapping(whole):
    net, _ = whole
    with pytest.raises(TypeError, match="expects a mapping.*got LSTM"):
        nblstm.LSTM.from_state_dict(net.encoder[0])


@pytest.mark.parametrize("prefix", [None, 0, b"encoder.0.", ["encoder.0."]])
def test_prefix_not_a_str(whole, prefix):
    _, sd = whole
    with pytest.raises(TypeError, match="prefix must be a str"):
        nblstm.LSTM.from_state_dict(sd, prefix)
    with pytest.raises(TypeError, match="prefix must be a str"):
        nblstm.LSTMCell.from_state_dict(sd, prefix)


def test_int8_weights_with_dtype_float64():
    net = make_net()
    q = _float_lstm(net.encoder[0]).quantize("int8").state_dict()
    with pytest.raises(ValueError, match="int8 weights.*float32"):
        nblstm.LSTM.from_state_dict(q, dtype=np.float64)
    qc = _float_cell(net.decoder).quantize("int8").state_dict()
    with pytest.raises(ValueError, match="int8 weights.*float32"):
        nblstm.LSTMCell.from_state_dict(qc, dtype=np.float64)


def _edited(sd, **changes):
    out = dict(sd)
    for key, value in changes.items():
        key = ENCODER + key
        if value is None:
            del out[key]
        else:
            out[key] = value
    return out


@pytest.mark.parametrize("change, message", [
    (dict(weight_hh_l1=torch.zeros(24, 5)), r"size mismatch for weight_hh_l1"),
    (dict(weight_ih_l1=torch.zeros(24, 7)), r"size mismatch for weight_ih_l1"),
    (dict(bias_ih_l0=torch.zeros(25)), r"size mismatch for bias_ih_l0"),
    (dict(bias_hh_l1=None), r'Missing key\(s\).*"bias_hh_l1"'),
    (dict(weight_ih_l0_foo=torch.zeros(24, 5)), r'Unexpected key\(s\).*"weight_ih_l0_foo"'),
    (dict(weight_hh_l2=torch.zeros(24, 6)), r'Unexpected key\(s\).*"weight_hh_l2"'),
], ids=["weight_hh_l1", "weight_ih_l1", "bias_ih_l0", "missing-bias", "extra-key",
        "stray-layer-key"])
def test_inconsistent_entries_under_the_prefix(whole, change, message):
    # Loading is strict: every key directly under the prefix must be one of
    # the LSTM's, with its shape (as load_state_dict).
    _, sd = whole
    assert tuple(sd[ENCODER + "weight_hh_l1"].shape) == (24, 6)
    with pytest.raises(ValueError, match=message):
        nblstm.LSTM.from_state_dict(_edited(sd, **change), ENCODER)


def test_inconsistent_first_layer_is_no_lstm(whole):
    # weight_hh_l0 of a shape that no LSTM has: not recognised as an LSTM, and
    # the message shows the shapes that do not fit.
    _, sd = whole
    bad = _edited(sd, weight_hh_l0=torch.zeros(24, 5))
    with pytest.raises(ValueError, match=r"no nn.LSTM under prefix 'encoder.0.' \(its keys are "
                                         r"an LSTM's but their shapes do not fit one: "
                                         r"weight_ih_l0 \(24, 5\), weight_hh_l0 \(24, 5\)") as ei:
        nblstm.LSTM.from_state_dict(bad, ENCODER)
    assert_lists_prefixes(ei, (NESTED,))


def test_errors_do_not_suggest_strict():
    """from_state_dict has no strict=: its errors do not point at it."""
    sd = torch.nn.LSTM(5, 6, 2).state_dict()
    sd["weight_ih_l0_foo"] = torch.zeros(24, 5)
    with pytest.raises(ValueError, match=r"Unexpected key\(s\)") as ei:
        nblstm.LSTM.from_state_dict(sd)
    assert "strict" not in str(ei.value)
    assert "from_state_dict()" in str(ei.value)


@pytest.mark.parametrize("drop", ["all", "weight_ih_l0_scale"])
def test_int8_weights_without_their_scales(drop):
    """int8 weights without scales are refused, never read as float values."""
    sq = nblstm.LSTM(3, 4, seed=0).quantize("int8").state_dict()
    kept = {k: v for k, v in sq.items() if not (k.endswith("_scale") and drop in ("all", k))}
    with pytest.raises(ValueError, match=r"int8 weights need their scales.*'weight_ih_l0_scale'"):
        nblstm.LSTM.from_state_dict(kept)


def test_caller_state_is_unmodified():
    net = make_net(num_layers=2, bidirectional=True, proj_size=2)
    cases = [net.state_dict(), as_numpy(net.state_dict()),
             copy.deepcopy(net).to(torch.bfloat16).state_dict()]
    q_own = _float_lstm(net.encoder[0]).quantize("int8").state_dict()
    b_own = _float_lstm(net.encoder[0]).quantize("bfloat16").state_dict()
    cases += [{ENCODER + k: v for k, v in q_own.items()}, {ENCODER + k: v for k, v in b_own.items()}]
    for i, sd in enumerate(cases):
        for dtype in (None, np.float64):
            if i == 3 and dtype is not None:
                continue  # int8 needs float32
            snap = snapshot(sd)
            m = nblstm.LSTM.from_state_dict(sd, ENCODER, dtype=dtype)
            assert_unchanged(sd, snap)
            if i < 3:
                nblstm.LSTMCell.from_state_dict(sd, dtype=dtype)
                assert_unchanged(sd, snap)
            # The model does not alias the caller's arrays.
            x = lstm_input(m, m.dtype, np.random.default_rng(16))
            before = _outputs(m, x)
            for value in sd.values():
                if isinstance(value, torch.Tensor):
                    if value.is_floating_point():
                        value.add_(1)
                elif value.dtype.kind == "f":
                    value += 1
                else:
                    value ^= value.dtype.type(1)
            after = _outputs(m, x)
            for b, a in zip(before, after):
                assert np.array_equal(a, b), f"case {i}: the model aliases the caller's values"
            for value in sd.values():  # undo
                if isinstance(value, torch.Tensor):
                    if value.is_floating_point():
                        value.sub_(1)
                elif value.dtype.kind == "f":
                    value -= 1
                else:
                    value ^= value.dtype.type(1)


def test_errors_leave_the_caller_state_unmodified(whole):
    _, sd = whole
    bad = _edited(sd, weight_hh_l1=torch.zeros(24, 5))
    snap = snapshot(bad)
    with pytest.raises(ValueError):
        nblstm.LSTM.from_state_dict(bad, ENCODER)
    with pytest.raises(ValueError):
        nblstm.LSTM.from_state_dict(bad)
    assert_unchanged(bad, snap)


# --------------------------------------------------------------------------- property

@st.composite
def configs(draw):
    hidden = draw(st.integers(1, 6))
    proj = draw(st.one_of(st.just(0), st.integers(1, hidden - 1))) if hidden > 1 else 0
    return dict(
        input_size=draw(st.integers(1, 6)),
        hidden_size=hidden,
        num_layers=draw(st.integers(1, 3)),
        bias=draw(st.booleans()),
        bidirectional=draw(st.booleans()),
        proj_size=proj,
        batch_first=draw(st.booleans()),
        cell_input=draw(st.integers(1, 5)),
        cell_hidden=draw(st.integers(1, 5)),
        cell_bias=draw(st.booleans()),
        nested=draw(st.booleans()),
    )


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=configs(), dtype=st.sampled_from([np.float32, np.float64]),
       dot=st.booleans(), values=st.sampled_from(["torch", "numpy"]),
       seed=st.integers(0, 2**16), t=st.integers(1, 5), n=st.integers(1, 3))
def test_property_matches_torch(cfg, dtype, dot, values, seed, t, n):
    net = make_net(seed=seed, dtype=dtype, **cfg)
    sd = net.state_dict() if values == "torch" else as_numpy(net.state_dict())
    tm = net.encoder[0]
    prefix = ENCODER if dot else ENCODER[:-1]
    m = nblstm.LSTM.from_state_dict(sd, prefix, batch_first=cfg["batch_first"])
    assert_same_config(m, tm)
    assert m.dtype == dtype
    rng = np.random.default_rng(seed)
    x = lstm_input(tm, dtype, rng, t=t, n=n)
    hx = lstm_hx(tm, dtype, rng, n=n) if seed % 2 else None
    out, (h, c) = m(x, hx)
    t_out, (t_h, t_c) = torch_run(tm, x, hx)
    assert_close(out, t_out, dtype, "output")
    assert_close(h, t_h, dtype, "h_n")
    assert_close(c, t_c, dtype, "c_n")
    if not cfg["nested"]:
        assert_same_config(nblstm.LSTM.from_state_dict(sd, batch_first=cfg["batch_first"]), tm)
    cell = nblstm.LSTMCell.from_state_dict(sd, DECODER[:-1] if dot else "")
    assert_same_config(cell, net.decoder)
    assert_cell_matches(cell, net.decoder, dtype, seed=seed)
