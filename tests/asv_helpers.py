"""What the asv tests share: the suite's folder, its real ``asv.conf.json``
pointed at a private place, and the asv executable."""

import json
import os
import pathlib
import shutil
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
ASV_DIR = ROOT / "asv_bench"


def gate_module():
    """``asv_bench/gate.py``, imported (it is a script, not a package module)."""
    sys.path.insert(0, str(ASV_DIR))
    try:
        import gate
    finally:
        sys.path.pop(0)
    return gate


def asv_executable() -> str:
    """The asv beside this Python (the test environment's), else on PATH."""
    asv = os.path.join(os.path.dirname(sys.executable), "asv")
    return asv if os.path.exists(asv) else shutil.which("asv")


def private_config(tmp_path: pathlib.Path, repo: pathlib.Path, **settings) -> pathlib.Path:
    """The real ``asv.conf.json`` (read by gate.py's reader) for ``repo`` and
    the real benchmarks, with everything asv writes (environments, results,
    machine.json among them, html) under ``tmp_path``, never in the tracked
    ``asv_bench/results/``; ``settings`` override more keys."""
    conf = gate_module()._load_json5(str(ASV_DIR / "asv.conf.json"))
    conf.update(repo=str(repo), benchmark_dir=str(ASV_DIR / "benchmarks"),
                env_dir=str(tmp_path / "env"), results_dir=str(tmp_path / "results"),
                html_dir=str(tmp_path / "html"), **settings)
    config = tmp_path / "asv.conf.json"
    config.write_text(json.dumps(conf))
    return config
