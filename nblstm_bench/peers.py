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

Reduced precision (``--precision int8`` / ``bfloat16`` of the comparison
command): :func:`build_nblstm` with ``quantize=``, :func:`build_ort_int8`
(``quantize_dynamic`` of the float32 graph: ``DynamicQuantizeLSTM``),
:func:`build_torch_qint8` (``torch.ao.quantization.quantize_dynamic``) and
:func:`build_torch_bf16`; their outputs are float32, and they are checked with
:func:`check_error` (error against torch float32, fails only if absurd) instead
of :func:`check_agreement`.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np

from .cases import Case, numpy_state_dict, pack_numpy, unpack_numpy

#: Agreement required between a runner and the reference (max abs diff).
TOLERANCE = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-9}

#: Reduced precision: a side whose max abs error against torch float32 is above
#: this is broken (not merely less accurate), and is not timed.
ABSURD_ERROR = 0.2

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


def check_error(case: Case, lengths, ref_result: tuple, other: Runner, limit: float = ABSURD_ERROR) -> float:
    """Reduced precision: run ``other`` once and return its max abs error against
    ``ref_result`` (torch float32 on the same input, padded steps masked); raise
    ``AssertionError`` only if the error is absurd (``> limit``, or NaN)."""
    err = max_abs_diff(case, lengths, ref_result, other.result(other.fn()))
    if not err <= limit:
        raise AssertionError(
            f"{case.name}: {other.impl} max abs error vs torch float32 {err:.3g} > {limit:g}"
        )
    return err


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


def build_torch(module, case: Case, x: np.ndarray, lengths=None, packed: bool = False,
                torch_dtype=None) -> Runner:
    """torch runner under ``torch.inference_mode()``; ``packed`` feeds a
    ``PackedSequence`` built once from ``x`` and ``lengths``. ``torch_dtype``
    (e.g. ``torch.bfloat16``): the input is cast to it once, before timing, and
    ``result`` casts the outputs back to float32."""
    torch = _require_torch()
    xt = torch.from_numpy(np.ascontiguousarray(x))
    if torch_dtype is not None:
        xt = xt.to(torch_dtype)
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
        if torch_dtype is not None:
            y, h, c = y.float(), h.float(), c.float()
        return y.numpy(), h.numpy(), c.numpy()

    return Runner("torch", fn, result, note="packed" if packed else "padded")


