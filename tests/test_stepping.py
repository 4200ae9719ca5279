"""The stepping path: ``out=`` buffers, fast repeated calls and ``lstm.stream()``.

Oracles: torch (``torch.nn.LSTMCell`` / ``torch.nn.LSTM``) for values; for
chunked streaming, nblstm's own one-call result on the whole sequence, which
the stream must reproduce bitwise (that is its documented contract).

Whether the fast path really ran is checked with spies: after a warm-up the
cell's ``_checked_call`` (LSTMCell) or the driver entry ``lstm_forward``
(LSTM) is replaced by a function that fails, so a call that silently fell
back to the checked path would be noticed.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import nblstm
import nblstm.lstm.module as lstm_module
from nblstm.lstm._driver import plan_unidirectional
from nblstm.packing import pack_padded_sequence

from lstm_helpers import DTYPE_IDS, DTYPES, assert_close, t2n, torch_dtype

torch = pytest.importorskip("torch")

N, I, H, T = 3, 5, 7, 4  # cell / LSTM shapes used by the error tables (I != H on purpose)


# --------------------------------------------------------------------------- helpers

def cell_pair(input_size=I, hidden_size=H, bias=True, dtype=np.float32, seed=0):
    """(torch.nn.LSTMCell, nblstm.LSTMCell.from_torch of it); fresh, not cached
    (the tests warm and mutate the models)."""
    torch.manual_seed(seed)
    tc = torch.nn.LSTMCell(input_size, hidden_size, bias=bias, dtype=torch_dtype(dtype)).eval()
    return tc, nblstm.LSTMCell.from_torch(tc)


def lstm_pair(input_size=I, hidden_size=H, dtype=np.float32, seed=0, **config):
    """(torch.nn.LSTM, nblstm.LSTM.from_torch of it); fresh, not cached."""
    torch.manual_seed(seed)
    tm = torch.nn.LSTM(input_size, hidden_size, dtype=torch_dtype(dtype), **config).eval()
    return tm, nblstm.LSTM.from_torch(tm)


def torch_cell(tc, x, hx=None):
    with torch.inference_mode():
        thx = None if hx is None else tuple(torch.from_numpy(np.array(a)) for a in hx)
        h, c = tc(torch.from_numpy(np.array(x)), thx)
    return t2n(h), t2n(c)


def torch_lstm(tm, x, hx=None):
    with torch.inference_mode():
        thx = None if hx is None else tuple(torch.from_numpy(np.array(a)) for a in hx)
        y, (h, c) = tm(torch.from_numpy(np.array(x)), thx)
    return t2n(y), (t2n(h), t2n(c))


def arrays_in(obj):
    """Every ndarray in a nest of tuples/lists (the arguments of a call)."""
    if isinstance(obj, np.ndarray):
        return [obj]
    if isinstance(obj, (tuple, list)):
        return [a for item in obj for a in arrays_in(item)]
    return []


def snapshot(*objs):
    return [(a, a.copy()) for obj in objs for a in arrays_in(obj)]


def assert_unchanged(snap, what=""):
    for i, (array, before) in enumerate(snap):
        assert np.array_equal(array, before, equal_nan=True), f"{what}: argument array {i} was modified"


def buffers(*shapes, dtype=np.float32, fill=np.nan):
    """Output buffers pre-filled with a sentinel, so that unwritten ones show."""
    return tuple(np.full(s, fill, dtype) for s in shapes)


def fail_if_called(name):
    def fail(*args, **kwargs):
        raise AssertionError(f"{name} ran: the call did not take the fast path")
    return fail


def lstm_state_shapes(m, n=None):
    d = 2 if m.bidirectional else 1
    lead = (d * m.num_layers,) if n is None else (d * m.num_layers, n)
    return lead + (m.proj_size or m.hidden_size,), lead + (m.hidden_size,)


def lstm_out_shapes(m, steps, n=None):
    width = (2 if m.bidirectional else 1) * (m.proj_size or m.hidden_size)
    if n is None:
        y = (steps, width)
    else:
        y = (n, steps, width) if m.batch_first else (steps, n, width)
    return (y,) + lstm_state_shapes(m, n)


def random_lstm_state(m, n, rng, dtype=None):
    dtype = dtype or m.dtype
    return tuple(rng.standard_normal(s).astype(dtype) for s in lstm_state_shapes(m, n))


# =========================================================================== 1. cell out=

@pytest.mark.parametrize("batched", [True, False], ids=["batched", "unbatched"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_cell_out_matches_torch_and_fast_path(dtype, batched, monkeypatch):
    tc, cell = cell_pair(dtype=dtype, seed=1)
    rng = np.random.default_rng(0)
    lead = (N,) if batched else ()
    x = rng.standard_normal(lead + (I,)).astype(dtype)
    hx = tuple(rng.standard_normal(lead + (H,)).astype(dtype) for _ in range(2))
    expected = torch_cell(tc, x, hx)
    inputs = snapshot(x, hx)

    out = buffers(lead + (H,), lead + (H,), dtype=dtype)
    assert cell._prepared is None
    got = cell(x, hx, out=out)
    assert got[0] is out[0] and got[1] is out[1]
    for a, e in zip(got, expected):
        assert_close(a, e, dtype, "checked call with out=")
    assert_unchanged(inputs, "checked call")
    first = (got[0].copy(), got[1].copy())
    assert cell._prepared is not None

    # Later calls of this shape take the fast path: the checked call must not run.
    monkeypatch.setattr(cell, "_checked_call", fail_if_called("LSTMCell._checked_call"))
    for _ in range(2):
        out2 = buffers(lead + (H,), lead + (H,), dtype=dtype)
        got2 = cell(x, hx, out=out2)
        assert got2[0] is out2[0] and got2[1] is out2[1]
        assert np.array_equal(got2[0], first[0]) and np.array_equal(got2[1], first[1])
    assert_unchanged(inputs, "fast call")
    # out= given, hx omitted: zeros, as torch.
    expected0 = torch_cell(tc, x)
    out3 = buffers(lead + (H,), lead + (H,), dtype=dtype)
    got3 = cell(x, out=out3)
    assert got3[0] is out3[0] and got3[1] is out3[1]
    for a, e in zip(got3, expected0):
        assert_close(a, e, dtype, "fast call, hx=None, out=")
    # ... and without out= (fresh arrays).
    got4 = cell(x, hx)
    assert np.array_equal(got4[0], first[0]) and np.array_equal(got4[1], first[1])
    assert_unchanged(inputs, "fast calls")
    monkeypatch.undo()

    # The checked path with hx=None and out= on a fresh cell.
    _, fresh = cell_pair(dtype=dtype, seed=1)
    out5 = buffers(lead + (H,), lead + (H,), dtype=dtype)
    got5 = fresh(x, out=out5)
    assert got5[0] is out5[0] and got5[1] is out5[1]
    assert np.array_equal(got5[0], got3[0]) and np.array_equal(got5[1], got3[1])


@pytest.mark.parametrize("batched", [True, False], ids=["batched", "unbatched"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_cell_in_place_decoding_loop(dtype, batched, monkeypatch):
    tc, cell = cell_pair(dtype=dtype, seed=2)
    _, reference = cell_pair(dtype=dtype, seed=2)
    rng = np.random.default_rng(1)
    steps = 25
    lead = (N,) if batched else ()
    xs = rng.standard_normal((steps,) + lead + (I,)).astype(dtype)
    h = rng.standard_normal(lead + (H,)).astype(dtype)
    c = rng.standard_normal(lead + (H,)).astype(dtype)
    th, tcs = torch.from_numpy(h.copy()), torch.from_numpy(c.copy())
    rh, rc = h.copy(), c.copy()
    checked_calls = []
    real_checked = cell._checked_call
    monkeypatch.setattr(cell, "_checked_call",
                        lambda *a: checked_calls.append(1) or real_checked(*a))
    for t in range(steps):
        x_t = xs[t]
        x_before = x_t.copy()
        got = cell(x_t, (h, c), out=(h, c))
        assert got[0] is h and got[1] is c
        assert np.array_equal(x_t, x_before)
        with torch.inference_mode():
            th, tcs = tc(torch.from_numpy(x_t), (th, tcs))
        assert_close(h, t2n(th), dtype, f"h at step {t}")
        assert_close(c, t2n(tcs), dtype, f"c at step {t}")
        # In place is bitwise the same as stepping into fresh arrays.
        rh, rc = reference(x_t, (rh, rc))
        assert np.array_equal(h, rh) and np.array_equal(c, rc), f"step {t}"
    assert len(checked_calls) == 1, "only the first step should take the checked path"


def test_cell_fast_path_does_not_touch_zeros_or_earlier_results():
    """hx=None on the fast path reads the cached zeros; they must stay zeros,
    and each call without out= returns new arrays."""
    _, cell = cell_pair(seed=3)
    rng = np.random.default_rng(2)
    x1, x2 = (rng.standard_normal((N, I)).astype(np.float32) for _ in range(2))
    a = cell(x1)
    a_copy = tuple(v.copy() for v in a)
    b = cell(x2)
    c_ = cell(x1)
    assert all(p is not q and not np.shares_memory(p, q) for p in a for q in b)
    assert all(np.array_equal(p, q) for p, q in zip(a, a_copy)), "an earlier result was overwritten"
    assert all(np.array_equal(p, q) for p, q in zip(c_, a_copy)), "zeros state was modified"
    h, cc = buffers((N, H), (N, H))
    cell(x1, out=(h, cc))
    d = cell(x1)
    assert all(np.array_equal(p, q) for p, q in zip(d, a_copy))


# =========================================================================== 2. cell errors

def _cell_base(batched, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    lead = (N,) if batched else ()
    return dict(x=rng.standard_normal(lead + (I,)).astype(dtype),
                h=rng.standard_normal(lead + (H,)).astype(dtype),
                c=rng.standard_normal(lead + (H,)).astype(dtype), lead=lead)


def _other(dtype):
    return np.float64 if np.dtype(dtype) == np.float32 else np.float32


def _overlapping_pair(first_shape, second_shape, dtype, offset=0):
    """Two C-contiguous arrays of these shapes over one buffer, overlapping."""
    size = max(np.prod(first_shape), offset + np.prod(second_shape))
    buf = np.full(int(size), 0.5, dtype)
    return (buf[:np.prod(first_shape)].reshape(first_shape),
            buf[offset:offset + np.prod(second_shape)].reshape(second_shape))


def _strided(shape, dtype):
    return np.full(shape[:-1] + (2 * shape[-1],), 0.5, dtype)[..., ::2]


def _readonly(shape, dtype):
    a = np.full(shape, 0.5, dtype)
    a.flags.writeable = False
    return a


def _new(shape, dtype):
    return np.full(shape, np.nan, dtype)


# Each case: b (base arrays) , dt -> (x, hx, out); expected exception; match.
CELL_ERRORS = {
    "out-ndarray": (lambda b, dt, s: (b["x"], (b["h"], b["c"]), _new((2,) + s, dt)),
                    TypeError, r"out must be a tuple \(h_1, c_1\).*ndarray"),
    "out-len1": (lambda b, dt, s: (b["x"], (b["h"], b["c"]), (_new(s, dt),)),
                 TypeError, r"out must be a tuple \(h_1, c_1\)"),
    "out-len3": (lambda b, dt, s: (b["x"], (b["h"], b["c"]), (_new(s, dt),) * 3),
                 TypeError, r"out must be a tuple \(h_1, c_1\)"),
    "out0-none": (lambda b, dt, s: (b["x"], (b["h"], b["c"]), (None, _new(s, dt))),
                  TypeError, r"out\[0\] \(h_1\) must be a NumPy array.*NoneType"),
    "out1-list": (lambda b, dt, s: (b["x"], (b["h"], b["c"]), (_new(s, dt), _new(s, dt).tolist())),
                  TypeError, r"out\[1\] \(c_1\) must be a NumPy array.*list"),
    "out0-dtype": (lambda b, dt, s: (b["x"], (b["h"], b["c"]), (_new(s, _other(dt)), _new(s, dt))),
                   TypeError, r"out\[0\] \(h_1\) must have the module's dtype"),
    "out1-dtype": (lambda b, dt, s: (b["x"], (b["h"], b["c"]), (_new(s, dt), _new(s, _other(dt)))),
                   TypeError, r"out\[1\] \(c_1\) must have the module's dtype"),
    "out1-int": (lambda b, dt, s: (b["x"], (b["h"], b["c"]), (_new(s, dt), np.zeros(s, np.int64))),
                 TypeError, r"out\[1\] \(c_1\) must have the module's dtype.*int64"),
    "out0-shape": (lambda b, dt, s: (b["x"], (b["h"], b["c"]), (_new(s[:-1] + (H + 1,), dt), _new(s, dt))),
                   ValueError, r"Expected out\[0\] \(h_1\) of shape"),
    "out1-shape-rank": (lambda b, dt, s: (b["x"], (b["h"], b["c"]), (_new(s, dt), _new((1,) + s, dt))),
                        ValueError, r"Expected out\[1\] \(c_1\) of shape"),
    "out0-strided": (lambda b, dt, s: (b["x"], (b["h"], b["c"]), (_strided(s, dt), _new(s, dt))),
                     ValueError, r"out\[0\] \(h_1\) must be C-contiguous and writeable.*c_contiguous=False"),
    "out1-readonly": (lambda b, dt, s: (b["x"], (b["h"], b["c"]), (_new(s, dt), _readonly(s, dt))),
                      ValueError, r"out\[1\] \(c_1\) must be C-contiguous and writeable.*writeable=False"),
    "out-same-array": (lambda b, dt, s: (lambda o: (b["x"], (b["h"], b["c"]), (o, o)))(_new(s, dt)),
                       ValueError, r"out\[0\] \(h_1\) overlaps out\[1\] \(c_1\)"),
    "out-overlap-each-other": (
        lambda b, dt, s: (b["x"], (b["h"], b["c"]), _overlapping_pair(s, s, dt, offset=1)),
        ValueError, r"out\[0\] \(h_1\) overlaps out\[1\] \(c_1\)"),
    "out-swapped-hx": (lambda b, dt, s: (b["x"], (b["h"], b["c"]), (b["c"], b["h"])),
                       ValueError, r"out\[0\] \(h_1\) overlaps c_0"),
    "out0-is-c0": (lambda b, dt, s: (b["x"], (b["h"], b["c"]), (b["c"], _new(s, dt))),
                   ValueError, r"out\[0\] \(h_1\) overlaps c_0"),
    "out1-is-h0": (lambda b, dt, s: (b["x"], (b["h"], b["c"]), (_new(s, dt), b["h"])),
                   ValueError, r"out\[1\] \(c_1\) overlaps h_0"),
    "out0-view-of-h0": (lambda b, dt, s: (lambda pair: (b["x"], (pair[0], b["c"]), (pair[1], _new(s, dt))))(
        _overlapping_pair(s, s, dt, offset=1)), ValueError, r"out\[0\] \(h_1\) overlaps h_0"),
    "input-features": (lambda b, dt, s: (np.zeros(b["lead"] + (I + 1,), dt), (b["h"], b["c"]), None),
                       ValueError, r"input\.size\(-1\) must be equal to input_size\. Expected 5, got 6"),
    "input-rank": (lambda b, dt, s: (np.zeros((1, N, I) if b["lead"] else (), dt), (b["h"], b["c"]), None),
                   ValueError, r"input must be 1-D or 2-D"),
    "h0-shape": (lambda b, dt, s: (b["x"], (np.zeros(s[:-1] + (H + 1,), dt), b["c"]), None),
                 ValueError, r"Expected h_0 size"),
    "c0-shape-with-out": (lambda b, dt, s: (b["x"], (b["h"], np.zeros((2,) + s, dt)), buffers(s, s, dtype=dt)),
                          ValueError, r"Expected c_0 size"),
    "h0-dtype": (lambda b, dt, s: (b["x"], (b["h"].astype(_other(dt)), b["c"]), None),
                 TypeError, r"h_0 must have the module's dtype"),
    "c0-dtype-with-out": (lambda b, dt, s: (b["x"], (b["h"], b["c"].astype(_other(dt))), buffers(s, s, dtype=dt)),
                          TypeError, r"c_0 must have the module's dtype"),
    "hx-not-tuple": (lambda b, dt, s: (b["x"], b["h"], None), TypeError, r"hx must be a tuple"),
    "hx-len3": (lambda b, dt, s: (b["x"], (b["h"], b["c"], b["c"]), buffers(s, s, dtype=dt)),
                TypeError, r"hx must be a tuple"),
}


@pytest.mark.parametrize("warm", [False, True], ids=["fresh", "warm"])
@pytest.mark.parametrize("batched", [True, False], ids=["batched", "unbatched"])
@pytest.mark.parametrize("case", list(CELL_ERRORS))
def test_cell_errors(case, batched, warm, monkeypatch):
    build, exc, match = CELL_ERRORS[case]
    dtype = np.float32
    _, cell = cell_pair(dtype=dtype, seed=4)
    b = _cell_base(batched, dtype)
    state_shape = b["lead"] + (H,)
    good = None
    if warm:
        # A good call of the same shapes (the same x and hx objects), so that
        # the bad call reaches the fast path, which must fall back and raise.
        good = cell(b["x"], (b["h"], b["c"]), out=buffers(state_shape, state_shape))
        good = tuple(a.copy() for a in good)
        assert cell._prepared is not None
    x, hx, out = build(b, dtype, state_shape)
    snap = snapshot(x, hx, out)
    with pytest.raises(exc, match=match):
        cell(x, hx, out=out)
    assert_unchanged(snap, case)
    if warm:
        # A good call afterwards is still right (and still fast).
        monkeypatch.setattr(cell, "_checked_call", fail_if_called("LSTMCell._checked_call"))
        again = cell(b["x"], (b["h"], b["c"]), out=buffers(state_shape, state_shape))
        assert all(np.array_equal(p, q) for p, q in zip(again, good))


@pytest.mark.parametrize("which", ["h_1", "c_1", "both"])
@pytest.mark.parametrize("batched", [True, False], ids=["batched", "unbatched"])
def test_cell_out_may_overlap_input(batched, which, monkeypatch):
    """``out`` may overlap ``input`` (documented: the input is read first): the
    result is that of the same step on a copy of the input, on the checked
    call and on the fast path."""
    _, cell = cell_pair(seed=26)
    b = _cell_base(batched)
    s = b["lead"] + (H,)
    size = int(np.prod(s))
    reference = cell(b["x"].copy(), (b["h"], b["c"]))
    for attempt in range(3):  # checked, then fast (twice)
        buf = np.zeros(3 * size, np.float32)
        start = size + 2 if which == "c_1" else 2
        x = buf[start:start + b["x"].size].reshape(b["x"].shape)
        x[...] = b["x"]
        h1 = buf[:size].reshape(s) if which != "c_1" else np.empty(s, np.float32)
        c1 = buf[size:2 * size].reshape(s) if which != "h_1" else np.empty(s, np.float32)
        assert np.shares_memory(x, h1) or np.shares_memory(x, c1)
        got = cell(x, (b["h"], b["c"]), out=(h1, c1))
        assert got[0] is h1 and got[1] is c1
        assert np.array_equal(h1, reference[0]) and np.array_equal(c1, reference[1]), attempt
        if attempt == 0:
            monkeypatch.setattr(cell, "_checked_call", fail_if_called("LSTMCell._checked_call"))


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_cell_feedback_loop_fully_in_place(dtype):
    """An autoregressive loop with I == H: the new h is the next input, and
    input, h_0 and h_1 are one array: ``cell(h, (h, c), out=(h, c))``."""
    tc, cell = cell_pair(input_size=H, hidden_size=H, dtype=dtype, seed=27)
    rng = np.random.default_rng(19)
    h = rng.standard_normal((N, H)).astype(dtype)
    c = rng.standard_normal((N, H)).astype(dtype)
    th, tcs = torch.from_numpy(h.copy()), torch.from_numpy(c.copy())
    for t in range(15):
        got = cell(h, (h, c), out=(h, c))
        assert got[0] is h and got[1] is c
        with torch.inference_mode():
            th, tcs = tc(th, (th, tcs))
        assert_close(h, t2n(th), dtype, f"h at step {t}")
        assert_close(c, t2n(tcs), dtype, f"c at step {t}")


def test_cell_list_out_and_hx_are_accepted():
    """Lists work as the tuples do (the fast path only takes tuples, so the
    checked path must handle them, also in place)."""
    tc, cell = cell_pair(seed=5)
    b = _cell_base(True)
    expected = torch_cell(tc, b["x"], (b["h"], b["c"]))
    cell(b["x"], (b["h"], b["c"]))  # warm
    h, c = b["h"].copy(), b["c"].copy()
    got = cell(b["x"], [h, c], out=[h, c])
    assert got[0] is h and got[1] is c
    for a, e in zip(got, expected):
        assert_close(a, e, np.float32)


# =========================================================================== 3. LSTM out=

LSTM_CONFIGS = {
    # id: (config, batched, fast) -- fast: whether repeated calls take the stepping path
    "uni": (dict(), True, True),
    "bidirectional": (dict(bidirectional=True), True, False),
    "proj": (dict(hidden_size=6, proj_size=3), True, True),
    "2-layers": (dict(num_layers=2), True, True),
    "batch-first": (dict(batch_first=True), True, False),
    "batch-first-n1": (dict(batch_first=True), 1, True),
    "unbatched": (dict(num_layers=2, proj_size=2), False, True),
    "bi-proj-2l-bf": (dict(num_layers=2, bidirectional=True, proj_size=3, batch_first=True), True, False),
}


def _lstm_x(m, batched, rng, steps=T, dtype=None):
    n = None if batched is False else N if batched is True else batched
    dtype = dtype or m.dtype
    if n is None:
        return rng.standard_normal((steps, m.input_size)).astype(dtype), None
    shape = (n, steps, m.input_size) if m.batch_first else (steps, n, m.input_size)
    return rng.standard_normal(shape).astype(dtype), n


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name", list(LSTM_CONFIGS))
def test_lstm_out_matches_torch(name, dtype, monkeypatch):
    config, batched, fast = LSTM_CONFIGS[name]
    tm, m = lstm_pair(dtype=dtype, seed=6, **config)
    rng = np.random.default_rng(3)
    x, n = _lstm_x(m, batched, rng)
    hx = random_lstm_state(m, n, rng)
    ey, (eh, ec) = torch_lstm(tm, x, hx)
    inputs = snapshot(x, hx)
    shapes = lstm_out_shapes(m, T, n)

    y, h, c = buffers(*shapes, dtype=dtype)
    got = m(x, hx, out=(y, (h, c)))
    assert got[0] is y and got[1][0] is h and got[1][1] is c
    assert_close(y, ey, dtype, "output")
    assert_close(h, eh, dtype, "h_n")
    assert_close(c, ec, dtype, "c_n")
    assert_unchanged(inputs, "checked call")
    first = (y.copy(), h.copy(), c.copy())
    assert (m._prepared is not None) == fast

    if fast:
        monkeypatch.setattr(lstm_module, "lstm_forward", fail_if_called("lstm_forward"))
    y2, h2, c2 = buffers(*shapes, dtype=dtype)
    got2 = m(x, hx, out=(y2, (h2, c2)))
    assert got2[0] is y2 and got2[1][0] is h2 and got2[1][1] is c2
    for a, e in zip((y2, h2, c2), first):
        assert np.array_equal(a, e)
    plain = m(x, hx)
    for a, e in zip((plain[0], *plain[1]), first):
        assert np.array_equal(a, e)
    # hx omitted, out= given.
    ey0, (eh0, ec0) = torch_lstm(tm, x)
    y3, h3, c3 = buffers(*shapes, dtype=dtype)
    got3 = m(x, out=(y3, (h3, c3)))
    assert got3[0] is y3 and got3[1][0] is h3 and got3[1][1] is c3
    for a, e, what in zip((y3, h3, c3), (ey0, eh0, ec0), ("output", "h_n", "c_n")):
        assert_close(a, e, dtype, what + " (hx=None)")
    assert_unchanged(inputs, "repeated calls")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name", ["uni", "proj", "2-layers", "batch-first", "batch-first-n1",
                                  "unbatched"])
def test_lstm_in_place_stepping_loop(name, dtype):
    """``out=(y, (h, c))`` with ``hx=(h, c)``, one step per call, is torch's
    whole-sequence call."""
    config, batched, _ = LSTM_CONFIGS[name]
    tm, m = lstm_pair(dtype=dtype, seed=7, **config)
    rng = np.random.default_rng(4)
    steps = 12
    x, n = _lstm_x(m, batched, rng, steps=steps)
    hx = random_lstm_state(m, n, rng)
    ey, (eh, ec) = torch_lstm(tm, x, hx)
    h, c = (a.copy() for a in hx)
    y = buffers(lstm_out_shapes(m, 1, n)[0], dtype=dtype)[0]
    time_axis = 1 if (m.batch_first and n is not None) else 0
    outputs = []
    for t in range(steps):
        x_t = x[:, t:t + 1] if time_axis == 1 else x[t:t + 1]
        got = m(x_t, (h, c), out=(y, (h, c)))
        assert got[0] is y and got[1][0] is h and got[1][1] is c
        outputs.append(y.copy())
    assert_close(np.concatenate(outputs, axis=time_axis), ey, dtype, "outputs")
    assert_close(h, eh, dtype, "h_n")
    assert_close(c, ec, dtype, "c_n")


def _lstm_base(m, batched=True, seed=0):
    rng = np.random.default_rng(seed)
    x, n = _lstm_x(m, batched, rng)
    h, c = random_lstm_state(m, n, rng)
    return dict(x=x, h=h, c=c, n=n)


def _lstm_good_out(m, b):
    return _as_out(buffers(*lstm_out_shapes(m, T, b["n"]), dtype=m.dtype))


def _as_out(three):
    return (three[0], (three[1], three[2]))


def _replace(m, b, index, value):
    three = list(buffers(*lstm_out_shapes(m, T, b["n"]), dtype=m.dtype))
    three[index] = value
    return _as_out(three)


def _shapes(m, b):
    return lstm_out_shapes(m, T, b["n"])


LSTM_ERRORS = {
    "out-flat-triple": (lambda m, b, dt: (b["x"], (b["h"], b["c"]),
                                          buffers(*_shapes(m, b), dtype=dt)),
                        TypeError, r"out must be \(output, \(h_n, c_n\)\)"),
    "out-flat-pair": (lambda m, b, dt: (b["x"], (b["h"], b["c"]),
                                        buffers(*_shapes(m, b)[:2], dtype=dt)),
                      TypeError, r"out must be \(output, \(h_n, c_n\)\)"),
    "out-ndarray": (lambda m, b, dt: (b["x"], (b["h"], b["c"]), _new(_shapes(m, b)[0], dt)),
                    TypeError, r"out must be \(output, \(h_n, c_n\)\)"),
    "out-states-len3": (lambda m, b, dt: (b["x"], (b["h"], b["c"]),
                                          (_new(_shapes(m, b)[0], dt), buffers(*_shapes(m, b), dtype=dt))),
                        TypeError, r"out must be \(output, \(h_n, c_n\)\)"),
    "output-shape": (lambda m, b, dt: (b["x"], (b["h"], b["c"]),
                                       _replace(m, b, 0, _new((T, N, H + 1), dt))),
                     ValueError, r"Expected out\[0\] \(output\) of shape \(4, 3, 7\), got \(4, 3, 8\)"),
    "output-batch-first-shape": (lambda m, b, dt: (b["x"], (b["h"], b["c"]),
                                                   _replace(m, b, 0, _new((N, T, H), dt))),
                                 ValueError, r"Expected out\[0\] \(output\) of shape"),
    "h_n-shape": (lambda m, b, dt: (b["x"], (b["h"], b["c"]), _replace(m, b, 1, _new((2, N, H), dt))),
                  ValueError, r"Expected out\[1\]\[0\] \(h_n\) of shape"),
    "c_n-shape-2d": (lambda m, b, dt: (b["x"], (b["h"], b["c"]), _replace(m, b, 2, _new((N, H), dt))),
                     ValueError, r"Expected out\[1\]\[1\] \(c_n\) of shape"),
    "output-dtype": (lambda m, b, dt: (b["x"], (b["h"], b["c"]),
                                       _replace(m, b, 0, _new(_shapes(m, b)[0], _other(dt)))),
                     TypeError, r"out\[0\] \(output\) must have the module's dtype"),
    "c_n-dtype": (lambda m, b, dt: (b["x"], (b["h"], b["c"]),
                                    _replace(m, b, 2, _new(_shapes(m, b)[2], _other(dt)))),
                  TypeError, r"out\[1\]\[1\] \(c_n\) must have the module's dtype"),
    "h_n-not-array": (lambda m, b, dt: (b["x"], (b["h"], b["c"]),
                                        _replace(m, b, 1, _new(_shapes(m, b)[1], dt).tolist())),
                      TypeError, r"out\[1\]\[0\] \(h_n\) must be a NumPy array"),
    "output-strided": (lambda m, b, dt: (b["x"], (b["h"], b["c"]),
                                         _replace(m, b, 0, _strided(_shapes(m, b)[0], dt))),
                       ValueError, r"out\[0\] \(output\) must be C-contiguous and writeable"),
    "c_n-fortran": (lambda m, b, dt: (b["x"], (b["h"], b["c"]),
                                      _replace(m, b, 2, np.asfortranarray(_new(_shapes(m, b)[2], dt)))),
                    ValueError, r"out\[1\]\[1\] \(c_n\) must be C-contiguous.*c_contiguous=False"),
    "h_n-readonly": (lambda m, b, dt: (b["x"], (b["h"], b["c"]),
                                       _replace(m, b, 1, _readonly(_shapes(m, b)[1], dt))),
                     ValueError, r"out\[1\]\[0\] \(h_n\) must be C-contiguous and writeable.*writeable=False"),
    "h_n-is-c_n": (lambda m, b, dt: (lambda a: (b["x"], (b["h"], b["c"]), (_new(_shapes(m, b)[0], dt), (a, a))))(
        _new(_shapes(m, b)[1], dt)), ValueError, r"out\[1\]\[0\] \(h_n\) overlaps out\[1\]\[1\] \(c_n\)"),
    "states-swapped": (lambda m, b, dt: (b["x"], (b["h"], b["c"]),
                                         (_new(_shapes(m, b)[0], dt), (b["c"], b["h"]))),
                       ValueError, r"out\[1\]\[0\] \(h_n\) overlaps c_0"),
    "c_n-is-h0": (lambda m, b, dt: (b["x"], (b["h"], b["c"]), _replace(m, b, 2, b["h"])),
                  ValueError, r"out\[1\]\[1\] \(c_n\) overlaps h_0"),
    "output-over-h0": (lambda m, b, dt: (lambda pair: (b["x"], (pair[1], b["c"]), _replace(m, b, 0, pair[0])))(
        _overlapping_pair(_shapes(m, b)[0], _shapes(m, b)[1], dt)),
        ValueError, r"out\[0\] \(output\) overlaps h_0"),
    "output-over-h_n": (lambda m, b, dt: (lambda pair: (b["x"], (b["h"], b["c"]),
                                                        (pair[0], (pair[1], _new(_shapes(m, b)[2], dt)))))(
        _overlapping_pair(_shapes(m, b)[0], _shapes(m, b)[1], dt, offset=3)),
        ValueError, r"out\[0\] \(output\) overlaps out\[1\]\[0\] \(h_n\)"),
    "packed-with-out": (lambda m, b, dt: (pack_padded_sequence(b["x"], [T] * N), (b["h"], b["c"]),
                                          _lstm_good_out(m, b)),
                        ValueError, r"out= takes padded input only"),
    "input-features": (lambda m, b, dt: (np.zeros((T, N, I + 1), dt), (b["h"], b["c"]), _lstm_good_out(m, b)),
                       ValueError, r"input\.size\(-1\) must be equal to input_size\. Expected 5, got 6"),
    "input-rank": (lambda m, b, dt: (np.zeros((1, T, N, I), dt), (b["h"], b["c"]), None),
                   ValueError, r"input must be 2-D or 3-D"),
    "h0-shape": (lambda m, b, dt: (b["x"], (np.zeros((1, N + 1, H), dt), b["c"]), _lstm_good_out(m, b)),
                 ValueError, r"Expected h_0 size \(1, 3, 7\), got \(1, 4, 7\)"),
    "c0-shape-no-out": (lambda m, b, dt: (b["x"], (b["h"], np.zeros((N, H), dt)), None),
                        ValueError, r"Expected c_0 size"),
    "c0-dtype": (lambda m, b, dt: (b["x"], (b["h"], b["c"].astype(_other(dt))), _lstm_good_out(m, b)),
                 TypeError, r"c_0 must have the module's dtype"),
    "h0-dtype-no-out": (lambda m, b, dt: (b["x"], (b["h"].astype(_other(dt)), b["c"]), None),
                        TypeError, r"h_0 must have the module's dtype"),
    "hx-not-tuple": (lambda m, b, dt: (b["x"], b["h"], None), TypeError, r"hx must be a tuple"),
}


@pytest.mark.parametrize("warm", [False, True], ids=["fresh", "warm"])
@pytest.mark.parametrize("case", list(LSTM_ERRORS))
def test_lstm_errors(case, warm, monkeypatch):
    build, exc, match = LSTM_ERRORS[case]
    dtype = np.float32
    _, m = lstm_pair(dtype=dtype, seed=8)
    b = _lstm_base(m)
    good = None
    if warm:
        good = m(b["x"], (b["h"], b["c"]), out=_lstm_good_out(m, b))
        good = [a.copy() for a in arrays_in(good)]
        assert m._prepared is not None
    x, hx, out = build(m, b, dtype)
    snap = snapshot(x.data if hasattr(x, "batch_sizes") else x, hx, out)
    with pytest.raises(exc, match=match):
        m(x, hx, out=out)
    assert_unchanged(snap, case)
    if warm:
        monkeypatch.setattr(lstm_module, "lstm_forward", fail_if_called("lstm_forward"))
        again = m(b["x"], (b["h"], b["c"]), out=_lstm_good_out(m, b))
        assert all(np.array_equal(p, q) for p, q in zip(arrays_in(again), good))


@pytest.mark.parametrize("which", [0, 1, 2, "all"])
@pytest.mark.parametrize("name", ["uni", "2-layers", "proj", "bidirectional", "unbatched"])
def test_lstm_out_may_overlap_input(name, which, monkeypatch):
    """Any ``out=`` array may overlap ``input`` (documented: the input is read
    first): results as on a copy of the input, checked call and fast path."""
    config, batched, fast = LSTM_CONFIGS[name]
    _, m = lstm_pair(dtype=np.float32, seed=28, **config)
    rng = np.random.default_rng(20)
    x0, n = _lstm_x(m, batched, rng)
    hx = random_lstm_state(m, n, rng)
    reference = arrays_in(m(x0.copy(), hx))
    shapes = lstm_out_shapes(m, T, n)
    for attempt in range(3):
        sizes = [int(np.prod(s)) for s in shapes]
        buf = np.zeros(sum(sizes) + x0.size, np.float32)
        offsets = np.cumsum([0] + sizes)
        views = [buf[o:o + k].reshape(s) for o, k, s in zip(offsets, sizes, shapes)]
        three = [views[k] if which == "all" or which == k else np.empty(s, np.float32)
                 for k, s in enumerate(shapes)]
        # x starts inside the chosen buffer(s).
        start = 1 if which == "all" else offsets[which] + 1
        x = buf[start:start + x0.size].reshape(x0.shape)
        x[...] = x0
        assert any(np.shares_memory(x, a) for a in three)
        got = m(x, hx, out=_as_out(three))
        assert got[0] is three[0] and got[1][0] is three[1] and got[1][1] is three[2]
        for a, e in zip(three, reference):
            assert np.array_equal(a, e), (attempt, name, which)
        if attempt == 0 and fast:
            monkeypatch.setattr(lstm_module, "lstm_forward", fail_if_called("lstm_forward"))


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_lstm_feedback_loop_fully_in_place(dtype):
    """``m(y, (h, c), out=(y, (h, c)))`` with input_size == output size: each
    step's output is the next step's input, in one buffer."""
    tm, m = lstm_pair(input_size=3, hidden_size=6, num_layers=2, proj_size=3, dtype=dtype,
                      seed=29)
    rng = np.random.default_rng(21)
    y = rng.standard_normal((1, N, 3)).astype(dtype)
    h, c = random_lstm_state(m, N, rng)
    ty = torch.from_numpy(y.copy())
    thx = (torch.from_numpy(h.copy()), torch.from_numpy(c.copy()))
    for t in range(12):
        got = m(y, (h, c), out=(y, (h, c)))
        assert got[0] is y and got[1][0] is h and got[1][1] is c
        with torch.inference_mode():
            ty, thx = tm(ty, thx)
        assert_close(y, t2n(ty), dtype, f"y at step {t}")
        assert_close(h, t2n(thx[0]), dtype, f"h at step {t}")
        assert_close(c, t2n(thx[1]), dtype, f"c at step {t}")


@pytest.mark.parametrize("warm", [False, True], ids=["fresh", "warm"])
@pytest.mark.parametrize("name", ["bidirectional", "proj", "2-layers", "batch-first",
                                  "batch-first-n1", "unbatched"])
def test_lstm_out_shapes_follow_the_config(name, warm):
    """The shapes of a plain unidirectional one-layer model are wrong for these
    configurations (or the batch-first/unbatched layouts)."""
    config, batched, _ = LSTM_CONFIGS[name]
    _, m = lstm_pair(dtype=np.float32, seed=9, **config)
    rng = np.random.default_rng(5)
    x, n = _lstm_x(m, batched, rng)
    hx = random_lstm_state(m, n, rng)
    right = lstm_out_shapes(m, T, n)
    plain = nblstm.LSTM(m.input_size, m.hidden_size)
    naive = lstm_out_shapes(plain, T, N)  # (T, N, H), (1, N, H), (1, N, H)
    if warm:
        m(x, hx, out=_as_out(buffers(*right)))
    snap = snapshot(x, hx)
    for index in range(3):
        if naive[index] == right[index]:
            continue
        three = list(buffers(*right))
        three[index] = _new(naive[index], np.float32)
        name_re = [r"out\[0\] \(output\)", r"out\[1\]\[0\] \(h_n\)", r"out\[1\]\[1\] \(c_n\)"][index]
        with pytest.raises(ValueError, match=rf"Expected {name_re} of shape"):
            m(x, hx, out=_as_out(three))
        assert_unchanged(snap, name)
    got = m(x, hx, out=_as_out(buffers(*right)))
    assert [a.shape for a in arrays_in(got)] == list(right)


# =========================================================================== 4. fast-path invariants

def test_load_state_dict_after_warming_uses_new_weights():
    tm, m = lstm_pair(num_layers=2, seed=10)
    tc, cell = cell_pair(seed=10)
    rng = np.random.default_rng(6)
    x = rng.standard_normal((T, N, I)).astype(np.float32)
    xc = x[0].copy()
    for _ in range(2):
        old = m(x)
        old_cell = cell(xc)
    assert m._prepared is not None and cell._prepared is not None
    tm_new, _ = lstm_pair(num_layers=2, seed=11)
    tc_new, _ = cell_pair(seed=11)
    m.load_state_dict(tm_new.state_dict())
    cell.load_state_dict(tc_new.state_dict())
    ey, (eh, ec) = torch_lstm(tm_new, x)
    for _ in range(2):  # the first call after loading and the fast one after it
        y, (h, c) = m(x)
        assert_close(y, ey, np.float32, "output with the new weights")
        assert_close(h, eh, np.float32)
        assert_close(c, ec, np.float32)
        assert not np.allclose(y, old[0])
        eh1, ec1 = torch_cell(tc_new, xc)
        h1, c1 = cell(xc)
        assert_close(h1, eh1, np.float32, "cell h with the new weights")
        assert_close(c1, ec1, np.float32)
        assert not np.allclose(h1, old_cell[0])
    # Also in a loop with out= and the same buffers as before the load.
    tm_3, _ = lstm_pair(num_layers=2, seed=12)
    h, c = np.zeros((2, N, H), np.float32), np.zeros((2, N, H), np.float32)
    y = np.empty((1, N, H), np.float32)
    m(x[:1], (h, c), out=(y, (h, c)))
    m.load_state_dict(tm_3.state_dict())
    h[...] = 0
    c[...] = 0
    ys = [m(x[t:t + 1], (h, c), out=(y, (h, c)))[0].copy() for t in range(T)]
    ey3, (eh3, _) = torch_lstm(tm_3, x)
    assert_close(np.concatenate(ys), ey3, np.float32, "in-place loop after load_state_dict")
    assert_close(h, eh3, np.float32)


def test_other_shapes_after_warming():
    tm, m = lstm_pair(num_layers=2, proj_size=3, seed=13)
    tc, cell = cell_pair(seed=13)
    rng = np.random.default_rng(7)
    shapes = [(T, N, I), (T + 3, N, I), (T, 1, I), (1, N, I), (T, I), (T, N, I), (T, N + 2, I)]
    for shape in shapes * 2:
        x = rng.standard_normal(shape).astype(np.float32)
        ey, (eh, ec) = torch_lstm(tm, x)
        y, (h, c) = m(x)
        assert_close(y, ey, np.float32, f"output {shape}")
        assert_close(h, eh, np.float32, f"h_n {shape}")
        assert_close(c, ec, np.float32, f"c_n {shape}")
        xc = x[0]
        eh1, ec1 = torch_cell(tc, xc)
        h1, c1 = cell(xc)
        assert_close(h1, eh1, np.float32, f"cell h {xc.shape}")
        assert_close(c1, ec1, np.float32, f"cell c {xc.shape}")
    # float64 input to a float32 model after warming: cast, as on the first call.
    x = rng.standard_normal((T, N, I))
    y64, _ = m(x)
    y32, _ = m(x.astype(np.float32))
    assert y64.dtype == np.float32 and np.array_equal(y64, y32)
    # Non-contiguous input of the warmed shape.
    big = rng.standard_normal((T, 2 * N, I)).astype(np.float32)
    view = big[:, ::2]
    y_view, _ = m(view)
    assert np.array_equal(y_view, m(np.ascontiguousarray(view))[0])


@pytest.mark.parametrize("fmt", ["int8", "bfloat16"])
def test_quantized_fast_path_bitwise(fmt, monkeypatch):
    rng = np.random.default_rng(8)
    _, base = lstm_pair(num_layers=2, proj_size=4, hidden_size=9, seed=14)
    m = base.quantize(fmt)
    assert m.weight_format == fmt
    _, base_cell = cell_pair(seed=14)
    cell = base_cell.quantize(fmt)
    x = rng.standard_normal((T, N, I)).astype(np.float32)
    hx = random_lstm_state(m, N, rng)
    xc = x[0].copy()
    hc = tuple(rng.standard_normal((N, H)).astype(np.float32) for _ in range(2))
    first = m(x, hx)
    first_cell = cell(xc, hc)
    assert m._prepared is not None and cell._prepared is not None
    monkeypatch.setattr(lstm_module, "lstm_forward", fail_if_called("lstm_forward"))
    monkeypatch.setattr(cell, "_checked_call", fail_if_called("LSTMCell._checked_call"))
    for _ in range(2):
        again = m(x, hx)
        out = _as_out(buffers(*lstm_out_shapes(m, T, N)))
        with_out = m(x, hx, out=out)
        for a, e in zip(arrays_in(again) + arrays_in(with_out), arrays_in(first) * 2):
            assert np.array_equal(a, e)
        again_cell = cell(xc, hc)
        h, c = hc[0].copy(), hc[1].copy()
        in_place = cell(xc, (h, c), out=(h, c))
        for a, e in zip(list(again_cell) + list(in_place), list(first_cell) * 2):
            assert np.array_equal(a, e)
    # The float model the copy came from is unaffected and still right.
    monkeypatch.undo()
    assert not np.array_equal(base(x, hx)[0], first[0])


def test_results_are_fresh_arrays():
    _, m = lstm_pair(seed=15)
    rng = np.random.default_rng(9)
    x1, x2 = (rng.standard_normal((T, N, I)).astype(np.float32) for _ in range(2))
    hx = random_lstm_state(m, N, rng)
    r1 = m(x1)
    keep = [a.copy() for a in arrays_in(r1)]
    r2 = m(x2)
    r3 = m(x1, hx)
    r4 = m(x1)
    for a, k in zip(arrays_in(r1), keep):
        assert np.array_equal(a, k), "a later call overwrote an earlier result"
    for a in arrays_in(r1):
        for b in arrays_in(r2) + arrays_in(r3) + arrays_in(r4):
            assert not np.shares_memory(a, b)
    for a, k in zip(arrays_in(r4), keep):
        assert np.array_equal(a, k), "the cached zero state was written"
    assert not np.array_equal(r3[0], r1[0])


def test_train_mode_after_warming_applies_dropout():
    """A model warmed in eval mode and then put in training mode must apply
    dropout between layers, as a model that was never warmed does.

    Library bug (fails at the time of writing): ``LSTM._fast_call``
    (nblstm/lstm/module.py) does not check ``_dropout_args()``, and
    ``train()`` (nblstm/lstm/_base.py) does not drop ``_prepared``, so the
    fast path keeps running the eval-mode (no-dropout) steps."""
    rng = np.random.default_rng(10)
    x = rng.standard_normal((T, N, I)).astype(np.float32)
    warmed = nblstm.LSTM(I, H, num_layers=2, dropout=0.5, seed=16)
    never = nblstm.LSTM(I, H, num_layers=2, dropout=0.5, seed=16)
    eval_y, _ = warmed(x)
    warmed.train()
    never.train()
    y_warmed, _ = warmed(x)
    y_never, _ = never(x)
    assert not np.array_equal(y_never, eval_y)  # the oracle does apply dropout
    assert np.array_equal(y_warmed, y_never), "dropout ignored after warming in eval mode"


def test_batch_first_changed_after_warming():
    """``batch_first`` is a public attribute (as in torch); changing it after
    warming must change how the next call of the same shape is read.

    Library bug (fails at the time of writing): ``LSTM._fast_call``
    (nblstm/lstm/module.py) matches only ``x.shape`` against the prepared
    call, whose layout was decided with the old ``batch_first``."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((T, N, I)).astype(np.float32)
    tm, m = lstm_pair(seed=17)
    m(x)
    m.batch_first = True
    tm.batch_first = True
    ey, (eh, _) = torch_lstm(tm, x)
    y, (h, _) = m(x)
    assert_close(y, ey, np.float32, "output after batch_first=True")
    assert_close(h, eh, np.float32, "h_n after batch_first=True")


