#!/usr/bin/env python
"""Regression gate: ``asv continuous BASE HEAD --factor 1.1`` on nblstm's fast subset.

Both commits are built and installed in the virtualenv of ``asv.conf.json`` (the
same environment as the history, so nothing is rebuilt but the two wheels),
benchmarked with their rounds interleaved, and compared; then the benchmarks that
got slower, faster or started failing are listed::

    python asv_bench/gate.py                      # main vs HEAD, factor 1.1
    python asv_bench/gate.py main my-branch --factor 1.05 -b "time_forward\\('nblstm', 'b8_h256'"
    python asv_bench/gate.py --quick              # one sample each: a smoke run

The equivalent bare command (from ``asv_bench/``) is
``asv continuous main HEAD --factor 1.1 --split -b ...``; the script adds the
default benchmark selection, unsets ``OPENBLAS_CORETYPE``/``OPENBLAS_L2_SIZE``
and keeps the two commits' results out of ``results/`` (they go to
``.asv/gate-results``, so the committed history stays main's).

Exit status: 0 nothing slower, 1 something slower (or newly failing),
2 asv itself failed (a commit that does not build, a benchmark that errors).

``--reuse-site-packages`` (for CI and quick checks): an environment without the
matrix, whose ``site-packages`` reaches this Python's (numpy, numba, torch...
already installed here) through a ``.pth`` line; each commit's nblstm is still
built and installed into it, and wins over anything found there.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import site
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))

#: nblstm's side of the history subset (history.sh): the peers do not change
#: between two commits of nblstm.
DEFAULT_BENCH = [
    r"time_forward\('nblstm', .*, 'float32', 'float32'\)",
    r"time_forward\('nblstm', '(stream_b1_h128|b8_h256|b64_h512|T50_B4_H1536)', 'float32', '(int8|bfloat16)'\)",
    r"peakmem_forward\('nblstm'\)",
    r"ColdStart.*nblstm",
    r"time_(stream|cell_step)\('nblstm'",
]

_ROW = re.compile(r"^\|\s*(?P<mark>[+\-!*x ]?)\s*\|(?P<before>[^|]*)\|(?P<after>[^|]*)\|(?P<ratio>[^|]*)\|(?P<name>[^|]*)\|\s*$")


def _load_json5(path: str) -> dict:
    """asv.conf.json allows // comments; strip them (no string in ours holds //)."""
    try:
        import json5

        with open(path) as f:
            return json5.load(f)
    except ImportError:
        with open(path) as f:
            text = re.sub(r"^\s*//.*$", "", f.read(), flags=re.M)
        return json.loads(text)


def gate_config(config: str, results_dir: str, reuse_site_packages: bool, workdir: str) -> str:
    """A copy of ``config`` with absolute paths and results in ``results_dir``."""
    conf = _load_json5(config)
    base = os.path.dirname(os.path.abspath(config))
    for key in ("repo", "benchmark_dir", "env_dir", "html_dir"):
        if key in conf and not re.match(r"^\w+://", str(conf[key])):
            conf[key] = os.path.normpath(os.path.join(base, conf[key]))
    conf["results_dir"] = os.path.abspath(results_dir)
    if reuse_site_packages:
        paths = [p for p in site.getsitepackages() + [site.getusersitepackages()] if os.path.isdir(p)]
        helper = os.path.join(workdir, "reuse_site_packages.py")
        with open(helper, "w") as f:
            f.write(
                "import os, sysconfig\n"
                f"paths = {paths!r}\n"
                "pth = os.path.join(sysconfig.get_paths()['purelib'], 'zz_gate_reuse_site_packages.pth')\n"
                "with open(pth, 'w') as f:\n"
                "    f.write('\\n'.join(paths) + '\\n')\n"
            )
        conf["matrix"] = {}
        conf["pythons"] = [f"{sys.version_info.major}.{sys.version_info.minor}"]
        conf["env_dir"] = os.path.join(os.path.abspath(results_dir), "..", "gate-env")
        conf["install_command"] = [f"python {shlex.quote(helper)}"] + list(conf.get("install_command") or [
            "in-dir={env_dir} python -m pip install --no-deps --force-reinstall {wheel_file}"])
    path = os.path.join(workdir, "asv.gate.conf.json")
    with open(path, "w") as f:
        json.dump(conf, f, indent=2)
    return path


