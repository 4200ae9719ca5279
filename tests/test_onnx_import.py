"""``LSTM.from_onnx`` against ONNX Runtime (and torch for exported models)."""

import io
import warnings

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import nblstm
from nblstm.packing import pack_padded_sequence, pad_packed_sequence

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

N_DIRS = {"forward": 1, "reverse": 1, "bidirectional": 2}


def lstm_node_model(rng, input_size, hidden, direction="forward", peepholes=False, clip=None,
                    input_forget=False, layout=0, bias=True, dtype=np.float32, **extra):
    """A one-node ONNX model: inputs X and sequence_lens, outputs Y, Y_h, Y_c."""
    d = N_DIRS[direction]
    w = (rng.standard_normal((d, 4 * hidden, input_size)) * 0.5).astype(dtype)
    r = (rng.standard_normal((d, 4 * hidden, hidden)) * 0.5).astype(dtype)
    inits = [numpy_helper.from_array(w, "W"), numpy_helper.from_array(r, "R")]
    if bias:
        inits.append(numpy_helper.from_array(rng.standard_normal((d, 8 * hidden)).astype(dtype),
                                             "B"))
    if peepholes:
        inits.append(numpy_helper.from_array(rng.standard_normal((d, 3 * hidden)).astype(dtype),
                                             "P"))
    attrs = dict(hidden_size=hidden, direction=direction, layout=layout, **extra)
    if clip is not None:
        attrs["clip"] = clip
    if input_forget:
        attrs["input_forget"] = 1
    node = helper.make_node("LSTM", ["X", "W", "R", "B" if bias else "", "seq", "", "",
                                     "P" if peepholes else ""], ["Y", "Y_h", "Y_c"],
                            name="lstm", **attrs)
    elem = TensorProto.DOUBLE if dtype == np.float64 else TensorProto.FLOAT
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("X", elem, None),
                      helper.make_tensor_value_info("seq", TensorProto.INT32, None)],
        [helper.make_tensor_value_info(k, elem, None) for k in ("Y", "Y_h", "Y_c")], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])


def run_ort(model, x, lengths):
    """ORT's (Y, Y_h, Y_c). ORT's CPU LSTM refuses layout=1, so a batch-major
    model runs as its time-major twin, its inputs and outputs transposed."""
    node = model.graph.node[0]
    layout = [a.i for a in node.attribute if a.name == "layout"]
    if layout == [1]:
        twin = onnx.ModelProto.FromString(model.SerializeToString())
        for attribute in twin.graph.node[0].attribute:
            if attribute.name == "layout":
                attribute.i = 0
        y, h, c = run_ort(twin, np.ascontiguousarray(x.transpose(1, 0, 2)), lengths)
        return y.transpose(2, 0, 1, 3), h.transpose(1, 0, 2), c.transpose(1, 0, 2)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"X": x, "seq": np.asarray(lengths, np.int32)})


def onnx_outputs(lstm, x, lengths, layout):
    """nblstm's outputs as ONNX lays them out: Y (L, D, N, H) (layout 1:
    (N, L, D, H)), Y_h and Y_c (D, N, H) (layout 1: (N, D, H))."""
    time_major = x.transpose(1, 0, 2) if layout == 1 else x
    steps, batch = time_major.shape[:2]
    if lstm.batch_first:
        lstm.batch_first = False  # packing works time-major; restore afterwards
        try:
            y, (h, c) = lstm(pack_padded_sequence(time_major, lengths, enforce_sorted=False))
        finally:
            lstm.batch_first = True
    else:
        y, (h, c) = lstm(pack_padded_sequence(time_major, lengths, enforce_sorted=False))
    y, _ = pad_packed_sequence(y, total_length=steps)
    d = 2 if lstm.bidirectional else 1
    y = y.reshape(steps, batch, d, lstm.hidden_size).transpose(0, 2, 1, 3)
    if layout == 1:
        return y.transpose(2, 0, 1, 3), h.transpose(1, 0, 2), c.transpose(1, 0, 2)
    return y, h, c


