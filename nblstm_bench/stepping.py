"""``python -m nblstm_bench --stepping``: the per-call cost of stepping.

Decoders and streaming models call the model once per frame, batch 1, so the
per-call cost is what counts. Each group below is timed as the grid is
(``compare.interleave``: rotating interleaved blocks of calls, medians over
rounds), nblstm beside torch's equivalent call:

* ``LSTMCell(128, 128)``, batch 1, ``out=`` the state (a decoding loop);
* a ``Stream`` of ``LSTM(128, 128)`` with 1 and 2 layers, one frame per call,
  and chunks of 10 frames (torch: ``lstm(x, hx)`` with the carried state);
* ``LSTMCell(512, 512)``, batch 1, against a NumPy copy of its weights' bytes
  (the time to read them once from memory, a lower bound).

The 128 cell's call is also broken down by timing its nested layers in the
same rounds: the whole call; the step plan (``StepPlan.run_cell``: scratch,
Numba's type dispatch); the compiled kernel called directly (its entry
point); and an empty compiled function of the same arguments (unboxing the
14 arguments). Python = call - plan, dispatch = plan - kernel, kernel =
kernel entry - unboxing.
"""

from __future__ import annotations

import datetime as _dt
import statistics
import sys
from typing import Optional

import numpy as np

from . import peers
from .compare import cores, cpu_features_text, cpu_model, interleave, versions

#: (group, targets): per-call microseconds at most, and speedups over torch at least.
TARGETS = {
    "cell_h128": {"us": 8.0, "torch_x": 6.0},
    "stream_1layer_h128": {"us": 8.0},
    "stream_2layer_h128": {"us": 14.0},
    "stream_chunk10_h128": {"us": 20.0},
    "cell_h512": {"bound_x": 1.2, "torch_x": 2.5},
}


def _runner(fn):
    return peers.Runner("", fn, lambda r: ())


def _cell_group(hidden: int, rng, torch):
    import nblstm

    module = torch.nn.LSTMCell(hidden, hidden).eval()
    cell = nblstm.LSTMCell.from_torch(module)
    x = rng.standard_normal((1, hidden), dtype=np.float32)
    h, c = np.zeros((1, hidden), np.float32), np.zeros((1, hidden), np.float32)
    xt, ht, ct = torch.from_numpy(x), torch.zeros(1, hidden), torch.zeros(1, hidden)
    with torch.inference_mode():
        want = module(xt, (ht, ct))
    got = cell(x, (h, c))
    error = max(float(np.abs(got[k] - want[k].numpy()).max()) for k in range(2))
    if error > 1e-4:
        raise RuntimeError(f"LSTMCell({hidden}) differs from torch by {error}")

    def torch_step():
        with torch.inference_mode():
            module(xt, (ht, ct))

    runners = {"nblstm": _runner(lambda: cell(x, (h, c), out=(h, c))),
               "torch": _runner(torch_step)}
    return cell, (x, h, c), runners


def _breakdown_runners(cell, x, h, c) -> dict:
    """The nested layers of a cell call (see the module doc)."""
    import numba
    from numba import njit

    from nblstm.lstm import _kernels

    plan = cell._prepared.plan
    w_ih, bias, w_hh, w_hr, gate_options, _ = plan.layers[0]
    gx = np.empty(plan.gx_shape, np.float32)
    args = (x, w_ih, bias, w_hh, w_hr, h, c, h, c, h, gx, h, np.empty(0, np.float32),
            gate_options)
    signature = tuple(numba.typeof(a) for a in args)
    kernel = _kernels.run_chunk.compile(signature)

    @njit
    def empty(a, b, c_, d, e, f, g, h_, i, j, k, l_, m, n):
        return 0

    unboxing = empty.compile(signature)
    return {"plan": _runner(lambda: plan.run_cell(x, h, c, h, c)),
            "kernel": _runner(lambda: kernel(*args)),
            "unboxing": _runner(lambda: unboxing(*args))}


def _stream_group(layers: int, frames: int, rng, torch):
    import nblstm

    module = torch.nn.LSTM(128, 128, num_layers=layers).eval()
    lstm = nblstm.LSTM.from_torch(module)
    stream = lstm.stream()
    chunk = (rng.standard_normal((frames, 1, 128), dtype=np.float32) if frames > 1
             else rng.standard_normal(128, dtype=np.float32))
    xt = torch.from_numpy(chunk.reshape(frames, 1, 128))
    state = [torch.zeros(layers, 1, 128), torch.zeros(layers, 1, 128)]
    with torch.inference_mode():
        want, _ = module(xt)
    error = float(np.abs(stream(chunk).reshape(frames, 128) - want.numpy()[:, 0]).max())
    if error > 1e-4:
        raise RuntimeError(f"Stream of LSTM(128, 128, {layers}) differs from torch by {error}")

    def torch_chunk():
        with torch.inference_mode():
            _, hx = module(xt, tuple(state))
        state[0], state[1] = hx

    return {"nblstm": _runner(lambda: stream(chunk)), "torch": _runner(torch_chunk)}