def parse_changes(output: str) -> dict:
    """``{"slower": [...], "faster": [...], "failed": [...]}`` from asv's compare table."""
    changes = {"slower": [], "faster": [], "failed": [], "fixed": []}
    kinds = {"+": "slower", "-": "faster", "!": "failed", "*": "fixed"}
    for line in output.splitlines():
        m = _ROW.match(line.strip())
        if not m or m["mark"] not in kinds:
            continue
        changes[kinds[m["mark"]]].append(
            f"{m['name'].strip()}: {m['before'].strip()} -> {m['after'].strip()} (x{m['ratio'].strip()})")
    return changes


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("base", nargs="?", default="main", help="commit/branch to compare against (default main)")
    ap.add_argument("head", nargs="?", default="HEAD", help="commit/branch tested (default HEAD)")
    ap.add_argument("--factor", type=float, default=1.1, help="ratio that counts as a change (default 1.1)")
    ap.add_argument("-b", "--bench", action="append", help="benchmark regex (repeatable; default: nblstm's fast subset)")
    ap.add_argument("--quick", action="store_true", help="one sample per benchmark (smoke run; ratios meaningless)")
    ap.add_argument("--config", default=os.path.join(HERE, "asv.conf.json"))
    ap.add_argument("--machine", default=None, help="asv machine name (default: this host's)")
    ap.add_argument("--results-dir", default=os.path.join(HERE, ".asv", "gate-results"))
    ap.add_argument("--reuse-site-packages", action="store_true",
                    help="no matrix: the environment sees this Python's packages (CI)")
    ap.add_argument("--asv", default=None, help="asv executable (default: the one next to this Python)")
    args, extra = ap.parse_known_args(argv)  # anything else goes to asv continuous as is

    asv = args.asv or os.path.join(os.path.dirname(sys.executable), "asv")
    if not os.path.exists(asv):
        asv = "asv"
    extra = [a for a in extra if a != "--"]
    with tempfile.TemporaryDirectory(prefix="nblstm-gate-") as work:
        config = gate_config(args.config, args.results_dir, args.reuse_site_packages, work)
        cmd = [asv, "continuous", "--config", config, args.base, args.head,
               "--factor", str(args.factor), "--split", "--show-stderr"]
        for b in args.bench or DEFAULT_BENCH:
            cmd += ["-b", b]
        if args.quick:
            cmd.append("--quick")
        if args.machine:
            cmd += ["--machine", args.machine]
        cmd += extra
        env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
        # Make `pythonX.Y` of this interpreter the one asv's virtualenv finds first.
        env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
        print("+ " + " ".join(shlex.quote(c) for c in cmd), flush=True)
        proc = subprocess.Popen(cmd, cwd=HERE, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, bufsize=1)
        lines = []
        for line in proc.stdout:
            sys.stdout.write(line)
            lines.append(line)
        rc = proc.wait()

    changes = parse_changes("".join(lines))
    print(f"\n== gate: {args.base} -> {args.head}, factor {args.factor} ==")
    for kind in ("slower", "faster", "failed", "fixed"):
        print(f"{kind} ({len(changes[kind])}):")
        for item in changes[kind]:
            print(f"  {item}")
    if rc not in (0, 1):
        print(f"asv continuous failed (exit status {rc}): see its output above")
        return 2
    if rc == 1 or changes["slower"] or changes["failed"]:
        print("RESULT: slower")
        return 1
    print("RESULT: no benchmark slower")
    return 0


if __name__ == "__main__":
    sys.exit(main())
