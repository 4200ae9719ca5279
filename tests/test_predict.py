"""nblstm.predict: batched inference over a stream of sequences.

The oracle is the model called on each sequence alone (``model(seq)``,
unbatched), and for one model torch's own LSTM.
"""

from __future__ import annotations

import functools
import itertools
import sys
import warnings

import numpy as np
import pytest
from hypothesis import given, strategies as st

import nblstm
from nblstm.packing import pack_sequence

INPUT = 5


@functools.lru_cache(maxsize=None)
def _model(name: str) -> nblstm.LSTM:
    """Small models of every kind predict must batch (cached: never mutated)."""
    configs = {
        "plain": dict(),
        "bidirectional": dict(bidirectional=True),
        "proj-2-layers": dict(num_layers=2, proj_size=3),
        "bi-2-layers-batch-first": dict(num_layers=2, bidirectional=True, batch_first=True),
        "float64": dict(dtype=np.float64),
        "no-bias-bi-proj": dict(bias=False, bidirectional=True, proj_size=4),
        "int8": dict(bidirectional=True),
        "bfloat16": dict(num_layers=2, proj_size=4),
    }
    model = nblstm.LSTM(INPUT, 7, seed=3, **configs[name])
    if name in ("int8", "bfloat16"):
        model = model.quantize(name)
    return model


MODELS = ("plain", "bidirectional", "proj-2-layers", "bi-2-layers-batch-first", "float64",
          "no-bias-bi-proj", "int8", "bfloat16")


def _corpus(lengths, seed=0, features=INPUT, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((n, features)).astype(dtype) for n in lengths]


def _alone(model, seq, outputs):
    """What one unbatched call gives for ``seq``."""
    out, (h_n, c_n) = model(seq)
    if outputs == "all":
        return out
    if outputs == "states":
        return h_n, c_n
    return np.concatenate(h_n[-model.num_directions:])


def _assert_same(got, want):
    pairs = list(zip(got, want)) if isinstance(want, tuple) else [(got, want)]
    assert isinstance(got, tuple) == isinstance(want, tuple)
    for g, w in pairs:
        assert g.shape == w.shape and g.dtype == w.dtype
        np.testing.assert_array_equal(g, w)


@given(name=st.sampled_from(MODELS),
       lengths=st.lists(st.integers(0, 12), max_size=14),
       max_rows=st.integers(1, 30),
       window_rows=st.one_of(st.none(), st.integers(1, 40)),
       outputs=st.sampled_from(["last", "all", "states"]),
       as_generator=st.booleans(),
       seed=st.integers(0, 2**16))
def test_equals_one_call_per_sequence_bitwise(name, lengths, max_rows, window_rows, outputs,
                                              as_generator, seed):
    model = _model(name)
    seqs = _corpus(lengths, seed)
    source = (s for s in seqs) if as_generator else seqs
    got = list(nblstm.predict(model, source, max_rows=max_rows, outputs=outputs,
                              window_rows=window_rows))
    assert len(got) == len(seqs)
    for result, seq in zip(got, seqs):
        _assert_same(result, _alone(model, seq, outputs))


@pytest.mark.parametrize("outputs", ["last", "all", "states"])
def test_result_shapes(outputs):
    model = _model("no-bias-bi-proj")  # D=2, H_out=4, H=7
    got = list(nblstm.predict(model, _corpus([3, 0, 6]), outputs=outputs))
    if outputs == "last":
        assert [g.shape for g in got] == [(8,)] * 3
    elif outputs == "all":
        assert [g.shape for g in got] == [(3, 8), (0, 8), (6, 8)]
    else:
        assert [(h.shape, c.shape) for h, c in got] == [((2, 4), (2, 7))] * 3


def test_last_is_torch_cat_of_the_last_layer_directions():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    theirs = torch.nn.LSTM(INPUT, 6, num_layers=2, bidirectional=True).eval()
    model = nblstm.LSTM.from_torch(theirs)
    seqs = _corpus([4, 9, 1, 7], seed=1)
    got = list(nblstm.predict(model, seqs, max_rows=10))
    for result, seq in zip(got, seqs):
        with torch.inference_mode():
            _, (h_n, _) = theirs(torch.from_numpy(seq))
        np.testing.assert_allclose(result, torch.cat([h_n[-2], h_n[-1]]).numpy(), atol=2e-6)


def test_order_kept_when_lengths_are_shuffled():
    # Each sequence is constant, so its result identifies it.
    model = _model("plain")
    rng = np.random.default_rng(5)
    lengths = rng.integers(1, 20, 60)
    seqs = [np.full((n, INPUT), k / 60, np.float32) for k, n in enumerate(lengths)]
    want = [_alone(model, s, "last") for s in seqs]
    got = list(nblstm.predict(model, iter(seqs), max_rows=25, window_rows=70))
    assert all(np.array_equal(g, w) for g, w in zip(got, want))


