"""Runners for nblstm and its peers (torch, ONNX Runtime) on one grid case.

Every runner is built from the same weights and the same input, and each
``Runner.fn()`` performs exactly one forward pass on prebuilt input (no packing,
no conversion, no session creation inside it). ``Runner.result(raw)`` turns the
raw return value into ``(y, h_n, c_n)`` NumPy arrays in torch's layout
(``y``: padded ``(T, B, D*H)``) so the builders can check that the runners agree
before anything is timed.

torch, onnx/onnxruntime and nblstm are imported lazily; a builder whose library
is missing or cannot do the job raises :class:`NotImplementedError` (which asv
treats as "skip").
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np

from .cases import Case, numpy_state_dict, pack_numpy, unpack_numpy

#: Agreement required between a runner and the reference (max abs diff).
TOLERANCE = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-9}

# ONNX gate order is i, o, f, c; torch's is i, f, g(=c), o.
_TORCH_TO_ONNX_GATES = (0, 3, 1, 2)


@dataclass
class Runner:
    impl: str
    fn: Callable[[], Any]
    result: Callable[[Any], tuple]
    note: str = ""
    flops: Optional[float] = None  # set for the GEMM reference
    extra: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- threads

_blas_limiter = None


def set_threads(n: int) -> list[str]:
    """Give every side ``n`` threads; returns notes for the output.

    torch: ``torch.set_num_threads`` (only if torch is already imported);
    nblstm (only if already imported): ``nblstm.set_num_threads`` or, if it does not exist,
    ``numba.set_num_threads`` (noted); NumPy/SciPy BLAS (used by the GEMM
    reference and possibly by nblstm): threadpoolctl. ONNX Runtime takes its
    count when its session is built (``build_ort(threads=n)``).
    Call again after building runners so BLAS libraries loaded late are limited too.
    """
    global _blas_limiter
    notes = []
    import sys

    if "torch" in sys.modules:
        import torch

        torch.set_num_threads(n)
        notes.append(f"torch.set_num_threads({n})")
    if "nblstm" in sys.modules:  # never import nblstm (and Numba) into a peer-only process
        nblstm = sys.modules["nblstm"]
        if hasattr(nblstm, "set_num_threads"):
            nblstm.set_num_threads(n)
            notes.append(f"nblstm.set_num_threads({n})")
        else:
            import numba

            numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
            notes.append(
                f"nblstm.set_num_threads missing: fell back to numba.set_num_threads({n})"
            )
    try:
        from threadpoolctl import threadpool_limits

        _blas_limiter = threadpool_limits(limits=n, user_api="blas")
        notes.append(f"BLAS threads limited to {n} (threadpoolctl)")
    except ImportError:
        notes.append("threadpoolctl missing: BLAS threads not limited")
    return notes


# --------------------------------------------------------------------------- helpers


def _valid_mask(case: Case, lengths: np.ndarray) -> np.ndarray:
    return np.arange(case.T)[:, None] < np.asarray(lengths)[None, :]


def max_abs_diff(case: Case, lengths, a: tuple, b: tuple) -> float:
    """Max abs difference of ``(y, h_n, c_n)`` over the real (unpadded) steps."""
    mask = _valid_mask(case, lengths)
    ya, yb = np.asarray(a[0]), np.asarray(b[0])
    if ya.shape != yb.shape:
        raise AssertionError(f"output shapes differ: {ya.shape} vs {yb.shape}")
    d = float(np.max(np.abs(ya[mask].astype(np.float64) - yb[mask]))) if mask.any() else 0.0
    for xa, xb in zip(a[1:], b[1:]):
        xa, xb = np.asarray(xa), np.asarray(xb)
        if xa.shape != xb.shape:
            raise AssertionError(f"state shapes differ: {xa.shape} vs {xb.shape}")
        d = max(d, float(np.max(np.abs(xa.astype(np.float64) - xb))))
    return d


def check_agreement(case: Case, lengths, ref: Runner, other: Runner, dtype) -> float:
    """Run both once and raise ``AssertionError`` if they disagree."""
    tol = TOLERANCE[np.dtype(dtype)]
    d = max_abs_diff(case, lengths, ref.result(ref.fn()), other.result(other.fn()))
    if not d < tol:
        raise AssertionError(
            f"{case.name}: {other.impl} disagrees with {ref.impl}: max abs diff {d:.3g} >= {tol:g}"
        )
    return d


# --------------------------------------------------------------------------- torch


def _require_torch():
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - depends on environment
        raise NotImplementedError("torch is not installed") from exc
    return torch


def make_torch_module(case: Case, dtype=np.float32, seed: int = 0, state_dict: Optional[dict] = None):
    """A seeded ``torch.nn.LSTM`` in eval mode (or one loaded with ``state_dict``)."""
    torch = _require_torch()
    torch.manual_seed(seed)
    m = torch.nn.LSTM(
        case.I, case.H, num_layers=case.num_layers, bidirectional=case.bidirectional
    ).eval()
    m = m.double() if np.dtype(dtype) == np.float64 else m.float()
    if state_dict is not None:
        m.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state_dict.items()})
    for p in m.parameters():
        p.requires_grad_(False)
    return m


def torch_state_dict(module) -> dict:
    return {k: v.detach().cpu().numpy().copy() for k, v in module.state_dict().items()}


def build_torch(module, case: Case, x: np.ndarray, lengths=None, packed: bool = False) -> Runner:
    """torch runner under ``torch.inference_mode()``; ``packed`` feeds a
    ``PackedSequence`` built once from ``x`` and ``lengths``."""
    torch = _require_torch()
    xt = torch.from_numpy(np.ascontiguousarray(x))
    if packed:
        inp = torch.nn.utils.rnn.pack_padded_sequence(
            xt, torch.as_tensor(np.asarray(lengths, dtype=np.int64)), enforce_sorted=False
        )
    else:
        inp = xt

    def fn():
        with torch.inference_mode():
            return module(inp)

    def result(raw):
        out, (h, c) = raw
        if packed:
            y, _ = torch.nn.utils.rnn.pad_packed_sequence(out, total_length=case.T)
        else:
            y = out
        return y.numpy(), h.numpy(), c.numpy()

    return Runner("torch", fn, result, note="packed" if packed else "padded")


# --------------------------------------------------------------------------- ONNX Runtime

_ORT_DOUBLE: Optional[bool] = None


def _require_ort():
    try:
        import onnx  # noqa: F401
        import onnxruntime
    except ImportError as exc:  # pragma: no cover - depends on environment
        raise NotImplementedError("onnx / onnxruntime is not installed") from exc
    return onnxruntime


def ort_session_options(threads: int):
    """Session options exactly as shared/benchmarking.md prescribes."""
    ort = _require_ort()
    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads)
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    return so


def onnx_lstm_model(state_dict: dict, case: Case, dtype=np.float32):
    """An ONNX graph of ``case.num_layers`` chained ``LSTM`` nodes.

    Inputs ``X`` (T, B, I) and ``sequence_lens`` (B,) int32. Outputs: ``Y`` of the
    last layer in ONNX layout (T, D, B, H) for a single layer, or already in
    torch's (T, B, D*H) for several (the Transpose/Reshape between layers is
    needed anyway); and ``Y_h_l{k}``/``Y_c_l{k}`` (D, B, H) per layer.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    tp = TensorProto.FLOAT if np.dtype(dtype) == np.float32 else TensorProto.DOUBLE
    H, D = case.H, case.D
    order = np.concatenate([np.arange(g * H, (g + 1) * H) for g in _TORCH_TO_ONNX_GATES])
    suffixes = ("", "_reverse")[:D]
    nodes, inits, outputs = [], [], []
    x_name = "X"
    for layer in range(case.num_layers):
        W = np.stack([state_dict[f"weight_ih_l{layer}{s}"][order] for s in suffixes])
        R = np.stack([state_dict[f"weight_hh_l{layer}{s}"][order] for s in suffixes])
        Bias = np.stack(
            [
                np.concatenate(
                    [state_dict[f"bias_ih_l{layer}{s}"][order], state_dict[f"bias_hh_l{layer}{s}"][order]]
                )
                for s in suffixes
            ]
        )
        for name, arr in (("W", W), ("R", R), ("B", Bias)):
            inits.append(numpy_helper.from_array(np.ascontiguousarray(arr, dtype=dtype), f"{name}_l{layer}"))
        y = f"Y_raw_l{layer}"
        nodes.append(
            helper.make_node(
                "LSTM",
                [x_name, f"W_l{layer}", f"R_l{layer}", f"B_l{layer}", "sequence_lens"],
                [y, f"Y_h_l{layer}", f"Y_c_l{layer}"],
                hidden_size=H,
                direction="bidirectional" if case.bidirectional else "forward",
                name=f"lstm_l{layer}",
            )
        )
        outputs += [f"Y_h_l{layer}", f"Y_c_l{layer}"]
        if case.num_layers > 1:
            # (T, D, B, H) -> (T, B, D, H) -> (T, B, D*H): the next layer's input.
            nodes.append(helper.make_node("Transpose", [y], [f"Y_t_l{layer}"], perm=[0, 2, 1, 3]))
            nodes.append(helper.make_node("Reshape", [f"Y_t_l{layer}", "shape_tb_"], [f"Y_l{layer}"]))
            x_name = f"Y_l{layer}"
        else:
            x_name = y
    if case.num_layers > 1:
        inits.append(numpy_helper.from_array(np.array([0, 0, -1], dtype=np.int64), "shape_tb_"))
        y_shape = [case.T, case.B, D * H]
    else:
        y_shape = [case.T, D, case.B, H]
    graph = helper.make_graph(
        nodes,
        f"lstm_{case.name}",
        [
            helper.make_tensor_value_info("X", tp, [case.T, case.B, case.I]),
            helper.make_tensor_value_info("sequence_lens", TensorProto.INT32, [case.B]),
        ],
        [helper.make_tensor_value_info(x_name, tp, y_shape)]
        + [helper.make_tensor_value_info(o, tp, [D, case.B, H]) for o in outputs],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = min(model.ir_version, 10)
    onnx.checker.check_model(model)
    return model, [x_name] + outputs


def ort_supports_double() -> bool:
    """Whether this ONNX Runtime has a double LSTM kernel (1.32 does not)."""
    global _ORT_DOUBLE
    if _ORT_DOUBLE is None:
        ort = _require_ort()
        c = Case("probe", 2, 1, 2, 2)
        model, outs = onnx_lstm_model(numpy_state_dict(c, np.float64), c, np.float64)
        try:
            so = ort_session_options(1)
            so.log_severity_level = 4
            s = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
            s.run(outs, {"X": np.zeros((2, 1, 2)), "sequence_lens": np.array([2], np.int32)})
            _ORT_DOUBLE = True
        except Exception:
            _ORT_DOUBLE = False
    return _ORT_DOUBLE


def build_ort(state_dict: dict, case: Case, x: np.ndarray, lengths=None, threads: int = 2, dtype=np.float32) -> Runner:
    """ONNX Runtime runner on the ONNX ``LSTM`` operator with ``sequence_lens``."""
    ort = _require_ort()
    if np.dtype(dtype) == np.float64 and not ort_supports_double():
        raise NotImplementedError("ONNX Runtime's LSTM operator does not support double")
    model, outs = onnx_lstm_model(state_dict, case, dtype)
    sess = ort.InferenceSession(
        model.SerializeToString(), ort_session_options(threads), providers=["CPUExecutionProvider"]
    )
    if lengths is None:
        lengths = np.full(case.B, case.T)
    feeds = {
        "X": np.ascontiguousarray(x, dtype=dtype),
        "sequence_lens": np.asarray(lengths, dtype=np.int32),
    }

    def fn():
        return sess.run(outs, feeds)

    def result(raw):
        y = raw[0]
        if case.num_layers == 1:  # (T, D, B, H) -> (T, B, D*H)
            y = y.transpose(0, 2, 1, 3).reshape(case.T, case.B, case.D * case.H)
        h = np.concatenate(raw[1::2], axis=0)
        c = np.concatenate(raw[2::2], axis=0)
        return y, h, c

    r = Runner("onnxruntime", fn, result, note=f"sequence_lens, intra_op={threads}")
    r.extra["session"] = sess
    return r


# --------------------------------------------------------------------------- nblstm


def nblstm_available() -> bool:
    try:
        import nblstm

        return hasattr(nblstm, "LSTM")
    except ImportError:
        return False


def _require_nblstm():
    try:
        import nblstm
    except ImportError as exc:
        raise NotImplementedError("nblstm is not importable") from exc
    if not hasattr(nblstm, "LSTM"):
        raise NotImplementedError("nblstm.LSTM does not exist yet")
    return nblstm


def nblstm_pack(x: np.ndarray, lengths):
    """``nblstm.packing.pack_padded_sequence(..., enforce_sorted=False)``, or a
    NumPy fallback wrapped in ``nblstm.packing.PackedSequence`` if the packing
    functions do not exist yet. Returns ``(packed, note)``."""
    import nblstm.packing as packing

    if hasattr(packing, "pack_padded_sequence"):
        return packing.pack_padded_sequence(x, lengths, enforce_sorted=False), ""
    return packing.PackedSequence(*pack_numpy(x, lengths)), "fallback packer"


def build_nblstm(source, case: Case, x: np.ndarray, lengths=None, packed: bool = False, dtype=np.float32) -> Runner:
    """nblstm runner; ``source`` is a ``torch.nn.LSTM`` (``LSTM.from_torch``) or a
    torch-keyed NumPy state dict (``LSTM(...).load_state_dict``)."""
    nblstm = _require_nblstm()
    dtype = np.dtype(dtype)
    if isinstance(source, dict):
        m = nblstm.LSTM(
            case.I, case.H, num_layers=case.num_layers, bidirectional=case.bidirectional, dtype=dtype.type
        )
        m.load_state_dict(source)
        how = "load_state_dict"
    else:
        m = nblstm.LSTM.from_torch(source)
        how = "from_torch"
        if np.dtype(getattr(m, "dtype", dtype)) != dtype:
            raise AssertionError(f"from_torch gave dtype {m.dtype}, expected {dtype}")
    m.eval()
    x = np.ascontiguousarray(x, dtype=dtype)
    note = how
    if packed:
        inp, pnote = nblstm_pack(x, lengths)
        note += ", packed" + (f" ({pnote})" if pnote else "")
    else:
        inp = x
        note += ", padded"

    def fn():
        return m(inp)

    def result(raw):
        out, (h, c) = raw
        if hasattr(out, "batch_sizes"):
            y = unpack_numpy(out.data, out.batch_sizes, out.sorted_indices, out.unsorted_indices, case.T)
        else:
            y = out
        return np.asarray(y), np.asarray(h), np.asarray(c)

    r = Runner("nblstm", fn, result, note=note)
    r.extra["module"] = m
    return r


# --------------------------------------------------------------------------- GEMM reference


def build_gemm(M: int, K: int, N: int, dtype=np.float32, label: str = "") -> Runner:
    """NumPy ``(M, K) @ (K, N)`` into a preallocated output: the BLAS rate reference."""
    rng = np.random.default_rng(7)
    a = rng.standard_normal((M, K)).astype(dtype)
    b = rng.standard_normal((K, N)).astype(dtype)
    out = np.empty((M, N), dtype=dtype)

    def fn():
        return np.matmul(a, b, out=out)

    return Runner(
        "numpy_gemm",
        fn,
        lambda raw: raw,
        note=label or f"({M}x{K})@({K}x{N})",
        flops=2.0 * M * K * N,
    )


def blas_info() -> str:
    try:
        from threadpoolctl import threadpool_info

        return "; ".join(
            f"{i.get('internal_api')} {i.get('version')} {i.get('architecture', '')} threads={i.get('num_threads')} "
            f"({os.path.basename(i.get('filepath', ''))})"
            for i in threadpool_info()
            if i.get("user_api") == "blas"
        )
    except ImportError:
        return "threadpoolctl missing"
