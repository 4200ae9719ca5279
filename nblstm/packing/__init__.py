"""PyTorch's ``torch.nn.utils.rnn`` packing semantics on NumPy arrays."""

from ._packed import PackedSequence, step_offsets

__all__ = ["PackedSequence", "step_offsets"]
