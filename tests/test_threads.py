"""How a layer uses the threads (``_driver.plan_layer``), and results that do
not depend on how many there are.

The planner is a function of sizes and the thread count, so its rules are
checked here for 1 to 64 threads whatever this machine has; the bitwise
checks run models at 1, 2 and 4 threads in a subprocess started with
``NUMBA_NUM_THREADS=4`` (4 oversubscribes a 2-core machine, which must not
change a bit either), against torch as well.
"""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from nblstm.lstm import _driver
from nblstm.lstm._driver import LayerPlan, plan_layer
from nblstm.lstm._kernels import tile_columns

THREAD_COUNTS = (1, 2, 4, 8, 16, 64)
#: The speech model's layers (speech_2L_bi: T=200, B=16, H=256, bidirectional).
SPEECH = dict(max_batch=16, n_steps=200, hidden=256, proj_size=0)
#: Bytes of a stored weight per format.
ITEMSIZE = {"float32": 4, "int8": 1, "bfloat16": 2}
#: Columns of a weight panel (64 with AVX-512): a unit part is whole panels.
WIDTH = tile_columns(np.float32)


def _panels(hidden):
    return -(-hidden // WIDTH)


def _plan(threads, max_batch, n_steps, hidden, proj_size=0, directions=1, itemsize=4,
          rows_independent=True):
    return plan_layer(max_batch, n_steps, hidden, proj_size, np.float32, threads, itemsize,
                      directions, rows_independent)


@pytest.mark.parametrize("weight_format", sorted(ITEMSIZE))
def test_speech_sized_bidirectional_layer_uses_every_thread(weight_format):
    """2 directions x 2 row groups at 4 threads, x 4 at 8, x 4 x 2 unit parts
    at 16; at 64 all the layer has (4 row groups of 4 rows, a part per panel
    of units: with AVX-512, 4 panels a direction, 32 threads); on 1-3
    threads its directions run at once."""
    itemsize = ITEMSIZE[weight_format]
    most = min(8, _panels(256))
    expected = {1: LayerPlan("directions", 1, 1), 2: LayerPlan("directions", 1, 1),
                4: LayerPlan("partitioned", 2, 1), 8: LayerPlan("partitioned", 4, 1),
                16: LayerPlan("partitioned", 4, 2), 64: LayerPlan("partitioned", 4, most)}
    for threads in THREAD_COUNTS:
        plan = _plan(threads, **SPEECH, directions=2, itemsize=itemsize)
        assert plan == expected[threads], threads
        if threads >= 2:
            assert plan.threads_used(2) == min(threads, 8 * most)
    assert _plan(3, **SPEECH, directions=2).kind == "directions"  # one thread a direction


def test_reduced_formats_split_units_from_more_work():
    """int8 and bfloat16 steps are 2-4x shorter than float32's, so a few
    rows split their units only past SPLIT_UNITS_MIN_QUANTIZED_BYTES of
    rows x W_hh a step (512 KiB): B=1 H=128 and H=256 run serially in int8
    (64 and 256 KiB) and bfloat16 (128 and 512 KiB), float32 splits them
    (256 KiB, 1 MiB); B=1 H=384 (int8 576 KiB) and B=4 H=256 split in every
    format."""
    split = LayerPlan("partitioned", 1, 2)
    serial = LayerPlan("serial", 1, 1)
    for hidden in (128, 256):
        assert _plan(2, 1, 100, hidden, itemsize=ITEMSIZE["float32"]) == split
        assert _plan(2, 1, 100, hidden, itemsize=ITEMSIZE["int8"]) == serial
        assert _plan(2, 1, 100, hidden, itemsize=ITEMSIZE["bfloat16"]) == serial
    for itemsize in ITEMSIZE.values():
        assert _plan(2, 1, 100, 384, itemsize=itemsize) == split
        assert _plan(2, 4, 100, 256, itemsize=itemsize) == split
    # The bound is exclusive: bfloat16 B=4 H=128 is 4 rows x 128 KiB, exactly 512 KiB.
    assert _plan(2, 4, 100, 128, itemsize=ITEMSIZE["bfloat16"]) == serial


def test_single_direction_plans_by_thread_count():
    """A large batch takes a row group per thread, then unit parts with the
    threads left over (b64_h512); a few rows split their units only, up to
    one part per 64-unit panel (B=1 H=128: 2 with AVX-512); one panel (H=64) or too
    little work never wakes a thread; one thread always runs serially."""
    big = dict(max_batch=64, n_steps=100, hidden=512)
    assert [_plan(t, **big) for t in THREAD_COUNTS] == [
        LayerPlan("serial", 1, 1), LayerPlan("partitioned", 2, 1),
        LayerPlan("partitioned", 4, 1), LayerPlan("partitioned", 8, 1),
        LayerPlan("partitioned", 16, 1), LayerPlan("partitioned", 16, 4)]
    one_row = dict(max_batch=1, n_steps=100, hidden=128)
    assert [_plan(t, **one_row).threads_used(1) for t in THREAD_COUNTS] == [
        1] + [min(t, _panels(128)) for t in THREAD_COUNTS[1:]]
    assert {_plan(t, 1, 2000, WIDTH) for t in THREAD_COUNTS} == {LayerPlan("serial", 1, 1)}
    assert {_plan(t, 8, 2, 128) for t in THREAD_COUNTS} == {LayerPlan("serial", 1, 1)}
    # Few rows through large weights (4 MiB of W_hh, 8 rows): units first, then row groups.
    wide = dict(max_batch=8, n_steps=50, hidden=512)
    assert _plan(2, **wide) == LayerPlan("partitioned", 1, 2)
    parts = min(16, _panels(512))
    assert _plan(16, **wide) == LayerPlan("partitioned", min(16 // parts, 2), parts)


def test_torch_numerics_int8_never_splits_rows():
    """torch quantises a step's rows with one scale, so a layer with its
    per-tensor numerics splits units, never rows: the same bits as serially."""
    for threads in THREAD_COUNTS[1:]:
        plan = _plan(threads, 64, 100, 512, itemsize=1, rows_independent=False)
        assert plan.groups == 1 and plan.kind == "partitioned"
        assert _plan(threads, **SPEECH, directions=2, itemsize=1,
                     rows_independent=False).groups == 1


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 300), st.integers(1, 3000), st.integers(1, 2048), st.integers(0, 512),
       st.sampled_from([1, 2]), st.sampled_from([1, 2, 4]), st.booleans(),
       st.sampled_from(THREAD_COUNTS + (3, 5, 7)))
def test_plans_never_ask_for_more_than_there_is(max_batch, n_steps, hidden, proj_size,
                                                directions, itemsize, rows_independent, threads):
    """Any layer: at most the threads given, whole 4-row tiles per row group
    (a group per tile at most), at most one unit part per panel, and one
    thread means one thread."""
    proj_size = proj_size if proj_size < hidden else 0
    plan = _plan(threads, max_batch, n_steps, hidden, proj_size, directions, itemsize,
                 rows_independent)
    assert plan.kind in ("serial", "directions", "partitioned")
    assert plan.threads_used(directions) <= max(threads, directions)
    assert (plan.kind == "directions") == (directions == 2 and plan.kind != "partitioned")
    if plan.kind == "partitioned":
        assert plan.threads_used(directions) > 1
        assert plan.groups == 1 or plan.groups <= max_batch // _driver.TILE_ROWS
        assert plan.parts <= _panels(hidden)
        assert rows_independent or plan.groups == 1
    if threads == 1:
        assert plan.threads_used(directions) == 1 or plan.kind == "directions"


BITWISE_CODE = """
import numpy as np, torch, nblstm
from nblstm.lstm import _driver
from nblstm.packing import pack_sequence

rng = np.random.default_rng(1)
CASES = [  # (input, hidden, layers, bidirectional, proj, batch, steps, formats)
    (20, 96, 1, True, 0, 16, 30, ("float32", "int8", "bfloat16")),   # partitioned 2 x 2 at 4
    (12, 136, 2, True, 40, 3, 40, ("float32",)),                     # directions, projection
    (8, 130, 1, False, 0, 20, 40, ("float32", "int8")),              # row groups
    (8, 256, 1, False, 70, 2, 40, ("float32", "bfloat16")),          # unit parts, projection
    (16, 520, 1, False, 0, 1, 10, ("float32",)),                     # large W_hh, one row
]
for I, H, L, bi, P, B, T, formats in CASES:
    tm = torch.nn.LSTM(I, H, L, bidirectional=bi, proj_size=P)
    model = nblstm.LSTM.from_torch(tm)
    lengths = rng.integers(1, T + 1, B)
    lengths[0] = T
    seqs = [rng.standard_normal((n, I)).astype(np.float32) for n in lengths]
    packed = pack_sequence(seqs, enforce_sorted=False)
    with torch.no_grad():
        want = tm(torch.nn.utils.rnn.pack_sequence([torch.from_numpy(s) for s in seqs],
                                                   enforce_sorted=False))[0].data.numpy()
    for name in formats:
        m = model if name == "float32" else model.quantize(name)
        runs, kinds = [], []
        for threads in (1, 2, 4):
            nblstm.set_num_threads(threads)
            layer = m._layers[0]
            plan = _driver.layer_plan(layer, packed.batch_sizes.astype(np.int64), P or H)
            kinds.append(f"{plan.kind}:{plan.threads_used(2 if bi else 1)}")
            out, (h, c) = m(packed)
            runs.append((out.data.copy(), h.copy(), c.copy()))
        same = all(np.array_equal(a, b) for run in runs[1:] for a, b in zip(run, runs[0]))
        err = float(np.abs(runs[0][0] - want).max())
        print(f"CASE {I} {H} {L} {bi} {P} {B} {T} {name} same={same} err={err:.3g} {kinds}")
"""


def test_results_are_bitwise_the_same_on_1_2_and_4_threads():
    """Row groups, unit parts, both directions at once, the partitioned
    kernel, a projection, large weights at one row; float32, int8 and
    bfloat16: the same bits on 1, 2 and 4 threads, and torch's answers."""
    env = dict(os.environ, NUMBA_NUM_THREADS="4")
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(BITWISE_CODE)], env=env,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith("CASE")]
    assert len(lines) == 9, result.stdout
    tolerance = {"float32": 2e-6, "int8": 0.05, "bfloat16": 0.02}
    for line in lines:
        fields = line.split()
        assert "same=True" in fields, line
        error = float(next(f for f in fields if f.startswith("err="))[4:])
        assert error <= tolerance[fields[8]], line
    # The cases take the paths their comments name, on 4 threads.
    kinds = [line.rsplit("[", 1)[1] for line in lines]
    assert "'partitioned:4'" in kinds[0] and "'directions:2'" in kinds[3]
    assert "'partitioned:4'" in kinds[4] and "'partitioned:4'" in kinds[6]