# =========================================================================== 5. streams

def _as_steps(m, result, batch):
    """A stream result as (T, N, W) / (N, T, W)."""
    if result.ndim == 3:
        return result
    frame = result.reshape(batch, -1)
    return frame[:, None] if m.batch_first else frame[None]


def _feed(m, stream, x, bounds, forms, batch):
    """Feed x in the chunks [bounds[k], bounds[k+1]) and return the outputs
    concatenated along time, checking each result's shape."""
    axis = 1 if m.batch_first else 0
    outs = []
    for (a, b_), form in zip(zip(bounds, bounds[1:]), forms):
        piece = x[:, a:b_] if m.batch_first else x[a:b_]
        if form == "frame":
            piece = piece.reshape(batch, m.input_size)
        elif form == "vector":
            piece = piece.reshape(m.input_size)
        before = piece.copy()
        result = stream(piece)
        assert np.array_equal(piece, before), "stream modified its chunk"
        expected_shape = piece.shape[:-1] + (m.output_size,)
        assert result.shape == expected_shape and result.dtype == m.dtype
        outs.append(_as_steps(m, result, batch))
    if not outs:
        shape = (batch, 0, m.output_size) if m.batch_first else (0, batch, m.output_size)
        return np.empty(shape, m.dtype)
    return np.concatenate(outs, axis=axis)


