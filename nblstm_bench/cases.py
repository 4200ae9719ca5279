"""The benchmark grid and its seeded data: NumPy only, so that importing this
module never pulls in torch, ONNX Runtime or nblstm.

Both the comparison command (``python -m nblstm_bench``) and the asv suite
(``asv_bench/benchmarks/_cases.py``) take their cases from here, so the two
always measure the same shapes and the same data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

#: Seed for inputs and lengths; weights come from the seeds in :mod:`peers`.
DATA_SEED = 1234


@dataclass(frozen=True)
class Case:
    """One grid point. ``varlen`` cases have per-sequence lengths."""

    name: str
    T: int
    B: int
    I: int
    H: int
    num_layers: int = 1
    bidirectional: bool = False
    varlen: bool = False
    min_len: int = 0  # only for varlen cases: lengths ~ U{min_len..T}, longest == T

    @property
    def D(self) -> int:
        return 2 if self.bidirectional else 1

    def lengths(self) -> np.ndarray:
        """Per-sequence lengths (int64, caller's batch order, unsorted)."""
        if not self.varlen:
            return np.full(self.B, self.T, dtype=np.int64)
        rng = np.random.default_rng(DATA_SEED + 1)
        lengths = rng.integers(self.min_len, self.T + 1, size=self.B).astype(np.int64)
        lengths[int(rng.integers(self.B))] = self.T  # the longest is exactly T
        return lengths

    def padded_input(self, dtype=np.float32) -> np.ndarray:
        """Time-major input ``(T, B, I)``; zeros past each sequence's length."""
        rng = np.random.default_rng(DATA_SEED)
        x = rng.standard_normal((self.T, self.B, self.I)).astype(dtype)
        if self.varlen:
            t = np.arange(self.T)[:, None]
            x[t >= self.lengths()[None, :]] = 0
        return x

    def flops(self) -> float:
        """Honest work count: 8*H*(I_layer+H) per real row, step, direction."""
        real_rows = float(self.lengths().sum())
        total = 0.0
        for layer in range(self.num_layers):
            i_in = self.I if layer == 0 else self.D * self.H
            total += 8.0 * self.H * (i_in + self.H) * real_rows * self.D
        return total

    def describe(self) -> str:
        s = f"T{self.T} B{self.B} I{self.I} H{self.H}"
        if self.num_layers > 1:
            s += f" {self.num_layers}L"
        if self.bidirectional:
            s += " bi"
        if self.varlen:
            s += f" len {self.min_len}..{self.T}"
        return s


GRID = {
    c.name: c
    for c in (
        Case("stream_b1_h128", 100, 1, 128, 128),
        Case("b8_h256", 100, 8, 256, 256),
        Case("b64_h512", 100, 64, 512, 512),
        Case("speech_2L_bi", 200, 16, 80, 256, num_layers=2, bidirectional=True),
        Case("packed_bi_h256", 200, 32, 256, 256, bidirectional=True, varlen=True, min_len=20),
        # The reduced-precision cases (int8 / bfloat16 weights): a wide layer whose
        # weights (75 MB in float32) do not fit in cache, and a long, narrow stream.
        Case("T50_B4_H1536", 50, 4, 1536, 1536),
        Case("T2000_B1_I40_H64", 2000, 1, 40, 64),
    )
}

#: The weight precisions of the comparison command (``--precision``).
PRECISIONS = ("float32", "int8", "bfloat16")

#: The cases the comparison command runs when ``--cases`` is not given. The
#: float32 set is the original five (docs/benchmark.md and the README's figures
#: are of it); the two wide/long cases were added for the reduced precisions.
FLOAT32_CASES = ("stream_b1_h128", "b8_h256", "b64_h512", "speech_2L_bi", "packed_bi_h256")
REDUCED_CASES = FLOAT32_CASES + ("T50_B4_H1536", "T2000_B1_I40_H64")
DEFAULT_CASES = {"float32": FLOAT32_CASES, "int8": REDUCED_CASES, "bfloat16": REDUCED_CASES}

#: Long single-layer sequence for the peak-memory benchmark.
PEAKMEM_CASE = Case("peakmem_T20000_b8_h256", 20000, 8, 256, 256)

#: Cold-start case: LSTM(128, 128), one forward on (10, 1, 128).
COLD_CASE = Case("cold_start", 10, 1, 128, 128)


def get_case(name: str) -> Case:
    if name in GRID:
        return GRID[name]
    if name == PEAKMEM_CASE.name:
        return PEAKMEM_CASE
    raise KeyError(f"unknown case {name!r}; known: {', '.join(GRID)}")


def numpy_state_dict(case: Case, dtype=np.float32, seed: int = 0) -> dict:
    """torch-keyed LSTM weights drawn like torch's default init, without torch."""
    rng = np.random.default_rng(seed)
    k = 1.0 / np.sqrt(case.H)
    sd = {}
    for layer in range(case.num_layers):
        i_in = case.I if layer == 0 else case.D * case.H
        for suffix in ("", "_reverse")[: case.D]:
            for name, shape in (
                ("weight_ih", (4 * case.H, i_in)),
                ("weight_hh", (4 * case.H, case.H)),
                ("bias_ih", (4 * case.H,)),
                ("bias_hh", (4 * case.H,)),
            ):
                sd[f"{name}_l{layer}{suffix}"] = rng.uniform(-k, k, shape).astype(dtype)
    return sd


def pack_numpy(x: np.ndarray, lengths: np.ndarray):
    """Pack a time-major padded array like ``pack_padded_sequence(...,
    enforce_sorted=False)``; returns ``(data, batch_sizes, sorted_indices,
    unsorted_indices)`` as NumPy arrays. A fallback for when
    ``nblstm.packing.pack_padded_sequence`` is not available."""
    lengths = np.asarray(lengths, dtype=np.int64)
    sorted_indices = np.argsort(-lengths, kind="stable").astype(np.int64)
    unsorted_indices = np.empty_like(sorted_indices)
    unsorted_indices[sorted_indices] = np.arange(len(sorted_indices))
    sorted_len = lengths[sorted_indices]
    T = int(sorted_len[0]) if len(sorted_len) else 0
    batch_sizes = np.array([(sorted_len > t).sum() for t in range(T)], dtype=np.int64)
    data = np.concatenate([x[t, sorted_indices[: batch_sizes[t]]] for t in range(T)], axis=0)
    return np.ascontiguousarray(data), batch_sizes, sorted_indices, unsorted_indices


def unpack_numpy(data, batch_sizes, sorted_indices, unsorted_indices, total_length: Optional[int] = None):
    """Inverse of :func:`pack_numpy`: padded ``(T, B, F)`` with zeros."""
    data = np.asarray(data)
    batch_sizes = np.asarray(batch_sizes, dtype=np.int64)
    B = int(batch_sizes[0])
    T = total_length or len(batch_sizes)
    out = np.zeros((T, B) + data.shape[1:], dtype=data.dtype)
    row = 0
    for t, bs in enumerate(batch_sizes):
        out[t, :bs] = data[row : row + bs]
        row += bs
    if unsorted_indices is not None:
        out = out[:, np.asarray(unsorted_indices)]
    return out
