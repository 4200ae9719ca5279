"""Finding LSTMs in a whole model's state dict and reading their configuration
from the keys and shapes (for ``LSTM.from_state_dict``/``LSTMCell.from_state_dict``).

A torch ``nn.LSTM`` under ``prefix`` has ``{prefix}weight_ih_l0`` (4H, I),
``{prefix}weight_hh_l0`` (4H, P), optionally ``bias_ih_l0``/``bias_hh_l0``
(4H,), ``weight_hr_l0`` (P, H), the same for layers 1.. and, bidirectional,
every key again with ``_reverse``. An ``nn.LSTMCell`` has ``weight_ih``,
``weight_hh`` (4H, H) and the biases. nblstm's own int8 state dicts add a
``<weight>_scale`` per weight. GRUs (3H rows) and plain RNNs never fit these
shapes.
"""

from __future__ import annotations

import re
from typing import Any, Dict, Mapping, NamedTuple, Tuple

_LSTM_FIRST_WEIGHT = re.compile(r"^(.*)weight_ih_l0$")
_CELL_FIRST_WEIGHT = re.compile(r"^(.*)weight_ih$")


class LSTMConfig(NamedTuple):
    """Sizes and options of an LSTM, as torch's constructor takes them."""

    input_size: int
    hidden_size: int
    num_layers: int
    bias: bool
    bidirectional: bool
    proj_size: int


def _shape(value: Any) -> Tuple[int, ...]:
    shape = getattr(value, "shape", None)
    return tuple(int(n) for n in shape) if shape is not None else ()


def _lstm_config(state: Mapping[str, Any], prefix: str) -> Any:
    """The configuration of the ``nn.LSTM`` under ``prefix``, or None if the
    keys there are not an LSTM's (a GRU, an RNN, or something else)."""
    w_ih = _shape(state.get(prefix + "weight_ih_l0"))
    w_hh = _shape(state.get(prefix + "weight_hh_l0"))
    if len(w_ih) != 2 or len(w_hh) != 2 or w_ih[0] % 4 or w_ih[0] != w_hh[0] or w_ih[0] == 0:
        return None
    hidden = w_ih[0] // 4
    w_hr = _shape(state.get(prefix + "weight_hr_l0"))
    proj = w_hr[0] if len(w_hr) == 2 and w_hr[1] == hidden else 0
    if w_hh[1] != (proj or hidden):
        return None
    layers = 1
    while prefix + f"weight_ih_l{layers}" in state:
        layers += 1
    return LSTMConfig(w_ih[1], hidden, layers, prefix + "bias_ih_l0" in state,
                      prefix + "weight_ih_l0_reverse" in state, proj)


def _cell_config(state: Mapping[str, Any], prefix: str) -> Any:
    """The configuration of the ``nn.LSTMCell`` under ``prefix``, or None."""
    w_ih, w_hh = _shape(state.get(prefix + "weight_ih")), _shape(state.get(prefix + "weight_hh"))
    if len(w_ih) != 2 or len(w_hh) != 2 or w_ih[0] % 4 or w_ih[0] == 0:
        return None
    hidden = w_ih[0] // 4
    if w_hh != (4 * hidden, hidden):
        return None
    return LSTMConfig(w_ih[1], hidden, 1, prefix + "bias_ih" in state, False, 0)


def find_lstms(state: Mapping[str, Any], cell: bool) -> Dict[str, LSTMConfig]:
    """Every LSTM (``cell``: LSTMCell) in ``state``, by key prefix."""
    pattern, config = (_CELL_FIRST_WEIGHT, _cell_config) if cell else (_LSTM_FIRST_WEIGHT,
                                                                      _lstm_config)
    found = {}
    for key in state:
        match = pattern.match(key) if isinstance(key, str) else None
        if match is not None:
            found_config = config(state, match.group(1))
            if found_config is not None:
                found[match.group(1)] = found_config
    return found


def select(state: Any, prefix: Any, cell: bool) -> Tuple[str, LSTMConfig, Dict[str, Any]]:
    """The LSTM of ``state`` under ``prefix``: ``(prefix, config, entries)``
    with the entries under that prefix, the prefix taken off their keys.

    ``prefix`` may omit its final dot; ``""`` takes the only LSTM of the dict.

    Raises
    ------
    TypeError
        If ``state`` is not a mapping or ``prefix`` not a str.
    ValueError
        If no LSTM is under ``prefix``, or ``prefix`` is empty and there are
        several; the message lists the prefixes found.
    """
    owner = "LSTMCell" if cell else "LSTM"
    first_keys = "weight_ih and weight_hh" if cell else "weight_ih_l0 and weight_hh_l0"
    if not isinstance(state, Mapping):
        raise TypeError(f"{owner}.from_state_dict() expects a mapping of names to arrays "
                        f"(a model's state_dict(), or nblstm.load_state_dict(path)), got "
                        f"{type(state).__name__}")
    if not isinstance(prefix, str):
        raise TypeError(f"prefix must be a str such as 'encoder.rnn.', got {prefix!r}")
    found = find_lstms(state, cell)
    kind = "nn.LSTMCell" if cell else "nn.LSTM"
    listing = ", ".join(repr(p) for p in sorted(found)) or "none"
    if prefix == "":
        if len(found) == 1:
            prefix = next(iter(found))
        elif not found:
            raise ValueError(f"{owner}.from_state_dict(): the state dict holds no {kind} "
                             f"(looked for {first_keys}"
                             f" of LSTM shapes among {len(state)} keys)")
        else:
            raise ValueError(f"{owner}.from_state_dict(): the state dict holds several "
                             f"{kind}s, pass prefix= one of {listing}")
    elif prefix not in found and prefix + "." in found:
        prefix += "."
    if prefix not in found:
        first = prefix + ("weight_ih" if cell else "weight_ih_l0")
        looks_like = ""
        if first in state:  # an LSTM's keys with shapes that do not fit together
            names = ("weight_ih", "weight_hh") if cell else ("weight_ih_l0", "weight_hh_l0",
                                                              "weight_hr_l0")
            looks_like = " (its keys are an LSTM's but their shapes do not fit one: " + ", ".join(
                f"{n} {_shape(state[prefix + n])}" for n in names if prefix + n in state) + (
                "; expected weight_ih (4H, I) and weight_hh (4H, H))" if cell else
                "; expected weight_ih_l0 (4H, I), weight_hh_l0 (4H, H or proj_size), "
                "weight_hr_l0 (proj_size, H))")
        raise ValueError(f"{owner}.from_state_dict(): no {kind} under prefix {prefix!r}"
                         f"{looks_like}; prefixes of the {kind}s found: {listing}")
    entries = {key[len(prefix):]: value for key, value in state.items()
               if isinstance(key, str) and key.startswith(prefix)
               and "." not in key[len(prefix):]}  # not a module nested below it
    return prefix, found[prefix], entries
