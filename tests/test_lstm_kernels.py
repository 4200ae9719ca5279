"""Each LSTM kernel against its pure-NumPy twin in ``naive_lstm``."""

import platform
import re

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import naive_lstm as naive
from lstm_helpers import ragged_batch_sizes
from nblstm._memory import CACHE_LINE_BYTES, aligned_copy, aligned_empty, aligned_zeros
from nblstm.lstm import _kernels
from nblstm.lstm._gate_options import for_direction, layer_options
from nblstm.lstm._activations import sigmoid, tanh
from nblstm.lstm._kernels import tile_columns
from nblstm.lstm._weights import column_panels
from nblstm.lstm.formats._tiles import TALL_TILE_ROWS, four_rows, tile_schedule, writes_row
from nblstm.packing import step_offsets

TOLERANCE = {np.float32: 2e-6, np.float64: 1e-13}
#: The float formats' scratch (they need none) and an absent fixed range.
FLOAT_SCRATCH = 0
NO_RANGE = np.empty(0, np.float32)
dtypes = st.sampled_from([np.float32, np.float64])


def _rand(rng, shape, dtype, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(dtype)


@pytest.fixture(scope="module")
def activations():
    from numba import njit

    @njit
    def apply(x, out_tanh, out_sigmoid):
        for i in range(x.shape[0]):
            out_tanh[i] = tanh(x[i])
            out_sigmoid[i] = sigmoid(x[i])

    return apply


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_activations_match_numpy(activations, dtype):
    x = np.concatenate([np.linspace(-30, 30, 200001), [0.0, -0.0, 1e-30, 1e30, -1e30]]).astype(dtype)
    out_tanh, out_sigmoid = np.empty_like(x), np.empty_like(x)
    activations(x, out_tanh, out_sigmoid)
    with np.errstate(over="ignore"):
        np.testing.assert_allclose(out_tanh, np.tanh(x.astype(np.float64)), rtol=0,
                                   atol=TOLERANCE[dtype] / 4)
        np.testing.assert_allclose(out_sigmoid, naive.sigmoid(x), rtol=0,
                                   atol=TOLERANCE[dtype] / 4)
    assert out_tanh.min() >= -1 and out_tanh.max() <= 1
    assert out_sigmoid.min() >= 0 and out_sigmoid.max() <= 1
    assert out_tanh[-2] == 1 and out_tanh[-1] == -1
    assert out_sigmoid[-2] == 1 and out_sigmoid[-1] == 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_activations_propagate_nan(activations, dtype):
    x = np.array([np.nan], dtype)
    out_tanh, out_sigmoid = np.empty_like(x), np.empty_like(x)
    activations(x, out_tanh, out_sigmoid)
    assert np.isnan(out_tanh[0]) and np.isnan(out_sigmoid[0])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 9), max_size=3), st.sampled_from([np.float32, np.float64, np.int64]))
def test_aligned_arrays(shape, dtype):
    for array in (aligned_empty(shape, dtype), aligned_zeros(shape, dtype)):
        assert array.shape == tuple(shape) and array.dtype == dtype
        assert array.flags.c_contiguous and array.flags.writeable
        assert array.size == 0 or array.ctypes.data % CACHE_LINE_BYTES == 0
    assert not aligned_zeros(shape, dtype).any()
    source = np.arange(int(np.prod(shape)), dtype=dtype).reshape(shape)
    copy = aligned_copy(source)
    np.testing.assert_array_equal(copy, source)
    assert copy.size == 0 or copy.ctypes.data % CACHE_LINE_BYTES == 0
    assert not np.shares_memory(copy, source)


def test_aligned_empty_takes_an_int_shape():
    assert aligned_empty(np.int64(5), np.float32).shape == (5,)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 5), st.integers(1, 7), st.integers(1, 3 * 64 + 1), st.sampled_from([1, 4]),
       dtypes)