class _CountingLSTM(nblstm.LSTM):
    """Records the batch of every call."""

    def forward(self, input, hx=None, out=None):
        self.calls.append(input)
        return super().forward(input, hx, out)


def _counting(**config):
    model = _CountingLSTM(INPUT, 4, seed=0, **config)
    model.calls = []
    return model


def test_batches_are_sorted_runs_of_at_most_max_rows():
    model = _counting()
    lengths = [3, 9, 4, 12, 0, 5, 2]
    list(nblstm.predict(model, _corpus(lengths), max_rows=10))
    # Sorted: 12 (alone, over max_rows), 9, 5+4, 3+2; the empty one never runs.
    per_call = [sorted(_lengths_of(c), reverse=True) for c in model.calls]
    assert per_call == [[12], [9], [5, 4], [3, 2]]


def test_a_window_is_cut_into_runs_of_about_equal_size():
    model = _counting()
    list(nblstm.predict(model, _corpus([5] * 10), max_rows=20))
    # 50 rows need 3 runs of <= 20: 20 + 15 + 15, not 20 + 20 + 10.
    assert [sum(_lengths_of(c)) for c in model.calls] == [20, 15, 15]


def _lengths_of(packed):
    """Lengths of a packed batch's sequences, from its batch_sizes."""
    steps = np.asarray(packed.batch_sizes)
    batch = int(steps[0]) if len(steps) else 0
    return [int((steps > i).sum()) for i in range(batch)]


def test_windows_bound_what_is_read_before_the_first_result():
    model = _counting()
    consumed = []

    def endless():
        for k in itertools.count():
            consumed.append(k)
            yield np.ones((3, INPUT), np.float32)

    first = list(itertools.islice(nblstm.predict(model, endless(), max_rows=6,
                                                 window_rows=12), 5))
    assert len(first) == 5
    # Two windows of 4 sequences (12 rows each), and the one read ahead.
    assert len(consumed) == 9
    assert all(sum(_lengths_of(c)) <= 6 for c in model.calls)


def test_window_counts_empty_sequences_too():
    model = _counting()
    consumed = []

    def empties():
        for k in itertools.count():
            consumed.append(k)
            yield np.zeros((0, INPUT), np.float32)

    got = next(nblstm.predict(model, empties(), window_rows=7))
    assert got.shape == (4,) and not got.any()
    assert len(consumed) == 7 and model.calls == []


def test_torch_quantized_model_runs_each_sequence_alone():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    float_model = torch.nn.LSTM(INPUT, 8, num_layers=2).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantized = torch.ao.quantization.quantize_dynamic(
            torch.nn.Sequential(float_model), {torch.nn.LSTM}, dtype=torch.qint8)[0]
        model = nblstm.LSTM.from_torch(quantized)
    # One activation scale per batch: batching these together changes them.
    seqs = _corpus([6, 11, 0, 3, 9], seed=2)
    seqs[1] *= 8
    got = list(nblstm.predict(model, seqs, outputs="all", max_rows=100))
    for result, seq in zip(got, seqs):
        _assert_same(result, _alone(model, seq, "all"))


def test_large_single_direction_layer_is_exact_too():
    # W_hh over 1 MiB: a lone sequence of it once ran on BLAS, whose sums
    # round differently; every product now runs on the kernels, which sum a
    # row alike in any batch.
    model = nblstm.LSTM(16, 320, seed=0)
    seqs = _corpus([5, 17, 2, 9], seed=4, features=16)
    got = list(nblstm.predict(model, seqs, outputs="all", max_rows=20))
    for result, seq in zip(got, seqs):
        _assert_same(result, _alone(model, seq, "all"))


@pytest.mark.parametrize("time_order", ["reverse", "backwards"])
def test_models_that_read_time_backwards(time_order):
    model = nblstm.LSTM(INPUT, 6, num_layers=2, seed=1)
    model._time_order = time_order  # as LSTM.from_onnx / from_keras set it
    seqs = _corpus([4, 1, 8, 0, 6], seed=3)
    for outputs in ("all", "states"):
        got = list(nblstm.predict(model, seqs, outputs=outputs, max_rows=9))
        for result, seq in zip(got, seqs):
            _assert_same(result, _alone(model, seq, outputs))


def test_empty_input_gives_nothing():
    assert list(nblstm.predict(_model("plain"), [])) == []
    assert list(nblstm.predict(_model("plain"), iter([]), outputs="all")) == []


def test_integer_and_float64_input_is_cast_and_left_untouched():
    model = _model("bidirectional")
    rng = np.random.default_rng(0)
    seqs = [rng.integers(-3, 4, (6, INPUT)), rng.standard_normal((4, INPUT)),
            np.asfortranarray(rng.standard_normal((5, INPUT)).astype(np.float32)),
            rng.standard_normal((9, 2 * INPUT)).astype(np.float32)[:, ::2],
            rng.standard_normal((3, INPUT)).astype(np.float32).tolist()]
    for s in seqs[:4]:
        s.flags.writeable = False  # a write would raise
    before = [np.array(s, copy=True) for s in seqs]
    got = list(nblstm.predict(model, seqs, outputs="all", max_rows=8))
    for s, b in zip(seqs, before):
        np.testing.assert_array_equal(np.asarray(s), b)
    for result, seq in zip(got, seqs):
        assert result.dtype == np.float32
        _assert_same(result, _alone(model, np.asarray(seq, np.float32), "all"))