def test_a_thread_count_change_replans_repeated_calls(monkeypatch):
    """A repeated call shape keeps its serial step plan (the stepping path)
    only for the thread count it was made on: after set_num_threads(2) the
    same calls of an LSTM, an LSTMCell and a Stream take the driver, which
    spreads the work over the threads (it once stayed serial), with the same
    bits."""
    import numba

    import nblstm
    from nblstm.lstm import cell as cell_module, module as lstm_module, stream as stream_module

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs NUMBA_NUM_THREADS >= 2")
    calls = []
    for module in (lstm_module, cell_module, stream_module):
        original = module.lstm_forward
        monkeypatch.setattr(module, "lstm_forward",
                            lambda *a, _f=original, **k: calls.append(1) or _f(*a, **k))
    rng = np.random.default_rng(0)
    lstm = nblstm.LSTM(32, 256, seed=0)
    cell = nblstm.LSTMCell(32, 512, seed=0)
    x = rng.standard_normal((40, 16, 32)).astype(np.float32)
    x_cell = rng.standard_normal((64, 32)).astype(np.float32)
    previous = nblstm.get_num_threads()
    try:
        nblstm.set_num_threads(1)
        stream = lstm.stream(16)
        serial = [lstm(x), lstm(x), cell(x_cell), cell(x_cell), stream(x), stream(x)]
        assert calls == [1]  # the first LSTM call plans; then the stepping path only
        nblstm.set_num_threads(2)
        assert _driver.layer_plan(lstm._layers[0], np.full(40, 16, np.int64), 256).kind \
            == "partitioned"
        stream2 = lstm.stream(16)
        threaded = [lstm(x), lstm(x), cell(x_cell), cell(x_cell), stream2(x), stream2(x)]
        assert len(calls) == 7  # every call took the driver
    finally:
        nblstm.set_num_threads(previous)
    flat = lambda r: [r[0], *r[1]] if isinstance(r, tuple) and len(r) == 2 and \
        isinstance(r[1], tuple) else (list(r) if isinstance(r, tuple) else [r])  # noqa: E731
    for a, b in zip(serial, threaded):
        for u, v in zip(flat(a), flat(b)):
            np.testing.assert_array_equal(u, v)
