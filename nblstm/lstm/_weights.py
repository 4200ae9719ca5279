"""Parameters under PyTorch's names, and the layout the kernels want.

The public side is a dict of arrays with torch's keys and shapes
(``weight_ih_l0``, ``bias_hh_l1_reverse``, ...). Whenever it changes, the
kernel layout (transposed weights, summed biases, directions stacked) is
rebuilt once, so no forward call ever transposes or copies weights.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Tuple

import numpy as np

from .._memory import aligned_copy, aligned_zeros
from .formats._tiles import tile_columns
from .formats.bfloat16 import bfloat16_panels, is_torch_bfloat16, torch_bfloat16_bits, widen
from .formats.int8 import int8_panels
from ._validation import to_numpy


class LayerWeights(NamedTuple):
    """Kernel layout of one layer; the leading axis is the direction (D).

    The ``*_panels`` are float arrays for float models, or
    ``formats.int8.Int8Panels`` (whose ``panels`` have the shapes below, in
    4-weight groups along K) for int8 ones, ``formats.bfloat16.Bf16Panels``
    (2-weight pairs along K) for bfloat16 ones.

    Attributes
    ----------
    w_ih_panels : (D, 4 * ceil(H / width), input_size_of_layer, width), ``width``
        = ``tile_columns(dtype)``
        -- the transposed input weights ``w_ih_t`` (I, 4H) as column panels,
        each gate's columns on panels of their own (see :func:`column_panels`),
        for the kernels' register-tiled products
    bias : (D, 4H) -- ``bias_ih + bias_hh`` (zeros without bias)
    w_hh_panels : (D, 4 * ceil(H / width), P, width) -- ``w_hh_t``, likewise
    w_hr_panels : (D, ceil(P / width), H, width), or
        (D, 0, 0, width) without projection -- ``w_hr_t``
    gate_options : ``_gate_options.GateOptions`` of both directions, or None
        -- ONNX's peepholes, clip and input_forget, for a model loaded from
        ONNX that uses them
    """

    w_ih_panels: np.ndarray
    bias: np.ndarray
    w_hh_panels: np.ndarray
    w_hr_panels: np.ndarray
    gate_options: Any = None


def column_panels(w_t: np.ndarray, width: Optional[int] = None, blocks: int = 1) -> np.ndarray:
    """Split ``w_t`` (..., K, N) into contiguous column panels; ``width``
    defaults to the kernels' tile width for the dtype (``tile_columns``).

    The N columns are ``blocks`` equal blocks (the four gates of an LSTM
    weight), each cut into ``ceil(N / blocks / width)`` panels, its last one
    zero-padded: the result is (..., blocks * ceil(N / blocks / width), K,
    width), and panel ``p`` holds block ``p // per_block``'s columns from
    ``(p % per_block) * width`` on. No panel straddles two gates, so a part
    of the hidden units owns whole panels of every gate, whatever the hidden
    size.

    A matrix product that walks one panel down its K rows reads memory at
    unit stride. The result is cache-line aligned, so every panel row is too.
    """
    *lead, n_inner, n_cols = w_t.shape
    width = width or tile_columns(w_t.dtype)
    block_cols = n_cols // blocks
    per_block = -(-block_cols // width)
    panels = aligned_zeros((*lead, blocks * per_block, n_inner, width), w_t.dtype)
    for block in range(blocks):
        for b in range(per_block):
            lo = block * block_cols + b * width
            hi = block * block_cols + min(block_cols, (b + 1) * width)
            panels[..., block * per_block + b, :, :hi - lo] = w_t[..., lo:hi]
    return panels


def weight_from_column_panels(panels: np.ndarray, n_inner: int, n_cols: int, blocks: int,
                              group: int = 1) -> np.ndarray:
    """Torch's (N, K) weight back from one direction's column panels
    (n_panels, G, group * width): the inverse of :func:`column_panels` (with
    ``group`` consecutive K rows of a column stored side by side, as the int8
    (4) and bfloat16 (2) panels do). A fresh C-contiguous array."""
    n_panels, n_groups, row = panels.shape
    width = row // group
    per_block = n_panels // blocks
    block_cols = n_cols // blocks
    # (blocks, per_block, G, width, group) -> (blocks, G * group, per_block * width)
    cols = panels.reshape(blocks, per_block, n_groups, width, group).transpose(0, 2, 4, 1, 3)
    cols = cols.reshape(blocks, n_groups * group, per_block * width)[:, :n_inner, :block_cols]
    return np.ascontiguousarray(np.concatenate(list(cols), axis=1).T)


def parameter_shapes(input_size: int, hidden_size: int, num_layers: int, bias: bool,
                     bidirectional: bool, proj_size: int) -> Dict[str, Tuple[int, ...]]:
    """Torch's ``state_dict`` keys of an LSTM with their shapes, in torch's order."""
    real_hidden = proj_size if proj_size > 0 else hidden_size
    num_directions = 2 if bidirectional else 1
    shapes: Dict[str, Tuple[int, ...]] = {}
    for layer in range(num_layers):
        layer_input = input_size if layer == 0 else real_hidden * num_directions
        for direction in range(num_directions):
            suffix = f"_l{layer}" + ("_reverse" if direction == 1 else "")
            shapes["weight_ih" + suffix] = (4 * hidden_size, layer_input)
            shapes["weight_hh" + suffix] = (4 * hidden_size, real_hidden)
            if bias:
                shapes["bias_ih" + suffix] = (4 * hidden_size,)
                shapes["bias_hh" + suffix] = (4 * hidden_size,)
            if proj_size > 0:
                shapes["weight_hr" + suffix] = (proj_size, hidden_size)
    return shapes


def init_parameters(shapes: Mapping[str, Tuple[int, ...]], hidden_size: int, dtype: np.dtype,
                    seed: Any) -> Dict[str, np.ndarray]:
    """PyTorch's default initialisation: every parameter U(-k, k), k = 1/sqrt(hidden_size)."""
    rng = np.random.default_rng(seed)
    bound = 1.0 / np.sqrt(hidden_size)
    return {name: rng.uniform(-bound, bound, size=shape).astype(dtype)
            for name, shape in shapes.items()}


