"""``python -m nblstm_bench.predict_bench``: throughput of batch inference.

A synthetic speech-like corpus (20,000 sequences of lengths uniform in
10..1000 frames, 40 features; ``--quick``: 2,000) through ``LSTM(40, 128)``,
each way of running it timed once over the whole corpus, block by block in
rotating order (see :func:`interleaved`; outputs: the last hidden state of
each sequence, ``outputs="last"``):

* ``nblstm.predict`` with its default ``max_rows`` (reading, sorting,
  packing and unpacking included), and a few other ``max_rows``;
* the model called on each sequence alone;
* padded batches of 64 in input order (``pad_sequence`` + the model on the
  padded batch, lengths ignored: the padding is computed too);
* the reference: each block of ``BLOCK`` sequences sorted by length and
  pre-packed (untimed) as one batch of all its rows, only the model call
  timed; and the same block pre-packed in runs of the default ``max_rows``
  (the batches predict makes, without its reading, sorting and splitting);
* ``nblstm.dask.predict`` on a Bag of the same corpus (already on the
  workers, persisted) on a ``distributed.LocalCluster`` of 1 worker x 2
  threads and of 2 workers x 1 thread, beside an empty ``map_partitions``
  over the same partitions (the scheduling cost).

Rows/s counts real rows (sum of lengths) for every method. The results go to
``docs/predict.md`` (``--out`` to change; ``--quick`` writes nothing unless
``--out`` is given).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import os
import platform
import sys
import time
from typing import Callable, Dict, List, Optional

import numpy as np

import nblstm
from nblstm.packing import pack_sequence, pad_sequence

INPUT, HIDDEN = 40, 128
MIN_LEN, MAX_LEN = 10, 1000
PAD_BATCH = 64
#: Sequences per timed block: every method runs on a block before the next
#: block starts; the reference packs each block as one batch (~0.5M rows;
#: one batch of all 10M rows would need ~8 GiB).
BLOCK = 1000
SWEEP = (4096, 16384, 65536, 262144)
PARTITIONS = 40
TARGETS = {"vs_reference": 0.9, "vs_per_sequence": 3.0}
LOAD_AT_START = 0.0


def corpus_lengths(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(MIN_LEN, MAX_LEN + 1, n)


def make_sequences(lengths: np.ndarray, seed: int) -> List[np.ndarray]:
    """Sequences of the given lengths, reproducible from ``seed`` alone (so a
    Dask partition can make its share on its worker)."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((int(n), INPUT), dtype=np.float32) for n in lengths]


def partition_specs(lengths: np.ndarray, parts: int) -> List[tuple]:
    return [(1000 + k, chunk) for k, chunk in enumerate(np.array_split(lengths, parts))]


def make_partition(specs) -> List[np.ndarray]:
    out: List[np.ndarray] = []
    for seed, chunk in specs:
        out.extend(make_sequences(chunk, seed))
    return out


def timed(fn: Callable[[], object]) -> tuple:
    gc.collect()
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def run_predict(model, seqs, max_rows):
    return list(nblstm.predict(model, seqs, max_rows=max_rows))


def run_per_sequence(model, seqs):
    return [model(s)[1][0][-1] for s in seqs]


def run_padded(model, seqs):
    last = []
    for k in range(0, len(seqs), PAD_BATCH):
        _, (h_n, _) = model(pad_sequence(seqs[k:k + PAD_BATCH]))
        last.extend(h_n[-1])  # the state after the padding: lengths ignored
    return last


def reference_batches(seqs, lengths, rows):
    """The corpus sorted by length (longest first) and packed in runs of at
    most ``rows`` rows, with each batch's input positions."""
    order = np.argsort(-lengths, kind="stable")
    batches, start, total = [], 0, 0
    for k, position in enumerate(order):
        if k > start and total + lengths[position] > rows:
            batches.append(order[start:k])
            start, total = k, 0
        total += lengths[position]
    batches.append(order[start:])
    return [(b, pack_sequence([seqs[i] for i in b])) for b in batches]


def run_reference(model, packed):
    return [(b, model(p)[1][0][-1]) for b, p in packed]


