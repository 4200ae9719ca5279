"""Shared helpers for the nblstm.LSTM / nblstm.LSTMCell test modules.

Everything here is an *oracle* or a plain-NumPy utility: nothing is derived
from nblstm's own results.
"""

from __future__ import annotations

import functools
import re

import numpy as np

DTYPES = (np.float32, np.float64)
DTYPE_IDS = ("f32", "f64")

#: Acceptance tolerances against torch (absolute).
ATOL = {np.float32: 2e-5, np.float64: 1e-10}


def atol(dtype) -> float:
    return ATOL[np.dtype(dtype).type]


def torch_dtype(dtype):
    import torch

    return torch.float64 if np.dtype(dtype) == np.float64 else torch.float32


@functools.lru_cache(maxsize=512)
def make_lstm_pair(input_size, hidden_size, num_layers=1, bias=True,
                   batch_first=False, bidirectional=False, proj_size=0,
                   dtype=np.float32, seed=0, dropout=0.0):
    """(torch.nn.LSTM in eval mode, nblstm.LSTM.from_torch of it).

    Cached: callers must not mutate the returned models.
    """
    import torch

    import nblstm

    torch.manual_seed(seed)
    tm = torch.nn.LSTM(input_size, hidden_size, num_layers=num_layers, bias=bias,
                       batch_first=batch_first, dropout=dropout,
                       bidirectional=bidirectional, proj_size=proj_size,
                       dtype=torch_dtype(dtype))
    tm.eval()
    m = nblstm.LSTM.from_torch(tm)
    return tm, m


@functools.lru_cache(maxsize=128)
def make_cell_pair(input_size, hidden_size, bias=True, dtype=np.float32, seed=0):
    import torch

    import nblstm

    torch.manual_seed(seed)
    tc = torch.nn.LSTMCell(input_size, hidden_size, bias=bias, dtype=torch_dtype(dtype))
    tc.eval()
    c = nblstm.LSTMCell.from_torch(tc)
    return tc, c


def t2n(t):
    return t.detach().cpu().numpy()


def torch_lstm(tm, x, hx=None):
    """Run torch on NumPy input (array or torch PackedSequence) -> NumPy."""
    import torch

    with torch.inference_mode():
        if isinstance(x, np.ndarray):
            x = torch.from_numpy(np.ascontiguousarray(x))
        thx = None if hx is None else tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in hx)
        out, (h, c) = tm(x, thx)
    if isinstance(out, torch.nn.utils.rnn.PackedSequence):
        return out, (t2n(h), t2n(c))
    return t2n(out), (t2n(h), t2n(c))


def state_shapes(m_or_cfg, n=None):
    """Shapes of (h_0, c_0) for an LSTM; n=None means unbatched."""
    m = m_or_cfg
    d = 2 if m.bidirectional else 1
    h_out = m.proj_size or m.hidden_size
    if n is None:
        return (d * m.num_layers, h_out), (d * m.num_layers, m.hidden_size)
    return (d * m.num_layers, n, h_out), (d * m.num_layers, n, m.hidden_size)


def random_state(m, n, dtype, rng, scale=1.0):
    hs, cs = state_shapes(m, n)
    return (rng.standard_normal(hs).astype(dtype) * scale,
            rng.standard_normal(cs).astype(dtype) * scale)


def unpack(data, batch_sizes, sorted_indices=None, n=None, total_length=None):
    """Packed rows -> (T, N, F) padded with zeros, in the caller's batch order.

    Independent re-implementation of the packed layout (see
    nblstm.packing.PackedSequence): rows of step t are the first
    batch_sizes[t] sequences in sorted order.
    """
    data = np.asarray(data)
    batch_sizes = np.asarray(batch_sizes, dtype=np.int64)
    if sorted_indices is None:
        if n is None:
            n = int(batch_sizes[0]) if batch_sizes.size else 0
        sorted_indices = np.arange(n)
    else:
        sorted_indices = np.asarray(sorted_indices)
        n = sorted_indices.shape[0]
    t_max = batch_sizes.shape[0] if total_length is None else total_length
    out = np.zeros((t_max, n) + data.shape[1:], dtype=data.dtype)
    row = 0
    for t, bs in enumerate(batch_sizes):
        out[t, sorted_indices[:bs]] = data[row:row + bs]
        row += bs
    assert row == data.shape[0]
    return out


def ragged_batch_sizes(lengths):
    """``batch_sizes`` of sequences of these lengths, counted naively: at
    step ``t``, how many are longer than ``t``."""
    lengths = np.asarray(lengths)
    return np.array([(lengths > t).sum() for t in range(int(lengths.max()))], dtype=np.int64)


def lengths_mask(lengths, t_max):
    """(T, N) boolean mask of valid (non-padding) steps."""
    lengths = np.asarray(lengths)
    return np.arange(t_max)[:, None] < lengths[None, :]


def assert_close(got, expected, dtype, what=""):
    got = np.asarray(got)
    expected = np.asarray(expected)
    assert got.shape == expected.shape, f"{what}: shape {got.shape} != {expected.shape}"
    np.testing.assert_allclose(got, expected, rtol=0, atol=atol(dtype), err_msg=what)


def shape_re(shape) -> str:
    """Regex that finds a shape in a message however it is bracketed/joined."""
    return r"\D{1,3}".join(str(int(s)) for s in shape)


def assert_msg_has(excinfo, *needles):
    msg = str(excinfo.value)
    for needle in needles:
        assert re.search(needle, msg), f"{needle!r} not found in error message {msg!r}"
