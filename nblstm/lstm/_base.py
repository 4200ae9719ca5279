"""What :class:`LSTM` and :class:`LSTMCell` share: parameters, weight formats and modes."""

from __future__ import annotations

import copy
import re
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np

from . import formats
from .formats import bfloat16
from ._gate_options import GateOptions
from .formats.int8 import MAX_INNER, kernels_of, quantize_weight, weight_from_panels
from ._weights import (LayerWeights, bfloat16_kernel_layout, checked_bfloat16_parameters,
                       checked_int8_parameters, checked_parameters, int8_kernel_layout,
                       kernel_layout, parameter_shapes, weight_from_column_panels)

#: Activation quantisation of nblstm's own int8 models: each row of a product
#: on its own, over the full uint8 range (see ``formats.int8``).
OWN_INT8_SCHEME = (255, False)
#: torch's dynamic quantisation: one range per product, uint8 reduced to [0, 127].
TORCH_INT8_SCHEME = (127, True)


def stored_format(entries: Mapping[str, Any]) -> str:
    """The weight format a state dict's weights are stored in: ``"int8"``
    (int8 with ``<name>_scale``, as an int8 model's ``state_dict()``),
    ``"bfloat16"`` (uint16 bit patterns or bfloat16 torch tensors),
    ``"float64"``, or ``"float32"`` (float32, float16 and anything else)."""
    weights = {k: v for k, v in entries.items()
               if k.startswith("weight") and not k.endswith("_scale")}
    name, weight = next(iter(weights.items()))
    if bfloat16.is_torch_bfloat16(weight):
        return "bfloat16"
    dtype = str(getattr(weight, "dtype", "")).replace("torch.", "")
    if dtype == "int8":
        missing = [k + "_scale" for k in weights if k + "_scale" not in entries]
        if missing:
            raise ValueError(f"int8 weights need their scales, as an int8 model's state_dict() "
                             f"gives them: {', '.join(repr(k) for k in missing)} missing")
        return "int8"
    if dtype in ("uint16", "float64"):
        return "bfloat16" if dtype == "uint16" else "float64"
    return "float32"


def model_dtype(fmt: str, dtype: Any, owner: str) -> Any:
    """The float dtype to build a model of weights stored in ``fmt`` with
    (``dtype`` as the caller gave it, None for the stored one)."""
    if dtype is None:
        return np.float64 if fmt == "float64" else np.float32
    if fmt == "int8" and np.dtype(dtype) != np.float32:
        raise ValueError(f"{owner}.from_state_dict(): int8 weights make an int8 model with "
                         f"float32 input and output; got dtype={dtype!r}, pass dtype=None "
                         f"or np.float32")
    return dtype