def interleaved(model, seqs, lengths, blocks, default_rows) -> dict:
    """Time every method block by block, in an order that rotates each block
    (so that other load on the machine falls on all of them alike); block 0
    runs once untimed first (warm-up). predict is one generator over the
    whole corpus, of which each block's results are drawn in turn."""
    names = ["predict", "reference", "reference_max_rows", "per_sequence", "padded_64"]
    seconds = dict.fromkeys(names, 0.0)
    per_block: Dict[str, List[float]] = {name: [] for name in names}
    stream = nblstm.predict(model, iter(seqs), max_rows=default_rows)
    predicted: List[np.ndarray] = []
    worst = worst_alone = 0.0
    warm = blocks[0]
    run_predict(model, [seqs[i] for i in warm], default_rows)
    run_reference(model, reference_batches([seqs[i] for i in warm], lengths[warm],
                                           1 << 62))
    run_per_sequence(model, [seqs[i] for i in warm[:50]])
    run_padded(model, [seqs[i] for i in warm[:2 * PAD_BATCH]])
    for k, block in enumerate(blocks):
        part = [seqs[i] for i in block]
        packed = reference_batches(part, lengths[block], 1 << 62)  # one batch
        packed_runs = reference_batches(part, lengths[block], default_rows)
        got = {}
        for name in names[k % len(names):] + names[:k % len(names)]:
            if name == "predict":
                took, got[name] = timed(lambda: [next(stream) for _ in block])
            elif name == "reference":
                took, got[name] = timed(lambda: run_reference(model, packed))
            elif name == "reference_max_rows":
                took, _ = timed(lambda: run_reference(model, packed_runs))
            elif name == "per_sequence":
                took, got[name] = timed(lambda: run_per_sequence(model, part))
            else:
                took, _ = timed(lambda: run_padded(model, part))
            seconds[name] += took
            per_block[name].append(took)
        predicted.extend(got["predict"])
        for positions, last in got["reference"]:
            for j, i in enumerate(positions):
                worst = max(worst, float(np.abs(got["predict"][i] - last[j]).max()))
        worst_alone = max([worst_alone] + [float(np.abs(a - b).max())
                                           for a, b in zip(got["predict"], got["per_sequence"])])
        print(f"block {k + 1}/{len(blocks)}: " + ", ".join(
            f"{name} {seconds[name]:.1f} s" for name in names), file=sys.stderr)
    return dict(seconds=seconds, per_block=per_block, predicted=predicted, worst=worst,
                worst_alone=worst_alone)


def machine() -> str:
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f
                       if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cpu}, {cores} cores"


def versions() -> str:
    import numba
    parts = [f"python {platform.python_version()}", f"numpy {np.__version__}",
             f"numba {numba.__version__}", f"nblstm {nblstm.__version__}"]
    try:
        import dask
        import distributed
        parts += [f"dask {dask.__version__}", f"distributed {distributed.__version__}"]
    except ImportError:
        pass
    try:
        parts.append(f"threading layer {numba.threading_layer()}")
    except ValueError:
        pass
    return ", ".join(parts)


def _warm_up(model) -> None:
    specs = partition_specs(corpus_lengths(200, seed=7), 1)
    list(nblstm.predict(model, make_partition(specs)))