@contextlib.contextmanager
def _quiet_torch_quantization():
    """Silence torch.ao.quantization's deprecation warning (and the quantized
    tensor creation one) while building the qint8 module."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", message=r".*quantiz", category=UserWarning)
        yield


def build_torch_qint8(module, case: Case, x: np.ndarray, lengths=None, packed: bool = False) -> Runner:
    """torch dynamic int8 (``qint8`` weights, float32 activations): ``module``
    (float32) wrapped in ``nn.Sequential`` and converted by
    ``torch.ao.quantization.quantize_dynamic(..., {nn.LSTM}, dtype=torch.qint8)``
    (a copy: ``module`` is left as it is), under ``inference_mode``."""
    torch = _require_torch()
    with _quiet_torch_quantization(), torch.inference_mode():
        qm = torch.ao.quantization.quantize_dynamic(
            torch.nn.Sequential(module), {torch.nn.LSTM}, dtype=torch.qint8
        )
    qtype = type(qm[0])
    if "quantized" not in qtype.__module__:
        raise AssertionError(f"quantize_dynamic left the LSTM as {qtype.__module__}.{qtype.__name__}")
    r = build_torch(qm, case, x, lengths, packed=packed)
    r.impl = "torch_qint8"
    r.note = f"quantize_dynamic qint8 -> {qtype.__module__}.{qtype.__name__}, " + r.note
    r.extra["module"] = qm
    with _quiet_torch_quantization():  # any first-call warning, outside the timing
        r.fn()
    return r


def build_torch_bf16(module, case: Case, x: np.ndarray, lengths=None, packed: bool = False) -> Runner:
    """torch bfloat16: a copy of ``module`` ``.to(torch.bfloat16)``, bfloat16
    input (cast once, before timing), outputs cast back to float32."""
    torch = _require_torch()
    bm = copy.deepcopy(module).to(torch.bfloat16)
    r = build_torch(bm, case, x, lengths, packed=packed, torch_dtype=torch.bfloat16)
    r.impl = "torch_bf16"
    r.note = "module.to(torch.bfloat16), bfloat16 input, " + r.note
    r.extra["module"] = bm
    return r


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
    _require_ort()
    if np.dtype(dtype) == np.float64 and not ort_supports_double():
        raise NotImplementedError("ONNX Runtime's LSTM operator does not support double")
    model, outs = onnx_lstm_model(state_dict, case, dtype)
    return _ort_runner(model.SerializeToString(), outs, case, x, lengths, threads, dtype,
                       "onnxruntime", f"sequence_lens, intra_op={threads}")


def _ort_runner(model_bytes: bytes, outs: list, case: Case, x: np.ndarray, lengths, threads: int, dtype,
                impl: str, note: str) -> Runner:
    ort = _require_ort()
    sess = ort.InferenceSession(model_bytes, ort_session_options(threads), providers=["CPUExecutionProvider"])
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

    r = Runner(impl, fn, result, note=note)
    r.extra["session"] = sess
    return r


def build_ort_int8(state_dict: dict, case: Case, x: np.ndarray, lengths=None, threads: int = 2) -> Runner:
    """ONNX Runtime int8: the float32 graph of :func:`onnx_lstm_model`, converted by
    ``onnxruntime.quantization.quantize_dynamic(src, dst, weight_type=QuantType.QInt8)``.
    Raises ``AssertionError`` unless every ``LSTM`` node became ``DynamicQuantizeLSTM``
    (so float32 ORT is never timed as int8); ``extra["ops"]`` lists the graph's ops."""
    _require_ort()
    import onnx

    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as exc:  # pragma: no cover - depends on the build
        raise NotImplementedError("onnxruntime.quantization is not available") from exc
    model, outs = onnx_lstm_model(state_dict, case, np.float32)
    tmp = tempfile.mkdtemp(prefix="nblstm-ort-int8-")
    root = logging.getLogger()
    level = root.level
    try:
        src, dst = os.path.join(tmp, "lstm_f32.onnx"), os.path.join(tmp, "lstm_int8.onnx")
        onnx.save(model, src)
        root.setLevel(logging.ERROR)  # "Please consider to run pre-processing before quantization"
        try:
            quantize_dynamic(src, dst, weight_type=QuantType.QInt8)
        finally:
            root.setLevel(level)
        qmodel = onnx.load(dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    ops = [n.op_type for n in qmodel.graph.node]
    n_q = ops.count("DynamicQuantizeLSTM")
    if n_q != case.num_layers or "LSTM" in ops:
        raise AssertionError(f"quantize_dynamic did not make every LSTM node DynamicQuantizeLSTM: ops {ops}")
    note = (f"quantize_dynamic QInt8: LSTM -> DynamicQuantizeLSTM"
            + (f" x{n_q}" if n_q > 1 else "") + f", sequence_lens, intra_op={threads}")
    r = _ort_runner(qmodel.SerializeToString(), outs, case, x, lengths, threads, np.float32,
                    "onnxruntime_int8", note)
    r.extra["ops"] = ops
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


def nblstm_can_quantize() -> bool:
    """Whether ``nblstm.LSTM.quantize`` (int8 / bfloat16 weights) exists."""
    try:
        return hasattr(_require_nblstm().LSTM, "quantize")
    except NotImplementedError:
        return False


def build_nblstm(source, case: Case, x: np.ndarray, lengths=None, packed: bool = False, dtype=np.float32,
                 quantize: Optional[str] = None) -> Runner:
    """nblstm runner; ``source`` is a ``torch.nn.LSTM`` (``LSTM.from_torch``) or a
    torch-keyed NumPy state dict (``LSTM(...).load_state_dict``).

    ``quantize`` (``"int8"``/``"bfloat16"``; float32 only): the loaded model's
    ``.quantize(quantize)`` is timed instead; it must report that
    ``weight_format``. Input and output stay float32."""
    nblstm = _require_nblstm()
    dtype = np.dtype(dtype)
    if quantize is not None:
        if dtype != np.float32:
            raise NotImplementedError(f"quantize({quantize!r}) takes a float32 model")
        if not hasattr(nblstm.LSTM, "quantize"):
            raise NotImplementedError("nblstm.LSTM.quantize does not exist yet")
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
    if quantize is not None:
        try:
            m = m.quantize(quantize)
        except ValueError as exc:  # a weight format this nblstm does not have (yet): skip, not fail
            raise NotImplementedError(f"LSTM.quantize({quantize!r}) is not supported: {exc}") from exc
        fmt = getattr(m, "weight_format", None)
        if fmt != quantize:
            raise AssertionError(f"LSTM.quantize({quantize!r}) gave a model with weight_format {fmt!r}")
        if hasattr(m, "eval"):
            m.eval()
        how += f", quantize({quantize!r}) -> weight_format {fmt}"
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


def build_torch_gemm(M: int, K: int, N: int, precision: str, label: str = "") -> Runner:
    """The multiply-add rate reference for a reduced precision, into a
    preallocated output: ``torch._int_mm`` (int8 x int8 -> int32) for ``"int8"``,
    ``torch.matmul`` in bfloat16 for ``"bfloat16"``. ``flops`` = 2*M*K*N."""
    torch = _require_torch()
    g = torch.Generator().manual_seed(7)
    if precision == "int8":
        if not hasattr(torch, "_int_mm"):
            raise NotImplementedError("torch._int_mm is not available")
        a = torch.randint(-128, 128, (M, K), dtype=torch.int8, generator=g)
        b = torch.randint(-128, 128, (K, N), dtype=torch.int8, generator=g)
        out = torch.empty((M, N), dtype=torch.int32)
        op, what = torch._int_mm, "torch._int_mm int8 GEMM"
    elif precision == "bfloat16":
        a = torch.randn((M, K), generator=g).to(torch.bfloat16)
        b = torch.randn((K, N), generator=g).to(torch.bfloat16)
        out = torch.empty((M, N), dtype=torch.bfloat16)
        op, what = torch.matmul, "torch.matmul bfloat16 GEMM"
    else:
        raise ValueError(f"no torch GEMM reference for {precision!r}")

    def fn():
        with torch.inference_mode():
            return op(a, b, out=out)

    fn()  # fails here, not in the rounds, if this build cannot do it
    return Runner(f"torch_gemm_{precision}", fn, lambda raw: raw,
                  note=f"{what} " + (label or f"({M}x{K})@({K}x{N})"), flops=2.0 * M * K * N)


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
