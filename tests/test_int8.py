"""The int8 weight format: its kernels against NumPy twins with the same
roundings (``naive_int8``), its paths against each other, and whole models
against torch (float32 and torch's own dynamically quantised LSTM)."""

import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import naive_int8 as naive
import nblstm
from nblstm.lstm import _cpu, _driver, _kernels
from nblstm.lstm.formats import int8
from nblstm.packing import pack_sequence

needs_vnni = pytest.mark.skipif(not _cpu.HAS_VNNI, reason="this CPU has no AVX512-VNNI/AVX-VNNI")
needs_amx = pytest.mark.skipif(not _cpu.use_amx_int8(), reason="no AMX int8 tiles (CPU or kernel)")
needs_avx2 = pytest.mark.skipif(not _cpu.HAS_AVX2, reason="this CPU has no AVX2")
#: Every tile path the CPU runs; the portable one everywhere.
PATHS = [pytest.param("portable", id="portable"), pytest.param("vnni", id="vnni", marks=needs_vnni),
         pytest.param("amx", id="amx", marks=needs_amx),
         pytest.param("avx2", id="avx2", marks=needs_avx2)]


def _scratch(rows, inner, fixed_range=None, dtype=np.uint8):
    """Scratch as ``new_scratch`` makes it for any path (AMX's padding; the
    AVX2 tiles' uint16 activations)."""
    padded = -(-inner // 64) * 64
    rows = -(-rows // 32) * 32
    rng = np.empty(0, np.float32) if fixed_range is None else np.asarray(fixed_range, np.float32)
    return int8.QuantizedRows(np.empty((rows, padded), dtype), np.empty(rows, np.float32),
                              np.empty(rows, np.int32), rng)


finite32 = st.floats(-1e6, 1e6, allow_nan=False, width=32)


@settings(deadline=None)
@given(finite32, finite32, st.sampled_from([127, 255]))
def test_choose_qparams_matches_fbgemm_rule(a, b, qmax):
    lo, hi = min(a, b), max(a, b)
    assert int8.choose_qparams(np.float32(lo), np.float32(hi), qmax) == \
        naive.activation_qparams(lo, hi, 0, qmax)


def test_choose_qparams_rounds_exact_ties_to_even():
    """A zero point exactly at .5 rounds to even, as fbgemm's nearbyint does
    (found by hypothesis: fast-math once turned the division into a
    reciprocal multiplication and gave 63 here). torch agrees: 64."""
    assert int8.choose_qparams(np.float32(-999998.0), np.float32(999998.0), 127) == \
        naive.activation_qparams(-999998.0, 999998.0, 0, 127) == (np.float32(15748.0), 64)


def test_choose_qparams_stays_exact_when_a_kernel_compiles_it_first(tmp_path):
    """Numba compiles a function that leaves ``fastmath`` unset with its
    caller's flags when a kernel's call compiles it first (and then serves,
    and caches, that version to direct calls too): with the kernels'
    ``arcp`` the tie above gave 63. In a fresh process with an empty cache,
    the forward's quantisation kernel (``quantize_rows``, fast-math flags)
    compiles it first, as an int8 forward would (a whole forward compiles
    the same way, in a minute instead of seconds); both its direct calls and
    the quantisation inside a fast-math kernel must give fbgemm's 64."""
    code = textwrap.dedent("""
        import numpy as np
        from numba import njit
        from nblstm._config import JIT_OPTIONS
        from nblstm.lstm.formats import int8
        a = np.ones((2, 8), np.float32)
        rows = int8.QuantizedRows(np.zeros((2, 8), np.uint8), np.zeros(2, np.float32),
                                  np.zeros(2, np.int32), np.zeros(0, np.float32))
        int8.quantize_rows(a, 2, rows, 127, False)

        @njit(**dict(JIT_OPTIONS, cache=False))
        def inside(lo, hi, qmax):
            return int8.choose_qparams(lo, hi, qmax)

        lo, hi = np.float32(-999998.0), np.float32(999998.0)
        print(int(int8.choose_qparams(lo, hi, 127)[1]), int(inside(lo, hi, 127)[1]))
    """)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["64", "64"], result.stdout


@pytest.mark.parametrize("lo, hi", [(0.0, 0.0), (-1e-9, 1e-9), (0.0, 1e-7), (-3e-6, 0.0),
                                    (-1e38, 3e38), (5.0, 7.0), (-7.0, -5.0)])
@pytest.mark.parametrize("qmax", [127, 255])
def test_choose_qparams_edges(lo, hi, qmax):
    """Zero width (scale 0.1), tiny ranges (the 6.1e-5 floor), huge ones,
    ranges that do not hold 0."""
    assert int8.choose_qparams(np.float32(lo), np.float32(hi), qmax) == \
        naive.activation_qparams(lo, hi, 0, qmax)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16], ids=["uint8", "uint16"])
