"""Keras 3 LSTM layers as :class:`nblstm.LSTM` models (``LSTM.from_keras``).

nblstm never imports Keras: the layer is recognised by the names of the Keras
classes it derives from and read through its attributes (``layer.cell.kernel``
and so on), so this module is importable, and the rest of nblstm usable,
without Keras installed.

Keras keeps an LSTM's weights as ``kernel`` ``(H_in, 4H)``, ``recurrent_kernel``
``(H, 4H)`` and one ``bias`` ``(4H,)``, the gate blocks in the order
(i, f, c, o), which is torch's (i, f, g, o) (Keras's own torch backend maps
them the same way, ``prepare_lstm_params``). So::

    weight_ih_l0 = kernel.T          weight_hh_l0 = recurrent_kernel.T
    bias_ih_l0   = bias              bias_hh_l0   = zeros(4H)

and for a ``Bidirectional`` layer the same for its ``backward_layer`` under
the ``_l0_reverse`` names.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import numpy as np

__all__ = ["lstm_from_keras"]

#: Variable dtypes of a Keras layer and the nblstm model dtype each becomes.
#: float16 and bfloat16 values are exactly representable in float32.
_MODEL_DTYPES = {"float32": np.float32, "float64": np.float64,
                 "float16": np.float32, "bfloat16": np.float32}

#: Where a Keras-accepted tanh / sigmoid may come from (``keras.activations``,
#: ``keras.ops``, ``torch`` with Keras's torch backend).
_ACTIVATION_MODULES = ("keras", "torch")


def _keras_class(obj: Any, names: Tuple[str, ...]) -> Optional[str]:
    """The first Keras class among ``names`` that ``obj`` is an instance of
    (by the names in its MRO, so subclasses count), else None."""
    for klass in type(obj).__mro__:
        module = getattr(klass, "__module__", "") or ""
        if klass.__name__ in names and module.split(".")[0] == "keras":
            return klass.__name__
    return None


def _describe(obj: Any) -> str:
    klass = type(obj)
    return f"{klass.__module__}.{klass.__qualname__}"


def _activation_name(fn: Any) -> Tuple[Optional[str], str]:
    """``("tanh" or "sigmoid", shown)`` for Keras's, ``keras.ops``'s or
    torch's own function of that name, else ``(None, shown)``; ``shown``
    describes ``fn`` for a message (``'relu'``)."""
    name = getattr(fn, "__name__", None)
    module = getattr(fn, "__module__", None) or ""
    if name and module.split(".")[0] in _ACTIVATION_MODULES:
        return (name if name in ("tanh", "sigmoid") else None), repr(name)
    return None, repr(fn)


def _check_cell(rnn: Any, where: str) -> Any:
    """The ``LSTMCell`` of a Keras ``LSTM`` (or ``RNN(LSTMCell)``) layer, its
    activations checked and its weights present."""
    cell = getattr(rnn, "cell", None)
    if _keras_class(cell, ("LSTMCell",)) is None:
        raise TypeError(f"{where} must be a keras.layers.LSTM (or a keras.layers.RNN of a "
                        f"keras.layers.LSTMCell); its cell is {_describe(cell)}, which "
                        f"nblstm.LSTM.from_keras() cannot import")
    activation, shown = _activation_name(cell.activation)
    if activation != "tanh":
        raise ValueError(f"{where} has activation={shown}; nblstm's LSTM uses tanh "
                         f"only (the Keras default): build the Keras layer with "
                         f"activation='tanh'")
    recurrent, shown = _activation_name(cell.recurrent_activation)
    if recurrent != "sigmoid":
        raise ValueError(f"{where} has recurrent_activation={shown}; nblstm supports "
                         f"sigmoid only (torch's LSTM gates; Keras's hard_sigmoid is a "
                         f"different function): build the Keras layer with "
                         f"recurrent_activation='sigmoid' (the Keras default)")
    if not getattr(cell, "built", False) or getattr(cell, "kernel", None) is None:
        raise ValueError(f"{where} is not built yet, so it has no weights: build it or "
                         f"call it on an input first (layer(x), layer.build((None, None, "
                         f"H_in)), or a model with a known input shape), then import it")
    return cell


def _to_numpy(variable: Any) -> np.ndarray:
    """A Keras variable's value as a NumPy array of its own dtype."""
    value = variable.numpy() if hasattr(variable, "numpy") else variable
    return np.asarray(value)