CASES = [
    dict(direction="forward"),
    dict(direction="reverse"),
    dict(direction="bidirectional"),
    dict(direction="forward", bias=False),
    dict(direction="forward", peepholes=True),
    dict(direction="reverse", peepholes=True),
    dict(direction="forward", clip=0.6),
    dict(direction="bidirectional", input_forget=True),
    dict(direction="bidirectional", peepholes=True, clip=1.3, input_forget=True),
    dict(direction="reverse", clip=0.4, input_forget=True),
    dict(direction="forward", layout=1),
    dict(direction="bidirectional", layout=1, peepholes=True),
    dict(direction="forward", activations=["Sigmoid", "Tanh", "Tanh"]),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_single_node_matches_onnx_runtime(case):
    """Every direction, layout and option against ORT, on a ragged batch
    (sequence_lens) and on full-length sequences."""
    rng = np.random.default_rng(7)
    model = lstm_node_model(rng, 5, 6, **case)
    lstm = nblstm.LSTM.from_onnx(model)
    layout = case.get("layout", 0)
    assert lstm.batch_first == (layout == 1)
    assert lstm.bidirectional == (case["direction"] == "bidirectional")
    assert lstm.time_order == ("reverse" if case["direction"] == "reverse" else "forward")
    for lengths in ([7, 4, 1, 6], [7, 7, 7, 7]):
        x = rng.standard_normal((4, 7, 5) if layout == 1 else (7, 4, 5)).astype(np.float32)
        want = run_ort(model, x, lengths)
        got = onnx_outputs(lstm, x, np.array(lengths), layout)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=0, atol=2e-6)
    if layout == 0:  # the padded call, lengths all full
        y, (h, c) = lstm(x)
        want = run_ort(model, x, [7] * 4)
        np.testing.assert_allclose(y, want[0].transpose(0, 2, 1, 3).reshape(7, 4, -1),
                                   rtol=0, atol=2e-6)
        np.testing.assert_allclose(h, want[1], rtol=0, atol=2e-6)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 9), st.integers(1, 40), st.sampled_from(sorted(N_DIRS)), st.booleans(),
       st.sampled_from([None, 0.3, 2.5]), st.booleans(),
       st.lists(st.integers(0, 9), min_size=1, max_size=5), st.integers(0, 2**32 - 1))
def test_any_sizes_and_options_match_onnx_runtime(input_size, hidden, direction, peepholes,
                                                  clip, input_forget, lengths, seed):
    rng = np.random.default_rng(seed)
    lengths[0] = max(lengths[0], 1)  # ORT needs a step
    model = lstm_node_model(rng, input_size, hidden, direction, peepholes, clip, input_forget)
    x = rng.standard_normal((max(lengths), len(lengths), input_size)).astype(np.float32)
    want = run_ort(model, x, lengths)
    lstm = nblstm.LSTM.from_onnx(model)
    # ORT leaves a length-0 sequence's state at zeros, as nblstm does with no hx.
    for g, w in zip(onnx_outputs(lstm, x, np.array(lengths), 0), want):
        np.testing.assert_allclose(g, w, rtol=0, atol=4e-6)


def onnx_reference(model, x, lengths):
    """ONNX's LSTM equations in float64, straight from the operator's
    definition and the node's own tensors (gates i, o, f, c; peepholes i, o,
    f), for what ORT cannot run (double). Time-major, layout 0."""
    node = model.graph.node[0]
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    tensors = {t.name: numpy_helper.to_array(t).astype(np.float64)
               for t in model.graph.initializer}
    w, r = tensors["W"], tensors["R"]
    n_dirs, hidden = w.shape[0], w.shape[1] // 4
    b = tensors.get("B", np.zeros((n_dirs, 8 * hidden)))
    p = tensors.get("P", np.zeros((n_dirs, 3 * hidden)))
    clip = attrs.get("clip", np.inf)
    sigmoid = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    bound = lambda v: np.clip(v, -clip, clip)  # noqa: E731
    steps, batch = x.shape[:2]
    y = np.zeros((steps, n_dirs, batch, hidden))
    y_h, y_c = np.zeros((n_dirs, batch, hidden)), np.zeros((n_dirs, batch, hidden))
    reverse_only = attrs.get("direction", b"forward") == b"reverse"
    for d in range(n_dirs):
        backwards = d == 1 or reverse_only
        for n in range(batch):
            h, c = np.zeros(hidden), np.zeros(hidden)
            order = range(lengths[n])
            for t in (reversed(order) if backwards else order):
                z = w[d] @ x[t, n] + r[d] @ h + b[d, :4 * hidden] + b[d, 4 * hidden:]
                zi, zo, zf, zc = np.split(z, 4)
                pi, po, pf = np.split(p[d], 3)
                i = sigmoid(bound(zi + pi * c))
                f = 1 - i if attrs.get("input_forget", 0) else sigmoid(bound(zf + pf * c))
                c = f * c + i * np.tanh(bound(zc))
                o = sigmoid(bound(zo + po * c))
                h = o * np.tanh(c)
                y[t, d, n] = h
            y_h[d, n], y_c[d, n] = h, c
    return y, y_h, y_c


