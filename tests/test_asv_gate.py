"""The regression gate (``asv_bench/gate.py``: ``asv continuous BASE HEAD --factor 1.1``)
runs on two commits. No timing is asserted.

A throwaway git repository holds two commits of this working tree's nblstm (the
second adds a comment), so the test needs no history from the checkout. The gate
runs with the real ``asv.conf.json`` (its build and install commands, the real
benchmark suite) pointed at that repository, ``--reuse-site-packages`` (no matrix:
the environment reaches this Python's numpy/numba through a ``.pth`` line; each
commit's nblstm is still built as a wheel and installed into it), ``--quick`` and
one small benchmark. Needs git, and PyPI (or pip's configured index) for asv's own
``asv_runner``/``build``/``pympler`` in the new environment. About a minute.
"""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

from asv_helpers import ASV_DIR, ROOT, asv_executable, gate_module, private_config

BENCH = r"time_pack_pad_roundtrip\('nblstm'\)"


def _git(repo, *args):
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, timeout=60)


def _two_commit_repo(path: pathlib.Path) -> list:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.nbi", "*.nbc", "*.egg-info")
    path.mkdir()
    shutil.copytree(ROOT / "nblstm", path / "nblstm", ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, path / name)
    _git(path, "init", "-q")
    _git(path, "symbolic-ref", "HEAD", "refs/heads/main")  # whatever init.defaultBranch says
    _git(path, "config", "user.email", "gate@example.invalid")
    _git(path, "config", "user.name", "gate test")
    _git(path, "config", "commit.gpgsign", "false")
    _git(path, "add", "-A")
    _git(path, "commit", "-q", "-m", "base")
    with open(path / "nblstm" / "__init__.py", "a") as f:
        f.write("\n# gate test: second commit\n")
    _git(path, "commit", "-q", "-am", "head")
    out = subprocess.run(["git", "log", "--format=%H", "-2"], cwd=path, check=True,
                         capture_output=True, text=True).stdout.split()
    return out[::-1]  # [base, head]


@pytest.mark.asv_gate
def test_gate_runs_on_two_commits(tmp_path):
    pytest.importorskip("asv")
    base, head = _two_commit_repo(tmp_path / "repo")
    config = private_config(tmp_path, tmp_path / "repo", branches=["main"])

    env = dict(os.environ, HOME=str(tmp_path))  # asv keeps its machine file in ~
    home_cache = pathlib.Path.home() / ".cache" / "pip"
    if home_cache.is_dir():
        env.setdefault("PIP_CACHE_DIR", str(home_cache))
    asv = asv_executable()
    subprocess.run([asv, "machine", "--yes", "--machine", "gate-test"], cwd=ASV_DIR, env=env,
                   check=True, capture_output=True, timeout=120)

    results = tmp_path / "results"
    result = subprocess.run(
        [sys.executable, str(ASV_DIR / "gate.py"), base, "main", "--factor", "1.1",
         "--config", str(config), "--results-dir", str(results), "--reuse-site-packages",
         "--quick", "--machine", "gate-test", "-b", BENCH, "--asv", asv],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    log = result.stdout[-6000:] + result.stderr[-3000:]
    # 0: nothing slower, 1: something slower (one --quick sample each: either may happen);
    # 2: asv failed (a build, an install or the benchmark).
    assert result.returncode in (0, 1), log
    assert "== gate: " in result.stdout and "RESULT: " in result.stdout, log

    # Both commits were built, installed and measured: one result file each, with a value.
    for commit in (base, head):
        files = list((results / "gate-test").glob(f"{commit[:8]}-*.json"))
        assert len(files) == 1, (commit, sorted(p.name for p in (results / "gate-test").iterdir()), log)
        data = json.loads(files[0].read_text())
        assert data["commit_hash"] == commit
        entry = data["results"]["bench_packing.PackPadRoundtrip.time_pack_pad_roundtrip"]
        value = entry[0] if isinstance(entry, list) else entry["result"]
        # params order: implementation = ['nblstm', 'torch']; only nblstm was selected.
        assert value[0] is not None and value[0] > 0, (commit, entry, log)


def test_parse_changes():
    gate = gate_module()
    table = """
| Change   | Before [aaaaaaaa] <main>   | After [bbbbbbbb] <HEAD>   |   Ratio | Benchmark (Parameter)   |
|----------|----------------------------|---------------------------|---------|-------------------------|
| +        | 1.00±0.01ms                | 2.00±0.01ms               |    2.00 | bench_lstm.Forward.time_forward('nblstm', 'b8_h256', 'float32', 'float32') |
| -        | 2.00±0.01ms                | 1.00±0.01ms               |    0.50 | bench_lstm.PeakMem.peakmem_forward('nblstm') |
| !        | 1.00±0.01ms                | failed                    |     n/a | bench_stepping.Stream.time_stream('nblstm', 1, 1) |
"""
    changes = gate.parse_changes(table)
    assert [c.split(":")[0] for c in changes["slower"]] == [
        "bench_lstm.Forward.time_forward('nblstm', 'b8_h256', 'float32', 'float32')"]
    assert len(changes["faster"]) == 1 and len(changes["failed"]) == 1
