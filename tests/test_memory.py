"""The scratch a forward needs beyond its output does not grow with T."""

import tracemalloc

import numpy as np
import pytest

import nblstm
from nblstm.lstm import _driver


@pytest.mark.parametrize("bidirectional", [False, True])
def test_scratch_is_independent_of_sequence_length(monkeypatch, bidirectional):
    monkeypatch.setattr(_driver, "WINDOW_BYTES", 256 << 10)
    lstm = nblstm.LSTM(32, 64, bidirectional=bidirectional, seed=0)
    lstm(np.zeros((3, 4, 32), np.float32))  # compile outside the measurement
    scratch = {}
    for steps in (1_000, 8_000):
        x = np.random.default_rng(0).standard_normal((steps, 4, 32), dtype=np.float32)
        tracemalloc.start()
        try:
            out, _ = lstm(x)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        scratch[steps] = peak - out.nbytes
    # What may grow with T is the step table (batch_sizes and offsets, int64):
    # 16 bytes a step, against 1 KiB a step of output here. Allow 32.
    per_step = 32
    window_scratch = (2 if bidirectional else 1) * (256 << 10)
    assert scratch[8_000] <= window_scratch + per_step * 8_000 + (64 << 10), scratch
    assert scratch[8_000] - scratch[1_000] <= per_step * 7_000, scratch