@pytest.mark.parametrize("case", [dict(direction="bidirectional", peepholes=True, clip=1.0),
                                  dict(direction="reverse", input_forget=True)], ids=str)
def test_float64_model_matches_the_operator_definition(case):
    """ORT has no double LSTM: float64 models against ONNX's equations."""
    rng = np.random.default_rng(3)
    model = lstm_node_model(rng, 4, 5, dtype=np.float64, **case)
    lstm = nblstm.LSTM.from_onnx(model)
    assert lstm.dtype == np.float64
    x = rng.standard_normal((6, 3, 4))
    lengths = [6, 2, 5]
    for g, w in zip(onnx_outputs(lstm, x, np.array(lengths), 0), onnx_reference(model, x, lengths)):
        np.testing.assert_allclose(g, w, rtol=0, atol=1e-12)
    # The reference itself against ORT, in float32.
    model32 = lstm_node_model(np.random.default_rng(3), 4, 5, **case)
    x32 = x.astype(np.float32)
    for g, w in zip(onnx_reference(model32, x32, lengths), run_ort(model32, x32, lengths)):
        np.testing.assert_allclose(g, w, rtol=0, atol=2e-6)


def test_options_survive_state_changes_and_quantization():
    """Peepholes, clip and input_forget stay with the model through
    load_state_dict, and a quantized copy keeps them (its error against ORT is
    int8's, far below what dropping the options would give)."""
    rng = np.random.default_rng(11)
    model = lstm_node_model(rng, 16, 32, "forward", peepholes=True, clip=0.8,
                            input_forget=True)
    lstm = nblstm.LSTM.from_onnx(model)
    lstm.load_state_dict(lstm.state_dict())
    x = rng.standard_normal((20, 4, 16)).astype(np.float32)
    want = run_ort(model, x, [20] * 4)[0].transpose(0, 2, 1, 3).reshape(20, 4, 32)
    np.testing.assert_allclose(lstm(x)[0], want, rtol=0, atol=2e-6)
    plain = nblstm.LSTM(16, 32)
    plain.load_state_dict(lstm.state_dict())
    without_options = np.abs(plain(x)[0] - want).max()
    for fmt in ("int8", "bfloat16"):
        quantized = np.abs(lstm.quantize(fmt)(x)[0] - want).max()
        assert quantized < 0.1 * without_options, (fmt, quantized, without_options)


def test_models_without_options_run_the_plain_cell():
    """A node with no peepholes (or all-zero ones), no clip and no
    input_forget gets no gate options: it runs torch's cell unchanged."""
    rng = np.random.default_rng(0)
    model = lstm_node_model(rng, 3, 4, "bidirectional", peepholes=False)
    lstm = nblstm.LSTM.from_onnx(model)
    assert lstm._gate_options is None and all(layer.gate_options is None for layer in lstm._layers)
    assert "ONNX gates" not in repr(lstm)
    with_clip = nblstm.LSTM.from_onnx(lstm_node_model(rng, 3, 4, clip=2.0, peepholes=True))
    assert "clip=2" in repr(with_clip) and "peepholes" in repr(with_clip)