@settings(deadline=None)
@given(st.integers(0, 9), st.integers(1, 40), st.booleans(), st.booleans(),
       st.sampled_from([127, 255]), st.integers(0, 2**32 - 1))
def test_quantize_rows_matches_twin(dtype, n_rows, inner, per_tensor, fixed, qmax, seed):
    """Into uint8 rows (VNNI, AMX, portable) and uint16 ones (AVX2) alike."""
    rng = np.random.default_rng(seed)
    a = (rng.standard_normal((n_rows + 1, inner)) * rng.uniform(0.01, 10)).astype(np.float32)
    fixed_range = (np.float32(a.min() - 1), np.float32(a.max() + 0.5)) if fixed else None
    rows = _scratch(n_rows + 1, inner, fixed_range if per_tensor else None, dtype)
    int8.quantize_rows(a, n_rows, rows, qmax, per_tensor)
    q, scale, zero = naive.quantize_rows(a[:n_rows], qmax, per_tensor,
                                         fixed_range if per_tensor else None)
    np.testing.assert_array_equal(rows.q[:n_rows, :inner], q)
    np.testing.assert_array_equal(rows.scale[:n_rows], scale)
    np.testing.assert_array_equal(rows.zero[:n_rows], zero)


def test_quantize_weight_matches_twin():
    rng = np.random.default_rng(3)
    w = (rng.standard_normal((37, 21)) * rng.uniform(0, 3, (37, 1))).astype(np.float32)
    w[5] = 0.0  # an all-zero row: scale 1, weights 0
    q, scale = int8.quantize_weight(w)
    q_twin, scale_twin = naive.weight_quantize(w)
    np.testing.assert_array_equal(q, q_twin)
    np.testing.assert_array_equal(scale, scale_twin)
    assert q.dtype == np.int8 and np.abs(q).max() == 127 and scale[5] == 1
    assert np.abs(q.astype(np.float32) * scale[:, None] - w).max() <= scale.max() / 2 * 1.0001


@pytest.mark.parametrize("kernels", PATHS)
@settings(deadline=None)
@given(n_rows=st.one_of(st.integers(0, 15), st.integers(16, 100)), inner=st.integers(1, 41), block_cols=st.integers(1, 2 * 64 + 17),
       n_blocks=st.sampled_from([1, 4]), tall=st.booleans(), per_tensor=st.booleans(),
       seed=st.integers(0, 2**32 - 1))
def test_matmul_accumulate_matches_twin_bitwise(kernels, n_rows, inner, block_cols, n_blocks,
                                                tall, per_tensor, seed):
    """Every tile (AMX blocks of 32 rows and what they leave; 6, 4, 2-3 rows
    sharing a 4-row tile, 1 row), partial panels, gate blocks, odd K
    (padding), both activation schemes: the exact integer sums and the same
    fused dequantisation give the twin's bits."""
    rng = np.random.default_rng(seed)
    cols = n_blocks * block_cols
    a = rng.standard_normal((n_rows + 2, inner)).astype(np.float32)
    w = rng.standard_normal((cols, inner)).astype(np.float32)
    q, scale = int8.quantize_weight(w)
    weights = int8.int8_panels(q.T, scale, n_blocks, 127 if per_tensor else 255, per_tensor,
                               kernels)
    out = rng.standard_normal((a.shape[0], cols)).astype(np.float32)
    expected = out.copy()
    naive.int8_matmul_accumulate(a, q.T, scale, expected, n_rows, weights.qmax, per_tensor)
    _kernels.matmul_accumulate(a, weights, out, n_rows, tall, n_blocks,
                               _scratch(a.shape[0], inner, dtype=weights.ACTIVATION_DTYPE))
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("kernels", PATHS)
@pytest.mark.parametrize("weight", [127, -128])
def test_largest_sums_are_exact(kernels, weight):
    """Activations at 255 against weights at 127 or -128: every pair of
    products is past int16 (255 * 127 * 2 = 64770), where ``vpmaddubsw``
    would saturate; the AVX2 tiles widen to 16 bits first and stay exact."""
    inner, cols = 72, 70
    a = np.ones((5, inner), np.float32)
    a[:, 0] = 0.0  # each row's range [0, 1]: every other value quantises to 255
    q_t = np.full((inner, cols), weight, np.int8)
    weights = int8.int8_panels(q_t, np.full(cols, 1e-3, np.float32), 1, kernels=kernels)
    out = np.zeros((5, cols), np.float32)
    expected = out.copy()
    naive.int8_matmul_accumulate(a, q_t, weights.scales, expected, 5, 255, False)
    rows = _scratch(5, inner, dtype=weights.ACTIVATION_DTYPE)
    _kernels.matmul_accumulate(a, weights, out, 5, True, 1, rows)
    assert rows.q[0, 1] == 255
    np.testing.assert_array_equal(out, expected)


