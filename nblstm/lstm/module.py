"""``nblstm.LSTM``: ``torch.nn.LSTM`` inference on NumPy arrays."""

from __future__ import annotations

from typing import Any, Mapping, Optional, Tuple, Union

import numpy as np

from ..packing import PackedSequence
from ..packing._packed import reversed_rows
from ..packing._validate import as_packed
from . import _validation as check
from ._base import _RecurrentModule, model_dtype, stored_format
from ._state_dict_config import select
from ._driver import lstm_forward
from ._gate_options import describe
from .stream import Stream
from ._stepping import StepPlan, step_plan
from .._threads import get_num_threads
from ._torch_quantized import quantized_lstm_parameters
from .formats.bfloat16 import is_torch_bfloat16
from ._weights import init_parameters, parameter_shapes

State = Tuple[np.ndarray, np.ndarray]

#: How a single-direction model walks time (set by the loaders, never by the
#: constructor, which follows torch): ``"forward"``; ``"reverse"`` (ONNX's
#: ``direction="reverse"``: each sequence read last step first, its output
#: aligned with the input's steps); ``"backwards"`` (Keras's
#: ``go_backwards``: read likewise, output in the order it was computed).
TIME_ORDERS = ("forward", "reverse", "backwards")


class LSTM(_RecurrentModule):
    """A multi-layer LSTM with PyTorch's ``torch.nn.LSTM`` interface and results.

    Parameters
    ----------
    input_size : int
        Features of the input, ``H_in``.
    hidden_size : int
        Features of the cell state, ``H``.
    num_layers : int, default 1
        Stacked layers; each layer's output is the next layer's input.
    bias : bool, default True
        Whether the gates have the biases ``b_ih`` and ``b_hh``.
    batch_first : bool, default False
        Padded input and output are ``(N, L, *)`` instead of ``(L, N, *)``.
        Does not apply to ``h_n``/``c_n`` or packed input.
    dropout : float, default 0.0
        Probability of zeroing an element of each layer's output except the
        last, applied only in training mode (see :meth:`train`).
    bidirectional : bool, default False
        Add a second direction that reads the sequences backwards.
    proj_size : int, default 0
        If positive, ``h`` is projected to this size by ``weight_hr``.
    dtype : np.float32 or np.float64, keyword-only
    seed : keyword-only
        Seed of :func:`numpy.random.default_rng` used for the default
        initialisation U(-1/sqrt(H), 1/sqrt(H)) and for dropout masks.

    Notes
    -----
    ``lstm(input, hx=None)`` returns ``(output, (h_n, c_n))`` exactly as
    ``torch.nn.LSTM.forward`` does; see :meth:`forward`.

    A single-direction model loaded from ONNX (``direction="reverse"``) or
    Keras (``go_backwards=True``) reads each sequence last step first;
    ``time_order`` says which (``"forward"``, ``"reverse"`` or ``"backwards"``,
    see :data:`TIME_ORDERS`).
    """

    _time_order = "forward"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, proj_size: int = 0, *,
                 dtype: Any = np.float32, seed: Any = None) -> None:
        self.input_size = check.check_size(input_size, "input_size")
        self.hidden_size = check.check_size(hidden_size, "hidden_size")
        self.num_layers = check.check_size(num_layers, "num_layers")
        self.bias = check.check_flag(bias, "bias")
        self.batch_first = check.check_flag(batch_first, "batch_first")
        self.dropout = check.check_dropout(dropout)
        self.bidirectional = check.check_flag(bidirectional, "bidirectional")
        self.proj_size = check.check_proj_size(proj_size, self.hidden_size)
        self.dtype = check.check_dtype(dtype)
        self.training = False
        self._rng = np.random.default_rng(seed)
        shapes = parameter_shapes(self.input_size, self.hidden_size, self.num_layers,
                                  self.bias, self.bidirectional, self.proj_size)
        self._set_parameters(init_parameters(shapes, self.hidden_size, self.dtype, self._rng))

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def time_order(self) -> str:
        """``"forward"`` (torch's LSTMs), or for a single direction loaded from
        ONNX ``"reverse"`` (each sequence read from its last step, the output
        aligned with the input's steps) or from Keras ``"backwards"``
        (``go_backwards``: read likewise, output in the order computed, so
        ``output[k]`` follows input step ``L - 1 - k``)."""
        return self._time_order

    @property
    def output_size(self) -> int:
        """``H_out``: ``proj_size`` if set, else ``hidden_size``."""
        return self.proj_size or self.hidden_size

    @classmethod
    def from_torch(cls, module: Any, *, dtype: Any = None) -> "LSTM":
        """Build an LSTM with the configuration and weights of a torch LSTM.

        Parameters
        ----------
        module : torch.nn.LSTM or torch.ao.nn.quantized.dynamic.LSTM
            A float module gives a float model (``dtype`` defaults to the
            module's own, float32 or float64). One whose parameters are
            bfloat16 (``module.to(torch.bfloat16)``) gives a bfloat16 model
            with exactly those weights (biases widened to float32; with a
            ``dtype``, a float model of the widened values). A dynamically quantised one
            (``torch.ao.quantization.quantize_dynamic(model, {nn.LSTM},
            dtype=torch.qint8)``) gives an int8 model with torch's weights,
            scales and numerics: the activations of each product quantised
            per tensor (a layer's whole input at once, ``h`` once a step) to
            uint8 in [0, 127] (fbgemm's reduce-range rule), so that it gives
            torch's answers (see ``_torch_quantized``).

        Raises
        ------
        TypeError
            If ``module`` is neither.
        ValueError
            For quantised weights with non-zero zero points, or ``dtype``
            other than float32 for a quantised module.
        """
        if hasattr(module, "_all_weight_values") and getattr(module, "mode", None) == "LSTM":
            return cls._from_torch_quantized(module, dtype)
        if getattr(module, "mode", None) != "LSTM" or not hasattr(module, "state_dict"):
            raise TypeError(f"LSTM.from_torch() expects a torch.nn.LSTM or a "
                            f"torch.ao.nn.quantized.dynamic.LSTM, got {type(module).__name__}")
        state = module.state_dict()
        bf16 = is_torch_bfloat16(next(iter(state.values())))
        keep_bf16 = bf16 and dtype is None
        if dtype is None:
            dtype = "float32" if bf16 else str(next(iter(state.values())).dtype).replace(
                "torch.", "")
        lstm = cls(module.input_size, module.hidden_size, module.num_layers, bool(module.bias),
                   bool(module.batch_first), float(module.dropout), bool(module.bidirectional),
                   int(getattr(module, "proj_size", 0)), dtype=dtype)
        if keep_bf16:
            lstm = lstm.quantize("bfloat16")
        elif bf16:
            state = {k: v.float() for k, v in state.items()}
        lstm.load_state_dict(state)
        return lstm

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any], prefix: str = "", *,
                        batch_first: bool = False, dtype: Any = None) -> "LSTM":
        """Build the LSTM stored under ``prefix`` in a whole model's state dict.

        The configuration (``input_size``, ``hidden_size``, ``num_layers``,
        ``bias``, ``bidirectional``, ``proj_size``) is read from the keys and
        shapes, e.g. ``encoder.rnn.weight_ih_l0`` (4H, I), ``weight_hr_l0``
        (P, H), ``..._reverse``; keys of other modules are ignored.

        Parameters
        ----------
        state : mapping of str to array
            ``model.state_dict()`` of a torch model (CPU tensors), the result
            of :func:`nblstm.load_state_dict`, or any mapping of arrays. Float
            weights give a float model of their dtype (float16: float32);
            bfloat16 ones (torch tensors, or uint16 bit patterns as a bfloat16
            model's ``state_dict()`` gives) a bfloat16 model; int8 ones with
            ``<name>_scale`` (an int8 model's ``state_dict()``) an int8 model.
        prefix : str, default ""
            The LSTM's key prefix, such as ``"encoder.rnn."`` (the final dot
            may be left out). Empty: the only LSTM of ``state``.
        batch_first : bool, default False
            Not stored in a state dict: as the constructor's.
        dtype : np.float32 or np.float64, optional
            The model's dtype instead of the weights' own (bfloat16 weights
            are then widened; int8 weights need float32). ``dropout`` is 0.

        Raises
        ------
        ValueError
            If no LSTM is under ``prefix``, or there are several and no
            ``prefix`` (both messages list the prefixes found), or a shape
            of that LSTM is inconsistent (see :meth:`load_state_dict`).
        TypeError
            If ``state`` is not a mapping or ``prefix`` not a str.
        """
        _, config, entries = select(state, prefix, cell=False)
        fmt = stored_format(entries)
        lstm = cls(**config._asdict(), batch_first=batch_first,
                   dtype=model_dtype(fmt, dtype, "LSTM"))
        return lstm._load_entries(entries, fmt, dtype)

    @classmethod
    def _from_torch_quantized(cls, module: Any, dtype: Any) -> "LSTM":
        if dtype is not None and check.check_dtype(dtype) != np.float32:
            raise ValueError(f"a quantized torch LSTM becomes an int8 model with float32 input "
                             f"and output; got dtype={dtype!r}, pass dtype=None or np.float32")
        found = quantized_lstm_parameters(module)
        params, scales = dict(found["biases"]), {}
        for name, values in found["weights"].items():
            if np.any(found["zero_points"][name] != 0):
                raise ValueError(f"{name} of the quantized LSTM has non-zero zero points; "
                                 f"nblstm's int8 weights are symmetric (torch's default "
                                 f"dynamic qconfig gives zero points of 0)")
            params[name] = values
            scales[name] = np.broadcast_to(np.asarray(found["scales"][name], np.float32),
                                           values.shape[:1]).copy()
        lstm = cls(found["input_size"], found["hidden_size"], found["num_layers"], found["bias"],
                   found["batch_first"], float(getattr(module, "dropout", 0.0)),
                   found["bidirectional"], found["proj_size"], dtype=np.float32)
        return lstm._int8_copy(params, scales, (found["activation_qmax"], True))

    @classmethod
    def from_onnx(cls, model_or_path: Any, node: Optional[str] = None) -> "LSTM":
        """Build an LSTM from the ``LSTM`` node(s) of an ONNX model.

        Needs the ``onnx`` package (``pip install nblstm[onnx]``).

        Parameters
        ----------
        model_or_path : onnx.ModelProto, str or os.PathLike
        node : str, optional
            The name of the LSTM node to load. By default the model's only
            LSTM node, or all of them when they form the chain
            ``torch.onnx.export`` writes for a multi-layer ``nn.LSTM`` (one
            node per layer, joined by Transpose + Reshape or Squeeze): that
            loads as one multi-layer model.

        Returns
        -------
        LSTM
            With the node's weights (ONNX's gate order (i, o, f, c) and two
            biases mapped to torch's), ``bidirectional`` for
            ``direction="bidirectional"``, :attr:`time_order` ``"reverse"``
            for ``direction="reverse"``, ``batch_first`` for ``layout=1``.
            ONNX's peepholes ``P``, ``clip`` and ``input_forget`` are kept
            and run as ONNX Runtime runs them; they are not part of
            :meth:`state_dict`, which holds torch's keys only.

        Notes
        -----
        The call is torch's: ``y, (h_n, c_n) = lstm(x, hx)``. ONNX's outputs
        are ``Y = y.reshape(L, N, D, H).transpose(0, 2, 1, 3)`` (``layout=1``:
        ``y.reshape(N, L, D, H)``), ``Y_h = h_n`` and ``Y_c = c_n`` (``layout=1``:
        transposed to (N, D, H)); ``initial_h``/``initial_c`` are ``hx``, and
        ``sequence_lens`` is a :class:`~nblstm.PackedSequence` (outputs past
        a sequence's length are zeros after ``pad_packed_sequence``, as
        ONNX Runtime gives them).

        Raises
        ------
        ValueError
            For a model with no LSTM node, several that are not one exported
            stack (and no ``node``), an unknown ``node`` (the message lists
            the LSTM nodes), activations other than ONNX's defaults (Sigmoid,
            Tanh, Tanh), weights the graph computes instead of storing, or
            inconsistent shapes; a file that is not an ONNX model.
        TypeError
            If ``model_or_path`` is neither a model nor a path.
        """
        from ..io.onnx_lstm import lstm_from_onnx
        return lstm_from_onnx(cls, model_or_path, node)

    @classmethod
    def from_keras(cls, layer: Any) -> "LSTM":
        """Build an LSTM with the configuration and weights of a Keras 3
        ``keras.layers.LSTM`` or ``keras.layers.Bidirectional`` of one (see
        :func:`nblstm.io.keras_lstm.lstm_from_keras`)."""
        from ..io.keras_lstm import lstm_from_keras
        return lstm_from_keras(cls, layer)

    def stream(self, batch_size: int = 1, hx: Optional[State] = None) -> "Stream":
        """A :class:`~nblstm.lstm.stream.Stream` that feeds this (unidirectional)
        model ``batch_size`` sequences chunk by chunk, keeping every layer's
        ``(h, c)`` between calls; ``hx`` as :meth:`forward`'s (zeros when
        omitted). A bidirectional model is a ``ValueError``: its backward
        direction needs each sequence's end first."""
        return Stream(self, batch_size, hx)

    def __repr__(self) -> str:
        extra = "".join([
            f", num_layers={self.num_layers}" if self.num_layers != 1 else "",
            ", bias=False" if not self.bias else "",
            ", batch_first=True" if self.batch_first else "",
            f", dropout={self.dropout}" if self.dropout else "",
            ", bidirectional=True" if self.bidirectional else "",
            f", proj_size={self.proj_size}" if self.proj_size else "",
        ])
        notes = [] if self._time_order == "forward" else [f"time_order={self._time_order!r}"]
        if self._gate_options is not None:
            notes.append("ONNX gates: " + "; ".join(
                f"layer {k}: {describe(o)}" for k, o in enumerate(self._gate_options)
                if o is not None))
        note = "  # " + ", ".join(notes) if notes else ""
        return (f"LSTM({self.input_size}, {self.hidden_size}{extra}, "
                f"dtype=np.{self.dtype.name}){note}")

    def __call__(self, input: Any, hx: Optional[State] = None, out: Any = None
                 ) -> Tuple[Union[np.ndarray, PackedSequence], State]:
        return self.forward(input, hx, out)

    def forward(self, input: Any, hx: Optional[State] = None, out: Any = None
                ) -> Tuple[Union[np.ndarray, PackedSequence], State]:
        """Run the LSTM.

        Parameters
        ----------
        input : array_like or PackedSequence
            ``(L, N, H_in)``, ``(N, L, H_in)`` with ``batch_first``,
            unbatched ``(L, H_in)``, or a :class:`PackedSequence` whose
            ``data`` is ``(total_rows, H_in)``.
        hx : (h_0, c_0), optional
            ``h_0``: ``(D * num_layers, N, H_out)``, ``c_0``:
            ``(D * num_layers, N, H)`` (2-D for unbatched input), in the
            caller's batch order. Zeros when omitted.
        out : (output, (h_n, c_n)), optional
            Arrays to write the results into and return, shaped as the
            results (the module's dtype, C-contiguous, writeable; padded
            input only). ``h_n``/``c_n`` may be ``hx`` itself, and any may
            overlap ``input`` (read first); any other overlap is an error.

        Returns
        -------
        output : ndarray or PackedSequence
            ``(L, N, D * H_out)`` (``(N, L, ...)`` with ``batch_first``,
            ``(L, D * H_out)`` unbatched), or a PackedSequence with the
            input's ``batch_sizes`` and indices.
        (h_n, c_n) : ndarrays
            Final states, shaped like ``h_0``/``c_0``, in the caller's order.

        Notes
        -----
        Repeated calls with input of the last call's shape (an ndarray of
        the module's dtype, C-contiguous; ``hx`` and ``out`` likewise) skip
        the checks that cannot fail; where the work is a few steps of a
        single direction they run the steps' kernel directly (see
        :meth:`stream` for feeding a sequence as it arrives).
        """
        result = self._fast_call(input, hx, out)
        if result is not None:
            return result
        if isinstance(input, PackedSequence) or hasattr(input, "batch_sizes"):
            if out is not None:
                raise ValueError("out= takes padded input only; a PackedSequence's output is "
                                 "a new PackedSequence")
            return self._forward_packed(input, hx)  # ours, or torch's PackedSequence
        x = check.as_float_array(input, "input", self.dtype)
        check.check_input_features(x, "input", self.input_size, (2, 3),
                                   "(L, H_in) unbatched, or (L, N, H_in) / (N, L, H_in) "
                                   "with batch_first")
        unbatched = x.ndim == 2
        steps = x.shape[1] if self.batch_first and not unbatched else x.shape[0]
        batch = 1 if unbatched else x.shape[0 if self.batch_first else 1]
        targets = None if out is None else self._check_out(out, x, hx, steps, batch, unbatched)
        if unbatched:
            x = x[:, None, :]
        elif self.batch_first:
            x = x.transpose(1, 0, 2)
        if x.flags.c_contiguous:  # time-major padded input is already packed rows
            x = x.reshape(steps * batch, self.input_size)
        h0, c0 = self._initial_state(hx, batch, unbatched)
        batch_sizes = np.full(steps, batch, dtype=np.int64)
        output, h_n, c_n = self._run(x, batch_sizes, h0, c0)
        output = output.reshape(steps, batch, output.shape[1])
        if unbatched:
            output, h_n, c_n = output[:, 0], h_n[:, 0], c_n[:, 0]
        elif self.batch_first:
            output = np.ascontiguousarray(output.transpose(1, 0, 2))
        self._prepared = _Prepared.make(self, input, steps, batch, unbatched)
        if targets is None:
            return output, (h_n, c_n)
        for target, value in zip(targets, (output, h_n, c_n)):
            target[...] = value
        return targets[0], (targets[1], targets[2])

    def _check_out(self, out: Any, x: np.ndarray, hx: Any, steps: int, batch: int,
                   unbatched: bool) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The ``out=`` buffers ``(output, h_n, c_n)``, checked."""
        if not (isinstance(out, (tuple, list)) and len(out) == 2
                and isinstance(out[1], (tuple, list)) and len(out[1]) == 2):
            raise TypeError(f"out must be (output, (h_n, c_n)), as the call returns, got "
                            f"{type(out).__name__}")
        width = self.num_directions * self.output_size
        states = self.num_directions * self.num_layers
        if unbatched:
            shapes = [(steps, width), (states, self.output_size), (states, self.hidden_size)]
        else:
            shapes = [(batch, steps, width) if self.batch_first else (steps, batch, width),
                      (states, batch, self.output_size), (states, batch, self.hidden_size)]
        names = ["out[0] (output)", "out[1][0] (h_n)", "out[1][1] (c_n)"]
        targets = [check.check_out(value, name, shape, self.dtype)
                   for value, name, shape in zip((out[0], *out[1]), names, shapes)]
        inputs = []
        if isinstance(hx, (tuple, list)) and len(hx) == 2:
            inputs += [("h_0", hx[0]), ("c_0", hx[1])]
        check.check_no_overlap(list(zip(names, targets)),
                               [i for i in inputs if isinstance(i[1], np.ndarray)],
                               same_ok=[(names[1], "h_0"), (names[2], "c_0")])
        return targets[0], targets[1], targets[2]

    def _fast_call(self, x: Any, hx: Any, out: Any) -> Any:
        """The call for input shaped as the last call's, on the stepping
        path (see ``_stepping``), or None where any condition fails."""
        prepared = self._prepared
        if (prepared is None or type(x) is not np.ndarray or x.shape != prepared.x_shape
                or x.dtype != self.dtype or not x.flags.c_contiguous
                or self.batch_first is not prepared.batch_first
                or prepared.threads != get_num_threads()):
            return None
        dtype = self.dtype
        if hx is None:
            h0, c0 = prepared.zeros
        elif type(hx) is tuple and len(hx) == 2:
            h0, c0 = hx
            if not (_is_array(h0, prepared.h_shape, dtype)
                    and _is_array(c0, prepared.c_shape, dtype)):
                return None
        else:
            return None
        if out is None:
            output = np.empty(prepared.out_shape, dtype)
            h_n, c_n = np.empty(prepared.h_shape, dtype), np.empty(prepared.c_shape, dtype)
        elif type(out) is tuple and len(out) == 2 and type(out[1]) is tuple and len(out[1]) == 2:
            output, (h_n, c_n) = out
            if not (_is_array(output, prepared.out_shape, dtype)
                    and _is_array(h_n, prepared.h_shape, dtype)
                    and _is_array(c_n, prepared.c_shape, dtype) and output.flags.writeable
                    and h_n.flags.writeable and c_n.flags.writeable):
                return None
            # Buffers seen together before were checked then (a decoding loop
            # passes the same ones every call).
            seen = prepared.checked
            if not (output is seen[0] and h_n is seen[1] and c_n is seen[2] and h0 is seen[3]
                    and c0 is seen[4]):
                if check.overlapping_pair([("y", output), ("h_n", h_n), ("c_n", c_n)],
                                          [("h0", h0), ("c0", c0)],
                                          [("h_n", "h0"), ("c_n", "c0")]):
                    return None
                prepared.checked = (output, h_n, c_n, h0, c0)
        else:
            return None
        shape = prepared.state_rows
        prepared.plan.run(x.reshape(prepared.rows_shape), h0.reshape(shape[0]),
                          c0.reshape(shape[1]), h_n.reshape(shape[0]), c_n.reshape(shape[1]),
                          output.reshape(prepared.out_rows))
        return output, (h_n, c_n)

    def _forward_packed(self, packed: PackedSequence, hx: Optional[State]
                        ) -> Tuple[PackedSequence, State]:
        checked = as_packed(packed, "input")
        data = check.as_float_array(checked.data, "input.data", self.dtype)
        check.check_input_features(data, "input.data", self.input_size, (2,),
                                   "(total_rows, H_in) packed rows")
        h0, c0 = self._initial_state(hx, checked.batch, False)
        permuted = packed.sorted_indices is not None or packed.unsorted_indices is not None
        if permuted:  # hx is in the caller's order; the kernels want packed order
            order = np.argsort(checked.positions)
            h0, c0 = h0[:, order], c0[:, order]
        out, h_n, c_n = self._run(data, checked.batch_sizes, h0, c0)
        if permuted:
            h_n, c_n = h_n[:, checked.positions], c_n[:, checked.positions]
        copy = lambda a: None if a is None else np.array(a, dtype=np.int64)  # noqa: E731
        output = PackedSequence(out, checked.batch_sizes.copy(), copy(packed.sorted_indices),
                                copy(packed.unsorted_indices))
        return output, (h_n, c_n)

    def _run(self, x: np.ndarray, batch_sizes: np.ndarray, h0: np.ndarray, c0: np.ndarray
             ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:func:`lstm_forward` in this model's time order: packed rows (or a
        time-major padded view of whole steps) in, packed rows out."""
        if self._time_order == "forward":
            return lstm_forward(x, batch_sizes, self._layers, h0, c0, *self._dropout_args())
        if x.ndim == 3:  # padded: every sequence has every step
            out, h_n, c_n = lstm_forward(x[::-1], batch_sizes, self._layers, h0, c0,
                                         *self._dropout_args())
            if self._time_order == "reverse":
                out = out.reshape(x.shape[0], x.shape[1], -1)[::-1].reshape(out.shape)
            return np.ascontiguousarray(out), h_n, c_n
        mirror = reversed_rows(batch_sizes)
        out, h_n, c_n = lstm_forward(x[mirror], batch_sizes, self._layers, h0, c0,
                                     *self._dropout_args())
        return (out[mirror] if self._time_order == "reverse" else out), h_n, c_n

    def _dropout_args(self) -> Tuple[float, Optional[np.random.Generator]]:
        if self.training and self.dropout > 0.0 and self.num_layers > 1:
            return self.dropout, self._rng
        return 0.0, None

    def _initial_state(self, hx: Optional[State], batch: int, unbatched: bool
                       ) -> Tuple[np.ndarray, np.ndarray]:
        """``(h_0, c_0)`` as 3-D arrays of the module dtype (zeros if ``hx`` is None)."""
        n_states = self.num_layers * self.num_directions
        h_shape = (n_states, batch, self.output_size)
        c_shape = (n_states, batch, self.hidden_size)
        if hx is None:
            return np.zeros(h_shape, self.dtype), np.zeros(c_shape, self.dtype)
        if not isinstance(hx, (tuple, list)) or len(hx) != 2:
            raise TypeError(f"hx must be a tuple (h_0, c_0) of two arrays, got "
                            f"{type(hx).__name__}")
        if unbatched:
            h_shape, c_shape = h_shape[::2], c_shape[::2]
        layout = ("for unbatched input hx is (D * num_layers, H_out) and (D * num_layers, H)"
                  if unbatched else "hx is (D * num_layers, N, H_out) and "
                  "(D * num_layers, N, H), in the caller's batch order")
        h0 = check.check_state(hx[0], "h_0", h_shape, self.dtype, layout)
        c0 = check.check_state(hx[1], "c_0", c_shape, self.dtype, layout)
        if unbatched:
            h0, c0 = h0[:, None, :], c0[:, None, :]
        return h0, c0


