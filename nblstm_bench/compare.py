"""``python -m nblstm_bench``: nblstm against torch and ONNX Runtime on the grid.

Measurement follows shared/benchmarking.md: one process; every runner is called
(compiled) and checked against torch before the clock starts; then rounds in
which each runner does one block of calls lasting ``--block-ms`` (tens of ms),
in an order that rotates every round (A B C, B C A, ...); the speedup is the
median over rounds of the per-round ratio peer time / nblstm time. Each side is
also timed alone (back-to-back blocks) and a note is printed when its time
alone differs from its time inside the rounds (spinning threads).

Run it as::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m nblstm_bench
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m nblstm_bench --threads 1
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m nblstm_bench --dtype float64
    python -m nblstm_bench --quick --cases stream_b1_h128 b8_h256      # smoke
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m nblstm_bench --precision int8
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m nblstm_bench --precision bfloat16

``--precision int8`` / ``bfloat16`` times ``LSTM.quantize(...)`` against ONNX
Runtime int8 (``DynamicQuantizeLSTM``) and torch qint8, or torch bfloat16, and
against nblstm float32, on two more cases; each side's max abs error against
torch float32 is reported (a side is not timed only if it is absurd, > 0.2).
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m nblstm_bench --cold-start
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m nblstm_bench --stepping
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from . import peers
from .cases import DEFAULT_CASES, GRID, PRECISIONS, Case

BLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
PADDED_ROW = "packed_bi_h256 vs padded torch"

# Speedup targets (peer time / nblstm time) at 2 threads, float32.
TORCH_TARGETS = {
    "stream_b1_h128": 3.0,
    "b8_h256": 1.5,
    "b64_h512": 1.15,
    "speech_2L_bi": 1.3,
    "packed_bi_h256": 3.0,
    PADDED_ROW: 1.5,
}
ORT_TARGET = 1.0  # every single-layer case
GEMM_FRACTION_TARGET = 0.75  # b64_h512: nblstm GFLOP/s >= 75% of NumPy sgemm GFLOP/s

# Reduced precision (--precision int8 / bfloat16): the sides timed against
# nblstm's quantized model (key, label), in the order of the table's columns.
REDUCED_PEERS = {
    "int8": (("onnxruntime_int8", "ORT int8"), ("torch_qint8", "torch qint8"), ("nblstm_fp32", "nblstm float32")),
    "bfloat16": (("torch_bf16", "torch bf16"), ("nblstm_fp32", "nblstm float32")),
}
NBLSTM_LABEL = {"int8": "nblstm int8", "bfloat16": "nblstm bf16"}
#: Whose error nblstm's should not exceed (the accuracy target).
ACCURACY_PEER = {"int8": "onnxruntime_int8", "bfloat16": "torch_bf16"}
_ALL = "*"  # every case
# Speedup targets (peer time / nblstm time) at 2 threads, per precision and peer.
REDUCED_TARGETS = {
    "int8": {
        "onnxruntime_int8": {c: 1.3 for c in ("stream_b1_h128", "b8_h256", "b64_h512", "packed_bi_h256",
                                              "T50_B4_H1536", "T2000_B1_I40_H64")},
        "torch_qint8": {_ALL: 2.0},
        "nblstm_fp32": {"b64_h512": 2.5, "T50_B4_H1536": 2.5},
    },
    "bfloat16": {
        "torch_bf16": {"b8_h256": 1.3, "T50_B4_H1536": 1.3, "stream_b1_h128": 2.0, "packed_bi_h256": 3.0,
                       "b64_h512": 1.15, "speech_2L_bi": 1.3},
        "nblstm_fp32": {"b64_h512": 1.7, "stream_b1_h128": 1.5},
    },
}
RATE_CASE = "b64_h512"  # the case whose multiply-add / GEMM rate is reported
CPU_FEATURES = ("avx512vnni", "avx512bf16", "avxvnni", "amx-bf16", "amx-int8", "avx512f", "avx2")


def reduced_target(precision: str, peer: str, case_name: str) -> Optional[float]:
    t = REDUCED_TARGETS[precision].get(peer, {})
    return t.get(case_name, t.get(_ALL))


def default_output(precision: str, ext: str) -> str:
    """docs/benchmark.{md,png} for float32, docs/benchmark_<precision>.{md,png} otherwise."""
    return f"docs/benchmark.{ext}" if precision == "float32" else f"docs/benchmark_{precision}.{ext}"


# --------------------------------------------------------------------------- machine


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        return os.cpu_count() or 1


def load_average() -> Optional[float]:
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):
        return None


def busy_processes(limit: int = 3) -> list:
    """Other processes using CPU now (from ps), for the load warning."""
    try:
        out = subprocess.run(["ps", "-eo", "pid,pcpu,args", "--sort=-pcpu", "--no-headers"],
                             capture_output=True, text=True, timeout=5).stdout
    except Exception:
        return []
    busy = []
    for line in out.splitlines():
        parts = line.split(None, 2)
        if len(parts) == 3 and int(parts[0]) != os.getpid() and float(parts[1]) >= 20.0:
            busy.append(f"pid {parts[0]} {parts[1]}% {parts[2][:60]}")
    return busy[:limit]


def cpu_features() -> Optional[dict]:
    """The int8 / bfloat16 instruction sets of this CPU as LLVM (so Numba) sees
    them: ``llvmlite.binding.get_host_cpu_features()``; None without llvmlite."""
    try:
        import llvmlite.binding as llb

        feats = llb.get_host_cpu_features()
    except Exception:
        return None
    return {k: bool(feats.get(k, False)) for k in CPU_FEATURES}


def kernel_path(precision: str) -> str:
    """The kernel path nblstm's ``quantize(precision)`` picks on this CPU
    (a key of the format's KERNELS: amx, vnni, avx2, avx512bf16, portable)."""
    from nblstm.lstm.formats import bfloat16, int8

    return {"int8": int8.default_kernels, "bfloat16": bfloat16.default_kernels}[precision]()


def cpu_features_text() -> str:
    f = cpu_features()
    if f is None:
        return "unknown (llvmlite.binding.get_host_cpu_features() unavailable)"
    return ", ".join(f"{k} {'true' if v else 'false'}" for k, v in f.items())


def blas_warning() -> Optional[str]:
    bad = [f"{v}={os.environ[v]}" for v in BLAS_VARS if v in os.environ]
    if not bad:
        return None
    return (
        f"WARNING: {', '.join(bad)} is set; it slows OpenBLAS about 2x (NumPy's sgemm and anything "
        "using it). Run benchmarks as `env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m nblstm_bench`."
    )


def source_commit(module) -> Optional[str]:
    """The short commit id of the git checkout ``module`` was imported from
    (``abc1234``, or ``abc1234-dirty`` with uncommitted changes under the
    module's folder), or None outside a git checkout or without git."""
    folder = os.path.dirname(os.path.abspath(getattr(module, "__file__", "") or "."))
    try:
        head = subprocess.run(["git", "-C", folder, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return None
        status = subprocess.run(["git", "-C", folder, "status", "--porcelain", "--", "."],
                                capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("-dirty" if status.stdout.strip() else "")


def versions() -> str:
    out = [f"python {platform.python_version()}", f"numpy {np.__version__}"]
    for mod in ("numba", "torch", "onnxruntime", "nblstm"):
        m = sys.modules.get(mod)
        if m is not None:
            commit = source_commit(m) if mod == "nblstm" else None
            out.append(f"{mod} {getattr(m, '__version__', '?')}"
                       + (f" (commit {commit})" if commit else ""))
    try:
        import numba

        out.append(f"numba threading layer {numba.threading_layer()}")
    except Exception:
        pass
    return ", ".join(out)


# --------------------------------------------------------------------------- timing


def _block(fn, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n


@dataclass
class Timing:
    pair_ms: float  # median per-call time inside the interleaved rounds
    alone_ms: float  # median per-call time in back-to-back blocks
    calls_per_block: int
    per_round_s: list = field(default_factory=list)


def interleave(runners: dict, rounds: int, block_s: float, alone_blocks: int, warmup: int = 2,
               budget_s: float = float("inf"), min_rounds: int = 5, verbose: bool = True,
               settle_s: float = 0.5, gap_s: float = 0.0) -> dict:
    """Time ``runners`` (name -> Runner) in rotating interleaved blocks.

    ``gap_s``: a pause before every block of the rounds, so that threads the
    previous side left spinning (torch's OpenMP pool, OpenBLAS workers) go
    idle instead of taking a core from the next side's block; the block then
    starts with one untimed call, so that waking this side's own threads is
    not counted either. Each block measures the side's steady state, as a
    user calling it in a loop sees it.

    Stops after ``rounds`` rounds, or earlier once ``budget_s`` seconds of rounds
    have passed and at least ``min_rounds`` are done (a loaded machine can make
    one call take seconds).

    Returns name -> :class:`Timing`; ``per_round_s[r]`` is the per-call time of
    that runner in round ``r`` (all runners have one entry per round).
    """
    names = list(runners)
    for name in names:
        for _ in range(warmup):
            runners[name].fn()
    calls = {}
    for name in names:
        t = min(_block(runners[name].fn, 1) for _ in range(3))
        calls[name] = max(1, int(round(block_s / max(t, 1e-9))))
        if verbose:
            print(f"    {name}: {1e3 * t:.3f} ms/call -> {calls[name]} call(s) per block", file=sys.stderr, flush=True)
    gc.collect()
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        alone = {}
        for n in names:
            # Let threads left spinning by the previous side (OpenBLAS, OpenMP, TBB) go idle,
            # and discard one block, so "alone" really is this side on its own.
            time.sleep(settle_s)
            _block(runners[n].fn, calls[n])
            alone[n] = [_block(runners[n].fn, calls[n]) for _ in range(alone_blocks)]
        per_round = {n: [] for n in names}
        t0 = time.perf_counter()
        for r in range(rounds):
            k = r % len(names)
            for name in names[k:] + names[:k]:
                if gap_s > 0:
                    time.sleep(gap_s)
                    runners[name].fn()
                per_round[name].append(_block(runners[name].fn, calls[name]))
            if r + 1 >= min_rounds and time.perf_counter() - t0 > budget_s:
                break
    finally:
        if gc_was_enabled:
            gc.enable()
    return {
        n: Timing(
            pair_ms=1e3 * statistics.median(per_round[n]),
            alone_ms=1e3 * statistics.median(alone[n]) if alone[n] else float("nan"),
            calls_per_block=calls[n],
            per_round_s=per_round[n],
        )
        for n in names
    }


def median_ratio(num: list, den: list) -> float:
    return statistics.median(a / b for a, b in zip(num, den))


# --------------------------------------------------------------------------- one case


@dataclass
class CaseResult:
    case: Case
    timings: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    diffs: dict = field(default_factory=dict)
    errors: dict = field(default_factory=dict)
    ref: str = "nblstm"
    gemm: Optional[dict] = None
    rounds: int = 0
    extra: dict = field(default_factory=dict)


def run_case(case: Case, dtype, threads: int, rounds: int, block_s: float, alone_blocks: int,
             use_nblstm: bool, gemm_square: bool, budget_s: float = float("inf"), min_rounds: int = 5,
             gap_s: float = 0.0) -> CaseResult:
    res = CaseResult(case)
    x = case.padded_input(dtype)
    lengths = case.lengths()
    module = peers.make_torch_module(case, dtype, seed=0)
    sd = peers.torch_state_dict(module)
    runners = {}

    if use_nblstm:
        try:
            runners["nblstm"] = peers.build_nblstm(module, case, x, lengths, packed=case.varlen, dtype=dtype)
        except NotImplementedError as exc:
            res.errors["nblstm"] = str(exc)
        except Exception as exc:
            res.errors["nblstm"] = f"build failed: {type(exc).__name__}: {exc}"
    runners["torch"] = peers.build_torch(module, case, x, lengths, packed=case.varlen)
    if case.varlen:
        r = peers.build_torch(module, case, x, lengths, packed=False)
        r.impl = "torch_padded"
        runners["torch_padded"] = r
    try:
        runners["onnxruntime"] = peers.build_ort(sd, case, x, lengths, threads=threads, dtype=dtype)
    except NotImplementedError as exc:
        res.errors["onnxruntime"] = str(exc)

    # Agreement with torch before anything is timed (this is also the compile call).
    for name in [n for n in runners if n in ("nblstm", "onnxruntime")]:
        try:
            res.diffs[name] = peers.check_agreement(case, lengths, runners["torch"], runners[name], dtype)
        except Exception as exc:
            res.errors[name] = f"NOT TIMED: {type(exc).__name__}: {exc}"
            del runners[name]
    for name, r in runners.items():
        if r.note:
            res.notes.append(f"{name}: {r.note}")

    gemm_runners = {}
    if case.name == "b64_h512":
        gemm_runners["gemm"] = peers.build_gemm(
            case.T * case.B, case.I + case.H, 4 * case.H, dtype,
            label=f"({case.T * case.B}x{case.I + case.H})@({case.I + case.H}x{4 * case.H}) = (T*B, I+H)@(I+H, 4H)",
        )
        if gemm_square:
            gemm_runners["gemm_square"] = peers.build_gemm(2048, 2048, 2048, dtype, label="(2048x2048)@(2048x2048)")
    runners.update(gemm_runners)

    peers.set_threads(threads)  # again: limits BLAS libraries loaded while building
    res.ref = "nblstm" if "nblstm" in runners else "torch"
    res.timings = interleave(runners, rounds, block_s, alone_blocks, budget_s=budget_s, min_rounds=min_rounds,
                             gap_s=gap_s)
    res.rounds = len(next(iter(res.timings.values())).per_round_s)

    if gemm_runners:
        g = {}
        for gname, gr in gemm_runners.items():
            t = res.timings[gname]
            g[gname] = dict(label=gr.note, gflops=gr.flops / (t.pair_ms * 1e-3) / 1e9)
            if "nblstm" in res.timings:
                g[gname]["fraction"] = median_ratio(
                    [case.flops() * tg for tg in t.per_round_s],
                    [gr.flops * tn for tn in res.timings["nblstm"].per_round_s],
                )
        if "nblstm" in res.timings:
            g["nblstm_gflops"] = case.flops() / (res.timings["nblstm"].pair_ms * 1e-3) / 1e9
        res.gemm = g
    return res


def run_case_reduced(case: Case, precision: str, threads: int, rounds: int, block_s: float, alone_blocks: int,
                     use_nblstm: bool, budget_s: float = float("inf"), min_rounds: int = 5,
                     gap_s: float = 0.0) -> CaseResult:
    """One case at a reduced weight precision (float32 input and output).

    Timed: nblstm's ``LSTM.quantize(precision)`` model (the reference of every
    ratio), the peers of :data:`REDUCED_PEERS` and, on :data:`RATE_CASE`, torch's
    GEMM in that precision. torch float32 on the same input is the accuracy
    reference (called once, not timed); ``res.diffs`` holds every side's max abs
    error against it. A side is dropped only if its error is absurd."""
    res = CaseResult(case)
    x = case.padded_input(np.float32)
    lengths = case.lengths()
    module = peers.make_torch_module(case, np.float32, seed=0)
    sd = peers.torch_state_dict(module)
    ref_runner = peers.build_torch(module, case, x, lengths, packed=case.varlen)
    ref = ref_runner.result(ref_runner.fn())
    res.notes.append(f"torch float32 (accuracy reference, not timed): {ref_runner.note}")
    packed = case.varlen

    def nblstm_fp32():
        return peers.build_nblstm(sd, case, x, lengths, packed=packed)

    builders = []
    if use_nblstm:
        builders.append(("nblstm", lambda: peers.build_nblstm(sd, case, x, lengths, packed=packed,
                                                              quantize=precision)))
    for key, _ in REDUCED_PEERS[precision]:
        if key == "onnxruntime_int8":
            builders.append((key, lambda: peers.build_ort_int8(sd, case, x, lengths, threads=threads)))
        elif key == "torch_qint8":
            builders.append((key, lambda: peers.build_torch_qint8(module, case, x, lengths, packed=packed)))
        elif key == "torch_bf16":
            builders.append((key, lambda: peers.build_torch_bf16(module, case, x, lengths, packed=packed)))
        elif key == "nblstm_fp32" and use_nblstm:
            builders.append((key, nblstm_fp32))

    runners = {}
    for name, build in builders:
        try:
            r = build()
        except NotImplementedError as exc:
            res.errors[name] = str(exc)
            continue
        except Exception as exc:
            res.errors[name] = f"build failed: {type(exc).__name__}: {exc}"
            continue
        r.impl = name
        if "ops" in r.extra:
            res.extra["ort_ops"] = r.extra["ops"]
        try:  # this is also the compile call
            res.diffs[name] = peers.check_error(case, lengths, ref, r)
        except Exception as exc:
            res.errors[name] = f"NOT TIMED: {type(exc).__name__}: {exc}"
            continue
        runners[name] = r
        if r.note:
            res.notes.append(f"{name}: {r.note}")

    gemm_runner = None
    if case.name == RATE_CASE:
        M, K, N = case.T * case.B, case.I + case.H, 4 * case.H
        try:
            gemm_runner = peers.build_torch_gemm(
                M, K, N, precision, label=f"({M}x{K})@({K}x{N}) = (T*B, I+H)@(I+H, 4H)")
            runners["gemm"] = gemm_runner
        except Exception as exc:
            res.errors["gemm"] = f"{precision} GEMM reference not run: {type(exc).__name__}: {exc}"

    peers.set_threads(threads)  # again: limits BLAS libraries loaded while building
    res.ref = "nblstm" if "nblstm" in runners else next((n for n in runners if n != "gemm"), "none")
    if not runners:
        return res
    res.timings = interleave(runners, rounds, block_s, alone_blocks, budget_s=budget_s, min_rounds=min_rounds,
                             gap_s=gap_s)
    res.rounds = len(next(iter(res.timings.values())).per_round_s)

    if case.name == RATE_CASE:
        macs = case.flops() / 2.0  # 4H(I+H) multiply-adds per real row, step and direction
        g = {}
        for name in ("nblstm", "nblstm_fp32"):
            if name in res.timings:
                g[f"{name}_gmacs"] = macs / (res.timings[name].pair_ms * 1e-3) / 1e9
        if gemm_runner is not None:
            t = res.timings["gemm"]
            g["gemm"] = dict(label=gemm_runner.note, gmacs=gemm_runner.flops / 2.0 / (t.pair_ms * 1e-3) / 1e9)
            if "nblstm" in res.timings:
                g["gemm"]["fraction"] = median_ratio(
                    [case.flops() * tg for tg in t.per_round_s],
                    [gemm_runner.flops * tn for tn in res.timings["nblstm"].per_round_s],
                )
        res.gemm = g
    return res


# --------------------------------------------------------------------------- report


def _fmt_ms(t: Optional[float]) -> str:
    if t is None:
        return "—"
    return f"{t:.3f}" if t < 1 else (f"{t:.2f}" if t < 100 else f"{t:.1f}")


def _fmt_x(s: Optional[float]) -> str:
    return "—" if s is None else f"{s:.2f}×"


def build_rows(results: list, dtype, threads: int) -> list:
    """One dict per table row (including the padded-torch row)."""
    default_mode = threads == 2 and np.dtype(dtype) == np.float32
    rows = []
    for res in results:
        c, T = res.case, res.timings
        ref = T.get(res.ref)

        def speed(peer):
            if peer not in T or ref is None or res.ref == peer:
                return None
            return median_ratio(T[peer].per_round_s, ref.per_round_s)

        def speed_min(peer):  # ratio of the fastest blocks: less sensitive to other load
            if peer not in T or ref is None or res.ref == peer:
                return None
            return min(T[peer].per_round_s) / min(ref.per_round_s)

        entries = [(c.name, "torch")]
        if c.varlen:
            entries.append((PADDED_ROW, "torch_padded"))
        for row_name, torch_key in entries:
            row = dict(
                case=row_name,
                shape=c.describe() + (" (torch padded, ORT sequence_lens)" if torch_key == "torch_padded" else ""),
                ref=res.ref,
                nblstm_ms=T["nblstm"].pair_ms if "nblstm" in T else None,
                torch_ms=T[torch_key].pair_ms if torch_key in T else None,
                x_torch=speed(torch_key),
                ort_ms=T["onnxruntime"].pair_ms if "onnxruntime" in T else None,
                x_ort=speed("onnxruntime"),
                x_torch_min=speed_min(torch_key),
                x_ort_min=speed_min("onnxruntime"),
                ort_vs_torch=(median_ratio(T[torch_key].per_round_s, T["onnxruntime"].per_round_s)
                              if torch_key in T and "onnxruntime" in T else None),
                targets={},
            )
            row["targets"]["torch"] = TORCH_TARGETS.get(row_name) if default_mode else 1.0
            if c.num_layers == 1 and "onnxruntime" in T:
                row["targets"]["ort"] = ORT_TARGET
            rows.append(row)
    for row in rows:
        checks = []
        if row["ref"] != "nblstm":
            row["result"] = "n/a (no nblstm)"
            continue
        for key, col in (("torch", "x_torch"), ("ort", "x_ort")):
            tgt = row["targets"].get(key)
            if tgt is not None and row[col] is not None:
                checks.append(row[col] >= tgt)
        row["result"] = "—" if not checks else ("PASS" if all(checks) else "FAIL")
    return rows


def target_text(row) -> str:
    t = row["targets"]
    parts = []
    if t.get("torch") is not None:
        parts.append(f"≥{t['torch']:g}× torch")
    if t.get("ort") is not None:
        parts.append(f"≥{t['ort']:g}× ORT")
    return ", ".join(parts) or "—"


def build_rows_reduced(results: list, precision: str, threads: int) -> list:
    """One dict per case: ``ms``/``x``/``x_min``/``err`` keyed by side, plus flat
    ``x_<peer>`` (for the chart) and ``targets`` (peer -> speedup, 2 threads only)."""
    peer_keys = [k for k, _ in REDUCED_PEERS[precision]]
    rows = []
    for res in results:
        c, T = res.case, res.timings
        nb = T.get("nblstm") if res.ref == "nblstm" else None
        row = dict(case=c.name, shape=c.describe(), ref=res.ref,
                   nblstm_ms=nb.pair_ms if nb else None,
                   ms={}, x={}, x_min={}, err=dict(res.diffs), targets={})
        for key in peer_keys:
            row["ms"][key] = T[key].pair_ms if key in T else None
            row["x"][key] = median_ratio(T[key].per_round_s, nb.per_round_s) if key in T and nb else None
            row["x_min"][key] = min(T[key].per_round_s) / min(nb.per_round_s) if key in T and nb else None
            row[f"x_{key}"] = row["x"][key]
            tgt = reduced_target(precision, key, c.name) if threads == 2 else None
            if tgt is not None:
                row["targets"][key] = tgt
        if nb is None:
            row["result"] = f"n/a (no {NBLSTM_LABEL[precision]})"
        else:
            checks = [row["x"][k] >= t for k, t in row["targets"].items() if row["x"][k] is not None]
            row["result"] = "—" if not checks else ("PASS" if all(checks) else "FAIL")
        rows.append(row)
    return rows


def _fmt_err(e: Optional[float]) -> str:
    return "—" if e is None else f"{e:.2e}"


def render_markdown_reduced(results, rows, precision, threads, header_lines, footer_lines) -> str:
    nb_label = NBLSTM_LABEL[precision]
    plist = REDUCED_PEERS[precision]
    labels = dict(plist)
    lines = list(header_lines) + [""]
    cols = ["case", "shape", f"{nb_label} ms"]
    for _, label in plist:
        cols += [f"{label} ms", f"speedup vs {label}"]
    cols += [f"err {nb_label}"] + [f"err {label}" for _, label in plist] + ["target", "result"]
    lines.append("| " + " | ".join(cols) + " |")
    lines.append("|---|---|" + "---:|" * (1 + 2 * len(plist) + 1 + len(plist)) + "---|---|")
    for r in rows:
        cells = [r["case"], r["shape"], _fmt_ms(r["nblstm_ms"])]
        for key, _ in plist:
            cells += [_fmt_ms(r["ms"][key]), _fmt_x(r["x"][key])]
        cells += [_fmt_err(r["err"].get("nblstm"))] + [_fmt_err(r["err"].get(key)) for key, _ in plist]
        tt = ", ".join(f"≥{t:g}× {labels[k]}" for k, t in r["targets"].items()) or "—"
        cells += [tt, r["result"]]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        f"err = max abs error against torch float32 on the same input (y over the real steps, padded positions "
        f"masked, and h_n, c_n); a side is not timed only if it exceeds {peers.ABSURD_ERROR:g}. "
        f"Targets (at 2 threads) are peer time / {nb_label} time.")
    lines.append("")
    if any(r["ref"] == "nblstm" for r in rows):
        lines.append(
            "Cross-check against other load (ratio of each side's fastest block; should be close to the medians "
            "above on a quiet machine): "
            + "; ".join(f"{r['case']}: " + ", ".join(f"{_fmt_x(r['x_min'][k])} {lab}" for k, lab in plist)
                        for r in rows))
        lines.append("")
    acc = ACCURACY_PEER[precision]
    lines.append(f"Accuracy (target: {nb_label}'s error ≤ {labels[acc]}'s):")
    for r in rows:
        e, ep = r["err"].get("nblstm"), r["err"].get(acc)
        s = f"- {r['case']}: {nb_label} err {_fmt_err(e)} vs {labels[acc]} err {_fmt_err(ep)}"
        if e is not None and ep is not None:
            s += f" ({'≤: yes' if e <= ep else '≤: NO'}, ratio {e / ep:.2f})" if ep > 0 else ""
        others = [f"{labels[k]} err {_fmt_err(r['err'][k])}" for k, _ in plist if k != acc and k in r["err"]]
        if others:
            s += "; " + ", ".join(others)
        lines.append(s)
    if precision == "int8":
        ops = [f"{res.case.name} {'+'.join(res.extra['ort_ops'])}" for res in results if "ort_ops" in res.extra]
        if ops:
            lines.append("")
            lines.append("ONNX Runtime int8: `quantize_dynamic(weight_type=QuantType.QInt8)` of the float32 graph; "
                         "checked that every LSTM node became DynamicQuantizeLSTM: " + "; ".join(ops))
    rate_lines = []
    for res in results:
        if res.gemm:
            g = res.gemm
            s = f"- multiply-add rate ({res.case.name}, 4H(I+H) multiply-adds per real row, step and direction, {threads} thread(s)): "
            parts = []
            if "nblstm_gmacs" in g:
                parts.append(f"{nb_label} {g['nblstm_gmacs']:.1f} GMAC/s")
            if "nblstm_fp32_gmacs" in g:
                parts.append(f"nblstm float32 {g['nblstm_fp32_gmacs']:.1f} GMAC/s")
            if "gemm" in g:
                gi = g["gemm"]
                gs = f"{gi['label']}: {gi['gmacs']:.1f} GMAC/s"
                if "fraction" in gi:
                    gs += f" ({nb_label} = {100 * gi['fraction']:.0f}% of it, median per-round ratio)"
                parts.append(gs)
            rate_lines.append(s + "; ".join(parts))
    if rate_lines:
        lines += [""] + rate_lines
    lines += footer_lines
    return "\n".join(lines) + "\n"


def render_markdown(results, rows, dtype, threads, header_lines, footer_lines) -> str:
    lines = list(header_lines) + [""]
    have_nb = any(r["ref"] == "nblstm" for r in rows)
    if have_nb:
        lines.append("| case | shape | nblstm ms | torch ms | speedup vs torch | ORT ms | speedup vs ORT | target | result |")
        lines.append("|---|---|---:|---:|---:|---:|---:|---|---|")
        for r in rows:
            lines.append(
                f"| {r['case']} | {r['shape']} | {_fmt_ms(r['nblstm_ms'])} | {_fmt_ms(r['torch_ms'])} | "
                f"{_fmt_x(r['x_torch'])} | {_fmt_ms(r['ort_ms'])} | {_fmt_x(r['x_ort'])} | {target_text(r)} | {r['result']} |"
            )
    else:
        lines.append("nblstm not run (missing, or --peers-only): peers only (ORT speedup is torch time / ORT time).")
        lines.append("")
        lines.append("| case | shape | torch ms | ORT ms | ORT speedup vs torch |")
        lines.append("|---|---|---:|---:|---:|")
        for r in rows:
            lines.append(
                f"| {r['case']} | {r['shape']} | {_fmt_ms(r['torch_ms'])} | {_fmt_ms(r['ort_ms'])} | "
                f"{_fmt_x(r['ort_vs_torch'])} |"
            )
    lines.append("")
    if have_nb:
        lines.append(
            "Cross-check against other load (ratio of each side's fastest block; should be close to the medians "
            "above on a quiet machine): "
            + "; ".join(f"{r['case']}: {_fmt_x(r['x_torch_min'])} torch, {_fmt_x(r['x_ort_min'])} ORT" for r in rows)
        )
        lines.append("")
    for res in results:
        if res.gemm:
            g = res.gemm
            for gname in ("gemm", "gemm_square"):
                if gname not in g:
                    continue
                gi = g[gname]
                s = f"- GEMM rate ({res.case.name}): NumPy {'s' if np.dtype(dtype) == np.float32 else 'd'}gemm {gi['gflops']:.1f} GFLOP/s on {gi['label']}, {threads} thread(s)"
                if "nblstm_gflops" in g:
                    s += f"; nblstm {g['nblstm_gflops']:.1f} GFLOP/s = {100 * gi['fraction']:.0f}% of it (median per-round ratio)"
                    if gname == "gemm" and threads == 2 and np.dtype(dtype) == np.float32:
                        ok = gi["fraction"] >= GEMM_FRACTION_TARGET
                        s += f"; target ≥{100 * GEMM_FRACTION_TARGET:.0f}%: {'PASS' if ok else 'FAIL'}"
                lines.append(s)
    lines += footer_lines
    return "\n".join(lines) + "\n"


def draw_png(rows, path, title, series=None, ylabel=None):
    """Bars of speedups per row. ``series``: ``(row column, legend, colour,
    targets key)`` tuples (default: the float32 chart's vs torch / vs ORT)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    have_nb = any(r["ref"] == "nblstm" for r in rows)
    labels = [r["case"].replace(" vs padded torch", "\n(vs padded torch)") for r in rows]
    xs = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(7.0, 1.6 * len(rows) + 2), 4.8))
    w = 0.38
    if series is not None:
        w = 0.8 / len(series)
        ax.set_ylabel(ylabel or "speedup of nblstm (peer time / nblstm time)")
    elif have_nb:
        series = [("x_torch", "vs torch", "tab:blue", "torch"), ("x_ort", "vs ONNX Runtime", "tab:orange", "ort")]
        ax.set_ylabel("speedup of nblstm (peer time / nblstm time)")
    else:
        series = [("ort_vs_torch", "ONNX Runtime vs torch", "tab:orange", None)]
        ax.set_ylabel("speedup of ONNX Runtime over torch")
    for k, (col, label, color, tkey) in enumerate(series):
        off = (k - (len(series) - 1) / 2) * w
        # Bars grow from 1x (log scale): up = faster than the peer, down = slower.
        vals = [r[col] if r[col] is not None else 1.0 for r in rows]
        bars = ax.bar(xs + off, [v - 1.0 for v in vals], w, bottom=1.0, label=label, color=color)
        for b, r in zip(bars, rows):
            if r[col] is not None:
                v = r[col]
                ax.annotate(f"{v:.2f}×", (b.get_x() + b.get_width() / 2, v),
                            ha="center", va="bottom" if v >= 1 else "top", fontsize=8)
            tgt = r["targets"].get(tkey) if tkey else None
            if tgt is not None:
                ax.hlines(tgt, b.get_x() - 0.02, b.get_x() + b.get_width() + 0.02, colors="black", linewidth=2)
    ax.plot([], [], color="black", linewidth=2, label="target")
    ax.axhline(1.0, color="grey", linestyle="--", linewidth=1)
    shown = [v for r in rows for v in [r.get(s[0]) for s in series] + list(r["targets"].values()) if v]
    if shown:  # log scale: speedups span 0.1x..50x on a busy machine
        ax.set_yscale("log", base=2)
        ax.set_ylim(min(min(shown), 1.0) / 1.6, max(max(shown), 1.0) * 1.6)
        from matplotlib.ticker import FuncFormatter

        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}×"))
    ax.set_xticks(xs)
    ax.set_xticklabels(labels, fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --------------------------------------------------------------------------- cold start

_CHILD_NBLSTM = r"""
import json, resource, sys, time
t0 = time.perf_counter()
import numpy as np
import nblstm
t1 = time.perf_counter()
m = nblstm.LSTM(128, 128)
t2 = time.perf_counter()
out, (h, c) = m(np.ones((10, 1, 128), dtype=np.float32))
t3 = time.perf_counter()
assert out.shape == (10, 1, 128)
print(json.dumps(dict(import_s=t1 - t0, build_s=t2 - t1, forward_s=t3 - t2, total_s=t3 - t0,
                      maxrss_kb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                      torch_loaded="torch" in sys.modules)))
"""

_CHILD_TORCH = r"""
import json, resource, sys, time
t0 = time.perf_counter()
import torch
t1 = time.perf_counter()
m = torch.nn.LSTM(128, 128).eval()
t2 = time.perf_counter()
with torch.inference_mode():
    out, (h, c) = m(torch.ones(10, 1, 128))
t3 = time.perf_counter()
print(json.dumps(dict(import_s=t1 - t0, build_s=t2 - t1, forward_s=t3 - t2, total_s=t3 - t0,
                      maxrss_kb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                      torch_loaded=True)))
"""


def _child_env(extra: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in BLAS_VARS}
    env.update(extra)
    return env


def _run_child(code: str, env: dict) -> dict:
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"child failed ({p.returncode}):\n{p.stderr[-2000:]}")
    d = json.loads(p.stdout.strip().splitlines()[-1])
    d["wall_s"] = wall
    return d


def cold_start(repeats: int, md_path: Optional[str]) -> int:
    """Fresh-process cold start: import + LSTM(128, 128) + one forward on (10, 1, 128)."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="nblstm-cold-") as tmp:
        warm_dir = os.path.join(tmp, "warm")
        variants = []
        if peers.nblstm_available():
            variants.append(("nblstm, warm Numba cache", _CHILD_NBLSTM, lambda i: {"NUMBA_CACHE_DIR": warm_dir}))
            variants.append(
                ("nblstm, empty Numba cache", _CHILD_NBLSTM,
                 lambda i: {"NUMBA_CACHE_DIR": os.path.join(tmp, f"empty{i}")})
            )
        else:
            print("nblstm.LSTM is not available: torch only.")
        variants.append(("torch", _CHILD_TORCH, lambda i: {}))
        if peers.nblstm_available():
            _run_child(_CHILD_NBLSTM, _child_env({"NUMBA_CACHE_DIR": warm_dir}))  # prime the warm cache
        for label, code, envf in variants:
            runs = [_run_child(code, _child_env(envf(i))) for i in range(repeats)]
            med = lambda k: statistics.median(r[k] for r in runs)  # noqa: E731
            rows.append(
                (label, med("wall_s"), med("import_s"), med("build_s"), med("forward_s"), med("total_s"),
                 max(r["maxrss_kb"] for r in runs) / 1024.0, any(r["torch_loaded"] for r in runs))
            )
    head = [
        f"# nblstm cold start — {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC",
        "",
        f"Machine: {cpu_model()}, {cores()} cores. Medians of {repeats} fresh processes; "
        "peak RSS is the child's own ru_maxrss (max over runs). Wall includes interpreter start-up.",
        "",
        "| variant | process wall s | import s | build s | first forward s | import+build+forward s | peak RSS MB | torch imported |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    body = [
        f"| {l} | {w:.2f} | {i:.2f} | {b:.3f} | {f:.3f} | {t:.2f} | {rss:.0f} | {'yes' if tl else 'no'} |"
        for l, w, i, b, f, t, rss, tl in rows
    ]
    text = "\n".join(head + body) + "\n"
    print(text)
    if md_path:
        os.makedirs(os.path.dirname(os.path.abspath(md_path)), exist_ok=True)
        with open(md_path, "w") as f:
            f.write(text)
        print(f"wrote {md_path}")
    return 0


# --------------------------------------------------------------------------- main


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m nblstm_bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2, help="threads on every side (default 2)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--precision", choices=PRECISIONS, default="float32",
                   help="weight precision: float32 (default: nblstm vs torch and ONNX Runtime), or int8 / "
                        "bfloat16: nblstm's LSTM.quantize(...) vs ONNX Runtime int8 and torch qint8 / torch "
                        "bfloat16, and vs nblstm float32 (float32 input and output; needs --dtype float32)")
    p.add_argument("--cases", nargs="+", default=None,
                   help=f"cases to run (space or comma separated; known: {', '.join(GRID)}); default "
                        f"float32: {', '.join(DEFAULT_CASES['float32'])}; int8 and bfloat16: all")
    p.add_argument("--quick", action="store_true", help="tiny repeats, for a CI smoke run")
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 25, quick 3)")
    p.add_argument("--block-ms", type=float, default=None, help="target block length (default 30, quick 5)")
    p.add_argument("--gap-ms", type=float, default=None,
                   help="pause before every block of the rounds, so threads left spinning by the previous "
                        "side (torch's OpenMP, OpenBLAS) go idle first (default 150, quick 0)")
    p.add_argument("--case-budget-s", type=float, default=None,
                   help="stop a case's rounds after this many seconds, once 5 (quick: 3) are done (default 60, quick 10)")
    p.add_argument("--png", default=None,
                   help="bar chart path (default docs/benchmark.png; docs/benchmark_int8.png or "
                        "docs/benchmark_bfloat16.png with --precision)")
    p.add_argument("--md", default=None,
                   help="markdown output (default docs/benchmark.md, docs/benchmark_int8.md or "
                        "docs/benchmark_bfloat16.md with --precision, or docs/cold_start.md with --cold-start)")
    p.add_argument("--no-png", action="store_true", help="do not draw the chart")
    p.add_argument("--peers-only", action="store_true", help="do not run nblstm even if it is available")
    p.add_argument("--stepping", action="store_true",
                   help="measure the per-call cost of stepping (LSTMCell, Stream) against torch "
                        "instead (docs/stepping.md)")
    p.add_argument("--cold-start", action="store_true",
                   help="measure import + LSTM(128,128) + one forward in fresh processes instead")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    warn = blas_warning()
    if warn:
        print(warn, file=sys.stderr)
    if args.cold_start:
        return cold_start(1 if args.quick else 3, args.md or "docs/cold_start.md")
    if args.stepping:
        from .stepping import stepping
        return stepping(args.threads, args.quick, args.md or "docs/stepping.md")

    dtype = np.dtype(args.dtype)
    precision = args.precision
    reduced = precision != "float32"
    if reduced and dtype != np.float32:
        print(f"--precision {precision} has float32 input and output: use it with --dtype float32", file=sys.stderr)
        return 2
    png_path = args.png or default_output(precision, "png")
    names = list(DEFAULT_CASES[precision])
    if args.cases:
        names = [n for a in args.cases for n in a.split(",") if n]
        unknown = [n for n in names if n not in GRID]
        if unknown:
            print(f"unknown case(s) {unknown}; known: {', '.join(GRID)}", file=sys.stderr)
            return 2
    rounds = args.rounds or (3 if args.quick else 25)
    block_s = (args.block_ms or (5.0 if args.quick else 30.0)) / 1e3
    gap_s = (args.gap_ms if args.gap_ms is not None else (0.0 if args.quick else 150.0)) / 1e3
    alone_blocks = 1 if args.quick else 3
    budget_s = args.case_budget_s or (10.0 if args.quick else 60.0)
    min_rounds = min(rounds, 3 if args.quick else 5)

    try:
        import torch  # noqa: F401
    except ImportError:
        print("torch is required for the comparison (pip install torch==2.13.0)", file=sys.stderr)
        return 2
    use_nblstm = not args.peers_only and peers.nblstm_available()
    thread_notes = peers.set_threads(args.threads)
    if not use_nblstm and not args.peers_only:
        print("nblstm.LSTM is not available: timing the peers only.", file=sys.stderr)
    if reduced and use_nblstm and not peers.nblstm_can_quantize():
        print(f"nblstm.LSTM.quantize is not available: {NBLSTM_LABEL[precision]} is not run.", file=sys.stderr)

    load0 = load_average()
    busy0 = busy_processes()
    if busy0:
        print("WARNING: other processes are using the CPU; absolute times will be inflated and ratios noisy: "
              + "; ".join(busy0), file=sys.stderr)
    results = []
    t_start = time.time()
    for name in names:
        case = GRID[name]
        print(f"[{time.time() - t_start:6.1f}s] {name} ({case.describe()}) ...", file=sys.stderr, flush=True)
        if reduced:
            results.append(
                run_case_reduced(case, precision, args.threads, rounds, block_s, alone_blocks, use_nblstm,
                                 budget_s=budget_s, min_rounds=min_rounds, gap_s=gap_s)
            )
            continue
        results.append(
            run_case(case, dtype, args.threads, rounds, block_s, alone_blocks, use_nblstm,
                     gemm_square=not args.quick, budget_s=budget_s, min_rounds=min_rounds, gap_s=gap_s)
        )
    thread_notes = peers.set_threads(args.threads)

    rows = build_rows_reduced(results, precision, args.threads) if reduced else build_rows(results, dtype, args.threads)
    now = _dt.datetime.now(_dt.timezone.utc)
    machine = f"{cpu_model()}, {cores()} cores, {args.threads} thread(s)"
    method = (
        f"Method: one process, up to {rounds} interleaved rounds per case (order rotates each round; "
        f"done: {', '.join(f'{r.case.name} {r.rounds}' for r in results)}), blocks of ~{block_s * 1e3:.0f} ms "
        f"(at least one call), a {gap_s * 1e3:.0f} ms pause and one untimed call before every block (threads left spinning "
        "by the previous side go idle, this side's own threads are awake); "
    )
    if reduced:
        nb_label = NBLSTM_LABEL[precision]
        header = [
            f"# {nb_label} vs {' / '.join(label for _, label in REDUCED_PEERS[precision])} — {now:%Y-%m-%d %H:%M} UTC",
            "",
            f"Machine: {machine}; precision {precision} (weights; float32 input and output). {versions()}.",
            f"CPU features (llvmlite.binding.get_host_cpu_features()): {cpu_features_text()}; "
            f"nblstm's {precision} kernel path: {kernel_path(precision)}.",
            method + f"ms = median per-call time in the rounds; speedup = median of per-round ratios peer time / "
            f"{nb_label} time. Every runner was called once before timing and its max abs error against torch "
            f"float32 on the same input measured (torch float32 itself is not timed). packed_bi_h256 is a "
            f"PackedSequence for nblstm and torch, sequence_lens for ONNX Runtime.",
        ]
    else:
        header = [
            f"# nblstm vs torch / ONNX Runtime — {now:%Y-%m-%d %H:%M} UTC",
            "",
            f"Machine: {machine}; dtype {dtype.name}. {versions()}.",
            method + "ms = median per-call time in the rounds; speedup = median of per-round ratios peer time / nblstm time. "
            "Every runner was called and checked against torch (max abs diff) before timing.",
        ]
    if warn:
        header.append("")
        header.append(f"**{warn}**")
    footer = ["", "Notes:"]
    footer.append(f"- threads: {'; '.join(thread_notes)}; ORT intra_op={args.threads}, inter_op=1, allow_spinning=0")
    footer.append(f"- BLAS: {peers.blas_info()}")
    for res in results:
        for impl, err in res.errors.items():
            footer.append(f"- {res.case.name}: {impl}: {err}")
        if res.diffs:
            footer.append(
                f"- {res.case.name}: {'max abs error vs torch float32' if reduced else 'max abs diff vs torch'}: "
                + ", ".join(f"{k} {v:.2e}" for k, v in res.diffs.items())
                + "; " + "; ".join(res.notes)
            )
        for impl, t in res.timings.items():
            if t.alone_ms == t.alone_ms and abs(t.alone_ms - t.pair_ms) > 0.15 * min(t.alone_ms, t.pair_ms):
                footer.append(
                    f"- {res.case.name}: {impl} alone {_fmt_ms(t.alone_ms)} ms vs {_fmt_ms(t.pair_ms)} ms inside the rounds "
                    f"(differs by more than 15%: "
                    + ("slower inside the rounds: threads left spinning by the previous side, or other load"
                       if t.pair_ms > t.alone_ms else "drift or other load") + ")"
                )
    footer.append("- per-impl ms alone (after a 0.5 s pause) / inside the rounds: " + "; ".join(
        f"{res.case.name}: " + ", ".join(f"{i} {_fmt_ms(t.alone_ms)}/{_fmt_ms(t.pair_ms)}" for i, t in res.timings.items())
        for res in results))
    footer.append(f"- wall time of the run: {time.time() - t_start:.0f} s; 1-min load average at start "
                  f"{load0 if load0 is not None else float('nan'):.2f}, at end {load_average() or float('nan'):.2f} "
                  f"(on {cores()} cores; well above {args.threads} means other work shared the CPUs)")
    if busy0:
        footer.append("- **other processes were using the CPU at the start**: " + "; ".join(busy0))
    if reduced:
        text = render_markdown_reduced(results, rows, precision, args.threads, header, footer)
    else:
        text = render_markdown(results, rows, dtype, args.threads, header, footer)
    print(text)
    md = args.md or default_output(precision, "md")
    os.makedirs(os.path.dirname(os.path.abspath(md)), exist_ok=True)
    with open(md, "w") as f:
        f.write(text)
    print(f"wrote {md}", file=sys.stderr)
    if args.no_png:
        return 0
    if reduced:
        nb_label = NBLSTM_LABEL[precision]
        if not any(r["ref"] == "nblstm" for r in rows):
            print(f"no chart: {nb_label} was not run", file=sys.stderr)
            return 0
        colors = ("tab:orange", "tab:blue", "tab:green")
        series = [(f"x_{key}", f"vs {label}", colors[k], key)
                  for k, (key, label) in enumerate(REDUCED_PEERS[precision])]
        feats = cpu_features()
        feat_text = ("CPU: " + " ".join(f"{k}={'y' if v else 'n'}" for k, v in feats.items())) if feats else ""
        title = f"{nb_label} speedups, precision {precision} — {now:%Y-%m-%d %H:%M} UTC\n{machine}\n{feat_text}"
        draw_png(rows, png_path, title, series=series,
                 ylabel=f"speedup of {nb_label} (peer time / {nb_label} time)")
    else:
        title = f"nblstm speedups — {now:%Y-%m-%d %H:%M} UTC — {machine}, {dtype.name}"
        if not any(r["ref"] == "nblstm" for r in rows):
            title = f"ONNX Runtime vs torch (nblstm missing) — {now:%Y-%m-%d %H:%M} UTC — {machine}, {dtype.name}"
        draw_png(rows, png_path, title)
    print(f"wrote {png_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
