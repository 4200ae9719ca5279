"""``LSTM.from_onnx``: ONNX ``LSTM`` nodes and their initializers as an nblstm LSTM.

ONNX's LSTM operator holds, per direction ``d``, ``W`` (D, 4H, I), ``R``
(D, 4H, H), ``B`` (D, 8H) = (Wb, Rb) and peepholes ``P`` (D, 3H), with the
gates in the order (i, o, f, c); torch's order is (i, f, g, o). One node is one
layer; ``torch.onnx.export`` writes a multi-layer LSTM as a chain of nodes
joined by ``Transpose(perm=[0, 2, 1, 3])`` + ``Reshape`` (bidirectional) or
``Squeeze`` (one direction), which loads as one multi-layer model.

Reading a model needs the ``onnx`` package (``pip install nblstm[onnx]``);
nothing in the file is executed.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, NamedTuple, Optional

import numpy as np

#: ONNX (i, o, f, c) blocks in torch's (i, f, g, o) order.
_TORCH_GATES = (0, 2, 3, 1)
#: ONNX's peepholes (i, o, f) in nblstm's (i, f, o) order.
_PEEPHOLE_ORDER = (0, 2, 1)
_DEFAULT_ACTIVATIONS = ("Sigmoid", "Tanh", "Tanh")
_DIRECTIONS = {"forward": 1, "reverse": 1, "bidirectional": 2}


class _NodeLayer(NamedTuple):
    """One LSTM node, read and checked: torch-named parameters of one layer
    (``layer`` index 0) and the node's options."""

    name: str
    direction: str
    layout: int
    input_size: int
    hidden_size: int
    params: Dict[str, np.ndarray]
    peepholes: Optional[np.ndarray]  # (D, 3, H), nblstm's (i, f, o)
    clip: Optional[float]
    input_forget: bool


def _import_onnx():
    try:
        import onnx
        from onnx import numpy_helper  # noqa: F401
    except ImportError as error:  # pragma: no cover - onnx is in the test extras
        raise ImportError("LSTM.from_onnx() needs the onnx package: pip install "
                          "'nblstm[onnx]' (or pip install onnx)") from error
    return onnx


def _load(onnx: Any, model_or_path: Any) -> Any:
    if isinstance(model_or_path, onnx.ModelProto):
        return model_or_path
    if isinstance(model_or_path, (str, os.PathLike)):
        path = os.fspath(model_or_path)
        if os.path.isdir(path):
            raise ValueError(f"LSTM.from_onnx(): {path!r} is a directory; pass an .onnx file")
        try:
            return onnx.load(path)
        except FileNotFoundError:
            raise
        except Exception as error:  # protobuf's DecodeError and friends
            raise ValueError(f"LSTM.from_onnx(): {path!r} is not a readable ONNX model "
                             f"(truncated or corrupt?): {error}") from error
    raise TypeError(f"LSTM.from_onnx() expects an onnx.ModelProto or the path of an .onnx "
                    f"file, got {type(model_or_path).__name__}")


def _constants(onnx: Any, graph: Any) -> Dict[str, np.ndarray]:
    """Values known without running the graph: initializers and Constant nodes."""
    from onnx import numpy_helper

    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute:
            attribute = node.attribute[0]
            if attribute.name == "value":
                values[node.output[0]] = numpy_helper.to_array(attribute.t)
    return values


def _attributes(onnx: Any, node: Any) -> Dict[str, Any]:
    values = {}
    for attribute in node.attribute:
        value = onnx.helper.get_attribute_value(attribute)
        if isinstance(value, bytes):
            value = value.decode()
        elif isinstance(value, list):
            value = [v.decode() if isinstance(v, bytes) else v for v in value]
        values[attribute.name] = value
    return values


def _input(node: Any, index: int) -> str:
    return node.input[index] if len(node.input) > index else ""


def _constant_input(node: Any, index: int, label: str, constants: Dict[str, np.ndarray],
                    shape: tuple) -> Optional[np.ndarray]:
    """Input ``index`` of ``node`` as a float array of ``shape``; None if absent."""
    name = _input(node, index)
    if not name:
        return None
    if name not in constants:
        raise ValueError(f"LSTM.from_onnx(): input {label} ({name!r}) of node {node.name!r} is "
                         f"computed by the graph, not stored in it; nblstm needs the weights as "
                         f"initializers or Constant nodes (fold constants before exporting)")
    value = constants[name]
    if value.dtype.kind != "f":
        raise ValueError(f"LSTM.from_onnx(): input {label} of node {node.name!r} holds "
                         f"{value.dtype} values; ONNX LSTM weights are floats")
    if value.shape != shape:
        raise ValueError(f"LSTM.from_onnx(): input {label} of node {node.name!r} has shape "
                         f"{value.shape}, expected {shape} for its direction and sizes")
    return value