def _cell_weights(cell: Any, where: str) -> Tuple[Dict[str, np.ndarray], str]:
    """``kernel``, ``recurrent_kernel`` and (if any) ``bias`` of an LSTM cell,
    and the dtype name of its variables."""
    arrays = {"kernel": _to_numpy(cell.kernel),
              "recurrent_kernel": _to_numpy(cell.recurrent_kernel)}
    if getattr(cell, "use_bias", False) and getattr(cell, "bias", None) is not None:
        arrays["bias"] = _to_numpy(cell.bias)
    dtypes = {str(a.dtype) for a in arrays.values()}
    dtype = dtypes.pop() if len(dtypes) == 1 else ",".join(sorted(dtypes))
    if dtype not in _MODEL_DTYPES:
        raise ValueError(f"{where} has weights of dtype {dtype}; nblstm.LSTM.from_keras() "
                         f"reads float32, float64, float16 and bfloat16 variables: build "
                         f"the Keras layer with one of those dtype policies")
    units = int(cell.units)
    h_in = arrays["kernel"].shape[0]
    expected = {"kernel": (h_in, 4 * units), "recurrent_kernel": (units, 4 * units),
                "bias": (4 * units,)}
    for name, array in arrays.items():
        if array.shape != expected[name]:
            raise ValueError(f"{where}.cell.{name} has shape {array.shape}, expected "
                             f"{expected[name]} for units={units}: not a standard Keras "
                             f"LSTM cell")
    return arrays, dtype


def _torch_params(arrays: Dict[str, np.ndarray], suffix: str, bias: bool,
                  dtype: Any) -> Dict[str, np.ndarray]:
    """torch-named parameters of one direction (``suffix`` ``"_l0"`` or
    ``"_l0_reverse"``) from a Keras cell's arrays, in ``dtype``."""
    wide = {k: np.asarray(v, dtype=np.float64 if dtype == np.float64 else np.float32)
            for k, v in arrays.items()}
    params = {f"weight_ih{suffix}": wide["kernel"].T,
              f"weight_hh{suffix}": wide["recurrent_kernel"].T}
    if bias:
        four_h = wide["recurrent_kernel"].shape[1]
        params[f"bias_ih{suffix}"] = wide.get("bias", np.zeros(four_h, wide["kernel"].dtype))
        params[f"bias_hh{suffix}"] = np.zeros(four_h, wide["kernel"].dtype)
    return params


def lstm_from_keras(cls: Any, layer: Any) -> Any:
    """Build an nblstm LSTM with the configuration and weights of a Keras 3 LSTM.

    Parameters
    ----------
    cls : type
        :class:`nblstm.LSTM` (this is ``LSTM.from_keras(layer)``).
    layer : keras.layers.LSTM or keras.layers.Bidirectional
        A built layer (one that has been called or built, e.g. any layer of
        a model with a known input shape: ``model.layers[i]``), of one of:

        * ``keras.layers.LSTM`` (or ``keras.layers.RNN(keras.layers.LSTMCell)``):
          a one-layer, batch-first model, ``cls(H_in, units, bias=use_bias,
          batch_first=True)``. With ``go_backwards=True`` the model reads
          each sequence last step first and returns its outputs in that
          processing order, as Keras does (``out[:, k]`` is the state after
          reading ``x[:, L-1-k]``; ``model.time_order`` is
          ``"backwards"``).
        * ``keras.layers.Bidirectional`` of such a layer with
          ``merge_mode="concat"`` (the default): a bidirectional model, the
          forward layer's weights as ``*_l0`` and the backward layer's as
          ``*_l0_reverse``. Keras flips the backward outputs back into
          input order before concatenating, which is torch's bidirectional
          output.

    Returns
    -------
    LSTM
        An instance of ``cls``, float64 for a layer whose variables are
        float64 (``dtype="float64"``), else float32. float16 and bfloat16
        variables (``dtype="float16"``/``"bfloat16"``) are widened exactly to
        float32, and mixed policies (``"mixed_float16"``,
        ``"mixed_bfloat16"``) have float32 variables: nblstm then computes
        in float32 while Keras computes in the lower precision, so the two
        agree to about that precision only. (``model.quantize("bfloat16")``
        stores bfloat16 weights, which reproduces a bfloat16 layer's
        weights exactly.)

    Raises
    ------
    TypeError
        If ``layer`` is not a Keras ``LSTM`` or ``Bidirectional`` of one (a
        ``GRU``, ``SimpleRNN``, ``Dense``, a whole model, a torch module...).
    ValueError
        If an activation is not tanh or a recurrent activation not sigmoid,
        if the layer is not built yet, if a ``Bidirectional`` layer's
        ``merge_mode`` is not ``"concat"`` or its two layers differ in size or
        run in the same direction, or for weights of another dtype.

    Notes
    -----
    The Keras layer's call options do not change the model; with
    ``out, (h_n, c_n) = model(x)`` for a batch-major ``x`` ``(N, L, H_in)``:

    * ``return_sequences=True``: Keras's output is ``out`` ``(N, L, D*H)``.
    * ``return_sequences=False``: a unidirectional layer's output is
      ``out[:, -1]`` (which is ``h_n[0]``); a ``Bidirectional`` layer's is
      ``concat(forward state after the last step, backward state after
      reading x[:, 0])``, that is ``np.concatenate([out[:, -1, :H],
      out[:, 0, H:]], axis=-1)``, which is ``np.concatenate([h_n[0],
      h_n[1]], axis=-1)`` (not ``out[:, -1]``).
    * ``return_state=True``: ``[output, h, c]`` are ``output, h_n[0],
      c_n[0]``; for ``Bidirectional``, ``[output, h_fw, c_fw, h_bw, c_bw]``
      are ``output, h_n[0], c_n[0], h_n[1], c_n[1]``.
    * ``layer(x, initial_state=[h, c])`` is ``model(x, hx=(h[None],
      c[None]))``; for ``Bidirectional``, ``initial_state=[h_fw, c_fw, h_bw,
      c_bw]`` is ``hx=(np.stack([h_fw, h_bw]), np.stack([c_fw, c_bw]))``.

    ``stateful=True`` layers are imported by their weights only: the model
    keeps no state between calls; pass the previous call's ``(h_n, c_n)``
    as ``hx`` yourself. ``dropout`` and ``recurrent_dropout`` act only while
    Keras trains, so they are ignored (the model is in inference mode), as
    are ``unroll``, ``use_cudnn``, ``unit_forget_bias`` (an initialiser),
    regularisers and constraints. Keras masks are not part of the layer:
    the model runs every step it is given (for sequences of different
    lengths pass a :class:`nblstm.PackedSequence`).
    """
    kind = _keras_class(layer, ("LSTM", "Bidirectional", "RNN"))
    if kind is None:
        hint = ""
        if getattr(layer, "mode", None) == "LSTM" and hasattr(layer, "state_dict"):
            hint = "; for a torch.nn.LSTM use nblstm.LSTM.from_torch()"
        elif hasattr(layer, "layers") and _keras_class(layer, ("Layer",)) is not None:
            hint = "; for a model pass one of its layers, e.g. model.layers[i]"
        raise TypeError(f"LSTM.from_keras(layer) expects a keras.layers.LSTM or a "
                        f"keras.layers.Bidirectional wrapping one, got "
                        f"{_describe(layer)}{hint}")
    if kind == "Bidirectional":
        return _from_bidirectional(cls, layer)
    if kind == "RNN" and _keras_class(getattr(layer, "cell", None), ("LSTMCell",)) is None:
        raise TypeError(f"LSTM.from_keras(layer) expects a keras.layers.LSTM or a "
                        f"keras.layers.Bidirectional wrapping one, got {_describe(layer)}")
    cell = _check_cell(layer, "layer")
    arrays, dtype_name = _cell_weights(cell, "layer")
    dtype = _MODEL_DTYPES[dtype_name]
    units = int(cell.units)
    bias = "bias" in arrays
    model = cls(arrays["kernel"].shape[0], units, bias=bias, batch_first=True, dtype=dtype)
    model.load_state_dict(_torch_params(arrays, "_l0", bias, dtype))
    if bool(getattr(layer, "go_backwards", False)):
        model._time_order = "backwards"
    return model


