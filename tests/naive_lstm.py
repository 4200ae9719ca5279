"""Pure-NumPy reference twins of the LSTM kernels in ``nblstm.lstm._kernels``.

Each twin follows the kernel's contract (same arguments, same in-place
effects) with the most direct NumPy code, so a kernel can be checked on its
own, without torch.
"""

from __future__ import annotations

import numpy as np


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x.astype(np.float64)))


def from_panels(b_panels, n_cols, n_blocks=1):
    """The (K, N) matrix held in column panels (n_panels, K, width), each of
    ``n_blocks`` equal column blocks on panels of its own."""
    n_panels, n_inner, width = b_panels.shape
    per_block = n_panels // n_blocks
    blocks = b_panels.reshape(n_blocks, per_block, n_inner, width)
    flat = blocks.transpose(0, 2, 1, 3).reshape(n_blocks, n_inner, per_block * width)
    return np.concatenate(list(flat[:, :, :n_cols // n_blocks]), axis=1)


def matmul_accumulate(a, b_panels, out, n_rows, n_blocks=1):
    out[:n_rows] += a[:n_rows] @ from_panels(b_panels, out.shape[1], n_blocks)


def cell_update_rows(gates, c, h_full, n_rows, options=None):
    """``options``: ONNX's gate options of one direction (``peepholes`` (3, H)
    for i, f, o; ``clip``; ``input_forget``), as ONNX's LSTM operator
    defines them, or None for torch's cell."""
    hidden = c.shape[1]
    g = gates[:n_rows].astype(np.float64)
    c_prev = c[:n_rows].astype(np.float64)
    p, clip, coupled = ((np.zeros((3, hidden)), np.inf, False) if options is None
                        else options)
    bounded = lambda a: np.clip(a, -clip, clip)  # noqa: E731
    i = sigmoid(bounded(g[:, :hidden] + p[0] * c_prev))
    f = 1.0 - i if coupled else sigmoid(bounded(g[:, hidden:2 * hidden] + p[1] * c_prev))
    cell = np.tanh(bounded(g[:, 2 * hidden:3 * hidden]))
    c_new = f * c_prev + i * cell
    o = sigmoid(bounded(g[:, 3 * hidden:] + p[2] * c_new))
    c[:n_rows] = c_new
    h_full[:n_rows] = o * np.tanh(c_new)


def lstm_step(gates, n_rows, h, c, w_hh_t, w_hr_t, h_full, out, out_row, out_col,
              options=None):
    gates[:n_rows] += h[:n_rows] @ w_hh_t
    cell_update_rows(gates, c, h_full, n_rows, options)
    if w_hr_t.shape[0] > 0:
        h[:n_rows] = h_full[:n_rows] @ w_hr_t
    out[out_row:out_row + n_rows, out_col:out_col + h.shape[1]] = h[:n_rows]


def run_steps(gx, gx_row0, step_lo, step_hi, reverse, batch_sizes, step_offsets,
              h, c, w_hh_t, w_hr_t, h_full, out, out_col, options=None):
    steps = range(step_lo, step_hi)
    for t in (reversed(steps) if reverse else steps):
        n_rows = batch_sizes[t]
        lo = step_offsets[t] - gx_row0
        lstm_step(gx[lo:lo + n_rows], n_rows, h, c, w_hh_t, w_hr_t, h_full, out,
                  step_offsets[t], out_col, options)


def lstm_layer(x_rows, batch_sizes, w_ih_t, bias, w_hh_t, w_hr_t, h0, c0):
    """One direction of one layer over packed rows, from first principles."""
    offsets = np.concatenate([[0], np.cumsum(batch_sizes)])
    gx = x_rows @ w_ih_t + bias
    h, c = h0.copy(), c0.copy()
    h_full = np.empty_like(c) if w_hr_t.shape[0] > 0 else h
    out = np.zeros((x_rows.shape[0], h.shape[1]), dtype=h.dtype)
    run_steps(gx, 0, 0, len(batch_sizes), False, batch_sizes, offsets, h, c, w_hh_t, w_hr_t,
              h_full, out, 0)
    return out, h, c