def bench_dask(model, lengths, want, plain_s, rows, quick) -> List[dict]:
    """1 worker x 2 threads and 2 workers x 1 thread on the persisted corpus."""
    try:
        import dask.bag as db
        import distributed
        import nblstm.dask
    except ImportError as error:
        print(f"dask benchmark skipped: {error}", file=sys.stderr)
        return []
    specs = partition_specs(lengths, PARTITIONS if not quick else 8)
    rows_out = []
    for workers, threads in ((1, 2), (2, 1)):
        with distributed.LocalCluster(n_workers=workers, threads_per_worker=threads,
                                      processes=True, dashboard_address=":0",
                                      worker_dashboard_address=":0") as cluster, \
                distributed.Client(cluster) as client:
            bag = db.from_sequence(specs, npartitions=len(specs))
            bag = bag.map_partitions(make_partition).persist()
            distributed.wait(bag)
            # Warm up: each worker loads the compiled kernels of these batch
            # shapes from Numba's cache once (hundreds of ms each).
            client.run(_warm_up, model)
            nblstm.dask.predict(model, db.from_sequence(
                make_sequences([5] * 8, 0), npartitions=workers * threads)).compute()
            seconds, got = timed(lambda: nblstm.dask.predict(model, bag).compute())
            empty_s, _ = timed(lambda: bag.map_partitions(lambda p: [len(p)]).compute())
            same = all(np.array_equal(a, b) for a, b in zip(got, want)) and len(got) == len(want)
            rows_out.append(dict(layout=f"{workers} worker(s) x {threads} thread(s)",
                                 seconds=seconds, empty=empty_s, partitions=len(specs),
                                 same=same, vs_plain=plain_s / seconds))
            print(f"dask {workers}x{threads}: {seconds:.2f} s (empty map_partitions "
                  f"{empty_s:.3f} s), equal to predict: {same}", file=sys.stderr)
    return rows_out


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 sequences (smoke run)")
    parser.add_argument("--out", default=None, help="markdown file (default docs/predict.md; "
                        "none with --quick)")
    parser.add_argument("--no-dask", action="store_true")
    args = parser.parse_args(argv)
    global LOAD_AT_START
    LOAD_AT_START = os.getloadavg()[0]
    n = 2000 if args.quick else 20000
    out = args.out or (None if args.quick else os.path.join("docs", "predict.md"))

    model = nblstm.LSTM(INPUT, HIDDEN, seed=0)
    lengths = corpus_lengths(n)
    seqs = make_partition(partition_specs(lengths, PARTITIONS if not args.quick else 8))
    rows = int(lengths.sum())
    default_rows = nblstm.predict.__kwdefaults__["max_rows"]
    print(f"{n} sequences, {rows} rows; {machine()}", file=sys.stderr)
    blocks = np.array_split(np.arange(n), max(1, n // BLOCK))
    methods = interleaved(model, seqs, lengths, blocks, default_rows)

    results: Dict[str, dict] = {}
    details = {
        "predict": f"one predict() over the corpus, max_rows={default_rows} (default), "
                   f"window 8 x max_rows",
        "reference": f"each block of {BLOCK} sequences sorted and pre-packed (not timed) as "
                     f"one batch; only the model calls timed",
        "reference_max_rows": f"each block sorted and pre-packed (not timed) in runs of <= "
                              f"{default_rows} rows (predict's batches); only the model calls "
                              f"timed",
        "per_sequence": "model(seq) for each sequence",
        "padded_64": "pad_sequence of 64 in input order + the model; computes {:.2f}x the "
                     "real rows".format(sum(len(c) * int(c.max()) for c in np.array_split(
                         lengths, range(PAD_BATCH, n, PAD_BATCH))) / rows),
    }
    for name, seconds in methods["seconds"].items():
        results[name] = dict(seconds=seconds, seq_s=n / seconds, rows_s=rows / seconds,
                             detail=details[name])
        print(f"{name}: {seconds:.2f} s, {n / seconds:.0f} seq/s, {rows / seconds / 1e6:.3f} "
              f"M rows/s", file=sys.stderr)
    predicted, worst, worst_alone = methods["predicted"], methods["worst"], methods["worst_alone"]

    sweep_n = min(n, 4000)
    sweep_rows = int(lengths[:sweep_n].sum())
    sweep = {}
    for max_rows in SWEEP:
        seconds, _ = timed(lambda: run_predict(model, seqs[:sweep_n], max_rows))
        sweep[max_rows] = sweep_rows / seconds
        print(f"sweep max_rows={max_rows}: {sweep_rows / seconds / 1e6:.3f} M rows/s",
              file=sys.stderr)

    dask_rows = [] if args.no_dask else bench_dask(
        model, lengths, predicted, results["predict"]["seconds"], rows, args.quick)
    blockwise = {name: float(np.median(np.array(methods["per_block"][name])
                                       / np.array(methods["per_block"]["predict"])))
                 for name in methods["per_block"]}
    load = f"load average {LOAD_AT_START:.2f} at the start, {os.getloadavg()[0]:.2f} at the end"
    text = report(n, rows, results, blockwise, sweep, sweep_n, dask_rows, worst, worst_alone,
                  args.quick, load)
    print(text)
    if out:
        with open(out, "w") as f:
            f.write(text)
        print(f"wrote {out}", file=sys.stderr)
    return 0


def report(n, rows, results, blockwise, sweep, sweep_n, dask_rows, worst, worst_alone,
           quick, load) -> str:
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    ref, alone = results["reference"]["rows_s"], results["per_sequence"]["rows_s"]
    env = {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
                                          "NUMBA_NUM_THREADS", "OMP_NUM_THREADS")}
    lines = [
        f"# nblstm.predict throughput — {now}",
        "",
        f"Machine: {machine()}; nblstm threads {nblstm.get_num_threads()}. {versions()}.",
        f"Load ({load}; this run keeps ~2 busy on its own): other work on the machine "
        f"slows every method, and the rotating block order spreads it over all of them.",
        f"Environment: {', '.join(f'{k}={v}' for k, v in env.items() if v is not None) or 'no BLAS/Numba thread variables set'}.",
        "",
        f"Corpus: {n:,} sequences, lengths uniform {MIN_LEN}..{MAX_LEN} ({rows:,} rows), "
        f"{INPUT} features; model `LSTM({INPUT}, {HIDDEN})` float32; outputs: the last "
        f"hidden state of each sequence. Each method ran once over the whole corpus, in "
        f"blocks of {BLOCK:,} sequences, every method on a block before the next block, in "
        f"an order that rotates from block to block (other load on this shared machine "
        f"falls on all alike), after an untimed warm-up on the first block; rows/s counts "
        f"real rows only. "
        f"Command: `python -m nblstm_bench.predict_bench{' --quick' if quick else ''}`.",
        "",
        "| method | s | seq/s | M rows/s | vs reference | vs per sequence | "
        "predict's speedup, median over blocks | notes |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, r in results.items():
        lines.append(f"| {name} | {r['seconds']:.2f} | {r['seq_s']:,.0f} | "
                     f"{r['rows_s'] / 1e6:.3f} | {r['rows_s'] / ref:.2f}x | "
                     f"{r['rows_s'] / alone:.2f}x | {blockwise[name]:.2f}x | {r['detail']} |")
    best = max(ref, results["reference_max_rows"]["rows_s"])
    best_gap = results["predict"]["rows_s"] / results["reference_max_rows"]["rows_s"]
    got_ref = results["predict"]["rows_s"] / ref
    got_alone = results["predict"]["rows_s"] / alone
    lines += [
        "",
        "Targets: predict >= {:.1f}x the reference's rows/s: {:.2f}x, {}; predict >= {:.1f}x "
        "per-sequence calls: {:.2f}x, {}.".format(
            TARGETS["vs_reference"], got_ref,
            "PASS" if got_ref >= TARGETS["vs_reference"] else "FAIL",
            TARGETS["vs_per_sequence"], got_alone,
            "PASS" if got_alone >= TARGETS["vs_per_sequence"] else "FAIL"),
        f"Median over blocks of the per-block ratios (robust to load that comes and goes): "
        f"predict's rows/s {blockwise['reference']:.2f}x the reference's, "
        f"{blockwise['reference_max_rows']:.2f}x reference_max_rows', "
        f"{blockwise['per_sequence']:.2f}x per-sequence calls.",
        "",
        f"reference_max_rows is the bound for predict: the same kind of batches with the "
        f"packing done beforehand, so predict's gap to it ({best_gap:.2f}x) is predict's own "
        f"work (reading, sorting, packing, splitting); the one big batch per block is slower "
        f"than batches of max_rows here. predict's speedup over per-sequence calls is thus "
        f"bounded by the model's own ({best / alone:.2f}x here): a lone sequence of "
        f"`LSTM({INPUT}, {HIDDEN})` already runs at {alone / best:.0%} of the best packed "
        f"rate on this machine.",
        "",
        f"Check: predict's last states against the reference's: max abs diff {worst:.3g}; "
        f"against per-sequence calls: {worst_alone:.3g}.",
        "",
        f"`max_rows` sweep (predict on the first {sweep_n:,} sequences):",
        "",
        "| max_rows | M rows/s |",
        "|---:|---:|",
    ]
    lines += [f"| {k} | {v / 1e6:.3f} |" for k, v in sweep.items()]
    if dask_rows:
        lines += [
            "",
            f"Dask (`nblstm.dask.predict` on a Bag of the corpus in {dask_rows[0]['partitions']}"
            f" partitions, persisted on the workers before timing; `distributed.LocalCluster`, "
            f"processes; the model scattered to every worker; empty = `map_partitions` of a "
            f"function returning `[len(partition)]` over the same partitions):",
            "",
            "| layout | s | M rows/s | vs plain predict | empty map_partitions s | "
            "per partition ms | equal to predict |",
            "|---|---:|---:|---:|---:|---:|---|",
        ]
        lines.append(f"| plain nblstm.predict (1 process, {nblstm.get_num_threads()} threads) | "
                     f"{results['predict']['seconds']:.2f} | "
                     f"{results['predict']['rows_s'] / 1e6:.3f} | 1.00x | | | |")
        for r in dask_rows:
            lines.append(f"| {r['layout']} | {r['seconds']:.2f} | {rows / r['seconds'] / 1e6:.3f}"
                         f" | {r['vs_plain']:.2f}x | {r['empty']:.3f} | "
                         f"{1000 * r['empty'] / r['partitions']:.1f} | {r['same']} |")
        per_partition = [1000 * r["empty"] / r["partitions"] for r in dask_rows]
        lines += [
            "",
            f"The scheduling cost is the empty map_partitions' ({min(per_partition):.1f}-"
            f"{max(per_partition):.1f} ms a partition here). The rest of Dask's gap to plain "
            f"predict on one machine is the workers' own compute: the Nanny starts workers "
            f"with MALLOC_TRIM_THRESHOLD_=65536 (measured alone: ~9% slower single-thread "
            f"predict, from memory handed back and faulted in again) and the scheduler, "
            f"nannies and event loops share the same cores. Dask is for spreading a corpus "
            f"over machines; on one machine plain predict is faster.",
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
