"""A demo on data it makes: ragged sequences, packed, run through an LSTM.

Run it with ``python -m nblstm.demo`` (or the ``nblstm-demo`` command).
It builds a batch of synthetic "utterances" of different lengths (noisy
sine-wave features, as a speech front end would produce), packs them, runs a
2-layer bidirectional LSTM over the packed batch, and shows what came out,
what it cost, and that packed rows cost less than padded ones.
"""

from __future__ import annotations

import argparse
import time
from typing import List, Optional, Sequence

import numpy as np

import nblstm
from nblstm.packing import pack_sequence, pad_packed_sequence


def make_utterances(n: int, n_features: int, rng: np.random.Generator) -> List[np.ndarray]:
    """``n`` sequences of 20..400 frames of ``n_features`` noisy sine features."""
    lengths = rng.integers(20, 401, size=n)
    frequencies = rng.uniform(0.5, 4.0, size=n_features)
    sequences = []
    for length in lengths:
        t = np.arange(length)[:, None] / 100.0
        phase = rng.uniform(0, 2 * np.pi, size=n_features)
        frames = np.sin(2 * np.pi * frequencies * t + phase)
        sequences.append((frames + 0.1 * rng.standard_normal(frames.shape)).astype(np.float32))
    return sequences


def _best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32, help="number of sequences")
    parser.add_argument("--features", type=int, default=40, help="features per frame")
    parser.add_argument("--hidden", type=int, default=128, help="LSTM hidden size")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    sequences = make_utterances(args.batch, args.features, rng)
    lengths = np.array([len(s) for s in sequences])
    print(f"nblstm {nblstm.__version__}: {args.batch} sequences of {args.features} features, "
          f"lengths {lengths.min()}..{lengths.max()} (mean {lengths.mean():.0f})")

    packed = pack_sequence(sequences, enforce_sorted=False)
    print(f"packed: data {packed.data.shape}, {len(packed.batch_sizes)} steps, "
          f"batch_sizes {packed.batch_sizes[0]} -> {packed.batch_sizes[-1]}, "
          f"offset table ends at row {nblstm.packing.step_offsets(packed.batch_sizes)[-1]}")

    lstm = nblstm.LSTM(args.features, args.hidden, num_layers=2, bidirectional=True,
                       seed=args.seed)
    print(f"model: {lstm}")

    start = time.perf_counter()
    output, (h_n, c_n) = lstm(packed)
    first = time.perf_counter() - start
    packed_time = _best_of(5, lambda: lstm(packed))

    padded, out_lengths = pad_packed_sequence(output, batch_first=True)
    print(f"output: packed {output.data.shape} -> padded {padded.shape}; "
          f"h_n {h_n.shape}, c_n {c_n.shape}")
    assert np.array_equal(out_lengths, lengths)
    # The last real frame of the forward direction is that sequence's h_n.
    last_forward = padded[np.arange(args.batch), lengths - 1, : args.hidden]
    print(f"forward output at each sequence's last frame == h_n[-2]: "
          f"{np.array_equal(last_forward, h_n[-2])}")
    summary = np.concatenate([h_n[-2], h_n[-1]], axis=1)  # (batch, 2 * hidden)
    print(f"sequence summaries (first 3, first 4 of {summary.shape[1]} features):")
    for index in range(min(3, args.batch)):
        values = " ".join(f"{v:+.4f}" for v in summary[index, :4])
        print(f"  sequence {index} (length {lengths[index]:3d}): {values} ...")

    full = np.zeros((lengths.max(), args.batch, args.features), np.float32)
    for index, sequence in enumerate(sequences):
        full[: len(sequence), index] = sequence
    padded_time = _best_of(5, lambda: lstm(full))
    real_rows = int(lengths.sum())
    print(f"time: first call {first * 1e3:.1f} ms (includes compiling or loading cached "
          f"kernels), then {packed_time * 1e3:.2f} ms packed "
          f"({real_rows / packed_time / 1e6:.2f} M rows/s over {real_rows} real rows) vs "
          f"{padded_time * 1e3:.2f} ms for the same batch padded to "
          f"{full.shape[0] * args.batch} rows; {nblstm.get_num_threads()} threads")


if __name__ == "__main__":
    main()