def _assert_stream_equals(m, stream, whole, out, what=""):
    y, (h_n, c_n) = whole
    assert out.shape == y.shape, what
    assert np.array_equal(out, y), f"{what}: output differs (max {np.abs(out - y).max()})"
    h, c = stream.state
    assert np.array_equal(h, h_n) and np.array_equal(c, c_n), f"{what}: final state differs"


@st.composite
def stream_cases(draw):
    hidden = draw(st.integers(1, 40))
    proj = draw(st.integers(1, hidden - 1)) if hidden > 1 and draw(st.booleans()) else 0
    config = dict(input_size=draw(st.integers(1, 20)), hidden_size=hidden,
                  num_layers=draw(st.integers(1, 3)), bias=draw(st.booleans()),
                  batch_first=draw(st.booleans()), proj_size=proj,
                  dtype=draw(st.sampled_from(DTYPES)))
    batch = draw(st.integers(1, 4))
    steps = draw(st.integers(0, 30))
    cuts = sorted(draw(st.lists(st.integers(0, steps), max_size=7)))
    bounds = [0, *cuts, steps]
    single = ["chunk", "frame", "vector"] if batch == 1 else ["chunk", "frame"]
    forms = [draw(st.sampled_from(single)) if b - a == 1 else "chunk"
             for a, b in zip(bounds, bounds[1:])]
    return config, batch, steps, bounds, forms, draw(st.booleans()), draw(st.integers(0, 2**31))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream_cases())
