"""Pure-NumPy reference twin of torch's dynamically quantized LSTM.

``torch.ao.quantization.quantize_dynamic(nn.Sequential(lstm), {nn.LSTM},
dtype=torch.qint8)`` gives a ``torch.ao.nn.quantized.dynamic.LSTM``; this
module recomputes its forward from the parameters that
``nblstm.lstm._torch_quantized.quantized_lstm_parameters`` extracts, with the
same roundings (see that module's docstring for each rule and why):

* per layer and direction, the input projection quantizes the WHOLE layer
  input at once (all T*B rows, or all packed rows) to uint8 per tensor;
* each step, the recurrent projection quantizes h (all active batch rows)
  per tensor;
* ``acc`` exact in integers, ``out = fma(float32(acc), float32(s_x * s_w),
  bias)``;
* the cell in float32 tensor ops, sigmoid as ``1 / (1 + exp(-x))``.

The only expected differences from torch are ulps in ``exp``/``tanh``
(torch: SLEEF u10 vector code; here: float64 then rounded to float32); an
ulp in h can, rarely, flip one quantized value or change the next step's
scale, which then shows as a larger (~1e-3) but isolated difference.

Run as a script for the self-check against torch (small, a few seconds)::

    python tests/torch_qlstm_replica.py
"""

from __future__ import annotations

import os
import sys
from typing import Optional, Sequence, Tuple

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from naive_int8 import activation_qparams, dequantize, quantize_activation  # noqa: E402
from nblstm.lstm._torch_quantized import quantized_lstm_parameters  # noqa: E402

F32 = np.float32


# ---------------------------------------------------------------------------
# building blocks

def quantized_linear(x2d: np.ndarray, w: np.ndarray, w_scale, w_zero_point, bias,
                     qmax: int = 127) -> np.ndarray:
    """fbgemm's dynamic linear on the rows of ``x2d`` (M, K) float32 with an
    int8 weight ``w`` (N, K): one per-tensor quantization of all of ``x2d``."""
    x2d = np.ascontiguousarray(x2d, dtype=F32)
    scale, zp = activation_qparams(x2d.min(), x2d.max(), 0, qmax)
    xq = quantize_activation(x2d, scale, zp).astype(np.float64) - zp
    wz = np.asarray(w_zero_point, dtype=np.float64)
    wq = w.astype(np.float64) - (wz[:, None] if wz.ndim else wz)
    # float64 products of small integers summed in float64: exact (< 2**53)
    acc = (xq @ wq.T).astype(np.int64)
    return dequantize(acc, scale, w_scale, bias)


def sigmoid32(x: np.ndarray) -> np.ndarray:
    """torch's float32 sigmoid: ``1 / (1 + exp(-x))``, each op in float32
    (exp correctly rounded here; SLEEF's is within 1 ulp)."""
    e = np.exp(-x.astype(np.float64)).astype(F32)
    return (F32(1.0) / (F32(1.0) + e)).astype(F32)


def tanh32(x: np.ndarray) -> np.ndarray:
    return np.tanh(x.astype(np.float64)).astype(F32)


def lstm_cell(gx: np.ndarray, h: np.ndarray, c: np.ndarray, p: dict, key: str
              ) -> Tuple[np.ndarray, np.ndarray]:
    """One step: ``gx`` (rows, 4H) is the precomputed input projection (its
    bias included), ``h``/``c`` (rows, H). ATen ``LSTMCell`` on CPU."""
    hidden = c.shape[1]
    gh = quantized_linear(h, p["weights"]["weight_hh" + key], p["scales"]["weight_hh" + key],
                          p["zero_points"]["weight_hh" + key], p["biases"]["bias_hh" + key],
                          p["activation_qmax"])
    gates = (gh + gx).astype(F32)                      # linear_hh(h).add_(input)
    i = sigmoid32(gates[:, :hidden])
    f = sigmoid32(gates[:, hidden:2 * hidden])
    g = tanh32(gates[:, 2 * hidden:3 * hidden])
    o = sigmoid32(gates[:, 3 * hidden:])
    c_new = ((f * c).astype(F32) + (i * g).astype(F32)).astype(F32)
    h_new = (o * tanh32(c_new)).astype(F32)
    return h_new, c_new