class _RecurrentModule:
    """Holds torch-named parameters and their kernel layout.

    Subclasses set ``dtype``, ``input_size``, ``hidden_size``, ``proj_size``,
    ``num_layers``, ``bidirectional``, ``bias``, call :meth:`_set_parameters`,
    and may rename keys between the public names and the ``weight_ih_l0``
    style used inside (:meth:`_public_name` / :meth:`_internal_name`).

    Every model keeps its weights once, as panels (an int8 model with its
    scales), and its biases in ``_params``; ``state_dict()`` rebuilds the
    weights from the panels.
    """

    dtype: np.dtype
    training: bool = False
    _params: Dict[str, np.ndarray]
    _layers: List[LayerWeights]
    _int8_scheme: Optional[Tuple[int, bool]] = None
    _bfloat16: bool = False
    #: ONNX's gate options of each layer (``_gate_options.GateOptions`` or
    #: None), for models loaded from ONNX that use them; not in state dicts.
    _gate_options: Optional[List[Optional[GateOptions]]] = None
    #: What the stepping path prepared for the last call's shapes (see
    #: ``_stepping``); reset whenever the weights change.
    _prepared: Any = None

    def _public_name(self, name: str) -> str:
        return name

    def _load_entries(self, entries: Dict[str, Any], fmt: str, dtype: Any):
        """This float model, or its copy in the stored format ``fmt`` (see
        :func:`stored_format`; a float ``dtype`` widens bfloat16 weights),
        holding the parameters ``entries`` (public names, checked strictly)."""
        model = self
        if fmt in ("int8", "bfloat16") and (fmt == "int8" or dtype is None):
            model = self.quantize(fmt)
        elif fmt == "bfloat16":
            entries = {k: v.float() if bfloat16.is_torch_bfloat16(v) else
                       bfloat16.widen(v) if k.startswith("weight") else v
                       for k, v in entries.items()}
        try:
            model.load_state_dict(entries)
        except ValueError as error:  # say it in from_state_dict's terms (it has no strict=)
            message = re.sub(r"[;.]? *[Pp]ass strict=False to load only the matching keys\.?",
                             ".", str(error))
            raise ValueError(f"{type(self).__name__}.from_state_dict(): {message}") from None
        return model

    def _internal_name(self, name: str) -> str:
        return name

    @property
    def weight_format(self) -> str:
        """``"float32"``, ``"float64"``, ``"int8"`` or ``"bfloat16"`` (see :meth:`quantize`)."""
        if self._bfloat16:
            return "bfloat16"
        return "int8" if self._int8_scheme is not None else self.dtype.name

    def _parameter_shapes(self) -> Dict[str, Tuple[int, ...]]:
        """Internal parameter names and shapes, in torch's order."""
        return parameter_shapes(self.input_size, self.hidden_size, self.num_layers, self.bias,
                                self.bidirectional, self.proj_size)

    def _set_parameters(self, params: Dict[str, np.ndarray]) -> None:
        """Float weights and biases (``params``, the model dtype) by internal
        names; only the biases are kept beside the panels."""
        self._keep_biases(params)
        self._int8_scheme = None
        self._bfloat16 = False
        self._layers = kernel_layout(params, self.num_layers, self.bidirectional,
                                     self.hidden_size, self.proj_size, self.dtype)
        self._prepared = None
        self._attach_gate_options()

    def _set_int8_parameters(self, params: Dict[str, np.ndarray], scales: Dict[str, np.ndarray],
                             scheme: Tuple[int, bool], kernels: Optional[str] = None) -> None:
        """Int8 weights and float32 biases (``params``) with per-row ``scales``
        by internal names; only the biases are kept beside the panels."""
        qmax, per_tensor = scheme
        self._layers = int8_kernel_layout(params, scales, self.num_layers, self.bidirectional,
                                          self.hidden_size, self.proj_size, qmax, per_tensor,
                                          kernels)
        self._prepared = None
        self._keep_biases(params)
        self._int8_scheme = scheme
        self._bfloat16 = False
        self._attach_gate_options()

    def _set_bfloat16_parameters(self, params: Dict[str, np.ndarray],
                                 kernels: Optional[str] = None) -> None:
        """uint16 bfloat16 weights and float32 biases (``params``) by internal
        names; only the biases are kept beside the panels."""
        self._layers = bfloat16_kernel_layout(params, self.num_layers, self.bidirectional,
                                              self.hidden_size, self.proj_size, kernels)
        self._prepared = None
        self._keep_biases(params)
        self._int8_scheme = None
        self._bfloat16 = True
        self._attach_gate_options()

    def _set_gate_options(self, options: List[Optional[GateOptions]]) -> None:
        """ONNX's gate options of each layer (see ``_gate_options``)."""
        self._gate_options = None if all(o is None for o in options) else list(options)
        self._attach_gate_options()

    def _attach_gate_options(self) -> None:
        """Put the gate options into the layers' kernel layout (rebuilt by
        every weight change), in the dtype of the layers' state."""
        if self._gate_options is None:
            return
        self._prepared = None
        self._layers = [layer._replace(gate_options=None if options is None else
                                       options._replace(peepholes=options.peepholes.astype(
                                           self.dtype)))
                        for layer, options in zip(self._layers, self._gate_options)]

    def _keep_biases(self, params: Dict[str, np.ndarray]) -> None:
        """``_params``: read-only copies of the biases in the model dtype (the
        weights live only in the panels)."""
        biases = {k: np.array(v, self.dtype) for k, v in params.items() if k.startswith("bias")}
        for array in biases.values():
            array.flags.writeable = False
        self._params = biases

    def _weight_panels(self):
        """``(name, panels, direction, shape, blocks)`` of each weight, by
        internal names, for rebuilding it from its panels."""
        fields = {"weight_ih": "w_ih_panels", "weight_hh": "w_hh_panels",
                  "weight_hr": "w_hr_panels"}
        for name, shape in self._parameter_shapes().items():
            kind = name.split("_l")[0]
            if kind not in fields:
                continue
            layer = int(name.split("_l")[1].split("_")[0])
            d = 1 if name.endswith("_reverse") else 0
            panels = getattr(self._layers[layer], fields[kind])
            yield name, panels, d, shape, 1 if kind == "weight_hr" else 4

    def _int8_weights(self) -> Tuple[Dict[str, np.ndarray], Dict[str, np.ndarray]]:
        """The int8 weights (fresh arrays, torch's shapes) and their scales,
        rebuilt from the panels, by internal names."""
        weights, scales = {}, {}
        for name, panels, d, shape, blocks in self._weight_panels():
            weights[name] = weight_from_panels(panels, d, shape[1], shape[0], blocks)
            scales[name] = panels.scales[d].copy()
        return weights, scales

    def _float_weights(self) -> Dict[str, np.ndarray]:
        """A float model's weights (fresh arrays, torch's shapes), rebuilt
        from the panels, by internal names."""
        return {name: weight_from_column_panels(panels[d], shape[1], shape[0], blocks)
                for name, panels, d, shape, blocks in self._weight_panels()}

    def _bfloat16_weights(self) -> Dict[str, np.ndarray]:
        """The uint16 bfloat16 weights (fresh arrays, torch's shapes), rebuilt
        from the panels, by internal names."""
        return {name: bfloat16.weight_from_panels(panels, d, shape[1], shape[0], blocks)
                for name, panels, d, shape, blocks in self._weight_panels()}

    def state_dict(self) -> Dict[str, np.ndarray]:
        """The parameters under PyTorch's names, as fresh (writable) arrays.

        An int8 model gives each weight as int8 (torch's shape) followed by
        ``<name>_scale``, its float32 scale per output row (``W ~ scale[:, None]
        * Q``); a bfloat16 model gives each weight as uint16 bit patterns (a
        ``np.uint16`` array whose value << 16 viewed as float32 is the weight,
        ``formats.bfloat16.widen``); biases stay float32.
        """
        if self._int8_scheme is None:
            weights = self._bfloat16_weights() if self._bfloat16 else self._float_weights()
            return {self._public_name(name): weights[name] if name in weights
                    else self._params[name].copy() for name in self._parameter_shapes()}
        weights, scales = self._int8_weights()
        state = {}
        for name in self._parameter_shapes():
            if name in weights:
                state[self._public_name(name)] = weights[name]
                state[self._public_name(name) + "_scale"] = scales[name]
            else:
                state[self._public_name(name)] = self._params[name].copy()
        return state

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True) -> None:
        """Load parameters from a mapping of PyTorch's names to arrays.

        Parameters
        ----------
        state_dict : mapping
            Values may be NumPy arrays, CPU torch tensors or anything
            ``np.asarray`` takes; they are copied and cast to ``self.dtype``.
            An int8 model takes what its :meth:`state_dict` gives: int8
            weights, a float32 ``<name>_scale`` (N,) per weight, float32
            biases; a bfloat16 model uint16 bit patterns for its weights (or
            bfloat16 torch tensors) and float32 biases.
        strict : bool
            When True (default), missing and unexpected keys are errors;
            shapes are always checked.

        Raises
        ------
        ValueError
            On missing/unexpected keys (``strict``), a shape mismatch, or
            (int8) a scale that is not positive and finite.
        TypeError
            If ``state_dict`` is not a mapping or a value is not real numbers
            (int8: a weight that is not int8; bfloat16: one that is not uint16).
        """
        owner = type(self).__name__
        if self._bfloat16:
            current = {self._public_name(k): v for k, v in self._params.items()}
            current.update({self._public_name(k): v for k, v in self._bfloat16_weights().items()})
            params = checked_bfloat16_parameters(state_dict, current, strict, owner)
            self._set_bfloat16_parameters(
                {self._internal_name(k): v for k, v in params.items()},
                bfloat16.kernels_of(self._layers[0].w_hh_panels))
            return
        if self._int8_scheme is None:
            current = self.state_dict()
            params = checked_parameters(state_dict, current, self.dtype, strict, owner)
            self._set_parameters({self._internal_name(k): v for k, v in params.items()})
            return
        weights, scales = self._int8_weights()
        current = {self._public_name(k): v for k, v in self._params.items()}
        current.update({self._public_name(k): v for k, v in weights.items()})
        current.update({self._public_name(k) + "_scale": v for k, v in scales.items()})
        params = checked_int8_parameters(state_dict, current, strict, owner)
        internal = {self._internal_name(k): v for k, v in params.items() if not k.endswith("_scale")}
        new_scales = {self._internal_name(k[:-len("_scale")]): v for k, v in params.items()
                      if k.endswith("_scale")}
        self._set_int8_parameters(internal, new_scales, self._int8_scheme,
                                  kernels_of(self._layers[0].w_hh_panels))

    def quantize(self, weight_format: str = "int8"):
        """A copy of this model whose weights are stored in ``weight_format``.

        Parameters
        ----------
        weight_format : {"int8", "bfloat16"}
            ``"int8"``: each weight matrix as int8, symmetric, with one float32
            scale per output row (``max|row| / 127``); the activations
            entering each matrix product are quantised dynamically to uint8,
            each row with its own scale and zero point; products accumulate
            exactly in int32; biases, gates, ``c`` and ``h`` stay float32.
            Input, output and ``hx`` are float32 as before. Runs on
            AVX512-VNNI/AVX-VNNI where the CPU has it, else on a portable
            integer path with bitwise the same results.
            ``"bfloat16"``: each weight as bfloat16 (rounded to nearest even);
            the activations entering each product rounded to bfloat16 the
            same way; products accumulate in float32 as ``vdpbf16ps`` does
            (see ``formats.bfloat16``); biases, gates, ``c`` and ``h`` stay
            float32. Runs on AMX tiles where the CPU has AMX-BF16 (their
            sums round in their own order: results differ from the other
            paths' in the last bits), else on AVX512-BF16 where the CPU has
            it, else on float32 FMAs with bitwise vdpbf16ps's results. On any
            path the results do not depend on the batch, the thread count or
            stream chunking. ``NBLSTM_NO_AMX=1`` keeps AMX off.

        Returns
        -------
        A new model of the same class and configuration; ``self`` is untouched.

        Raises
        ------
        ValueError
            For an unknown format, a model that is not float32, or an input
            wider than the int32 sums allow (see ``formats.int8.MAX_INNER``).
        """
        if weight_format not in formats.QUANTIZED_FORMATS:
            raise ValueError(f"quantize() supports the weight formats "
                             f"{', '.join(repr(f) for f in formats.QUANTIZED_FORMATS)}, got "
                             f"{weight_format!r}")
        if self.weight_format != "float32":
            raise ValueError(f"quantize({weight_format!r}) needs a float32 model; this one is "
                             f"{self.weight_format}. Build or load the model with "
                             f"dtype=np.float32 (formats: "
                             f"{', '.join(repr(f) for f in formats.QUANTIZED_FORMATS)})")
        weights = self._float_weights()
        if weight_format == "bfloat16":
            return self._bfloat16_copy({**self._params, **{
                name: bfloat16.round_to_bfloat16(value) for name, value in weights.items()}})
        widest = max(shape[1] for name, shape in self._parameter_shapes().items()
                     if name.startswith("weight"))
        if widest > MAX_INNER:
            raise ValueError(f"quantize('int8') supports at most {MAX_INNER} inputs per weight "
                             f"matrix (exact int32 sums), this model has {widest}; keep it in "
                             f"float32")
        params, scales = dict(self._params), {}
        for name, value in weights.items():
            params[name], scales[name] = quantize_weight(value)
        return self._int8_copy(params, scales, OWN_INT8_SCHEME)

    def _int8_copy(self, params, scales, scheme, kernels: Optional[str] = None):
        """A copy of this model (configuration, mode) holding these int8 weights."""
        model = self._float32_copy()
        model._set_int8_parameters(params, scales, scheme, kernels)
        return model

    def _bfloat16_copy(self, params, kernels: Optional[str] = None):
        """A copy of this model (configuration, mode) holding these bfloat16 weights."""
        model = self._float32_copy()
        model._set_bfloat16_parameters(params, kernels)
        return model

    def _float32_copy(self):
        """A shallow copy with its own dropout generator, float32 input and
        output, for the caller to give weights of a reduced format."""
        model = copy.copy(self)
        if hasattr(self, "_rng"):
            model._rng = copy.deepcopy(self._rng)
        model.dtype = np.dtype(np.float32)
        return model

    def train(self, mode: bool = True):
        """Set training mode (dropout between layers is applied); returns self."""
        if not isinstance(mode, (bool, np.bool_)):
            raise TypeError(f"train(mode) expects a bool, got {mode!r}")
        self.training = bool(mode)
        self._prepared = None  # dropout changes which path a call takes
        return self

    def eval(self):
        """Set evaluation mode (deterministic; the default); returns self."""
        return self.train(False)