def _read_node(onnx: Any, node: Any, constants: Dict[str, np.ndarray]) -> _NodeLayer:
    attrs = _attributes(onnx, node)
    direction = attrs.get("direction", "forward")
    if direction not in _DIRECTIONS:
        raise ValueError(f"LSTM.from_onnx(): node {node.name!r} has direction={direction!r}; "
                         f"ONNX allows 'forward', 'reverse' and 'bidirectional'")
    n_dirs = _DIRECTIONS[direction]
    activations = tuple(attrs.get("activations", _DEFAULT_ACTIVATIONS * n_dirs))
    if activations != _DEFAULT_ACTIVATIONS * n_dirs:
        raise ValueError(f"LSTM.from_onnx(): node {node.name!r} uses activations "
                         f"{list(activations)}; nblstm runs ONNX's defaults only "
                         f"({list(_DEFAULT_ACTIVATIONS)} per direction, as torch's LSTM)")
    layout = int(attrs.get("layout", 0))
    if layout not in (0, 1):
        raise ValueError(f"LSTM.from_onnx(): node {node.name!r} has layout={layout}; ONNX "
                         f"allows 0 (time-major) and 1 (batch-major)")
    w_name = _input(node, 1)
    if w_name not in constants:
        _constant_input(node, 1, "W", constants, ())  # raises: not stored
    w_shape = constants[w_name].shape
    if len(w_shape) != 3 or w_shape[0] != n_dirs or w_shape[1] % 4 or w_shape[1] == 0:
        raise ValueError(f"LSTM.from_onnx(): input W of node {node.name!r} has shape {w_shape}, "
                         f"expected ({n_dirs}, 4 * hidden_size, input_size)")
    hidden, n_inputs = w_shape[1] // 4, w_shape[2]
    if int(attrs.get("hidden_size", hidden)) != hidden:
        raise ValueError(f"LSTM.from_onnx(): node {node.name!r} says hidden_size="
                         f"{attrs['hidden_size']} but its W holds {hidden} units per gate")
    w = _constant_input(node, 1, "W", constants, (n_dirs, 4 * hidden, n_inputs))
    r = _constant_input(node, 2, "R", constants, (n_dirs, 4 * hidden, hidden))
    b = _constant_input(node, 3, "B", constants, (n_dirs, 8 * hidden))
    p = _constant_input(node, 7, "P", constants, (n_dirs, 3 * hidden))
    params = {}
    for d in range(n_dirs):
        suffix = "_reverse" if direction == "bidirectional" and d == 1 else ""
        params["weight_ih_l0" + suffix] = _torch_gates(w[d])
        params["weight_hh_l0" + suffix] = _torch_gates(r[d])
        if b is not None:
            params["bias_ih_l0" + suffix] = _torch_gates(b[d, :4 * hidden])
            params["bias_hh_l0" + suffix] = _torch_gates(b[d, 4 * hidden:])
    peepholes = None
    if p is not None and np.any(p):
        peepholes = p.reshape(n_dirs, 3, hidden)[:, list(_PEEPHOLE_ORDER)]
    clip = attrs.get("clip")
    if clip is not None and not (float(clip) > 0.0):
        raise ValueError(f"LSTM.from_onnx(): node {node.name!r} has clip={clip}; ONNX's clip "
                         f"is a positive threshold")
    return _NodeLayer(node.name, direction, layout, n_inputs, hidden, params, peepholes,
                      None if clip is None else float(clip), bool(attrs.get("input_forget", 0)))


def _torch_gates(value: np.ndarray) -> np.ndarray:
    """(4H, ...) in ONNX's gate order to torch's."""
    blocks = np.split(value, 4, axis=0)
    return np.concatenate([blocks[k] for k in _TORCH_GATES], axis=0)


def _consumers(graph: Any, name: str) -> List[Any]:
    return [n for n in graph.node if name in n.input]


def _axes(onnx: Any, node: Any, constants: Dict[str, np.ndarray]) -> Optional[List[int]]:
    """A Squeeze's axes (an attribute before opset 13, an input since)."""
    attrs = _attributes(onnx, node)
    if "axes" in attrs:
        return list(attrs["axes"])
    name = _input(node, 1)
    return constants[name].astype(int).tolist() if name in constants else None


def _feeds_next_layer(onnx: Any, graph: Any, y_name: str, n_dirs: int, target: Any,
                      constants: Dict[str, np.ndarray]) -> bool:
    """Whether ``y_name`` (an LSTM's Y, (T, D, B, H)) reaches ``target``'s X
    through the exporter's reshaping into (T, B, D * H), and nothing else."""
    chain = []
    name = y_name
    while True:
        # The exporter also reads the shape of the next layer's input (to
        # build its zero initial state): that uses no values.
        users = [n for n in _consumers(graph, name) if n.op_type != "Shape"]
        if len(users) != 1:
            return False
        user = users[0]
        if user is target:
            break
        if user.op_type not in ("Transpose", "Reshape", "Squeeze") or len(chain) == 2:
            return False
        chain.append(user)
        name = user.output[0]
    if target.input[0] != name:
        return False
    ops = [n.op_type for n in chain]
    if ops == ["Transpose", "Reshape"]:
        perm = _attributes(onnx, chain[0]).get("perm")
        shape = constants.get(_input(chain[1], 1))
        return (list(perm or []) == [0, 2, 1, 3] and shape is not None
                and shape.tolist() == [0, 0, -1])
    if n_dirs == 1 and ops == ["Squeeze"]:
        return _axes(onnx, chain[0], constants) == [1]
    return False