def test_stream_chunkings_equal_one_call(case):
    config, batch, steps, bounds, forms, use_hx, seed = case
    rng = np.random.default_rng(seed)
    m = nblstm.LSTM(**config, seed=seed)
    dtype = m.dtype
    shape = (batch, steps, m.input_size) if m.batch_first else (steps, batch, m.input_size)
    x = rng.standard_normal(shape).astype(dtype)
    hx = random_lstm_state(m, batch, rng) if use_hx else None
    whole = m(x, hx)
    stream = m.stream(batch, hx) if use_hx else m.stream(batch)
    out = _feed(m, stream, x, bounds, forms, batch)
    _assert_stream_equals(m, stream, whole, out, f"chunks {bounds} {forms}")


CHUNKINGS = [[0, 1, 2, 3, 5, 8, 13, 17, 20], [0, 20], [0, 0, 7, 7, 20, 20], [0, 19, 20]]


@pytest.mark.parametrize("bounds", CHUNKINGS, ids=["fib", "whole", "zeros", "last-frame"])
@pytest.mark.parametrize("fmt", ["int8", "bfloat16"])
def test_quantized_stream_bitwise(fmt, bounds):
    rng = np.random.default_rng(12)
    batch = 2
    m = nblstm.LSTM(6, 10, num_layers=2, proj_size=5, seed=18).quantize(fmt)
    x = rng.standard_normal((20, batch, 6)).astype(np.float32)
    hx = random_lstm_state(m, batch, rng)
    whole = m(x, hx)
    stream = m.stream(batch, hx)
    forms = ["frame" if b - a == 1 else "chunk" for a, b in zip(bounds, bounds[1:])]
    _assert_stream_equals(m, stream, whole, _feed(m, stream, x, bounds, forms, batch), fmt)