def _bound_runner(cell) -> dict:
    """A NumPy copy of as many bytes as the cell's weights."""
    n_bytes = 4 * cell.hidden_size * (cell.input_size + cell.hidden_size) * 4
    source = np.ones(n_bytes // 4, np.float32)
    target = np.empty_like(source)
    return {"copy": _runner(lambda: np.copyto(target, source))}, n_bytes


def _median_us(timing) -> float:
    return 1e6 * statistics.median(timing.per_round_s)


def _ratio(timings: dict, num: str, den: str) -> float:
    return statistics.median(a / b for a, b in zip(timings[num].per_round_s,
                                                   timings[den].per_round_s))


def stepping(threads: int, quick: bool, md_path: Optional[str]) -> int:
    """Time every group, print and write the Markdown report; returns 0
    when every target is met, 1 otherwise."""
    try:
        import torch
    except ImportError:
        print("torch is required (pip install torch==2.13.0)", file=sys.stderr)
        return 2
    import nblstm

    peers.set_threads(threads)
    rounds, block_s = (3, 0.005) if quick else (25, 0.03)
    rng = np.random.default_rng(0)
    groups = {}
    cell128, (x, h, c), runners = _cell_group(128, rng, torch)
    runners.update(_breakdown_runners(cell128, x, h, c))
    groups["cell_h128"] = runners
    groups["stream_1layer_h128"] = _stream_group(1, 1, rng, torch)
    groups["stream_2layer_h128"] = _stream_group(2, 1, rng, torch)
    groups["stream_chunk10_h128"] = _stream_group(1, 10, rng, torch)
    cell512, _, runners = _cell_group(512, rng, torch)
    bound, n_bytes = _bound_runner(cell512)
    runners.update(bound)
    groups["cell_h512"] = runners
    peers.set_threads(threads)

    results = {}
    for name, group in groups.items():
        print(f"{name} ...", file=sys.stderr, flush=True)
        # As the grid: a pause before each block lets the threads the previous
        # side left spinning (torch's OpenMP pool) go idle first.
        results[name] = interleave(group, rounds, block_s, alone_blocks=1 if quick else 3,
                                   budget_s=10.0 if quick else 40.0,
                                   min_rounds=min(rounds, 5), verbose=False,
                                   gap_s=0.0 if quick else 0.15)
    rows, all_met = [], True
    for name, timings in results.items():
        target = TARGETS[name]
        us = _median_us(timings["nblstm"])
        torch_x = _ratio(timings, "torch", "nblstm")
        checks = []
        if "us" in target:
            checks.append((f"<= {target['us']:g} us", us <= target["us"]))
        if "torch_x" in target:
            checks.append((f">= {target['torch_x']:g}x torch", torch_x >= target["torch_x"]))
        bound_x = None
        if "bound_x" in target:
            bound_x = _ratio(timings, "nblstm", "copy")
            checks.append((f"<= {target['bound_x']:g}x the copy", bound_x <= target["bound_x"]))
        met = all(ok for _, ok in checks)
        all_met &= met
        rows.append((name, us, _median_us(timings["torch"]), torch_x, bound_x,
                     ", ".join(f"{text} {'PASS' if ok else 'FAIL'}" for text, ok in checks)))
    cell = results["cell_h128"]
    parts = {k: _median_us(cell[k]) for k in ("nblstm", "plan", "kernel", "unboxing")}
    breakdown = [("Python (the call's checks and shaping)", parts["nblstm"] - parts["plan"]),
                 ("dispatch (step plan, scratch, Numba's type dispatch)",
                  parts["plan"] - parts["kernel"]),
                 ("unboxing the kernel's 14 arguments", parts["unboxing"]),
                 ("kernel (projection, recurrent product, gates)",
                  parts["kernel"] - parts["unboxing"])]
    now = _dt.datetime.now(_dt.timezone.utc)
    lines = [
        f"# Stepping: per-call cost, batch 1 — {now:%Y-%m-%d %H:%M} UTC", "",
        f"Machine: {cpu_model()}, {cores()} cores, {threads} thread(s); {cpu_features_text()}. "
        f"{versions()}.", "",
        f"Command: `env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m nblstm_bench "
        f"--stepping{' --quick' if quick else ''}`. Method: one process; each group's calls "
        f"in blocks of ~{block_s * 1e3:.0f} ms (after a {0 if quick else 150} ms pause and one "
        f"untimed call), interleaved in rotating order over up to "
        f"{rounds} rounds; per-call medians over rounds, ratios the median of per-round "
        f"ratios. float32; nblstm {nblstm.__version__}.", "",
        "| call | nblstm (us) | torch (us) | torch / nblstm | nblstm / copy | targets |",
        "|---|---:|---:|---:|---:|---|",
    ]
    labels = {"cell_h128": "`LSTMCell(128, 128)`, `out=(h, c)`",
              "stream_1layer_h128": "`Stream` of `LSTM(128, 128)`, 1 frame",
              "stream_2layer_h128": "`Stream` of `LSTM(128, 128, 2)`, 1 frame",
              "stream_chunk10_h128": "`Stream` of `LSTM(128, 128)`, 10 frames",
              "cell_h512": "`LSTMCell(512, 512)`, `out=(h, c)`"}
    for name, us, torch_us, torch_x, bound_x, verdict in rows:
        lines.append(f"| {labels[name]} | {us:.2f} | {torch_us:.2f} | {torch_x:.2f}x | "
                     f"{'' if bound_x is None else f'{bound_x:.2f}x'} | {verdict} |")
    copy_us = _median_us(results["cell_h512"]["copy"])
    lines += ["", f"The copy moves the 512 cell's {n_bytes / 2**20:.0f} MiB of weights once "
              f"(`np.copyto`, read and write): {copy_us:.1f} us.", "",
              "Where the `LSTMCell(128, 128)` call's time goes (nested layers of the call, "
              "timed in the same rounds; see `nblstm_bench/stepping.py`):", "",
              "| part | us |", "|---|---:|"]
    lines += [f"| {label} | {value:.2f} |" for label, value in breakdown]
    lines.append(f"| whole call | {parts['nblstm']:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if md_path:
        with open(md_path, "w") as handle:
            handle.write(text)
        print(f"wrote {md_path}", file=sys.stderr)
    return 0 if all_met else 1