def _exporter_stack(onnx: Any, graph: Any, nodes: List[Any],
                    constants: Dict[str, np.ndarray]) -> Optional[List[Any]]:
    """The LSTM nodes in layer order if they form one chain as
    ``torch.onnx.export`` writes a multi-layer LSTM, else None."""
    targets = {}
    for node in nodes:
        n_dirs = _DIRECTIONS.get(_attributes(onnx, node).get("direction", "forward"), 1)
        following = [t for t in nodes if t is not node and _feeds_next_layer(
            onnx, graph, node.output[0], n_dirs, t, constants)]
        if len(following) > 1:
            return None
        targets[id(node)] = following[0] if following else None
    fed = {id(t) for t in targets.values() if t is not None}
    firsts = [n for n in nodes if id(n) not in fed]
    if len(firsts) != 1:
        return None
    order = [firsts[0]]
    while targets[id(order[-1])] is not None:
        order.append(targets[id(order[-1])])
    return order if len(order) == len(nodes) else None


def _select(onnx: Any, graph: Any, node: Any, constants: Dict[str, np.ndarray]) -> List[Any]:
    nodes = [n for n in graph.node if n.op_type == "LSTM" and n.domain in ("", "ai.onnx")]
    names = ", ".join(repr(n.name) for n in nodes) or "none"
    if not nodes:
        raise ValueError("LSTM.from_onnx(): the model has no LSTM node (ops found: "
                         f"{sorted({n.op_type for n in graph.node})})")
    if node is None:
        if len(nodes) == 1:
            return nodes
        stack = _exporter_stack(onnx, graph, nodes, constants)
        if stack is None:
            raise ValueError(f"LSTM.from_onnx(): the model has {len(nodes)} LSTM nodes ({names}) "
                             f"that are not one torch-exported stack; pass node= one of them")
        return stack
    if isinstance(node, str):
        chosen = [n for n in nodes if n.name == node]
        if not chosen:
            raise ValueError(f"LSTM.from_onnx(): no LSTM node named {node!r}; LSTM nodes: "
                             f"{names}")
        return chosen
    raise TypeError(f"node must be the name (str) of an LSTM node, or None; got {node!r}")


def lstm_from_onnx(cls: Any, model_or_path: Any, node: Optional[str] = None) -> Any:
    """See :meth:`nblstm.LSTM.from_onnx`."""
    onnx = _import_onnx()
    graph = _load(onnx, model_or_path).graph
    constants = _constants(onnx, graph)
    layers = [_read_node(onnx, n, constants) for n in _select(onnx, graph, node, constants)]
    first = layers[0]
    for below, layer in zip(layers, layers[1:]):
        expected = _DIRECTIONS[below.direction] * below.hidden_size
        if (layer.direction, layer.layout, layer.hidden_size) != (
                first.direction, first.layout, first.hidden_size) or layer.input_size != expected:
            raise ValueError(f"LSTM.from_onnx(): node {layer.name!r} does not continue the stack "
                             f"of {first.name!r} (direction, layout, hidden_size or input size "
                             f"differ); pass node= to load one node")
    dtype = np.float64 if first.params["weight_ih_l0"].dtype == np.float64 else np.float32
    bias = any("bias_ih_l0" in layer.params for layer in layers)
    state = {}
    for k, layer in enumerate(layers):
        for key, value in layer.params.items():
            state[key.replace("_l0", f"_l{k}")] = value
            if bias and key.startswith("weight_ih") and "bias_ih_l0" not in layer.params:
                # A node of the stack without B: ONNX's default, zeros.
                for name in ("bias_ih", "bias_hh"):
                    state[key.replace("weight_ih_l0", f"{name}_l{k}")] = np.zeros(
                        4 * first.hidden_size, dtype)
    lstm = cls(first.input_size, first.hidden_size, len(layers), bias, first.layout == 1, 0.0,
               first.direction == "bidirectional", dtype=dtype)
    lstm.load_state_dict(state)
    if first.direction == "reverse":
        lstm._time_order = "reverse"
    from ..lstm._gate_options import layer_options

    n_dirs = _DIRECTIONS[first.direction]
    lstm._set_gate_options([layer_options(layer.peepholes, layer.clip, layer.input_forget,
                                          n_dirs, first.hidden_size, dtype) for layer in layers])
    return lstm
