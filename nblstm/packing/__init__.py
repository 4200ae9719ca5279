"""PyTorch's ``torch.nn.utils.rnn`` packing semantics on NumPy arrays.

Every function mirrors its ``torch.nn.utils.rnn`` namesake (torch 2.13):
NumPy arrays (or anything :func:`numpy.asarray` accepts) in, fresh NumPy
arrays out, any numeric dtype kept as is, any trailing feature shape.
Differences from torch:

- sequences of length 0 are allowed (see :mod:`nblstm.packing._api` for how
  the batch size is then recorded in the :class:`PackedSequence`);
- lengths longer than the padded input are an error instead of undefined
  behaviour;
- :func:`unpad_sequence` does not transpose its argument in place.

Layers: :mod:`._kernels` and :mod:`._sort` (Numba), :mod:`._plan` and
:mod:`._drivers` (row maps over the offset table), :mod:`._validate` and
:mod:`._api` (checks and the public functions).
"""

from ._api import (
    pack_padded_sequence,
    pack_sequence,
    pad_packed_sequence,
    pad_sequence,
    unpack_sequence,
    unpad_sequence,
)
from ._packed import PackedSequence, step_offsets

__all__ = [
    "PackedSequence",
    "pack_padded_sequence",
    "pad_packed_sequence",
    "pad_sequence",
    "pack_sequence",
    "unpad_sequence",
    "unpack_sequence",
    "step_offsets",
]
