"""What :class:`LSTM` and :class:`LSTMCell` share: parameters and modes."""

from __future__ import annotations

from typing import Any, Dict, List, Mapping

import numpy as np

from ._weights import LayerWeights, checked_parameters, kernel_layout


class _RecurrentModule:
    """Holds torch-named parameters and their kernel layout.

    Subclasses set ``dtype``, ``hidden_size``, ``proj_size``, ``num_layers``,
    ``bidirectional``, call :meth:`_set_parameters`, and may rename keys
    between the public names and the ``weight_ih_l0`` style used inside
    (:meth:`_public_name` / :meth:`_internal_name`).
    """

    dtype: np.dtype
    training: bool = False
    _params: Dict[str, np.ndarray]
    _layers: List[LayerWeights]

    def _public_name(self, name: str) -> str:
        return name

    def _internal_name(self, name: str) -> str:
        return name

    def _set_parameters(self, params: Dict[str, np.ndarray]) -> None:
        for array in params.values():
            array.flags.writeable = False
        self._params = params
        self._layers = kernel_layout(params, self.num_layers, self.bidirectional,
                                     self.hidden_size, self.proj_size, self.dtype)

    def state_dict(self) -> Dict[str, np.ndarray]:
        """The parameters under PyTorch's names, as fresh (writable) arrays."""
        return {self._public_name(k): v.copy() for k, v in self._params.items()}

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True) -> None:
        """Load parameters from a mapping of PyTorch's names to arrays.

        Parameters
        ----------
        state_dict : mapping
            Values may be NumPy arrays, CPU torch tensors or anything
            ``np.asarray`` takes; they are copied and cast to ``self.dtype``.
        strict : bool
            When True (default), missing and unexpected keys are errors;
            shapes are always checked.

        Raises
        ------
        ValueError
            On missing/unexpected keys (``strict``) or a shape mismatch.
        TypeError
            If ``state_dict`` is not a mapping or a value is not real numbers.
        """
        current = {self._public_name(k): v for k, v in self._params.items()}
        params = checked_parameters(state_dict, current, self.dtype, strict,
                                    type(self).__name__)
        self._set_parameters({self._internal_name(k): v for k, v in params.items()})

    def train(self, mode: bool = True):
        """Set training mode (dropout between layers is applied); returns self."""
        if not isinstance(mode, (bool, np.bool_)):
            raise TypeError(f"train(mode) expects a bool, got {mode!r}")
        self.training = bool(mode)
        return self

    def eval(self):
        """Set evaluation mode (deterministic; the default); returns self."""
        return self.train(False)
