"""``python -m nblstm_bench.threads_bench``: how nblstm scales with threads.

Each grid case runs on 1, 2, ... threads (``--threads``, default 1 and every
thread Numba has) as sides of one interleaved comparison
(``compare.interleave``: rotating blocks of calls, a pause and one untimed
call before every block, medians over rounds). A side switches nblstm's
thread count in that untimed call, so no timed call pays for it. The speedup
of ``n`` threads is the median of the per-round ratios (1-thread time / n-thread
time). Every side's output is checked bitwise equal to the 1-thread side's
before timing (the contract: results do not depend on the thread count).

Writes ``docs/threads.md`` (``--md``) and, with more than two thread counts,
the scaling chart ``docs/threads.png`` (``--png``). Run it with
``OPENBLAS_CORETYPE``/``OPENBLAS_L2_SIZE`` unset, on a quiet machine.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import sys
from typing import List, Optional

import numpy as np

from . import peers
from .cases import DEFAULT_CASES, GRID, PRECISIONS
from .compare import cores, cpu_features_text, cpu_model, interleave, median_ratio, versions


def _side(model, x, threads: int, state: dict):
    """A call of ``model`` on ``threads`` threads; switches the count (a
    few milliseconds with threadpoolctl) only when the previous call ran
    another count, which the interleaving makes the untimed first call of a
    block."""
    import nblstm

    def call():
        if state.get("threads") != threads:
            nblstm.set_num_threads(threads)
            state["threads"] = threads
        return model(x)

    return peers.Runner(f"{threads} thread(s)", call, lambda r: ())


def _flatten(result) -> List[np.ndarray]:
    out, (h, c) = result
    data = out.data if hasattr(out, "data") else out
    return [np.asarray(data), np.asarray(h), np.asarray(c)]


def run_case(name: str, precision: str, thread_counts, rounds: int, block_s: float,
             gap_s: float, budget_s: float) -> dict:
    import nblstm
    from nblstm.lstm import _driver

    case = GRID[name]
    x = case.padded_input(np.float32)
    module = peers.make_torch_module(case, np.float32, seed=0)
    model = nblstm.LSTM.from_torch(module)
    if precision != "float32":
        model = model.quantize(precision)
    if case.varlen:
        x, _ = peers.nblstm_pack(x, case.lengths())
    state: dict = {}
    sides = {t: _side(model, x, t, state) for t in thread_counts}
    reference = None
    plans = {}
    batch_sizes = (np.asarray(x.batch_sizes, np.int64) if case.varlen
                   else np.full(case.T, case.B, np.int64))
    for t, side in sides.items():
        got = _flatten(side.fn())
        if reference is None:
            reference = got
        elif not all(np.array_equal(a, b) for a, b in zip(got, reference)):
            raise AssertionError(f"{name} {precision}: {t} threads gave other bits than "
                                 f"{thread_counts[0]}")
        plan = _driver.layer_plan(model._layers[0], batch_sizes, case.H, threads=t)
        plans[t] = f"{plan.kind} {plan.groups}x{plan.parts} ({plan.threads_used(case.D)})"
    timings = interleave({f"{t}": s for t, s in sides.items()}, rounds, block_s, 0,
                         budget_s=budget_s, gap_s=gap_s, verbose=False)
    base = timings[str(thread_counts[0])]
    result = {"case": case, "ms": {}, "speedup": {}, "plans": plans,
              "rounds": len(base.per_round_s)}
    for t in thread_counts:
        timing = timings[str(t)]
        result["ms"][t] = timing.pair_ms
        result["speedup"][t] = median_ratio(base.per_round_s, timing.per_round_s)
    return result


def render(results: list, precision: str, thread_counts, header: List[str]) -> str:
    lines = list(header)
    columns = " | ".join(f"{t} thr ms" for t in thread_counts)
    speedups = " | ".join(f"x{t}" for t in thread_counts[1:])
    lines += ["", f"| case | shape | {columns} | {speedups} | plan of layer 0 at "
              f"{thread_counts[-1]} threads (threads used) |",
              "|---|---|" + "---:|" * (2 * len(thread_counts) - 1) + "---|"]
    for r in results:
        ms = " | ".join(f"{r['ms'][t]:.3g}" for t in thread_counts)
        sp = " | ".join(f"{r['speedup'][t]:.2f}x" for t in thread_counts[1:])
        lines.append(f"| {r['case'].name} | {r['case'].describe()} | {ms} | {sp} | "
                     f"{r['plans'][thread_counts[-1]]} |")
    lines += ["", f"Precision {precision}. ms: median per-call time in the interleaved rounds; "
              "xN: median of per-round ratios (1-thread time / N-thread time). Every thread "
              "count's output was bitwise the 1-thread output."]
    return "\n".join(lines) + "\n"


def draw(results: list, thread_counts, path: str, title: str) -> Optional[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib not installed: no chart"
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in results:
        ax.plot(thread_counts, [r["speedup"][t] for t in thread_counts], marker="o",
                label=r["case"].name)
    ax.plot(thread_counts, thread_counts, color="grey", linestyle=":", label="linear")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    ax.set_xticks(thread_counts, [str(t) for t in thread_counts])
    ax.set_xlabel("threads")
    ax.set_ylabel("speedup over 1 thread")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return None


def parse_args(argv=None):
    import numba

    p = argparse.ArgumentParser(prog="python -m nblstm_bench.threads_bench",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", default=f"1,{numba.config.NUMBA_NUM_THREADS}",
                   help="comma-separated thread counts, the first the baseline "
                        "(default: 1 and NUMBA_NUM_THREADS)")
    p.add_argument("--precision", choices=PRECISIONS, default="float32")
    p.add_argument("--cases", default=None, help="comma-separated grid cases "
                   "(default: the precision's cases of the comparison command)")
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--block-ms", type=float, default=30.0)
    p.add_argument("--gap-ms", type=float, default=150.0)
    p.add_argument("--budget-s", type=float, default=40.0, help="time budget per case")
    p.add_argument("--md", default="docs/threads.md")
    p.add_argument("--png", default="docs/threads.png")
    return p.parse_args(argv)


def main(argv=None) -> int:
    import numba

    args = parse_args(argv)
    thread_counts = [int(t) for t in args.threads.split(",")]
    if len(set(thread_counts)) != len(thread_counts) or min(thread_counts) < 1 \
            or max(thread_counts) > numba.config.NUMBA_NUM_THREADS:
        print(f"--threads: distinct counts between 1 and NUMBA_NUM_THREADS="
              f"{numba.config.NUMBA_NUM_THREADS}, got {args.threads!r}", file=sys.stderr)
        return 2
    names = args.cases.split(",") if args.cases else list(DEFAULT_CASES[args.precision])
    unknown = [n for n in names if n not in GRID]
    if unknown:
        print(f"--cases: unknown {unknown}; known: {', '.join(GRID)}", file=sys.stderr)
        return 2
    results = []
    for name in names:
        print(f"{name} ...", file=sys.stderr, flush=True)
        results.append(run_case(name, args.precision, thread_counts, args.rounds,
                                args.block_ms / 1e3, args.gap_ms / 1e3, args.budget_s))
    when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    header = [f"# nblstm thread scaling ({args.precision}) — {when}", "",
              f"Machine: {cpu_model()}, {cores()} cores; {versions()}.",
              f"CPU features (llvmlite.binding.get_host_cpu_features()): {cpu_features_text()}.",
              f"Command: `env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m "
              f"nblstm_bench.threads_bench --threads {args.threads} --precision "
              f"{args.precision}" + (f" --cases {args.cases}" if args.cases else "")
              + f"`; up to {args.rounds} interleaved rounds a case "
              f"(done: {', '.join(str(r['rounds']) for r in results)})."]
    text = render(results, args.precision, thread_counts, header)
    print(text)
    if args.md:
        with open(args.md, "w") as f:
            f.write(text)
    if args.png and len(thread_counts) > 2:
        note = draw(results, thread_counts, args.png,
                    f"nblstm {args.precision}: speedup over 1 thread")
        if note:
            print(note, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