def test_column_panels_hold_the_matrix(lead, inner, block_cols, blocks, dtype):
    cols = blocks * block_cols
    w_t = (np.arange(lead * inner * cols).reshape(lead, inner, cols) + 1).astype(dtype)
    panels = column_panels(w_t, blocks=blocks)
    width = tile_columns(dtype)
    assert panels.shape == (lead, blocks * -(-block_cols // width), inner, width)
    assert panels.flags.c_contiguous
    assert panels.ctypes.data % CACHE_LINE_BYTES == 0
    for d in range(lead):
        np.testing.assert_array_equal(naive.from_panels(panels[d], cols, blocks), w_t[d])
    assert np.count_nonzero(panels) == w_t.size  # entries are >= 1, the padding is zeros


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 15), st.integers(1, 7), st.integers(1, 2 * 64 + 17), st.sampled_from([1, 4]),
       dtypes, st.booleans(), st.integers(0, 2**32 - 1))
def test_matmul_accumulate(n_rows, inner, block_cols, n_blocks, dtype, tall, seed):
    """Every tile shape (6-row with ``tall``, 4-row, single rows), partial
    last panels, and column blocks (gates) on panels of their own."""
    rng = np.random.default_rng(seed)
    cols = n_blocks * block_cols
    a = _rand(rng, (max(n_rows, 1) + 2, inner), dtype)
    b_panels = column_panels(_rand(rng, (inner, cols), dtype), blocks=n_blocks)
    out = _rand(rng, (a.shape[0], cols), dtype)
    expected = out.copy()
    naive.matmul_accumulate(a, b_panels, expected, n_rows, n_blocks)
    _kernels.matmul_accumulate(a, b_panels, out, n_rows, tall, n_blocks, FLOAT_SCRATCH)
    np.testing.assert_allclose(out, expected, rtol=0, atol=TOLERANCE[dtype] * inner * 4)
    assert np.array_equal(out[n_rows:], expected[n_rows:])  # rows past n_rows untouched


@pytest.fixture(scope="module")
def k_steps():
    """Both reductions of the float many-row tiles, on the same tile: the
    loops everywhere, the AVX2 FMA steps (``formats.float``) beside them."""
    from numba import carray, njit

    from nblstm._config import FASTMATH_FLAGS
    from nblstm.lstm.formats import float as float_format
    from nblstm.lstm.formats._tiles import TALL_TILE_ROWS, _tile_buffer

    @njit(fastmath=FASTMATH_FLAGS, error_model="numpy")  # the kernels' flags: contraction
    def run(a, rows, panel, c0, start, six, fma):
        tile_ptr = _tile_buffer(a)
        tile = carray(tile_ptr, (TALL_TILE_ROWS * start.shape[1],))
        for i in range(start.shape[0]):
            for jj in range(start.shape[1]):
                tile[i * start.shape[1] + jj] = start[i, jj]
        if six and fma:
            float_format._fma_steps_6(tile_ptr, a, rows[0], panel, c0)
        elif six:
            float_format._loop_steps_6(tile_ptr, a, rows[0], panel, c0)
        elif fma:
            float_format._fma_steps_4(tile_ptr, a, rows[0], rows[1], rows[2], rows[3], panel, c0)
        else:
            float_format._loop_steps_4(tile_ptr, a, rows[0], rows[1], rows[2], rows[3], panel, c0)
        result = start.copy()
        for i in range(start.shape[0]):
            for jj in range(start.shape[1]):
                result[i, jj] = tile[i * start.shape[1] + jj]
        return result

    return run


@pytest.mark.skipif(not __import__("nblstm.lstm.formats.float", fromlist=["x"]).FMA_STEPS,
                    reason="the float tiles run FMA steps only with AVX2 and FMA, no AVX-512")
