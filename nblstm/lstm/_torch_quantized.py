"""Parameters and numerics of torch's dynamically quantized LSTM.

``torch.ao.quantization.quantize_dynamic(nn.Sequential(lstm), {nn.LSTM},
dtype=torch.qint8)`` replaces the ``nn.LSTM`` by a
``torch.ao.nn.quantized.dynamic.LSTM``. On x86 (engine ``x86`` or ``fbgemm``)
its forward is ``torch.quantized_lstm(..., use_dynamic=True)`` (ATen
``RNN.cpp``), whose two linear maps per cell are fbgemm's dynamic int8 linear
(``PackedLinearWeight::apply_dynamic``, ``qlinear_dynamic.cpp``). Everything
else (gate activations, cell update) is ordinary float32 torch arithmetic.

This module needs no torch import: :func:`quantized_lstm_parameters` reads
the module object it is given (duck typing). The kernels reproduce the rules
below (``formats.int8``); ``tests/naive_int8.py`` holds their NumPy twins,
each checked against torch 2.13 (x86, AVX512 host):

Weights (set once, by the observer at conversion time)
    int8, default qconfig ``default_dynamic_qconfig``: ``MinMaxObserver``
    with ``per_tensor_symmetric`` on qint8, so zero point 0 and
    ``scale = max(|w_min|, |w_max|) / 127.5`` (float32), values in
    [-128, 127] (``-amax/scale = -127.5`` rounds half-even to -128). A
    ``per_channel_dynamic_qconfig`` gives per output row (axis 0) scales
    and zero points (symmetric: zeros). fbgemm keeps the weight scales as
    float32 (``std::vector<float>``), so a per-tensor ``q_scale()`` (a
    Python float, i.e. a double) is rounded to float32 here.

Activations (at every call of a linear map)
    The whole input of the call is quantized per tensor to uint8: for the
    input projection that is the whole layer input, all T*B rows at once
    (for a PackedSequence all packed rows), computed once per layer and
    direction; for the recurrent projection it is h of the current step,
    all (active) batch rows. ``min``/``max`` are taken over all elements
    (fbgemm ``FindMinMax``); ``activation_qparams`` turns them into
    (scale, zero point) and ``quantize_activation`` quantizes (twins in the tests).

Product and dequantization (fbgemm ``requantizeForFloatAvx2``)
    ``acc[i, j] = sum_k (xq[i, k] - x_zp) * (wq[j, k] - w_zp[j])``, exact
    integer (int32 in fbgemm; no int16 saturation matters: |xq - zp| <= 128).
    Then, in float32::

        multiplier[j] = float32(x_scale * w_scale[j])   # float32 product
        out[i, j] = fma(float32(acc[i, j]), multiplier[j], bias[j])

    i.e. ``acc * (s_x * s_w) + b`` with the scale product rounded first,
    then ONE rounding for the multiply and the bias add: the compiler fused
    them (``dequantize``; unfused is 1-2 ulp off). The bias is the
    float32 bias held inside the packed weight (``bias_ih`` for the input
    map, ``bias_hh`` for the recurrent one), added separately in each map;
    the two maps' results are then added in float32.

Cell (ATen ``LSTMCell``, float32 tensor ops)
    ``gates = (W_hh h + b_hh) + (W_ih x + b_ih)``; gate order i, f, g, o;
    ``i, f, o = sigmoid``, computed as ``1 / (1 + exp(-x))`` in float32;
    ``g = tanh``; ``c' = (f * c) + (i * g)``; ``h' = o * tanh(c')``.
"""

from __future__ import annotations

from typing import Any, Dict

import numpy as np

def _weight_arrays(qweight) -> Dict[str, Any]:
    """int8 values, float32 scale(s) and int32 zero point(s) of a quantized
    weight tensor, as fbgemm's packed weight holds them."""
    scheme = str(qweight.qscheme())
    values = qweight.int_repr().numpy().astype(np.int8, copy=True)
    if scheme in ("torch.per_tensor_affine", "torch.per_tensor_symmetric"):
        scale = np.float32(qweight.q_scale())
        zero_point = np.int32(qweight.q_zero_point())
        per_channel = False
    elif scheme in ("torch.per_channel_affine", "torch.per_channel_symmetric",
                    "torch.per_channel_affine_float_qparams"):
        if qweight.q_per_channel_axis() != 0:
            raise ValueError("per-channel weight quantized along axis %d, expected 0"
                             % qweight.q_per_channel_axis())
        scale = qweight.q_per_channel_scales().numpy().astype(np.float32)
        zero_point = qweight.q_per_channel_zero_points().numpy().astype(np.int32)
        per_channel = True
    else:
        raise ValueError("unsupported weight quantization scheme %s" % scheme)
    return {"values": values, "scale": scale, "zero_point": zero_point,
            "per_channel": per_channel}