def input_projection(x2d: np.ndarray, p: dict, key: str) -> np.ndarray:
    return quantized_linear(x2d, p["weights"]["weight_ih" + key], p["scales"]["weight_ih" + key],
                            p["zero_points"]["weight_ih" + key], p["biases"]["bias_ih" + key],
                            p["activation_qmax"])


def _initial_state(p: dict, batch: int, hx):
    n = p["num_layers"] * (2 if p["bidirectional"] else 1)
    if hx is None:
        z = np.zeros((n, batch, p["hidden_size"]), dtype=F32)
        return z, z.copy()
    return np.asarray(hx[0], dtype=F32), np.asarray(hx[1], dtype=F32)


# ---------------------------------------------------------------------------
# forward passes

def qlstm_forward(x: np.ndarray, params: dict, hx=None):
    """Padded forward, like ``module(x, hx)``: x (T, B, I), or (B, T, I) with
    ``batch_first``; ``hx`` = (h0, c0) each (L*D, B, H) or None.
    Returns (output, (h_n, c_n)), float32."""
    x = np.asarray(x, dtype=F32)
    if params["batch_first"]:
        x = x.transpose(1, 0, 2)
    steps, batch, _ = x.shape
    h0, c0 = _initial_state(params, batch, hx)
    dirs = 2 if params["bidirectional"] else 1
    layer_in = x
    h_n, c_n = [], []
    for layer in range(params["num_layers"]):
        outs = []
        for d in range(dirs):
            key = "_l%d%s" % (layer, "_reverse" if d else "")
            gx = input_projection(layer_in.reshape(steps * batch, -1), params, key)
            gx = gx.reshape(steps, batch, -1)
            h, c = h0[layer * dirs + d], c0[layer * dirs + d]
            out = np.empty((steps, batch, params["hidden_size"]), dtype=F32)
            for t in (range(steps - 1, -1, -1) if d else range(steps)):
                h, c = lstm_cell(gx[t], h, c, params, key)
                out[t] = h
            outs.append(out)
            h_n.append(h)
            c_n.append(c)
        layer_in = np.concatenate(outs, axis=2)
    out = layer_in.transpose(1, 0, 2) if params["batch_first"] else layer_in
    return np.ascontiguousarray(out), (np.stack(h_n), np.stack(c_n))


def qlstm_forward_packed(data: np.ndarray, batch_sizes: Sequence[int], params: dict, hx=None):
    """PackedSequence forward (ATen ``PackedLayer`` / ``ReversedPackedLayer``):
    ``data`` (N, I) packed rows, ``batch_sizes`` per step (non-increasing),
    ``hx`` in the packed (sorted) batch order. The input projection
    quantizes all N packed rows at once; h is quantized over the active rows
    of each step only. Returns (packed output (N, D*H), (h_n, c_n))."""
    data = np.asarray(data, dtype=F32)
    batch_sizes = [int(b) for b in batch_sizes]
    offsets = np.concatenate([[0], np.cumsum(batch_sizes)]).astype(int)
    batch = batch_sizes[0]
    h0, c0 = _initial_state(params, batch, hx)
    dirs = 2 if params["bidirectional"] else 1
    hidden = params["hidden_size"]
    layer_in = data
    h_n, c_n = [], []
    for layer in range(params["num_layers"]):
        outs = []
        for d in range(dirs):
            key = "_l%d%s" % (layer, "_reverse" if d else "")
            gx = input_projection(layer_in, params, key)
            h = h0[layer * dirs + d].copy()
            c = c0[layer * dirs + d].copy()
            out = np.empty((data.shape[0], hidden), dtype=F32)
            order = range(len(batch_sizes) - 1, -1, -1) if d else range(len(batch_sizes))
            for t in order:
                n = batch_sizes[t]
                lo = offsets[t]
                # rows >= n are finished (forward: kept final; reverse: not yet
                # started, still at h0/c0)
                h[:n], c[:n] = lstm_cell(gx[lo:lo + n], h[:n], c[:n], params, key)
                out[lo:lo + n] = h[:n]
            outs.append(out)
            h_n.append(h)
            c_n.append(c)
        layer_in = np.concatenate(outs, axis=1)
    return layer_in, (np.stack(h_n), np.stack(c_n))


