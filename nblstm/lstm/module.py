"""``nblstm.LSTM``: ``torch.nn.LSTM`` inference on NumPy arrays."""

from __future__ import annotations

from typing import Any, Optional, Tuple, Union

import numpy as np

from ..packing import PackedSequence
from ..packing._validate import as_packed
from . import _validation as check
from ._base import _RecurrentModule
from ._driver import lstm_forward
from ._torch_quantized import quantized_lstm_parameters
from .formats.bfloat16 import is_torch_bfloat16
from ._weights import init_parameters, parameter_shapes

State = Tuple[np.ndarray, np.ndarray]


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
    """

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

    def __repr__(self) -> str:
        extra = "".join([
            f", num_layers={self.num_layers}" if self.num_layers != 1 else "",
            ", bias=False" if not self.bias else "",
            ", batch_first=True" if self.batch_first else "",
            f", dropout={self.dropout}" if self.dropout else "",
            ", bidirectional=True" if self.bidirectional else "",
            f", proj_size={self.proj_size}" if self.proj_size else "",
        ])
        return (f"LSTM({self.input_size}, {self.hidden_size}{extra}, "
                f"dtype=np.{self.dtype.name})")

    def __call__(self, input: Any, hx: Optional[State] = None
                 ) -> Tuple[Union[np.ndarray, PackedSequence], State]:
        return self.forward(input, hx)

    def forward(self, input: Any, hx: Optional[State] = None
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

        Returns
        -------
        output : ndarray or PackedSequence
            ``(L, N, D * H_out)`` (``(N, L, ...)`` with ``batch_first``,
            ``(L, D * H_out)`` unbatched), or a PackedSequence with the
            input's ``batch_sizes`` and indices.
        (h_n, c_n) : ndarrays
            Final states, shaped like ``h_0``/``c_0``, in the caller's order.
        """
        if isinstance(input, PackedSequence) or hasattr(input, "batch_sizes"):
            return self._forward_packed(input, hx)  # ours, or torch's PackedSequence
        x = check.as_float_array(input, "input", self.dtype)
        check.check_input_features(x, "input", self.input_size, (2, 3),
                                   "(L, H_in) unbatched, or (L, N, H_in) / (N, L, H_in) "
                                   "with batch_first")
        unbatched = x.ndim == 2
        if unbatched:
            x = x[:, None, :]
        elif self.batch_first:
            x = x.transpose(1, 0, 2)
        steps, batch = x.shape[0], x.shape[1]
        if x.flags.c_contiguous:  # time-major padded input is already packed rows
            x = x.reshape(steps * batch, self.input_size)
        h0, c0 = self._initial_state(hx, batch, unbatched)
        batch_sizes = np.full(steps, batch, dtype=np.int64)
        out, h_n, c_n = lstm_forward(x, batch_sizes, self._layers, h0, c0,
                                     *self._dropout_args())
        out = out.reshape(steps, batch, out.shape[1])
        if unbatched:
            return out[:, 0], (h_n[:, 0], c_n[:, 0])
        if self.batch_first:
            out = np.ascontiguousarray(out.transpose(1, 0, 2))
        return out, (h_n, c_n)

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
        out, h_n, c_n = lstm_forward(data, checked.batch_sizes, self._layers, h0, c0,
                                     *self._dropout_args())
        if permuted:
            h_n, c_n = h_n[:, checked.positions], c_n[:, checked.positions]
        copy = lambda a: None if a is None else np.array(a, dtype=np.int64)  # noqa: E731
        output = PackedSequence(out, checked.batch_sizes.copy(), copy(packed.sorted_indices),
                                copy(packed.unsorted_indices))
        return output, (h_n, c_n)

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
