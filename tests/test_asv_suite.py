"""The asv benchmark suite still runs (a quick, reduced run; no timing is asserted)."""

import os
import subprocess

import pytest

from asv_helpers import ASV_DIR, asv_executable, private_config


def test_asv_quick_run(tmp_path):
    pytest.importorskip("asv")
    asv = asv_executable()
    # asv writes results/<machine>/machine.json even on a dry run: private_config
    # keeps it (and everything else asv writes) out of the tracked results.
    config = private_config(tmp_path, ASV_DIR.parent)
    env = dict(os.environ, HOME=str(tmp_path))  # asv keeps its machine file in ~
    subprocess.run([asv, "machine", "--yes"], cwd=ASV_DIR, env=env, check=True,
                   capture_output=True, timeout=120)
    result = subprocess.run(
        [asv, "run", "--config", str(config), "--python=same", "--quick", "--dry-run",
         "--show-stderr",
         # stream_b1_h128, dtype float32, every precision (float32, int8, bfloat16)
         "-b", r"time_forward\(.*stream_b1_h128', 'float32', ", "-b", "time_pack_pad",
         # ColdStart's torch variant: its nblstm ones time the same statement
         # after a full compile each (a fresh cache directory, under a minute),
         # which the forward benchmarks above already run.
         "-b", r"ColdStart.*'torch'", "-b", r"time_cell_step\(.*128\)"],
        cwd=ASV_DIR, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "failed" not in result.stdout.lower(), result.stdout[-4000:]