@pytest.mark.parametrize("six", [False, True], ids=["4_rows", "6_rows"])
@settings(deadline=None, max_examples=30)
@given(inner=st.integers(1, 70), dtype=dtypes, second_pass=st.booleans(), seed=st.integers(0, 99))
def test_fma_steps_give_the_loops_bits(k_steps, six, inner, dtype, second_pass, seed):
    """The AVX2 FMA steps and the loops they replace: one FMA per k in
    order from the same start, so bitwise the same tile (4 rows with a
    repeated one, 6 rows; either pass of a panel; float32 and float64)."""
    from nblstm.lstm.formats._tiles import pass_columns

    rng = np.random.default_rng(seed)
    width = pass_columns(dtype)
    a = _rand(rng, (6, inner), dtype)
    panel = _rand(rng, (inner, tile_columns(dtype)), dtype)
    start = _rand(rng, (6 if six else 4, width), dtype)
    c0 = width if second_pass and 2 * width <= tile_columns(dtype) else 0
    # Rows are run-time values, as in the kernels (literal equal rows would let
    # LLVM share one product between two sums and leave both unfused).
    rows = np.array([0, 1, 2, 3] if six else [0, 1, 2, 2], np.int64)
    loops = k_steps(a, rows, panel, c0, start, six, False)
    np.testing.assert_array_equal(k_steps(a, rows, panel, c0, start, six, True), loops)
    expected = start.astype(np.float64) + (a if six else a[rows]).astype(np.float64) \
        @ panel[:, c0:c0 + width].astype(np.float64)
    np.testing.assert_allclose(loops, expected, rtol=TOLERANCE[dtype] * inner, atol=TOLERANCE[dtype] * inner)


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 31), st.integers(1, 70), st.integers(1, 3 * 64 + 9), st.sampled_from([1, 4]),
       dtypes, st.integers(0, 2**32 - 1))
def test_a_row_sums_alike_in_every_tile(n_rows, inner, block_cols, n_blocks, dtype, seed):
    """Each row of a product equals, bitwise, the same row alone (the 1-row
    tiles, two panels at a time or one) and every prefix of the rows (a
    4-row tile repeating rows, 6-row tiles, a lone last row): how rows are
    cut never changes a bit."""
    rng = np.random.default_rng(seed)
    cols = n_blocks * block_cols
    a = _rand(rng, (n_rows, inner), dtype)
    b_panels = column_panels(_rand(rng, (inner, cols), dtype), blocks=n_blocks)
    start = _rand(rng, (n_rows, cols), dtype)
    whole = start.copy()
    _kernels.matmul_accumulate(a, b_panels, whole, n_rows, True, n_blocks, FLOAT_SCRATCH)
    for r in range(n_rows):
        alone = start[r:r + 1].copy()
        _kernels.matmul_accumulate(a[r:r + 1], b_panels, alone, 1, False, n_blocks, FLOAT_SCRATCH)
        np.testing.assert_array_equal(alone[0], whole[r])
    m = int(rng.integers(1, n_rows + 1))
    prefix = start[:m].copy()
    _kernels.matmul_accumulate(a[:m], b_panels, prefix, m, bool(rng.integers(0, 2)), n_blocks,
                               FLOAT_SCRATCH)
    np.testing.assert_array_equal(prefix, whole[:m])


def _ragged_steps(lengths):
    """Sorted lengths, their batch sizes and offset table, steps and rows."""
    lengths = np.sort(np.array(lengths))[::-1]
    batch_sizes = ragged_batch_sizes(lengths)
    offsets = step_offsets(batch_sizes)
    return lengths, batch_sizes, offsets, len(batch_sizes), int(offsets[-1])


def _step_case(rng, batch, hidden, proj, dtype):
    out_width = proj or hidden
    h = _rand(rng, (batch, out_width), dtype)
    c = _rand(rng, (batch, hidden), dtype)
    w_hh_t = _rand(rng, (out_width, 4 * hidden), dtype, 0.5)
    w_hr_t = _rand(rng, (hidden, proj), dtype, 0.5) if proj else np.zeros((0, 0), dtype)
    return h, c, w_hh_t, w_hr_t


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 6), st.integers(1, 9), st.integers(0, 8), dtypes,
       st.integers(0, 2**32 - 1))