@pytest.mark.parametrize("config, batch, steps", [
    (dict(input_size=64, hidden_size=128, num_layers=2), 16, 40),   # row groups, parallel projection
    (dict(input_size=16, hidden_size=128), 1, 40),                  # split units
    (dict(input_size=64, hidden_size=128, proj_size=32, dtype=np.float64), 12, 30),
], ids=["row-groups", "split-units", "f64-proj-rows"])
def test_stream_equals_threaded_whole_call(config, batch, steps):
    """The one call may run its steps on several threads (row groups, split
    hidden units, projection spread over the threads); a stream runs chunks
    serially: still bitwise the same."""
    m = nblstm.LSTM(**config, seed=19)
    rng = np.random.default_rng(13)
    x = rng.standard_normal((steps, batch, m.input_size)).astype(m.dtype)
    whole = m(x)
    stream = m.stream(batch)
    bounds = [0, 1, 4, 11, steps - 1, steps]
    forms = ["frame" if b - a == 1 else "chunk" for a, b in zip(bounds, bounds[1:])]
    _assert_stream_equals(m, stream, whole, _feed(m, stream, x, bounds, forms, batch))


def test_stream_reset_and_state_copies():
    rng = np.random.default_rng(14)
    m = nblstm.LSTM(4, 6, num_layers=2, proj_size=3, seed=20)
    batch = 2
    x1 = rng.standard_normal((7, batch, 4)).astype(np.float32)
    x2 = rng.standard_normal((5, batch, 4)).astype(np.float32)
    hx = random_lstm_state(m, batch, rng)
    stream = m.stream(batch)
    zeros = stream.state
    assert zeros[0].shape == (2, batch, 3) and zeros[1].shape == (2, batch, 6)
    assert not zeros[0].any() and not zeros[1].any()
    stream(x1[:3])
    stream(x1[3:])
    h, c = stream.state
    y1, (h1, c1) = m(x1)
    assert np.array_equal(h, h1) and np.array_equal(c, c1)
    # state gives copies: writing them changes nothing.
    h[...] = 123.0
    c[...] = -5.0
    again = stream.state
    assert np.array_equal(again[0], h1) and np.array_equal(again[1], c1)
    assert stream.state[0] is not stream.state[0]
    # ... and the next chunk continues from the real state.
    y12, (h12, c12) = m(np.concatenate([x1, x2]))
    out2 = stream(x2)
    assert np.array_equal(out2, y12[7:])
    assert np.array_equal(stream.state[0], h12) and np.array_equal(stream.state[1], c12)
    # reset(): a new sequence from zeros.
    stream.reset()
    assert not stream.state[0].any() and not stream.state[1].any()
    assert np.array_equal(stream(x2), m(x2)[0])
    # reset(hx): from hx; hx itself is not modified nor kept.
    hx_copy = [a.copy() for a in hx]
    stream.reset(hx)
    assert np.array_equal(stream.state[0], hx[0]) and np.array_equal(stream.state[1], hx[1])
    out = stream(x2)
    y, (hn, cn) = m(x2, hx)
    assert np.array_equal(out, y)
    assert np.array_equal(stream.state[0], hn) and np.array_equal(stream.state[1], cn)
    assert all(np.array_equal(a, b) for a, b in zip(hx, hx_copy))
    # hx given to stream() is copied too.
    hx_live = [a.copy() for a in hx]
    s2 = m.stream(batch, hx_live)
    hx_live[0][...] = 9.0
    hx_live[1][...] = 9.0
    assert np.array_equal(s2(x2), y)
    # reset(hx) as lists and torch tensors.
    s2.reset([hx[0].tolist(), torch.from_numpy(hx[1].copy())])
    assert np.array_equal(s2(x2), y)


