"""The asv benchmark suite still runs (a quick, reduced run; no timing is asserted)."""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

ASV_DIR = pathlib.Path(__file__).resolve().parents[1] / "asv_bench"


def test_asv_quick_run(tmp_path):
    pytest.importorskip("asv")
    sys.path.insert(0, str(ASV_DIR))
    try:
        import gate
    finally:
        sys.path.pop(0)
    asv = shutil.which("asv") or os.path.join(os.path.dirname(sys.executable), "asv")
    # asv writes results/<machine>/machine.json even on a dry run: keep it (and
    # everything else asv writes) out of the tracked results.
    conf = gate._load_json5(str(ASV_DIR / "asv.conf.json"))
    conf.update(repo=str(ASV_DIR.parent), benchmark_dir=str(ASV_DIR / "benchmarks"),
                env_dir=str(tmp_path / "env"), results_dir=str(tmp_path / "results"),
                html_dir=str(tmp_path / "html"))
    config = tmp_path / "asv.conf.json"
    config.write_text(json.dumps(conf))
    env = dict(os.environ, HOME=str(tmp_path))  # asv keeps its machine file in ~
    subprocess.run([asv, "machine", "--yes"], cwd=ASV_DIR, env=env, check=True,
                   capture_output=True, timeout=120)
    result = subprocess.run(
        [asv, "run", "--config", str(config), "--python=same", "--quick", "--dry-run",
         "--show-stderr",
         # stream_b1_h128, dtype float32, every precision (float32, int8, bfloat16)
         "-b", r"time_forward\(.*stream_b1_h128', 'float32', ", "-b", "time_pack_pad",
         "-b", "ColdStart", "-b", r"time_cell_step\(.*128\)"],
        cwd=ASV_DIR, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "failed" not in result.stdout.lower(), result.stdout[-4000:]