def checked_parameters(state: Mapping[str, Any], current: Mapping[str, np.ndarray],
                       dtype: np.dtype, strict: bool, owner: str) -> Dict[str, np.ndarray]:
    """Validate a state dict against the expected keys and shapes.

    Returns the new full parameter dict (copies, cast to ``dtype``); keys
    missing from ``state`` keep their current value when ``strict`` is False.
    """
    _check_keys(state, current, strict, owner, "Pass strict=False to load only the matching keys.")
    params = {k: v.copy() for k, v in current.items()}
    for name in current:
        if name not in state:
            continue
        value = _checked_value(state, name, current[name].shape)
        params[name] = np.array(value, dtype=dtype, order="C", copy=True)
    return params


def _check_keys(state: Any, current: Mapping[str, np.ndarray], strict: bool, owner: str,
                hint: str) -> None:
    """The mapping check and (``strict``) the missing/unexpected keys check."""
    if not isinstance(state, Mapping):
        raise TypeError(f"{owner}.load_state_dict() expects a mapping of parameter names to "
                        f"arrays, got {type(state).__name__}")
    missing = [k for k in current if k not in state]
    unexpected = [k for k in state if k not in current]
    if strict and (missing or unexpected):
        parts = []
        if missing:
            parts.append("Missing key(s) in state_dict: " + ", ".join(f'"{k}"' for k in missing))
        if unexpected:
            parts.append("Unexpected key(s) in state_dict: "
                         + ", ".join(f'"{k}"' for k in unexpected))
        raise ValueError(f"Error(s) in loading state_dict for {owner}: " + "; ".join(parts)
                         + f". {hint}")