def test_stream_follows_weight_changes():
    """New weights (load_state_dict) between chunks: the next chunks use them,
    whatever chunk shapes the stream had seen (and prepared) before."""
    rng = np.random.default_rng(15)
    batch = 3
    tm_new, _ = lstm_pair(input_size=4, hidden_size=5, num_layers=2, seed=22)
    m = nblstm.LSTM(4, 5, num_layers=2, seed=21)
    x1 = rng.standard_normal((6, batch, 4)).astype(np.float32)
    x2 = rng.standard_normal((6, batch, 4)).astype(np.float32)
    stream = m.stream(batch)
    # Shapes seen twice with the old weights: 3 steps, one frame, 1 step.
    first = [stream(x1[:3]), stream(x1[3]), stream(x1[4:5]), stream(x1[5])]
    assert np.array_equal(np.concatenate([first[0], first[1][None], first[2], first[3][None]]),
                          m(x1)[0])
    state = stream.state
    old = m(x2, state)
    m.load_state_dict(tm_new.state_dict())
    new = m(x2, state)
    assert not np.array_equal(old[0], new[0])
    # A frame first (it notices the new weights), then the shapes seen before.
    out = np.concatenate([stream(x2[0])[None], stream(x2[1:4]), stream(x2[4:5]),
                          stream(x2[5])[None]])
    assert np.array_equal(out, new[0]), "the stream kept using the old weights"
    assert np.array_equal(stream.state[0], new[1][0]) and np.array_equal(stream.state[1], new[1][1])
    ey, (eh, _) = torch_lstm(tm_new, x2, state)
    assert_close(out, ey, np.float32, "stream after load_state_dict vs torch")
    assert_close(stream.state[0], eh, np.float32)