def test_kernel_path_errors(monkeypatch):
    q_t = np.ones((8, 4), np.int8)
    scales = np.ones(4, np.float32)
    with pytest.raises(ValueError, match=r"kernels must be one of 'vnni', 'portable', 'amx', "
                                         r"'avx2', got 'avx512bf16'"):
        int8.int8_panels(q_t, scales, 1, kernels="avx512bf16")
    monkeypatch.setattr(_cpu, "HAS_VNNI", False)
    monkeypatch.setattr(_cpu, "HAS_AVX2", False)
    with pytest.raises(ValueError, match=r"kernels='vnni' needs AVX512-VNNI or AVX-VNNI, which "
                                         r"this CPU or kernel does not give; use 'portable'"):
        int8.int8_panels(q_t, scales, 1, kernels="vnni")
    with pytest.raises(ValueError, match=r"kernels='avx2' needs AVX2, which this CPU"):
        int8.int8_panels(q_t, scales, 1, kernels="avx2")
    monkeypatch.setattr(_cpu, "use_amx_int8", lambda: False)
    monkeypatch.setattr(_cpu, "USE_VNNI", False)
    monkeypatch.setattr(_cpu, "USE_AVX2", True)
    assert int8.default_kernels() == "avx2"  # no VNNI: AVX2 next
    monkeypatch.setattr(_cpu, "USE_AVX2", False)
    assert int8.default_kernels() == "portable"


@settings(deadline=None)
@given(st.integers(1, 70), st.integers(1, 150), st.sampled_from([1, 4]), st.integers(0, 99))
def test_weights_come_back_from_panels(inner, block_cols, blocks, seed):
    q = np.random.default_rng(seed).integers(-128, 128, (blocks * block_cols, inner), np.int8)
    weights = int8.int8_panels(np.stack([q.T, -q.T]), np.ones((2, q.shape[0]), np.float32),
                               blocks)
    np.testing.assert_array_equal(int8.weight_from_panels(weights, 0, inner, q.shape[0], blocks), q)
    np.testing.assert_array_equal(int8.weight_from_panels(weights, 1, inner, q.shape[0], blocks),
                                  -q)
    np.testing.assert_array_equal(weights.col_sums[0], q.astype(np.int64).sum(axis=1))


# ----------------------------------------------------------------- whole models


def _torch_lstm(seed=0, **config):
    import torch

    torch.manual_seed(seed)
    return torch.nn.LSTM(**config).eval()


def _portable_twin(model):
    """The same int8 model on the portable tiles."""
    weights, scales = model._int8_weights()
    params = {**model._params, **weights}
    return model._int8_copy(params, scales, model._int8_scheme, kernels="portable")


PLANS = {  # driver thresholds that force each step loop on small sizes
    "serial": {},
    "row_groups": {"ROW_GROUP_MIN_MACS": 0},
    "split_units": {"SPLIT_UNITS_MIN_MACS": 0, "SPLIT_UNITS_MIN_STEPS": 1,
                    "SPLIT_UNITS_MIN_QUANTIZED_BYTES": 0},
    "windows": {"WINDOW_BYTES": 4 * 4 * 70 * 9 * 4, "ROW_GROUP_MIN_MACS": 0},
}


