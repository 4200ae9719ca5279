"""Packing benchmarks: nblstm.packing against torch.nn.utils.rnn.

Run as a script for an interleaved A/B measurement of the torch/nblstm time
ratio (median of per-pair ratios), which is robust to a noisy machine::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python asv_bench/benchmarks/bench_packing.py [threads]

``threads`` (optional) limits both libraries (``torch.set_num_threads``,
``numba.set_num_threads``).
"""

import numpy as np

T, B, F = 500, 64, 256


def _make_data(seed=0):
    """float32 (T, B, F) padded batch and random lengths in 1..T."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((T, B, F), dtype=np.float32)
    lengths = rng.integers(1, T + 1, B)
    return x, lengths


def _roundtrip_fn(implementation, x, lengths):
    """A no-argument callable doing pack_padded_sequence + pad_packed_sequence."""
    if implementation == "nblstm":
        from nblstm.packing import pack_padded_sequence, pad_packed_sequence

        def run():
            packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
            return pad_packed_sequence(packed)

        return run
    try:
        import torch
    except ImportError:
        raise NotImplementedError("torch is not installed")
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    xt, lt = torch.from_numpy(x), torch.from_numpy(lengths)

    def run():
        packed = pack_padded_sequence(xt, lt, enforce_sorted=False)
        return pad_packed_sequence(packed)

    return run


class PackPadRoundtrip:
    """pack_padded_sequence + pad_packed_sequence, float32 T=500, B=64, F=256, enforce_sorted=False."""

    params = ["nblstm", "torch"]
    param_names = ["implementation"]
    timeout = 300

    def setup(self, implementation):
        x, lengths = _make_data()
        self.run = _roundtrip_fn(implementation, x, lengths)
        self.run()  # warm-up: Numba compilation / cache load, first-touch allocations

    def time_pack_pad_roundtrip(self, implementation):
        self.run()


def _ratio(pairs=30, repeat=5):
    """Interleave nblstm and torch (A B A B ...); median of per-pair torch/nblstm ratios."""
    import time

    x, lengths = _make_data()
    fns = {name: _roundtrip_fn(name, x, lengths) for name in ("nblstm", "torch")}
    ours, theirs = fns["nblstm"](), fns["torch"]()
    assert np.array_equal(ours[0], theirs[0].numpy()) and np.array_equal(ours[1], theirs[1].numpy())

    def timed(fn):
        start = time.perf_counter()
        for _ in range(repeat):
            fn()
        return (time.perf_counter() - start) / repeat

    times = {"nblstm": [], "torch": []}
    for _ in range(pairs):
        for name in ("nblstm", "torch"):
            times[name].append(timed(fns[name]))
    a, b = np.array(times["nblstm"]), np.array(times["torch"])
    print(f"nblstm median {np.median(a) * 1e3:.2f} ms, torch median {np.median(b) * 1e3:.2f} ms, "
          f"torch/nblstm median of pair ratios {np.median(b / a):.2f} "
          f"(pairs={pairs}, calls per sample={repeat})")


if __name__ == "__main__":
    import sys

    if len(sys.argv) > 1:
        import numba
        import torch

        torch.set_num_threads(int(sys.argv[1]))
        numba.set_num_threads(int(sys.argv[1]))
        print(f"threads: {sys.argv[1]}")
    _ratio()