def _reverse_onnx_model(input_size=3, hidden=4):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((1, 4 * hidden, input_size)).astype(np.float32), "W"),
             numpy_helper.from_array(rng.standard_normal((1, 4 * hidden, hidden)).astype(np.float32), "R")]
    node = helper.make_node("LSTM", ["X", "W", "R"], ["Y", "Y_h", "Y_c"], name="lstm",
                            hidden_size=hidden, direction="reverse")
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info(k, TensorProto.FLOAT, None) for k in ("Y", "Y_h", "Y_c")],
        inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])


def test_stream_refuses_bidirectional_and_reversed_models():
    bi = nblstm.LSTM(3, 4, bidirectional=True)
    with pytest.raises(ValueError, match=r"stream\(\) needs a unidirectional LSTM"):
        bi.stream()
    with pytest.raises(ValueError, match=r"stream\(\) needs a unidirectional LSTM"):
        nblstm.lstm.stream.Stream(bi, 2)
    reverse = nblstm.LSTM.from_onnx(_reverse_onnx_model())
    assert reverse.time_order == "reverse"
    with pytest.raises(ValueError, match=r"reads forwards; this one has time_order='reverse'"):
        reverse.stream()
    backwards = nblstm.LSTM(3, 4)
    backwards._time_order = "backwards"
    with pytest.raises(ValueError, match=r"time_order='backwards'"):
        backwards.stream(2)