def _checked_value(state: Mapping[str, Any], name: str, shape: Tuple[int, ...]) -> np.ndarray:
    value = to_numpy(state[name], f"state_dict[{name!r}]")
    if value.shape != shape:
        raise ValueError(f"size mismatch for {name}: copying a parameter with shape "
                         f"{value.shape}, the shape in the current model is {shape}. Build "
                         f"the model with the sizes of the checkpoint.")
    return value


def checked_int8_parameters(state: Mapping[str, Any], current: Mapping[str, np.ndarray],
                            strict: bool, owner: str) -> Dict[str, np.ndarray]:
    """Validate an int8 model's state dict (int8 weights, float32 ``*_scale``
    and biases) against the current keys and shapes; returns the new full
    dict (copies), keeping current values for keys absent when not ``strict``."""
    _check_keys(state, current, strict, owner,
                "An int8 model takes int8 weights with a float32 '<name>_scale' each, as its "
                "state_dict() gives them; pass strict=False to load only the matching keys.")
    params = {k: v.copy() for k, v in current.items()}
    for name, old in current.items():
        if name not in state:
            continue
        value = _checked_value(state, name, old.shape)
        if old.dtype == np.int8:
            if value.dtype != np.int8:
                raise TypeError(f"state_dict[{name!r}] must be int8 for an int8 model, got "
                                f"{value.dtype}; load float weights into a float32 model and "
                                f"call quantize('int8')")
        elif name.endswith("_scale"):
            value = value.astype(np.float32)
            if not (np.isfinite(value).all() and (value > 0).all()):
                raise ValueError(f"state_dict[{name!r}] must hold positive finite scales, got "
                                 f"min {value.min() if value.size else None}; each is the "
                                 f"float32 scale of one output row of the int8 weight")
        params[name] = np.array(value, dtype=old.dtype, order="C", copy=True)
    return params


def checked_bfloat16_parameters(state: Mapping[str, Any], current: Mapping[str, np.ndarray],
                                strict: bool, owner: str) -> Dict[str, np.ndarray]:
    """Validate a bfloat16 model's state dict (uint16 weights, float32
    biases; bfloat16 torch tensors are taken as they are) against the current
    keys and shapes; returns the new full dict (copies), keeping current
    values for keys absent when not ``strict``."""
    _check_keys(state, current, strict, owner,
                "A bfloat16 model takes its weights as uint16 bit patterns and float32 biases, "
                "as its state_dict() gives them; pass strict=False to load only the matching "
                "keys.")
    params = {k: v.copy() for k, v in current.items()}
    for name, old in current.items():
        if name not in state:
            continue
        value = state[name]
        if is_torch_bfloat16(value):
            bits = torch_bfloat16_bits(value)
            value = bits if old.dtype == np.uint16 else widen(bits)
        value = _checked_value({name: value}, name, old.shape)
        if old.dtype == np.uint16 and value.dtype != np.uint16:
            raise TypeError(f"state_dict[{name!r}] must be uint16 for a bfloat16 model, got "
                            f"{value.dtype}: the bfloat16 bit patterns (a np.uint16 array whose "
                            f"value << 16 viewed as float32 is the weight), as state_dict() "
                            f"gives them; load float weights into a float32 model and call "
                            f"quantize('bfloat16')")
        params[name] = np.array(value, dtype=old.dtype, order="C", copy=True)
    return params


def _layer_suffixes(layer: int, bidirectional: bool) -> List[str]:
    return [f"_l{layer}{s}" for s in (["", "_reverse"] if bidirectional else [""])]