def test_lstm_step(batch, hidden, proj, dtype, seed):
    proj = proj if proj < hidden else 0
    rng = np.random.default_rng(seed)
    n_rows = int(rng.integers(0, batch + 1))
    h, c, w_hh_t, w_hr_t = _step_case(rng, batch, hidden, proj, dtype)
    gates = _rand(rng, (batch, 4 * hidden), dtype)
    out = np.zeros((batch + 3, 2 * h.shape[1]), dtype)
    states = []
    for impl in (naive, _kernels):
        hh, cc, g, o = h.copy(), c.copy(), gates.copy(), out.copy()
        h_full = np.empty_like(cc) if proj else hh
        weights = (w_hh_t, w_hr_t) if impl is naive else (column_panels(w_hh_t, blocks=4),
                                                           column_panels(w_hr_t))
        impl.lstm_step(g, n_rows, hh, cc, *weights, h_full, o, 2, h.shape[1],
                       *([] if impl is naive else [FLOAT_SCRATCH, None]))
        states.append((hh, cc, o))
    for got, want in zip(states[1], states[0]):
        np.testing.assert_allclose(got, want, rtol=0, atol=TOLERANCE[dtype] * 8 * (hidden + 1))
    assert np.array_equal(states[1][0][n_rows:], h[n_rows:])  # inactive rows keep their state
    assert np.array_equal(states[1][1][n_rows:], c[n_rows:])


def _gate_options(rng, with_options, n_dirs, hidden, dtype):
    """None, or random ONNX gate options of ``n_dirs`` directions (any mix of
    peepholes, a clip that bites, and coupled gates)."""
    if not with_options:
        return None
    peepholes = _rand(rng, (n_dirs, 3, hidden), dtype) * rng.integers(0, 2)
    clip = [None, 0.5, 2.0][int(rng.integers(0, 3))]
    return layer_options(peepholes, clip, bool(rng.integers(0, 2)), n_dirs, hidden, dtype)


def _random_row_bounds(rng, batch, groups):
    """(2, groups + 1) row bounds of any cut per direction (empty groups too)."""
    cuts = np.sort(rng.integers(0, batch + 1, (2, groups - 1)), axis=1)
    return np.concatenate([np.zeros((2, 1), np.int64), cuts, np.full((2, 1), batch, np.int64)],
                          axis=1)


def _partitioned(gx, batch_sizes, offsets, h, c, w_hh_t, w_hr_t, out, options,
                 row_bounds, parts, threads):
    """``run_steps_partitioned`` on both directions of one window, each
    direction's state, weights and projected input as given for it (arrays
    with a leading axis of 2; ``gx`` (2, rows, 4H)), like the driver does."""
    import numba

    proj = w_hr_t.shape[-1]
    n_steps = batch_sizes.shape[0]
    phases = n_steps * (2 if proj else 1)
    groups = row_bounds.shape[1] - 1
    h_full = np.empty_like(c) if proj else h
    h_steps = np.ascontiguousarray(np.stack([h, h]))
    previous = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        _kernels.run_steps_partitioned(
            gx, np.zeros(2, np.int64), np.zeros(2, np.int64), np.full(2, n_steps, np.int64),
            batch_sizes, offsets, h, c, column_panels(w_hh_t, blocks=4), column_panels(w_hr_t),
            h_full, h_steps, np.zeros(2 * groups * phases * parts * 8, np.int64),
            np.zeros(2 * groups * phases * 8, np.int64), out, row_bounds, parts, options)
    finally:
        numba.set_num_threads(previous)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 9), min_size=1, max_size=11), st.integers(1, 2 * 64 + 17),
       st.integers(0, 70), dtypes, st.booleans(), st.integers(1, 3), st.integers(1, 3),
       st.integers(1, 2), st.integers(0, 2**32 - 1))
