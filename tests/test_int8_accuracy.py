"""int8 accuracy where users see it: on the benchmark grid's models against
ONNX Runtime's int8 LSTM, and on a small model trained here with torch."""

import dataclasses
import warnings

import numpy as np
import pytest

import nblstm
from nblstm_bench import peers
from nblstm_bench.cases import REDUCED_CASES, get_case


@pytest.mark.parametrize("name", REDUCED_CASES)
def test_error_is_not_above_onnxruntime_int8(name):
    """Max abs error against torch float32 (output over the real steps, h_n,
    c_n), on each grid model (shorter and narrower batches: the weights are
    the grid's): nblstm int8 <= ORT int8 (``quantize_dynamic`` QInt8)."""
    pytest.importorskip("onnxruntime.quantization")
    full = get_case(name)
    case = dataclasses.replace(full, T=min(full.T, 24), B=min(full.B, 6),
                               min_len=min(full.min_len, 4))
    module = peers.make_torch_module(case)
    x, lengths = case.padded_input(), case.lengths()
    reference = peers.build_torch(module, case, x, lengths, packed=case.varlen)
    expected = reference.result(reference.fn())
    ours = peers.build_nblstm(module, case, x, lengths, packed=case.varlen, quantize="int8")
    ort = peers.build_ort_int8(peers.torch_state_dict(module), case, x, lengths, threads=1)
    our_error = peers.max_abs_diff(case, lengths, ours.result(ours.fn()), expected)
    ort_error = peers.max_abs_diff(case, lengths, ort.result(ort.fn()), expected)
    assert 0 < our_error <= ort_error, (our_error, ort_error)


def _train_keyword_model(torch):
    """A 1-layer LSTM + linear head trained for a few seconds to tell which of
    three sine frequencies is hidden in noisy 8-channel sequences."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)

    def batch(n):
        labels = rng.integers(0, 3, n)
        t = np.arange(40)[None, :, None]
        freq = (0.15 + 0.2 * labels)[:, None, None]
        phase = rng.uniform(0, 6.3, (n, 1, 1))
        x = np.sin(freq * t + phase) * rng.uniform(0.5, 1.5, (n, 1, 8))
        x = (x + 0.6 * rng.standard_normal((n, 40, 8))).astype(np.float32)
        return x, labels

    lstm = torch.nn.LSTM(8, 48, batch_first=True)
    head = torch.nn.Linear(48, 3)
    optimizer = torch.optim.Adam(list(lstm.parameters()) + list(head.parameters()), lr=1e-2)
    for _ in range(150):
        x, labels = batch(64)
        _, (h_n, _) = lstm(torch.from_numpy(x))
        loss = torch.nn.functional.cross_entropy(head(h_n[-1]), torch.from_numpy(labels))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return lstm.eval(), head.eval(), batch


def test_trained_model_predictions_agree():
    torch = pytest.importorskip("torch")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lstm, head, batch = _train_keyword_model(torch)
    x, labels = batch(600)
    weight = head.weight.detach().numpy()
    bias = head.bias.detach().numpy()
    float_model = nblstm.LSTM.from_torch(lstm)
    predictions = {}
    for name, model in (("float32", float_model), ("int8", float_model.quantize("int8"))):
        _, (h_n, _) = model(x)
        predictions[name] = (h_n[-1] @ weight.T + bias).argmax(axis=1)
    accuracy = {k: float((v == labels).mean()) for k, v in predictions.items()}
    assert accuracy["float32"] > 0.9, accuracy  # the model did learn the task
    assert (predictions["int8"] == predictions["float32"]).mean() >= 0.98
    assert accuracy["int8"] >= accuracy["float32"] - 0.01, accuracy
