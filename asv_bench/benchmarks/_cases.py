"""Shared, lazy case builders for the asv suite (NumPy's ``benchmarks/`` style).

Nothing is built at import time: asv imports every benchmark module to discover
benchmarks, so data, weights and runners are made on first use (and cached per
process). The grid itself lives in :mod:`nblstm_bench.cases` so that the asv
suite and ``python -m nblstm_bench`` always measure the same shapes and data.

Weights are torch-keyed NumPy arrays drawn from a fixed seed; nblstm loads them
with ``load_state_dict`` so its benchmarks never import torch (peak memory and
cold start stay nblstm's own).

Reduced precision (``precision`` = ``"int8"`` / ``"bfloat16"``, float32 input
and output): nblstm's ``LSTM.quantize(precision)``, ONNX Runtime int8
(``DynamicQuantizeLSTM``), torch qint8 (``quantize_dynamic``) and torch
bfloat16. Combinations that do not exist (ONNX Runtime bfloat16, any reduced
precision with ``dtype="float64"``, nblstm before ``quantize`` exists) raise
``NotImplementedError``: asv skips them.

Thread count: ``NBLSTM_BENCH_THREADS`` (default 2) on every side.
"""

from __future__ import annotations

import functools
import os
import sys

import numpy as np

try:  # installed (editable install maps it), else the source tree next to asv_bench/
    import nblstm_bench  # noqa: F401
except ImportError:  # appended, so an installed nblstm (asv virtualenv builds) still wins
    sys.path.append(os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))

from nblstm_bench import peers  # noqa: E402
from nblstm_bench.cases import COLD_CASE, GRID, PEAKMEM_CASE, PRECISIONS, Case, numpy_state_dict  # noqa: E402

THREADS = int(os.environ.get("NBLSTM_BENCH_THREADS", "2"))

IMPLS = ["nblstm", "torch", "onnxruntime"]
DTYPES = ["float32", "float64"]
#: Weight precision: "float32" (the model as loaded) or LSTM.quantize("int8" / "bfloat16").
PRECISIONS = list(PRECISIONS)

#: The padded version of packed_bi_h256: same data fed as a padded array
#: (ORT gets sequence_lens = T for every sequence).
PADDED_VARIANT = "padded_bi_h256"
CASE_NAMES = list(GRID) + [PADDED_VARIANT]

__all__ = [
    "COLD_CASE", "PEAKMEM_CASE", "THREADS", "IMPLS", "DTYPES", "PRECISIONS", "CASE_NAMES", "PADDED_VARIANT",
    "resolve", "inputs", "weights", "make_runner", "require",
]


def resolve(case_name: str) -> tuple[Case, bool]:
    """``(case, packed)``: the grid case and whether its input is packed."""
    if case_name == PADDED_VARIANT:
        return GRID["packed_bi_h256"], False
    if case_name == PEAKMEM_CASE.name:
        return PEAKMEM_CASE, False
    case = GRID[case_name]
    return case, case.varlen


@functools.lru_cache(maxsize=None)
def inputs(case_name: str, dtype: str = "float32"):
    """``(x, lengths)``: padded time-major input and per-sequence lengths.

    For the padded variant the lengths are all T (no packing information)."""
    case, packed = resolve(case_name)
    x = case.padded_input(np.dtype(dtype))
    lengths = case.lengths() if packed else np.full(case.B, case.T, dtype=np.int64)
    return x, lengths


@functools.lru_cache(maxsize=None)
def weights(case_name: str, dtype: str = "float32") -> dict:
    case, _ = resolve(case_name)
    return numpy_state_dict(case, np.dtype(dtype), seed=0)


def require(impl: str, dtype: str = "float32", precision: str = "float32") -> None:
    """Raise ``NotImplementedError`` (asv: skipped) if ``impl`` cannot run here
    (at ``precision``: ``"float32"``, ``"int8"`` or ``"bfloat16"``)."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}")
    if precision != "float32":
        if dtype != "float32":
            raise NotImplementedError(f"{precision} weights take float32 input and output only")
        if impl == "onnxruntime" and precision != "int8":
            raise NotImplementedError(f"ONNX Runtime has no {precision} LSTM")
        if impl == "nblstm" and peers.nblstm_available() and not peers.nblstm_can_quantize():
            raise NotImplementedError("nblstm.LSTM.quantize does not exist yet")
    if impl == "nblstm":
        if not peers.nblstm_available():
            raise NotImplementedError("nblstm.LSTM is not available")
    elif impl == "torch":
        try:
            import torch  # noqa: F401
        except ImportError:
            raise NotImplementedError("torch is not installed")
    elif impl == "onnxruntime":
        try:
            import onnx  # noqa: F401
            import onnxruntime  # noqa: F401
        except ImportError:
            raise NotImplementedError("onnx/onnxruntime is not installed")
        if dtype == "float64" and not peers.ort_supports_double():
            raise NotImplementedError("ONNX Runtime's LSTM has no double kernel")
    else:
        raise ValueError(f"unknown impl {impl!r}")


def make_runner(impl: str, case_name: str, dtype: str = "float32", warmup: bool = True,
                precision: str = "float32"):
    """A :class:`nblstm_bench.peers.Runner` for one forward pass, threads set,
    compiled/warmed up (``warmup``) so that timing never includes compilation.

    ``precision`` ``"int8"``: nblstm ``quantize("int8")``, torch qint8, ONNX
    Runtime int8; ``"bfloat16"``: nblstm ``quantize("bfloat16")``, torch bfloat16."""
    require(impl, dtype, precision)
    case, packed = resolve(case_name)
    x, lengths = inputs(case_name, dtype)
    sd = weights(case_name, dtype)
    quantize = None if precision == "float32" else precision
    if impl == "nblstm":
        runner = peers.build_nblstm(sd, case, x, lengths, packed=packed, dtype=np.dtype(dtype), quantize=quantize)
    elif impl == "torch":
        module = peers.make_torch_module(case, np.dtype(dtype), state_dict=sd)
        if precision == "int8":
            runner = peers.build_torch_qint8(module, case, x, lengths, packed=packed)
        elif precision == "bfloat16":
            runner = peers.build_torch_bf16(module, case, x, lengths, packed=packed)
        else:
            runner = peers.build_torch(module, case, x, lengths, packed=packed)
    elif precision == "int8":
        runner = peers.build_ort_int8(sd, case, x, lengths, threads=THREADS)
    else:
        runner = peers.build_ort(sd, case, x, lengths, threads=THREADS, dtype=np.dtype(dtype))
    peers.set_threads(THREADS)
    if warmup:
        runner.fn()
        runner.fn()
    return runner


def warmup_small(impl: str, dtype: str = "float32") -> None:
    """Compile/initialise ``impl`` on a tiny input of the peak-memory case's
    sizes, so that a later large call does not include compilation and the
    setup's own peak memory stays small."""
    case = Case("warmup", 3, PEAKMEM_CASE.B, PEAKMEM_CASE.I, PEAKMEM_CASE.H)
    x = case.padded_input(np.dtype(dtype))
    sd = numpy_state_dict(case, np.dtype(dtype), seed=0)
    if impl == "nblstm":
        r = peers.build_nblstm(sd, case, x, dtype=np.dtype(dtype))
    elif impl == "torch":
        r = peers.build_torch(peers.make_torch_module(case, np.dtype(dtype), state_dict=sd), case, x)
    else:
        r = peers.build_ort(sd, case, x, threads=THREADS, dtype=np.dtype(dtype))
    peers.set_threads(THREADS)
    r.fn()