def test_step_loops_match_serial_twin(lengths, hidden, proj, dtype, with_options, groups, parts,
                                      threads, seed):
    """Every step loop equals the NumPy twin, forwards and backwards, with
    and without ONNX's gate options, for any hidden size (a last partial
    panel per gate) with or without a projection: the serial loop, the
    two-direction kernel (which also projects the input), and the
    partitioned one for any row groups (not only the driver's whole tiles,
    an empty one included) and unit parts (beyond the panels too), with the
    threads it asks for or alone (one thread then claims every part:
    nothing waits)."""
    proj = proj if proj < hidden else 0
    rng = np.random.default_rng(seed)
    lengths, batch_sizes, offsets, n_steps, rows = _ragged_steps(lengths)
    batch = len(lengths)
    out_width = proj or hidden
    layer = _gate_options(rng, with_options, 2, hidden, dtype)
    n_inputs = int(rng.integers(1, 6))
    x = _rand(rng, (rows, n_inputs), dtype)
    stack = lambda a: np.ascontiguousarray(np.stack(a))  # noqa: E731
    w_ih_t = stack([_rand(rng, (n_inputs, 4 * hidden), dtype, 0.5) for _ in range(2)])
    bias = stack([_rand(rng, (4 * hidden,), dtype) for _ in range(2)])
    cases = [_step_case(rng, batch, hidden, proj, dtype) for _ in range(2)]
    h, c, w_hh_t, w_hr_t = (stack([case[i] for case in cases]) for i in range(4))
    gx = stack([x @ w_ih_t[d] + bias[d] for d in range(2)])

    want_h, want_c = h.copy(), c.copy()
    want_out = np.zeros((rows, 2 * out_width), dtype)
    for d in range(2):
        h_full = np.empty_like(want_c[d]) if proj else want_h[d]
        naive.run_steps(gx[d].copy(), 0, 0, n_steps, d == 1, batch_sizes, offsets, want_h[d],
                        want_c[d], w_hh_t[d], w_hr_t[d], h_full, want_out, d * out_width,
                        for_direction(layer, d))

    def serial():
        hh, cc, out = h.copy(), c.copy(), np.zeros_like(want_out)
        for d in range(2):
            h_full = np.empty_like(cc[d]) if proj else hh[d]
            _kernels.run_steps(gx[d].copy(), 0, 0, n_steps, d == 1, batch_sizes, offsets, hh[d],
                               cc[d], column_panels(w_hh_t[d], blocks=4),
                               column_panels(w_hr_t[d]), h_full, out, d * out_width,
                               for_direction(layer, d))
        return hh, cc, out

    def both():
        hh, cc, out = h.copy(), c.copy(), np.zeros_like(want_out)
        n = np.int64
        _kernels.run_window_both_directions(
            x, x, column_panels(w_ih_t, blocks=4), bias, np.empty(gx.shape, dtype),
            np.array([0, 0], n), np.array([n_steps, n_steps], n), batch_sizes, offsets,
            hh, cc, column_panels(w_hh_t, blocks=4), column_panels(w_hr_t),
            np.empty_like(cc) if proj else hh, out, NO_RANGE, layer)
        return hh, cc, out

    def partitioned():
        hh, cc, out = h.copy(), c.copy(), np.zeros_like(want_out)
        _partitioned(gx.copy(), batch_sizes, offsets, hh, cc, w_hh_t, w_hr_t, out, layer,
                     _random_row_bounds(rng, batch, groups), parts, threads)
        return hh, cc, out

    tolerance = TOLERANCE[dtype] * 20 * (hidden + 1) * max(lengths)
    for run in (serial, both, partitioned):
        for got, want in zip(run(), (want_h, want_c, want_out)):
            np.testing.assert_allclose(got, want, rtol=0, atol=tolerance, err_msg=run.__name__)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 9), min_size=1, max_size=30), st.integers(1, 2 * 64 + 17),
       st.integers(0, 70), dtypes, st.integers(1, 4), st.integers(1, 3),
       st.integers(0, 2**32 - 1))