def _summed_bias(params: Mapping[str, np.ndarray], names: List[str], hidden_size: int,
                 dtype: np.dtype) -> np.ndarray:
    """(D, 4H) ``bias_ih + bias_hh`` of a layer's directions (zeros without bias)."""
    if ("bias_ih" + names[0]) in params:
        bias = np.stack([params["bias_ih" + n] + params["bias_hh" + n] for n in names])
    else:
        bias = np.zeros((len(names), 4 * hidden_size), dtype=dtype)
    return aligned_copy(bias.astype(dtype, copy=False))


def int8_kernel_layout(params: Mapping[str, np.ndarray], scales: Mapping[str, np.ndarray],
                       num_layers: int, bidirectional: bool, hidden_size: int, proj_size: int,
                       qmax: int, per_tensor: bool, kernels: Optional[str] = None
                       ) -> List[LayerWeights]:
    """The kernel layout of an int8 model: ``params`` holds torch's int8
    weights (and float32 biases) by torch's names, ``scales`` the float32
    per-row scale of each weight. See ``formats.int8`` for ``qmax``,
    ``per_tensor`` and ``kernels``."""
    layers = []
    for layer in range(num_layers):
        names = _layer_suffixes(layer, bidirectional)

        def panels(key, blocks):
            q_t = np.stack([params[key + n].T for n in names])
            return int8_panels(q_t, np.stack([scales[key + n] for n in names]), blocks, qmax,
                               per_tensor, kernels)

        bias = _summed_bias(params, names, hidden_size, np.dtype(np.float32))
        w_hr = (panels("weight_hr", 1) if proj_size > 0 else
                int8_panels(np.zeros((len(names), 0, 0), np.int8),
                            np.zeros((len(names), 0), np.float32), 1, qmax, per_tensor, kernels))
        layers.append(LayerWeights(panels("weight_ih", 4), bias, panels("weight_hh", 4), w_hr))
    return layers


def bfloat16_kernel_layout(params: Mapping[str, np.ndarray], num_layers: int,
                           bidirectional: bool, hidden_size: int, proj_size: int,
                           kernels: Optional[str] = None) -> List[LayerWeights]:
    """The kernel layout of a bfloat16 model: ``params`` holds torch's weights
    as uint16 bit patterns (and float32 biases) by torch's names. See
    ``formats.bfloat16`` for ``kernels``."""
    layers = []
    for layer in range(num_layers):
        names = _layer_suffixes(layer, bidirectional)

        def panels(key, blocks):
            return bfloat16_panels(np.stack([params[key + n].T for n in names]), blocks, kernels)

        bias = _summed_bias(params, names, hidden_size, np.dtype(np.float32))
        w_hr = (panels("weight_hr", 1) if proj_size > 0 else
                bfloat16_panels(np.zeros((len(names), 0, 0), np.uint16), 1, kernels))
        layers.append(LayerWeights(panels("weight_ih", 4), bias, panels("weight_hh", 4), w_hr))
    return layers


def kernel_layout(params: Mapping[str, np.ndarray], num_layers: int, bidirectional: bool,
                  hidden_size: int, proj_size: int, dtype: np.dtype) -> List[LayerWeights]:
    """Build the per-layer kernel layout from torch-named parameters."""
    layers = []
    for layer in range(num_layers):
        names = _layer_suffixes(layer, bidirectional)
        w_ih_t = np.stack([params["weight_ih" + n].T for n in names])
        w_hh_t = np.stack([params["weight_hh" + n].T for n in names])
        bias = _summed_bias(params, names, hidden_size, dtype)
        if proj_size > 0:
            w_hr_t = np.stack([params["weight_hr" + n].T for n in names])
        else:
            w_hr_t = np.zeros((len(names), 0, 0), dtype=dtype)
        w_ih_t, w_hh_t, w_hr_t = (a.astype(dtype, copy=False) for a in (w_ih_t, w_hh_t, w_hr_t))
        layers.append(LayerWeights(column_panels(w_ih_t, blocks=4), bias,
                                   column_panels(w_hh_t, blocks=4), column_panels(w_hr_t)))
    return layers