def _from_bidirectional(cls: Any, layer: Any) -> Any:
    merge_mode = getattr(layer, "merge_mode", None)
    if merge_mode != "concat":
        raise ValueError(f"layer is a Bidirectional layer with merge_mode={merge_mode!r}; "
                         f"nblstm's bidirectional LSTM returns both directions side by "
                         f"side, which is merge_mode='concat': import a copy built with "
                         f"merge_mode='concat' and set_weights(layer.get_weights()), then "
                         f"combine out[..., :H] (forward) and out[..., H:] (backward) "
                         f"yourself")
    parts = {}
    for side in ("forward_layer", "backward_layer"):
        rnn = getattr(layer, side, None)
        where = f"layer.{side}"
        if _keras_class(rnn, ("LSTM", "RNN")) is None:
            raise TypeError(f"{where} must be a keras.layers.LSTM, got {_describe(rnn)}: "
                            f"LSTM.from_keras() imports Bidirectional LSTM layers only")
        cell = _check_cell(rnn, where)
        parts[side] = (rnn, cell) + _cell_weights(cell, where)
    (fw, fw_cell, fw_arrays, fw_dtype) = parts["forward_layer"]
    (bw, bw_cell, bw_arrays, bw_dtype) = parts["backward_layer"]
    if bool(getattr(fw, "go_backwards", False)) or not bool(getattr(bw, "go_backwards", False)):
        raise ValueError(f"layer.forward_layer.go_backwards={fw.go_backwards} and "
                         f"layer.backward_layer.go_backwards={bw.go_backwards}; nblstm's "
                         f"bidirectional LSTM needs a forward layer that reads forwards and "
                         f"a backward layer with go_backwards=True (Keras's default "
                         f"Bidirectional(LSTM(...)) is that)")
    if int(fw_cell.units) != int(bw_cell.units):
        raise ValueError(f"layer.forward_layer has units={fw_cell.units} and "
                         f"layer.backward_layer units={bw_cell.units}; nblstm's "
                         f"bidirectional LSTM needs the same units in both directions")
    dtypes = {_MODEL_DTYPES[fw_dtype], _MODEL_DTYPES[bw_dtype]}
    dtype = np.float64 if np.float64 in dtypes else np.float32
    bias = "bias" in fw_arrays or "bias" in bw_arrays  # a direction without one gets zeros
    model = cls(fw_arrays["kernel"].shape[0], int(fw_cell.units), bias=bias, batch_first=True,
                bidirectional=True, dtype=dtype)
    params = _torch_params(fw_arrays, "_l0", bias, dtype)
    params.update(_torch_params(bw_arrays, "_l0_reverse", bias, dtype))
    model.load_state_dict(params)
    return model