def test_partitioned_steps_are_bitwise_the_serial_loop(lengths, hidden, proj, dtype, groups,
                                                       parts, seed):
    """However the rows and units are cut, every row's sums are the serial
    loop's: the tiles sum a row alike (a 1-row tile included), so the
    results are bitwise equal (what makes any thread count give the same
    bits)."""
    proj = proj if proj < hidden else 0
    rng = np.random.default_rng(seed)
    lengths, batch_sizes, offsets, n_steps, rows = _ragged_steps(lengths)
    batch = len(lengths)
    stack = lambda a: np.ascontiguousarray(np.stack(a))  # noqa: E731
    cases = [_step_case(rng, batch, hidden, proj, dtype) for _ in range(2)]
    h, c, w_hh_t, w_hr_t = (stack([case[i] for case in cases]) for i in range(4))
    gx = _rand(rng, (2, rows, 4 * hidden), dtype)
    out_width = proj or hidden
    want_h, want_c, want_out = h.copy(), c.copy(), np.zeros((rows, 2 * out_width), dtype)
    for d in range(2):
        _kernels.run_steps(gx[d].copy(), 0, 0, n_steps, d == 1, batch_sizes, offsets, want_h[d],
                           want_c[d], column_panels(w_hh_t[d], blocks=4), column_panels(w_hr_t[d]),
                           np.empty_like(want_c[d]) if proj else want_h[d], want_out,
                           d * out_width, None)
    got_h, got_c, got_out = h.copy(), c.copy(), np.zeros_like(want_out)
    _partitioned(gx.copy(), batch_sizes, offsets, got_h, got_c, w_hh_t, w_hr_t, got_out,
                 None, _random_row_bounds(rng, batch, groups), parts, 2)
    for got, want in ((got_h, want_h), (got_c, want_c), (got_out, want_out)):
        np.testing.assert_array_equal(got, want)


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 700), st.integers(1, 9), st.integers(1, 70), st.sampled_from([1, 4]),
       st.integers(1, 3), dtypes, st.integers(0, 2**32 - 1))
def test_projection_kernels_match_numpy(n_rows, n_inputs, block_cols, n_blocks, n_threads, dtype,
                                        seed):
    """``project`` (parallel chunks) and ``project_rows`` compute x @ w + b."""
    rng = np.random.default_rng(seed)
    cols = n_blocks * block_cols
    x = _rand(rng, (n_rows, n_inputs), dtype)
    w_t = _rand(rng, (n_inputs, cols), dtype)
    bias = _rand(rng, (cols,), dtype)
    expected = x.astype(np.float64) @ w_t + bias
    w_panels = column_panels(w_t, blocks=n_blocks)
    for run in (lambda gx: _kernels.project(x, w_panels, bias, gx, n_blocks, n_threads, NO_RANGE),
                lambda gx: _kernels.project_rows(x, w_panels, bias, gx, n_blocks, NO_RANGE)):
        gx = np.full((n_rows + 2, cols), np.nan, dtype)
        run(gx)
        np.testing.assert_allclose(gx[:n_rows], expected, rtol=0,
                                   atol=TOLERANCE[dtype] * 4 * (n_inputs + 1))
        assert np.isnan(gx[n_rows:]).all()  # rows past x untouched


def test_borrowed_views_share_memory_and_keep_no_reference_counts():
    """``borrowed`` views (of an array, and of the arrays in a named tuple)
    read and write the caller's memory and leave its reference count as it
    was; scalars and None pass through."""
    import sys

    from numba import njit

    from nblstm._codegen import borrowed
    from nblstm.lstm.formats.int8 import QuantizedRows

    @njit
    def fill(a, rows, options):
        view = borrowed(a[1:])
        rows = borrowed(rows)
        for i in range(view.shape[0]):
            view[i] = i + 1.0
        rows.scale[0] = view[view.shape[0] - 1]
        rows.zero[0] = 7
        return borrowed(options) is None, borrowed(np.int64(3))

    a = np.zeros(5, np.float32)
    rows = QuantizedRows(np.zeros((1, 8), np.uint8), np.zeros(1, np.float32),
                         np.zeros(1, np.int32), np.empty(0, np.float32))
    counts = [sys.getrefcount(x) for x in (a, *rows)]
    assert fill(a, rows, None) == (True, 3)
    np.testing.assert_array_equal(a, [0, 1, 2, 3, 4])
    assert rows.scale[0] == 4 and rows.zero[0] == 7
    assert [sys.getrefcount(x) for x in (a, *rows)] == counts


