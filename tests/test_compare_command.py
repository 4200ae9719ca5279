"""The comparison command (``python -m nblstm_bench``) still runs end to end
(a quick, one-case run; no timing is asserted)."""

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