def _is_array(a: Any, shape: Tuple[int, ...], dtype: np.dtype) -> bool:
    return (type(a) is np.ndarray and a.shape == shape and a.dtype == dtype
            and a.flags.c_contiguous)


class _Prepared:
    """What a call of one padded input shape needs for the stepping path,
    decided once (see ``_stepping``)."""

    @staticmethod
    def make(lstm: "LSTM", x: Any, steps: int, batch: int, unbatched: bool) -> Any:
        """The preparation for later calls like this one, or None where they
        take the driver (bidirectional, reversed, dropout, batch-first
        batches, or work the driver would spread over threads)."""
        if (type(x) is not np.ndarray or lstm._time_order != "forward"
                or lstm._dropout_args()[1] is not None or (lstm.batch_first and batch > 1)):
            return None
        threads = get_num_threads()
        plan = step_plan(lstm, steps, batch, threads)
        return None if plan is None else _Prepared(lstm, x.shape, steps, batch, unbatched, plan,
                                                   threads)

    def __init__(self, lstm: "LSTM", x_shape, steps: int, batch: int, unbatched: bool,
                 plan: StepPlan, threads: int) -> None:
        layers, hidden, width = lstm.num_layers, lstm.hidden_size, lstm.output_size
        self.x_shape = x_shape
        self.batch_first = lstm.batch_first  # a public attribute: callers may change it
        self.plan = plan
        #: The thread count the plan was made for: with more threads the
        #: driver may spread the same work over them instead.
        self.threads = threads
        self.rows_shape = (steps * batch, lstm.input_size)
        self.out_rows = (steps * batch, width)
        lead = (layers,) if unbatched else (layers, batch)
        self.h_shape, self.c_shape = lead + (width,), lead + (hidden,)
        self.out_shape = ((steps, width) if unbatched else
                          (batch, steps, width) if lstm.batch_first else (steps, batch, width))
        self.state_rows = ((layers, batch, width), (layers, batch, hidden))
        self.zeros = (np.zeros(self.h_shape, lstm.dtype), np.zeros(self.c_shape, lstm.dtype))
        for array in self.zeros:
            array.flags.writeable = False
        #: The last out= buffers and hx whose overlaps were checked.
        self.checked = (None,) * 5