@pytest.mark.parametrize("plan", sorted(PLANS))
@pytest.mark.parametrize("config", [
    dict(input_size=33, hidden_size=70),
    dict(input_size=20, hidden_size=70, proj_size=17),
    dict(input_size=12, hidden_size=70, num_layers=2, bidirectional=True),
], ids=["plain", "proj", "bi2"])
@pytest.mark.parametrize("batch", [1, 3, 9, 40])
def test_every_plan_and_path_gives_the_same_bits(monkeypatch, plan, config, batch):
    """nblstm's own int8 scheme quantises each row alone, so how the work is
    cut (windows, row groups, split units, 1 or 2 threads) and which tile
    runs (VNNI or portable) cannot change a bit. The reference is the serial
    1-thread run; the error against float32 is bounded too."""
    model = nblstm.LSTM(**config, seed=4)
    quantized = model.quantize("int8")
    rng = np.random.default_rng(batch)
    lengths = rng.integers(0, 30, batch)
    lengths[0] = 30
    sequences = [rng.standard_normal((n, config["input_size"]), dtype=np.float32)
                 for n in lengths]
    packed = pack_sequence(sequences, enforce_sorted=False)
    previous = nblstm.get_num_threads()
    try:
        nblstm.set_num_threads(1)
        reference = quantized(packed)
        for name, value in PLANS[plan].items():
            monkeypatch.setattr(_driver, name, value)
        nblstm.set_num_threads(min(2, previous))
        runs = [quantized(packed)]
        if int8.kernels_of(quantized._layers[0].w_hh_panels) != "portable":
            runs.append(_portable_twin(quantized)(packed))
    finally:
        nblstm.set_num_threads(previous)
    for out, (h_n, c_n) in runs:
        np.testing.assert_array_equal(out.data, reference[0].data)
        np.testing.assert_array_equal(h_n, reference[1][0])
        np.testing.assert_array_equal(c_n, reference[1][1])
    float_out = model(packed)[0].data
    assert np.abs(reference[0].data - float_out).max() < 0.02


def test_cell_is_one_step_of_the_layer():
    cell = nblstm.LSTMCell(24, 40, seed=2).quantize("int8")
    layer = nblstm.LSTM(24, 40).quantize("int8")
    layer.load_state_dict({k + "_l0" if not k.endswith("_scale") else
                           k[:-len("_scale")] + "_l0_scale": v
                           for k, v in cell.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((5, 24), dtype=np.float32)
    h0 = np.random.default_rng(1).standard_normal((5, 40), dtype=np.float32)
    c0 = np.zeros_like(h0)
    h1, c1 = cell(x, (h0, c0))
    _, (h_n, c_n) = layer(x[None], (h0[None], c0[None]))
    np.testing.assert_array_equal(h1, h_n[0])
    np.testing.assert_array_equal(c1, c_n[0])
    assert cell.weight_format == "int8" and cell.dtype == np.float32


def test_int8_propagates_nan_like_float():
    model = nblstm.LSTM(8, 16, seed=0)
    x = np.random.default_rng(0).standard_normal((4, 2, 8), dtype=np.float32)
    x[2, 1, 3] = np.nan
    out, (h_n, _) = model.quantize("int8")(x)
    expected = np.isnan(model(x)[0])
    np.testing.assert_array_equal(np.isnan(out), expected)
    assert np.isnan(out[2:, 1]).all() and not np.isnan(out[:, 0]).any()


def test_matches_torch_float_closely():
    """Against torch float32: int8 error well under torch's own qint8 error."""
    import torch

    torch_model = _torch_lstm(input_size=40, hidden_size=128, num_layers=2, bidirectional=True)
    ours = nblstm.LSTM.from_torch(torch_model).quantize("int8")
    x = np.random.default_rng(7).standard_normal((50, 4, 40), dtype=np.float32)
    with torch.inference_mode():
        expected = torch_model(torch.from_numpy(x))[0].numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch_q = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(torch_model),
                                                         {torch.nn.LSTM}, dtype=torch.qint8)[0]
        with torch.inference_mode():
            torch_q_out = torch_q(torch.from_numpy(x))[0].numpy()
    error = np.abs(ours(x)[0] - expected).max()
    assert error < 0.01
    assert error <= np.abs(torch_q_out - expected).max()


# ----------------------------------------------------------------- torch's quantised LSTM


def _torch_quantized(model, per_channel=False):
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qconfig = {torch.nn.LSTM: torch.ao.quantization.per_channel_dynamic_qconfig} \
            if per_channel else {torch.nn.LSTM}
        return torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(model), qconfig,
                                                      dtype=torch.qint8)[0]