def test_results_are_fresh_and_independent():
    model = _model("plain")
    seqs = _corpus([4, 4, 2])
    got = list(nblstm.predict(model, seqs, outputs="all"))
    want = [g.copy() for g in got]
    got[0][...] = 7  # writing one result must not change another
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_array_equal(got[2], want[2])
    again = list(nblstm.predict(model, seqs, outputs="all"))
    np.testing.assert_array_equal(again[0], want[0])


@pytest.mark.parametrize("value, error, match", [
    (0, ValueError, r"max_rows must be a positive int, got 0"),
    (-5, ValueError, r"max_rows must be a positive int, got -5"),
    (2.5, TypeError, r"max_rows must be a positive int, got float"),
    (True, TypeError, r"max_rows must be a positive int, got bool"),
    ("64", TypeError, r"max_rows must be a positive int, got str"),
])
def test_bad_max_rows(value, error, match):
    with pytest.raises(error, match=match):
        nblstm.predict(_model("plain"), [], max_rows=value)


def test_bad_window_rows():
    with pytest.raises(ValueError, match=r"window_rows must be a positive int, got 0"):
        nblstm.predict(_model("plain"), [], window_rows=0)


@pytest.mark.parametrize("value", ["first", "LAST", None, 1])
def test_bad_outputs(value):
    with pytest.raises(ValueError, match=r"outputs must be one of 'last', 'all', 'states'"):
        nblstm.predict(_model("plain"), [], outputs=value)


def test_cell_is_refused():
    with pytest.raises(TypeError, match=r"an LSTMCell has no sequence"):
        nblstm.predict(nblstm.LSTMCell(INPUT, 4), [])


def test_torch_module_is_refused_with_the_conversion():
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match=r"got LSTM; convert it with nblstm.LSTM.from_torch"):
        nblstm.predict(torch.nn.LSTM(INPUT, 4), [])


@pytest.mark.parametrize("model", [None, "lstm", object()])
def test_other_models_are_refused(model):
    with pytest.raises(TypeError, match=r"predict\(\) needs an nblstm.LSTM model, got"):
        nblstm.predict(model, [])


@pytest.mark.parametrize("bad, error, match", [
    (np.zeros((4, INPUT + 1), np.float32), ValueError,
     r"sequences\[2\] has 6 features, but the model's input_size is 5 \(shape \(4, 6\)\)"),
    (np.zeros(INPUT, np.float32), ValueError, r"sequences\[2\] must be 2-D \(L, H_in\), got 1-D"),
    (np.zeros((2, 3, INPUT), np.float32), ValueError,
     r"sequences\[2\] must be 2-D \(L, H_in\), got 3-D"),
    (np.array([["a"] * INPUT]), TypeError, r"sequences\[2\] must hold real numbers"),
])
def test_bad_sequence_names_its_index(bad, error, match):
    seqs = _corpus([3, 2]) + [bad] + _corpus([4])
    results = nblstm.predict(_model("plain"), iter(seqs), max_rows=4)
    with pytest.raises(error, match=match):
        list(results)


def test_non_iterable_is_refused():
    with pytest.raises(TypeError, match=r"sequences must be an iterable of \(L, H_in\) arrays, "
                                        r"got int"):
        nblstm.predict(_model("plain"), 5)


def test_packed_sequence_and_single_array_are_refused():
    model = _model("plain")
    packed = pack_sequence(_corpus([3, 2]))
    with pytest.raises(TypeError, match=r"got a PackedSequence; call the model"):
        nblstm.predict(model, packed)
    with pytest.raises(ValueError, match=r"got one 2-D array of shape \(3, 5\); pass \[array\]"):
        nblstm.predict(model, _corpus([3])[0])


def test_progress_bar_counts_sequences(capsys):
    pytest.importorskip("tqdm")
    seqs = _corpus([3, 0, 5, 2, 7])
    unused = nblstm.predict(_model("plain"), seqs, progress=True)
    assert capsys.readouterr().err == ""  # no bar until iterated
    del unused
    got = list(nblstm.predict(_model("plain"), seqs, progress=True))
    err = capsys.readouterr().err
    assert len(got) == 5
    assert "5/5" in err and "seq" in err
    list(nblstm.predict(_model("plain"), iter(seqs), progress=True))
    err = capsys.readouterr().err
    assert "5seq" in err.replace(" ", "") and "/5" not in err  # no total for a generator


def test_progress_without_tqdm_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    with pytest.raises(ImportError, match=r"pip install tqdm"):
        nblstm.predict(_model("plain"), [], progress=True)