def quantized_lstm_parameters(module) -> Dict[str, Any]:
    """Configuration and parameters of a ``torch.ao.nn.quantized.dynamic.LSTM``.

    Returns a dict::

        {"input_size", "hidden_size", "num_layers", "bias", "batch_first",
         "bidirectional", "proj_size": 0, "reduce_range": bool,
         "activation_qmax": 127 or 255, "per_channel": bool,
         "weights": {"weight_ih_l0": int8 (4H, I), "weight_hh_l0": int8 (4H, H),
                     ...},
         "scales":  {"weight_ih_l0": float32 scalar, or (4H,) per channel, ...},
         "zero_points": {"weight_ih_l0": int32 scalar or (4H,), ...},
         "biases": {"bias_ih_l0": float32 (4H,), "bias_hh_l0": ..., ...}}

    with torch's key names (``_reverse`` suffix for the backward direction).

    Where it comes from: ``module._all_weight_values[k].param`` (k = layer *
    num_directions + direction) is a ``CellParamsBase`` script object whose
    ``__getstate__()`` is ``((kind, [b_ih, b_hh], [], [reduce_range],
    [packed_ih, packed_hh]), class_name)`` with kind ``"quantized_dynamic"``
    (``"quantized_fp16"`` for the float16 variant, not handled). Each packed
    ``LinearPackedParamsBase`` has ``.unpack() -> (qweight, bias)``: the int8
    weight as a quantized tensor in torch's (out, in) shape and the float
    bias; that bias is the one fbgemm adds, so it is the one returned (the
    copy in the cell state is only used on GPU paths). ``reduce_range``
    (1 for modules made by ``from_float``; 0 for modules saved at version
    < 2) halves the activation range to qmax 127 (else 255).

    torch's dynamic LSTM has no projections (``from_float`` silently drops
    ``proj_size``, and forward then fails), and needs biases
    (``from_float`` asserts ``bias=True``; ``quantized_lstm`` checks
    ``has_biases``), so ``proj_size`` is always 0 and ``bias`` True for a
    module torch can run.
    """
    if getattr(module, "mode", None) != "LSTM" or not hasattr(module, "_all_weight_values"):
        raise TypeError("expected a torch.ao.nn.quantized.dynamic.LSTM, got %s"
                        % type(module).__name__)
    num_directions = 2 if module.bidirectional else 1
    config: Dict[str, Any] = {
        "input_size": int(module.input_size),
        "hidden_size": int(module.hidden_size),
        "num_layers": int(module.num_layers),
        "bias": bool(module.bias),
        "batch_first": bool(module.batch_first),
        "bidirectional": bool(module.bidirectional),
        "proj_size": int(getattr(module, "proj_size", 0) or 0),
    }
    weights: Dict[str, np.ndarray] = {}
    scales: Dict[str, Any] = {}
    zero_points: Dict[str, Any] = {}
    biases: Dict[str, np.ndarray] = {}
    reduce_range = None
    per_channel = None
    for layer in range(config["num_layers"]):
        for direction in range(num_directions):
            suffix = "_reverse" if direction == 1 else ""
            cell = module._all_weight_values[layer * num_directions + direction].param
            state = cell.__getstate__()[0]
            kind, _tensors, _doubles, longs, packed = state
            if kind != "quantized_dynamic":
                raise ValueError("unsupported cell params %r (only the qint8 dynamic "
                                 "LSTM is handled)" % kind)
            rr = bool(longs[0]) if len(longs) else False
            if reduce_range is not None and rr != reduce_range:
                raise ValueError("cells disagree on reduce_range")
            reduce_range = rr
            for name, pk in (("ih", packed[0]), ("hh", packed[1])):
                qweight, bias = pk.unpack()
                arrays = _weight_arrays(qweight)
                if per_channel is not None and arrays["per_channel"] != per_channel:
                    raise ValueError("mixed per-tensor and per-channel weights")
                per_channel = arrays["per_channel"]
                key = "weight_%s_l%d%s" % (name, layer, suffix)
                weights[key] = arrays["values"]
                scales[key] = arrays["scale"]
                zero_points[key] = arrays["zero_point"]
                rows = arrays["values"].shape[0]
                bkey = "bias_%s_l%d%s" % (name, layer, suffix)
                if bias is None:
                    biases[bkey] = np.zeros(rows, dtype=np.float32)
                else:
                    biases[bkey] = bias.detach().float().numpy().astype(np.float32, copy=True)
    config.update({
        "reduce_range": bool(reduce_range),
        "activation_qmax": 127 if reduce_range else 255,
        "per_channel": bool(per_channel),
        "weights": weights,
        "scales": scales,
        "zero_points": zero_points,
        "biases": biases,
    })
    return config