@pytest.mark.parametrize("config, per_channel, packed", [
    (dict(input_size=40, hidden_size=128), False, False),
    (dict(input_size=24, hidden_size=64, num_layers=2, bidirectional=True), False, False),
    (dict(input_size=16, hidden_size=48, batch_first=True), False, False),
    (dict(input_size=24, hidden_size=64, bidirectional=True), True, False),
    (dict(input_size=24, hidden_size=64, num_layers=2, bidirectional=True), False, True),
])
def test_from_torch_quantized_reproduces_torch(config, per_channel, packed):
    """Within 10% of torch's own int8 error against float32 (in practice a
    few float32 ulps: the same numerics)."""
    import torch
    from torch.nn.utils.rnn import pack_sequence as torch_pack

    float_model = _torch_lstm(seed=1, **config)
    torch_q = _torch_quantized(float_model, per_channel)
    ours = nblstm.LSTM.from_torch(torch_q)
    assert ours.weight_format == "int8" and ours.batch_first == config.get("batch_first", False)
    rng = np.random.default_rng(5)
    layers = config.get("num_layers", 1) * (2 if config.get("bidirectional") else 1)
    h0 = rng.standard_normal((layers, 4, config["hidden_size"]), dtype=np.float32)
    c0 = rng.standard_normal((layers, 4, config["hidden_size"]), dtype=np.float32)
    hx = (torch.from_numpy(h0), torch.from_numpy(c0))
    if packed:
        sequences = [rng.standard_normal((n, config["input_size"]), dtype=np.float32)
                     for n in (7, 30, 0 + 12, 19)]
        torch_in = torch_pack([torch.from_numpy(s) for s in sequences], enforce_sorted=False)
        ours_out, (h_n, c_n) = ours(pack_sequence(sequences, enforce_sorted=False), (h0, c0))
        ours_out = ours_out.data
    else:
        x = rng.standard_normal((4, 30, config["input_size"]) if config.get("batch_first")
                                else (30, 4, config["input_size"]), dtype=np.float32)
        torch_in = torch.from_numpy(x)
        ours_out, (h_n, c_n) = ours(x, (h0, c0))
    with torch.inference_mode():
        q_out, (q_h, q_c) = torch_q(torch_in, hx)
        f_out, _ = float_model(torch_in, hx)
    if packed:
        q_out, f_out = q_out.data, f_out.data
    torch_error = np.abs(q_out.numpy() - f_out.numpy()).max()
    assert np.abs(ours_out - q_out.numpy()).max() <= 0.1 * torch_error
    assert np.abs(h_n - q_h.numpy()).max() <= 0.1 * torch_error
    assert np.abs(c_n - q_c.numpy()).max() <= 0.1 * torch_error


def test_from_torch_quantized_refuses_other_dtypes():
    torch_q = _torch_quantized(_torch_lstm(input_size=4, hidden_size=8))
    with pytest.raises(ValueError, match="int8 model with float32 input"):
        nblstm.LSTM.from_torch(torch_q, dtype=np.float64)


# ----------------------------------------------------------------- state, errors, memory


def test_state_dict_round_trips_through_npz(tmp_path):
    quantized = nblstm.LSTM(12, 40, num_layers=2, proj_size=9, seed=3).quantize("int8")
    state = quantized.state_dict()
    assert state["weight_ih_l0"].dtype == np.int8 and state["weight_ih_l0"].shape == (160, 12)
    assert state["weight_hr_l1_scale"].dtype == np.float32 and state["weight_hr_l1_scale"].shape == (9,)
    assert state["bias_hh_l1"].dtype == np.float32
    np.savez(tmp_path / "q.npz", **state)
    loaded = nblstm.LSTM(12, 40, num_layers=2, proj_size=9).quantize("int8")
    loaded.load_state_dict(dict(np.load(tmp_path / "q.npz")))
    x = np.random.default_rng(0).standard_normal((9, 2, 12), dtype=np.float32)
    np.testing.assert_array_equal(loaded(x)[0], quantized(x)[0])
    for key, value in loaded.state_dict().items():
        np.testing.assert_array_equal(value, state[key])