@pytest.mark.parametrize("batch_size, exc, match", [
    (0, ValueError, r"batch_size must be greater than zero, got 0"),
    (-1, ValueError, r"batch_size must be greater than zero, got -1"),
    (1.5, TypeError, r"batch_size should be of type int, got: float"),
    (True, TypeError, r"batch_size should be of type int, got: bool"),
    ("2", TypeError, r"batch_size should be of type int"),
])
def test_stream_batch_size_errors(batch_size, exc, match):
    m = nblstm.LSTM(3, 4)
    with pytest.raises(exc, match=match):
        m.stream(batch_size)


def _chunk_errors(batch_first):
    return {
        "wrong-N": (lambda: np.zeros((3, 2, 4) if batch_first else (2, 3, 4), np.float32),
                    ValueError, r"chunk must hold batch_size = 2 sequences, got shape"),
        "wrong-features-3d": (lambda: np.zeros((2, 3, 5) if batch_first else (3, 2, 5), np.float32),
                              ValueError, r"chunk\.size\(-1\) must be equal to input_size\. Expected 4, got 5"),
        "wrong-features-frame": (lambda: np.zeros((2, 5), np.float32), ValueError,
                                 r"chunk must be \(T, N, H_in\).*got shape \(2, 5\)"),
        "frame-wrong-N": (lambda: np.zeros((3, 4), np.float32), ValueError,
                          r"N = batch_size = 2 and H_in = 4; got shape \(3, 4\)"),
        "vector-batch-2": (lambda: np.zeros((4,), np.float32), ValueError,
                           r"or \(H_in,\) for batch_size 1.*got shape \(4,\)"),
        "4d": (lambda: np.zeros((1, 3, 2, 4), np.float32), ValueError,
               r"chunk must be \(T, N, H_in\).*got shape \(1, 3, 2, 4\)"),
        "0d": (lambda: np.float32(1.0), ValueError, r"chunk must be .*got shape \(\)"),
        "strings": (lambda: np.array([["a"] * 4] * 2), TypeError, r"chunk must hold real numbers"),
    }


@pytest.mark.parametrize("batch_first", [False, True], ids=["time-major", "batch-first"])
@pytest.mark.parametrize("case", ["wrong-N", "wrong-features-3d", "wrong-features-frame",
                                  "frame-wrong-N", "vector-batch-2", "4d", "0d", "strings"])
def test_stream_chunk_errors_keep_state(case, batch_first):
    rng = np.random.default_rng(16)
    m = nblstm.LSTM(4, 5, num_layers=2, batch_first=batch_first, seed=23)
    batch = 2
    x = rng.standard_normal((batch, 6, 4) if batch_first else (6, batch, 4)).astype(np.float32)
    whole = m(x)
    stream = m.stream(batch)
    first = stream(x[:, :3] if batch_first else x[:3])
    before = stream.state
    make, exc, match = _chunk_errors(batch_first)[case]
    with pytest.raises(exc, match=match):
        stream(make())
    after = stream.state
    assert np.array_equal(after[0], before[0]) and np.array_equal(after[1], before[1])
    rest = stream(x[:, 3:] if batch_first else x[3:])
    out = np.concatenate([first, rest], axis=1 if batch_first else 0)
    _assert_stream_equals(m, stream, whole, out, case)


@pytest.mark.parametrize("where", ["stream", "reset"])
@pytest.mark.parametrize("hx_case, exc, match", [
    ("h-shape", ValueError, r"Expected h_0 size \(2, 2, 3\), got \(2, 3\)"),
    ("c-shape", ValueError, r"Expected c_0 size \(2, 2, 5\), got \(1, 2, 5\)"),
    ("h-dtype", TypeError, r"h_0 must have the module's dtype float32, got float64"),
    ("not-tuple", TypeError, r"hx must be a tuple \(h_0, c_0\)"),
    ("len3", TypeError, r"hx must be a tuple \(h_0, c_0\)"),
])
def test_stream_hx_errors(where, hx_case, exc, match):
    rng = np.random.default_rng(17)
    batch = 2
    m = nblstm.LSTM(4, 5, num_layers=2, proj_size=3, seed=24)
    h = rng.standard_normal((2, batch, 3)).astype(np.float32)
    c = rng.standard_normal((2, batch, 5)).astype(np.float32)
    bad = {"h-shape": (h[0], c), "c-shape": (h, c[:1]), "h-dtype": (h.astype(np.float64), c),
           "not-tuple": h, "len3": (h, c, c)}[hx_case]
    x = rng.standard_normal((4, batch, 4)).astype(np.float32)
    if where == "stream":
        with pytest.raises(exc, match=match):
            m.stream(batch, bad)
        return
    stream = m.stream(batch, (h, c))
    stream(x[:2])
    before = stream.state
    with pytest.raises(exc, match=match):
        stream.reset(bad)
    after = stream.state
    assert np.array_equal(after[0], before[0]) and np.array_equal(after[1], before[1])
    stream(x[2:])
    y, (hn, cn) = m(x, (h, c))
    assert np.array_equal(stream.state[0], hn) and np.array_equal(stream.state[1], cn)


# =========================================================================== 6. large weights

def test_stream_of_a_large_layer_is_exact():
    """A float32 layer with 4 MiB of recurrent weights (hidden 512), one row
    and a short sequence: the one call runs it serially (it once ran on
    BLAS, whose sums round differently), so a stream in any chunks gives
    bitwise its output."""
    tm, m = lstm_pair(input_size=16, hidden_size=512, seed=25)
    for threads in (1, 2, 16):
        assert plan_unidirectional(1, 10, 512, 0, m.dtype, threads)[0] == "serial"
    rng = np.random.default_rng(18)
    x = rng.standard_normal((10, 1, 16)).astype(np.float32)
    hx = random_lstm_state(m, 1, rng)
    y, (h_n, c_n) = m(x, hx)
    stream = m.stream(1, hx)
    out = np.concatenate([stream(x[:3]), stream(x[3, 0])[None, None], stream(x[4:])])
    h, c = stream.state
    np.testing.assert_array_equal(out, y)
    np.testing.assert_array_equal(h, h_n)
    np.testing.assert_array_equal(c, c_n)
    ey, (eh, ec) = torch_lstm(tm, x, hx)
    assert_close(out, ey, np.float32, "stream vs torch")
    assert_close(c, ec, np.float32, "stream c vs torch")
