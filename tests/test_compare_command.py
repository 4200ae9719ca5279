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