def test_quantize_leaves_the_original_alone():
    model = nblstm.LSTM(6, 10, seed=0)
    before = model.state_dict()
    quantized = model.quantize("int8")
    assert model.weight_format == "float32" and quantized.weight_format == "int8"
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[key])
    assert quantized is not model and repr(quantized) == repr(model)


def test_quantize_errors():
    with pytest.raises(ValueError,
                       match=r"supports the weight formats 'int8', 'bfloat16', got 'int4'"):
        nblstm.LSTM(4, 8).quantize("int4")
    with pytest.raises(ValueError, match="needs a float32 model; this one is float64"):
        nblstm.LSTM(4, 8, dtype=np.float64).quantize("int8")
    with pytest.raises(ValueError, match="needs a float32 model; this one is int8"):
        nblstm.LSTMCell(4, 8).quantize("int8").quantize("int8")


def test_int8_load_state_dict_errors():
    quantized = nblstm.LSTMCell(4, 8, seed=0).quantize("int8")
    state = quantized.state_dict()
    with pytest.raises(TypeError, match=r"state_dict\['weight_ih'\] must be int8 .* quantize"):
        quantized.load_state_dict({**state, "weight_ih": state["weight_ih"].astype(np.float32)})
    with pytest.raises(ValueError, match=r"weight_hh_scale'\] must hold positive finite scales"):
        quantized.load_state_dict({**state, "weight_hh_scale": -state["weight_hh_scale"]})
    with pytest.raises(ValueError, match=r'Missing key\(s\) in state_dict: "weight_ih_scale"'):
        quantized.load_state_dict({k: v for k, v in state.items() if k != "weight_ih_scale"})
    with pytest.raises(ValueError, match="size mismatch for weight_hh_scale"):
        quantized.load_state_dict({**state, "weight_hh_scale": np.ones(3, np.float32)})
    after = quantized.state_dict()
    for key, value in state.items():  # nothing was loaded by the failed calls
        np.testing.assert_array_equal(after[key], value)


def _held_bytes(model):
    arrays = list(model._params.values())
    for layer in model._layers:
        for field in layer:
            if isinstance(field, int8.Int8Panels):
                arrays += [field.panels, field.scales, field.col_sums]
            elif isinstance(field, np.ndarray):
                arrays.append(field)
    return sum(a.nbytes for a in arrays)


def test_int8_model_holds_its_weights_once():
    """Panels, scales, column sums and biases: at most 0.3x the float32
    parameter bytes (no float32 copy of a weight is kept)."""
    model = nblstm.LSTM(256, 256, num_layers=2, bidirectional=True, seed=0)
    float_bytes = sum(v.nbytes for v in model.state_dict().values())
    assert _held_bytes(model.quantize("int8")) <= 0.3 * float_bytes


@needs_amx
def test_small_products_of_amx_weights_run_on_their_vnni_twin():
    """formats.for_rows: below AMX_MIN_ROWS the same arrays under the VNNI class."""
    from nblstm.lstm import formats

    q = np.random.default_rng(0).integers(-128, 128, (40, 256), np.int8)
    weights = int8.int8_panels(q, np.ones(256, np.float32), 4, kernels="amx")
    small = formats.for_rows(weights, int8.AMX_MIN_ROWS - 1)
    assert type(small) is int8.Int8Panels and small.panels is weights.panels
    assert formats.for_rows(weights, int8.AMX_MIN_ROWS) is weights


def test_float_model_holds_its_weights_once():
    """A float model keeps panels and biases only (state_dict() rebuilds the
    weights): at most 1.15x its parameter bytes, a layer with large
    recurrent weights included."""
    model = nblstm.LSTM(256, 256, num_layers=2, bidirectional=True, seed=0)
    parameter_bytes = sum(v.nbytes for v in model.state_dict().values())
    assert _held_bytes(model) <= 1.15 * parameter_bytes
    model.load_state_dict(model.state_dict())  # still exact after a round trip
    assert _held_bytes(model) <= 1.15 * parameter_bytes
