"""The comparison command (``python -m nblstm_bench``) still runs end to end
(a quick, one-case run; no timing is asserted)."""

import importlib.util
import os
import pathlib
import subprocess
import sys

import pytest

import nblstm

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_quick_comparison_writes_its_table(tmp_path):
    pytest.importorskip("torch")
    md = tmp_path / "benchmark.md"
    result = subprocess.run(
        [sys.executable, "-m", "nblstm_bench", "--quick", "--cases", "stream_b1_h128",
         "--no-png", "--md", str(md)],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    text = md.read_text()
    assert "| stream_b1_h128 | T100 B1 I128 H128 |" in text, text
    assert "max abs diff vs torch: nblstm" in text, text  # the runners were checked first
    assert f"nblstm {nblstm.__version__}" in text, text  # the versions line


def test_quick_int8_comparison_writes_its_table(tmp_path):
    """``--precision int8``: nblstm's ``LSTM.quantize("int8")`` against ONNX Runtime
    int8, torch qint8 and nblstm float32, each side's error against torch float32
    in the table (only the structure is checked; no timing is asserted)."""
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime.quantization")
    md = tmp_path / "benchmark_int8.md"
    result = subprocess.run(
        [sys.executable, "-m", "nblstm_bench", "--precision", "int8", "--quick", "--cases", "stream_b1_h128",
         "--no-png", "--md", str(md)],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    text = md.read_text()
    assert "precision int8" in text, text
    assert "avx512vnni" in text and "amx-int8" in text, text  # the CPU features line
    assert ("| case | shape | nblstm int8 ms | ORT int8 ms | speedup vs ORT int8 | torch qint8 ms | "
            "speedup vs torch qint8 | nblstm float32 ms | speedup vs nblstm float32 | err nblstm int8 | "
            "err ORT int8 | err torch qint8 | err nblstm float32 | target | result |") in text, text
    row = next(line for line in text.splitlines() if line.startswith("| stream_b1_h128 | T100 B1 I128 H128 |"))
    assert "n/a" not in row and "—" not in row.split("|")[3], row  # nblstm int8 was timed
    assert "- stream_b1_h128: nblstm int8 err " in text and " vs ORT int8 err " in text, text
    assert "became DynamicQuantizeLSTM: stream_b1_h128 DynamicQuantizeLSTM" in text, text
    assert "NOT TIMED" not in text, text  # no side's error was absurd


def test_thread_scaling_command_writes_its_table(tmp_path):
    """``python -m nblstm_bench.threads_bench``: one case on 1, 2 and 4 threads
    (NUMBA_NUM_THREADS=4), each side checked bitwise against 1 thread before
    it is timed, the table and the chart written (no timing is asserted)."""
    pytest.importorskip("torch")
    md, png = tmp_path / "threads.md", tmp_path / "threads.png"
    result = subprocess.run(
        [sys.executable, "-m", "nblstm_bench.threads_bench", "--cases", "b8_h256",
         "--threads", "1,2,4", "--rounds", "2", "--block-ms", "1", "--gap-ms", "0",
         "--budget-s", "1", "--md", str(md), "--png", str(png)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env=dict(os.environ, NUMBA_NUM_THREADS="4"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    text = md.read_text()
    assert "| case | shape | 1 thr ms | 2 thr ms | 4 thr ms | x2 | x4 |" in text, text
    row = next(line for line in text.splitlines() if line.startswith("| b8_h256 | T100 B8 I256 H256 |"))
    assert row.endswith("| partitioned 2x2 (4) |"), row  # 2 row groups x 2 unit parts
    assert "bitwise the 1-thread output" in text and "amx-int8" in text, text
    if importlib.util.find_spec("matplotlib") is not None:  # a bench extra, not a test one
        assert png.stat().st_size > 0
    else:
        assert "matplotlib not installed" in result.stderr and not png.exists(), result.stderr
    bad = subprocess.run([sys.executable, "-m", "nblstm_bench.threads_bench", "--threads", "1,99"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--threads" in bad.stderr, bad.stderr