def _export(module, x):
    """The TorchScript exporter (the dynamo one needs onnxscript), quietly."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x,), buffer, dynamo=False, opset_version=17)
    return buffer.getvalue()


@pytest.mark.parametrize("kwargs", [
    dict(num_layers=2, bidirectional=True),
    dict(num_layers=3),
    dict(num_layers=2, bias=False, bidirectional=True),
    dict(num_layers=2, batch_first=True),
    dict(num_layers=1, bidirectional=True),
], ids=str)
def test_torch_exported_stack_loads_as_one_model(kwargs, tmp_path):
    """torch.onnx.export writes one node per layer; the chain loads as one
    multi-layer LSTM that gives torch's and ORT's outputs (from a file too)."""
    torch.manual_seed(0)
    module = torch.nn.LSTM(5, 7, **kwargs).eval()
    shape = (3, 4, 5) if kwargs.get("batch_first") else (4, 3, 5)
    x = torch.randn(*shape)
    exported = _export(module, x)
    path = tmp_path / "lstm.onnx"
    path.write_bytes(exported)
    for source in (onnx.load_from_string(exported), path, str(path)):
        lstm = nblstm.LSTM.from_onnx(source)
        assert lstm.num_layers == kwargs["num_layers"]
        assert lstm.bidirectional == kwargs.get("bidirectional", False)
        assert lstm.bias == kwargs.get("bias", True)
        # The exporter wraps batch-first models in Transposes of layout-0 nodes.
        lstm.batch_first = kwargs.get("batch_first", False)
        got, (h, c) = lstm(x.numpy())
        with torch.no_grad():
            want, (h_want, c_want) = module(x)
        np.testing.assert_allclose(got, want.numpy(), rtol=0, atol=2e-6)
        np.testing.assert_allclose(h, h_want.numpy(), rtol=0, atol=2e-6)
        np.testing.assert_allclose(c, c_want.numpy(), rtol=0, atol=2e-6)
    session = ort.InferenceSession(exported, providers=["CPUExecutionProvider"])
    ort_y = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    np.testing.assert_allclose(got, ort_y, rtol=0, atol=2e-6)


def _two_unrelated_nodes():
    """Two LSTM nodes reading the same input: not a stack."""
    rng = np.random.default_rng(0)
    single = lstm_node_model(rng, 3, 4)
    graph = single.graph
    second = helper.make_node("LSTM", ["X", "W", "R", "B"], ["Y2"], name="other", hidden_size=4)
    graph.node.append(second)
    graph.output.append(helper.make_tensor_value_info("Y2", TensorProto.FLOAT, None))
    return single


def test_node_selects_one_of_several():
    model = _two_unrelated_nodes()
    with pytest.raises(ValueError, match=r"2 LSTM nodes \('lstm', 'other'\).*pass node="):
        nblstm.LSTM.from_onnx(model)
    x = np.random.default_rng(1).standard_normal((5, 2, 3)).astype(np.float32)
    want = run_ort(model, x, [5, 5])
    lstm = nblstm.LSTM.from_onnx(model, node="other")
    np.testing.assert_allclose(lstm(x)[0], want[3][:, 0], rtol=0, atol=2e-6)
    with pytest.raises(ValueError, match=r"no LSTM node named 'nope'; LSTM nodes: 'lstm', 'other'"):
        nblstm.LSTM.from_onnx(model, node="nope")
    with pytest.raises(TypeError, match="node must be the name"):
        nblstm.LSTM.from_onnx(model, node=0)


def _with_attribute(model, **attrs):
    model = onnx.ModelProto.FromString(model.SerializeToString())
    node = model.graph.node[0]
    for name, value in attrs.items():
        for existing in [a for a in node.attribute if a.name == name]:
            node.attribute.remove(existing)
        node.attribute.append(helper.make_attribute(name, value))
    return model


def test_malformed_models_are_refused(tmp_path):
    rng = np.random.default_rng(0)
    model = lstm_node_model(rng, 3, 4, "bidirectional")
    with pytest.raises(ValueError, match=r"activations \['Sigmoid', 'Relu', 'Tanh'.*defaults"):
        nblstm.LSTM.from_onnx(_with_attribute(
            model, activations=["Sigmoid", "Relu", "Tanh", "Sigmoid", "Tanh", "Tanh"]))
    with pytest.raises(ValueError, match="hidden_size=5 but its W holds 4 units"):
        nblstm.LSTM.from_onnx(_with_attribute(model, hidden_size=5))
    with pytest.raises(ValueError, match="clip=-1.0; ONNX's clip is a positive threshold"):
        nblstm.LSTM.from_onnx(_with_attribute(model, clip=-1.0))
    with pytest.raises(ValueError, match=r"input W of node 'lstm' has shape \(2, 16, 3\).*"
                                         r"expected \(1, 4 \* hidden_size"):
        nblstm.LSTM.from_onnx(_with_attribute(model, direction="forward"))
    computed = onnx.ModelProto.FromString(model.SerializeToString())
    computed.graph.initializer.pop(0)  # W becomes a graph input
    computed.graph.input.append(helper.make_tensor_value_info("W", TensorProto.FLOAT, None))
    with pytest.raises(ValueError, match=r"input W \('W'\) of node 'lstm' is computed by the "
                                         r"graph, not stored"):
        nblstm.LSTM.from_onnx(computed)
    empty = helper.make_model(helper.make_graph(
        [helper.make_node("Relu", ["X"], ["Y"])], "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)]))
    with pytest.raises(ValueError, match=r"no LSTM node \(ops found: \['Relu'\]\)"):
        nblstm.LSTM.from_onnx(empty)
    with pytest.raises(TypeError, match="expects an onnx.ModelProto or the path"):
        nblstm.LSTM.from_onnx(b"not a model")
    with pytest.raises(ValueError, match="is a directory"):
        nblstm.LSTM.from_onnx(tmp_path)
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(model.SerializeToString()[:57])
    with pytest.raises(ValueError, match="is not a readable ONNX model"):
        nblstm.LSTM.from_onnx(corrupt)
    with pytest.raises(FileNotFoundError):
        nblstm.LSTM.from_onnx(tmp_path / "missing.onnx")