# ---------------------------------------------------------------------------
# self-check against torch

def make_quantized(torch, input_size, hidden_size, num_layers=1, bidirectional=False,
                   batch_first=False, zero_bias=False, per_channel=False, seed=0):
    """A float ``nn.LSTM`` and its ``quantize_dynamic`` (qint8) version."""
    import warnings

    torch.manual_seed(seed)
    lstm = torch.nn.LSTM(input_size, hidden_size, num_layers=num_layers,
                         bidirectional=bidirectional, batch_first=batch_first)
    if zero_bias:  # torch refuses bias=False; zero biases are the same model
        with torch.no_grad():
            for name, prm in lstm.named_parameters():
                if name.startswith("bias"):
                    prm.zero_()
    qconfig = {torch.nn.LSTM}
    if per_channel:
        qconfig = {torch.nn.LSTM: torch.ao.quantization.per_channel_dynamic_qconfig}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(lstm), qconfig,
                                                   dtype=torch.qint8)
    return lstm, q[0]


def max_diff_against_torch(T=10, B=2, I=8, H=16, num_layers=1, bidirectional=False,
                           batch_first=False, zero_bias=False, per_channel=False,
                           with_hx=False, lengths: Optional[Sequence[int]] = None,
                           seed=0):
    """Max |replica - torch| over output, h_n and c_n (and the max |float
    LSTM - quantized LSTM| for scale). ``lengths`` (sorted, descending) runs
    the PackedSequence path instead of the padded one."""
    import torch

    _, qm = make_quantized(torch, I, H, num_layers, bidirectional, batch_first,
                           zero_bias, per_channel, seed)
    params = quantized_lstm_parameters(qm)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((B, T, I) if batch_first else (T, B, I)).astype(F32)
    hx = None
    if with_hx:
        n = num_layers * (2 if bidirectional else 1)
        hx = (rng.standard_normal((n, B, H)).astype(F32) * F32(0.5),
              rng.standard_normal((n, B, H)).astype(F32))
    thx = None if hx is None else tuple(torch.from_numpy(a) for a in hx)
    with torch.no_grad():
        if lengths is None:
            t_out, (t_h, t_c) = qm(torch.from_numpy(x), thx)
            out, (h, c) = qlstm_forward(x, params, hx)
            t_out = t_out.numpy()
        else:
            packed = torch.nn.utils.rnn.pack_padded_sequence(
                torch.from_numpy(x), torch.tensor(lengths), batch_first=batch_first,
                enforce_sorted=True)
            t_out, (t_h, t_c) = qm(packed, thx)
            t_out = t_out.data.numpy()
            out, (h, c) = qlstm_forward_packed(packed.data.numpy(), packed.batch_sizes.tolist(),
                                               params, hx)
    return max(float(np.abs(out - t_out).max()), float(np.abs(h - t_h.numpy()).max()),
               float(np.abs(c - t_c.numpy()).max()))


CASES = (
    ("1 layer H=128 B=1 T=100", dict(T=100, B=1, I=32, H=128)),
    ("2 layers bidir H=64 B=4 T=30", dict(T=30, B=4, I=20, H=64, num_layers=2,
                                          bidirectional=True)),
    ("zero biases (bias=False stand-in) H=32 B=3 T=20", dict(T=20, B=3, I=10, H=32,
                                                            zero_bias=True)),
    ("batch_first + hx, 2 layers H=24 B=5 T=12", dict(T=12, B=5, I=7, H=24, num_layers=2,
                                                      batch_first=True, with_hx=True)),
    ("per-channel weights, bidir H=40 B=2 T=25", dict(T=25, B=2, I=9, H=40,
                                                      bidirectional=True, per_channel=True)),
    ("PackedSequence bidir 2 layers H=32 lengths 15,11,6,2",
     dict(T=15, B=4, I=6, H=32, num_layers=2, bidirectional=True, with_hx=True,
          lengths=(15, 11, 6, 2))),
)


def main() -> None:
    for name, kw in CASES:
        print("%-55s max|diff| = %.3g" % (name, max_diff_against_torch(**kw)))


if __name__ == "__main__":
    main()
