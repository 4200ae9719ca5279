"""How the driver shares work out on ragged batches.

Projection windows (``_driver.plan_windows``) cover every step once, hold a
bounded number of rows, and hold nearly equal rows, so that the two
directions of a bidirectional layer (window ``k`` forward against window
``n - 1 - k`` reverse) get the same work. Row groups
(``_driver.plan_row_groups``) are whole tiles of nearly equal work."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from lstm_helpers import ragged_batch_sizes
from nblstm.lstm import _driver
from nblstm.packing import step_offsets


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 60), min_size=1, max_size=40), st.integers(1, 400))
def test_windows_cover_steps_with_bounded_equal_rows(lengths, capacity):
    hidden, itemsize = 3, 4
    batch_sizes = ragged_batch_sizes(lengths)
    offsets = step_offsets(batch_sizes)
    total, max_batch = int(offsets[-1]), int(batch_sizes[0])
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_driver, "WINDOW_BYTES", capacity * 4 * hidden * itemsize)
        windows = _driver.plan_windows(offsets, hidden, itemsize)
    bounds = [t0 for t0, _ in windows] + [windows[-1][1]]
    assert bounds[0] == 0 and bounds[-1] == batch_sizes.shape[0]
    assert all(t0 < t1 for t0, t1 in windows)
    assert all(a[1] == b[0] for a, b in zip(windows, windows[1:]))
    rows = np.array([offsets[t1] - offsets[t0] for t0, t1 in windows])
    n = -(-total // capacity)  # windows wanted; steps too large to split merge some
    assert len(windows) <= n
    share = -(-total // n)
    assert rows.max() <= share + max_batch - 1 <= capacity + max_batch - 1
    # Equal rows: what tells two windows apart is at most a step's rows at each end.
    assert rows.max() - rows.min() <= 2 * max_batch - 1


def test_ragged_bidirectional_windows_pair_equal_rows(monkeypatch):
    """A ragged batch like the benchmark's (32 sequences of 20..200 steps)
    over windows of 1000 rows: paired windows differ by under two steps'
    rows. (Windows of equal step counts gave the benchmark case's forward
    direction 2817 rows in its first window against the reverse one's 1039.)"""
    rng = np.random.default_rng(0)
    lengths = rng.integers(20, 201, 32)
    lengths[0] = 200
    offsets = step_offsets(ragged_batch_sizes(lengths))
    monkeypatch.setattr(_driver, "WINDOW_BYTES", 1000 * 4 * 8 * 4)
    windows = _driver.plan_windows(offsets, 8, 4)
    rows = [int(offsets[t1] - offsets[t0]) for t0, t1 in windows]
    assert len(windows) == -(-int(offsets[-1]) // 1000) > 1
    for k in range(len(windows)):
        assert abs(rows[k] - rows[-1 - k]) < 2 * 32


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 40), min_size=1, max_size=70), st.integers(2, 8), st.data())
def test_row_groups_are_whole_tiles_of_equal_work(lengths, n_groups, data):
    """Row groups cover the batch, cut at whole tiles, and their work (tile
    passes: steps in which any row of a tile is active) is as equal as whole
    tiles allow: no group exceeds the ideal share by more than the busiest
    tile's passes."""
    tile = _driver.TILE_ROWS
    batch = len(lengths)
    batch_sizes = ragged_batch_sizes(sorted(lengths, reverse=True))
    n_steps = batch_sizes.shape[0]
    t0 = data.draw(st.integers(0, n_steps - 1))
    t1 = data.draw(st.integers(t0 + 1, n_steps))
    bounds = _driver.plan_row_groups(batch_sizes, t0, t1, batch, n_groups)
    assert bounds.dtype == np.int64
    assert bounds[0] == 0 and bounds[-1] == batch and np.all(np.diff(bounds) > 0)
    assert len(bounds) - 1 <= n_groups
    assert all(b % tile == 0 for b in bounds[1:-1])
    steps = batch_sizes[t0:t1]

    def work(lo, hi):
        return sum(-(-max(0, min(int(n), hi) - lo) // tile) for n in steps)

    works = [work(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:])]
    busiest_tile = len(steps)
    assert max(works) <= sum(works) / n_groups + busiest_tile


def test_row_groups_of_equal_lengths_halve_the_batch():
    """A padded batch (every row active at every step) splits into equal halves."""
    bounds = _driver.plan_row_groups(np.full(50, 64, np.int64), 0, 50, 64, 2)
    assert bounds.tolist() == [0, 32, 64]