def test_kernels_get_the_preferred_vector_width():
    """``prefer_vector_width`` reaches LLVM: with AVX-512 a vectorised loop
    uses 512-bit (zmm) registers, which LLVM's tuning for recent Intel cores
    would otherwise avoid. Guards against an llvmlite that drops the
    attribute (kernels would silently fall back to 256-bit)."""
    from numba import njit

    from nblstm._codegen import prefer_vector_width
    from nblstm._config import FASTMATH_FLAGS, PREFERRED_VECTOR_BITS

    if PREFERRED_VECTOR_BITS != 512:
        pytest.skip("the target has no AVX-512")

    @njit(fastmath=FASTMATH_FLAGS, error_model="numpy")
    def axpy(a, x, y):
        prefer_vector_width()
        for i in range(x.shape[0]):
            y[i] += a * x[i]

    x = np.ones(1024, np.float32)
    axpy(np.float32(2), x, x.copy())
    assert "zmm" in axpy.inspect_asm(axpy.signatures[0])


@pytest.mark.parametrize("tall", [False, True])
def test_tile_schedule_covers_every_row_once(tall):
    """Every format's tiles follow ``tile_schedule``: 6-row tiles (with
    ``tall``), then 4-row tiles whose last may hold 2 or 3 rows (repeating
    the last, in order), then at most one row alone; together, with the
    4-row tiles writing each row once (``writes_row``), each row exactly
    once, for every row count a product can have here."""
    for n_rows in range(0, 100):
        n_tall, n_four, one_left = tile_schedule(n_rows, tall)
        covered = list(range(n_tall * TALL_TILE_ROWS))
        last = n_rows - 1
        for t in range(n_four):
            rows = four_rows(n_tall * TALL_TILE_ROWS, t, last)
            assert list(rows) == sorted(rows) and len(set(rows)) >= 2, (n_rows, rows)
            covered += [r for slot, r in enumerate(rows) if writes_row(rows, slot)]
        if one_left:
            covered.append(last)
        assert covered == list(range(n_rows)), (n_rows, tall)
        if tall and n_rows >= 12 and n_rows % 2 == 0:
            assert n_tall > 0 and not one_left, n_rows  # no single row where tiles can share


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"),
                    reason="checks x86 gather and scatter instructions")
def test_float_tiles_load_and_store_out_without_gathers():
    """The float tiles read and write ``out`` with contiguous vector loads:
    a signed column index once kept Numba's negative-index wraparound,
    which LLVM vectorised as vgatherqps/vscatterqps (30 gathers and 9
    scatters a product; the K=40 projection ran at half speed). Compiled
    here without the cache, whose code cannot be inspected; 4 gates of 27
    columns and 13 rows take every tile, the padding of a last panel and a
    repeated row."""
    from numba import njit

    from nblstm._config import JIT_OPTIONS

    fresh = njit(**dict(JIT_OPTIONS, cache=False))(_kernels.matmul_accumulate.py_func)
    rng = np.random.default_rng(0)
    w_t = _rand(rng, (40, 4 * 27), np.float32)
    a = _rand(rng, (13, 40), np.float32)
    out = _rand(rng, (13, 4 * 27), np.float32)
    expected = out.astype(np.float64) + a.astype(np.float64) @ w_t
    fresh(a, column_panels(w_t, blocks=4), out, 13, True, 4, FLOAT_SCRATCH)
    np.testing.assert_allclose(out, expected, atol=1e-4)
    asm = fresh.inspect_asm(fresh.signatures[0])
    assert re.findall(r"\bv(?:p?gather|p?scatter)\w*", asm) == []
