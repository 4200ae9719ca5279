"""nblstm.dask.predict on Dask Bags and DataFrames, locally and on real
multi-process ``distributed`` clusters.

The oracle is single-process :func:`nblstm.predict` (itself tested against
one call per sequence in test_predict.py).
"""

from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")
dask = pytest.importorskip("dask")
pd = pytest.importorskip("pandas")
import dask.bag as db  # noqa: E402
import dask.dataframe as dd  # noqa: E402

import nblstm  # noqa: E402
import nblstm.dask  # noqa: E402

INPUT = 5

#: Unpickled _CountedLSTM objects in this process (read on the workers).
UNPICKLED = 0


class _CountedLSTM(nblstm.LSTM):
    """An LSTM that counts how often it is unpickled in each process."""

    def __setstate__(self, state):
        global UNPICKLED
        UNPICKLED += 1
        self.__dict__.update(state)


def _unpickled() -> int:
    return UNPICKLED


def _reset_unpickled() -> None:
    global UNPICKLED
    UNPICKLED = 0


def _model(cls=nblstm.LSTM, **config):
    return cls(INPUT, 6, seed=2, **{"num_layers": 2, "bidirectional": True, **config})


def _corpus(n=60, seed=0, max_len=25):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((int(k), INPUT)).astype(np.float32)
            for k in rng.integers(0, max_len, n)]


def _frame(seqs, npartitions=4, index=None):
    frame = pd.DataFrame({"seq": [s.tolist() for s in seqs]}, index=index)
    with dask.config.set({"dataframe.convert-string": False}):
        return dd.from_pandas(frame, npartitions=npartitions, sort=False)


def _assert_results_equal(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        if isinstance(w, tuple):
            assert isinstance(g, tuple) and len(g) == 2
            for a, b in zip(g, w):
                np.testing.assert_array_equal(a, b)
        else:
            assert g.shape == w.shape
            np.testing.assert_array_equal(g, w)


def _cluster(n_workers, threads):
    return distributed.LocalCluster(n_workers=n_workers, threads_per_worker=threads,
                                    processes=True, dashboard_address=":0",
                                    worker_dashboard_address=None)


@pytest.fixture(scope="module")
def two_workers():
    """2 worker processes x 1 thread; not the default client (see as_current)."""
    with _cluster(2, 1) as cluster, distributed.Client(cluster, set_as_default=False) as client:
        yield client


@pytest.fixture(scope="module")
def two_threads():
    """1 worker process x 2 threads."""
    with _cluster(1, 2) as cluster, distributed.Client(cluster, set_as_default=False) as client:
        yield client


def test_models_pickle_and_give_the_same_results():
    seqs = _corpus(12)
    models = [nblstm.LSTM(INPUT, 6), _model(proj_size=3), _model().quantize("int8"),
              _model(num_layers=1).quantize("bfloat16"), nblstm.LSTM(INPUT, 6, dtype=np.float64)]
    for model in models:
        model(seqs[0])  # a prepared stepping plan travels too
        copy = pickle.loads(pickle.dumps(model))
        assert copy.weight_format == model.weight_format
        _assert_results_equal(list(nblstm.predict(copy, seqs, outputs="all")),
                              list(nblstm.predict(model, seqs, outputs="all")))


def test_import_nblstm_does_not_import_dask():
    code = "import sys, nblstm; print(any(m.split('.')[0] == 'dask' for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"


@pytest.mark.parametrize("outputs", ["last", "all", "states"])
def test_bag_on_the_local_scheduler(outputs):
    model, seqs = _model(), _corpus()
    want = list(nblstm.predict(model, seqs, outputs=outputs, max_rows=40))
    bag = db.from_sequence(seqs, npartitions=5)
    got = nblstm.dask.predict(model, bag, outputs=outputs, max_rows=40).compute(
        scheduler="threads")
    _assert_results_equal(got, want)


def test_bag_of_nested_lists_and_empty_lists():
    model, seqs = _model(), _corpus(9, seed=3)
    seqs[2] = np.zeros((0, INPUT), np.float32)
    items = [s.tolist() for s in seqs]  # seqs[2] becomes [], a sequence of length 0
    got = nblstm.dask.predict(model, db.from_sequence(items, npartitions=3),
                              outputs="all").compute(scheduler="sync")
    _assert_results_equal(got, list(nblstm.predict(model, seqs, outputs="all")))


def test_dataframe_on_the_local_scheduler_keeps_the_index():
    model, seqs = _model(proj_size=2), _corpus(30)
    index = [f"utt{k:03d}" for k in range(len(seqs))][::-1]
    series = nblstm.dask.predict(model, _frame(seqs, 3, index), outputs="all")
    assert isinstance(series, dd.Series)
    got = series.compute(scheduler="threads")
    assert list(got.index) == index and got.name == "seq"
    _assert_results_equal(list(got), list(nblstm.predict(model, seqs, outputs="all")))


def test_dataframe_cells_of_every_kind():
    model = _model()
    seqs = _corpus(4)
    rows = np.empty(len(seqs[2]), dtype=object)  # what a pyarrow list column gives
    for k, row in enumerate(seqs[2]):
        rows[k] = row
    cells = [seqs[0], seqs[1].tolist(), rows, [], seqs[3]]
    frame = pd.DataFrame({"other": range(5), "seq": pd.Series(cells, dtype=object)})
    with dask.config.set({"dataframe.convert-string": False}):
        data = dd.from_pandas(frame, npartitions=2)
    got = nblstm.dask.predict(model, data, column="seq").compute(scheduler="sync")
    want = list(nblstm.predict(model, seqs[:3] + [np.zeros((0, INPUT))] + seqs[3:]))
    _assert_results_equal(list(got), want)
    # A Series of sequences works as the DataFrame's column does.
    again = nblstm.dask.predict(model, data["seq"]).compute(scheduler="sync")
    _assert_results_equal(list(again), want)


def test_errors():
    model = _model()
    with pytest.raises(TypeError, match=r"takes a dask Bag, DataFrame or Series, got list"):
        nblstm.dask.predict(model, _corpus(3))
    with pytest.raises(TypeError, match=r"an LSTMCell has no sequence"):
        nblstm.dask.predict(nblstm.LSTMCell(INPUT, 3), db.from_sequence(_corpus(3)))
    with pytest.raises(ValueError, match=r"max_rows must be a positive int, got 0"):
        nblstm.dask.predict(model, db.from_sequence(_corpus(3)), max_rows=0)
    with pytest.raises(ValueError, match=r"outputs must be one of"):
        nblstm.dask.predict(model, db.from_sequence(_corpus(3)), outputs="first")
    two = dd.from_pandas(pd.DataFrame({"a": [0, 1], "b": [2, 3]}), npartitions=1)
    with pytest.raises(ValueError, match=r"has 2 columns \['a', 'b'\]; name the one"):
        nblstm.dask.predict(model, two)
    with pytest.raises(ValueError, match=r"column='c' is not a column of the DataFrame"):
        nblstm.dask.predict(model, two, column="c")
    stringified = dd.from_pandas(pd.DataFrame({"seq": [[[0.0] * INPUT]]}), npartitions=1)
    if str(stringified["seq"].dtype) != "object":  # Dask's convert-string is on
        with pytest.raises(TypeError, match=r"dataframe.convert-string"):
            nblstm.dask.predict(model, stringified)


def test_bad_sequence_names_its_index_label():
    seqs = _corpus(6)
    seqs[4] = np.zeros((3, INPUT + 2), np.float32)
    data = _frame(seqs, 2, index=list("abcdef"))
    with pytest.raises(ValueError, match=r"the sequence at index 'e' has 7 features"):
        nblstm.dask.predict(_model(), data).compute(scheduler="sync")
    bag = db.from_sequence(seqs, npartitions=2)
    with pytest.raises(ValueError, match=r"item 1 of its Bag partition has 7 features"):
        nblstm.dask.predict(_model(), bag).compute(scheduler="sync")


@pytest.mark.parametrize("layout", ["two_workers", "two_threads"])
def test_distributed_bag_and_dataframe_match_predict(layout, request):
    client = request.getfixturevalue(layout)
    model, seqs = _model(), _corpus(80, seed=1)
    with client.as_current():
        bag = nblstm.dask.predict(model, db.from_sequence(seqs, npartitions=6), max_rows=50,
                                  outputs="states").compute()
        frame = nblstm.dask.predict(model, _frame(seqs, 5), max_rows=50,
                                    outputs="all").compute()
    _assert_results_equal(bag, list(nblstm.predict(model, seqs, max_rows=50,
                                                   outputs="states")))
    _assert_results_equal(list(frame), list(nblstm.predict(model, seqs, outputs="all")))
    assert list(frame.index) == list(range(len(seqs)))


@pytest.mark.parametrize("layout", ["two_workers", "two_threads"])
def test_model_reaches_each_worker_once(layout, request):
    client = request.getfixturevalue(layout)
    model, seqs = _model(_CountedLSTM), _corpus(40, seed=2)
    results = []
    for data in (db.from_sequence(seqs, npartitions=12), _frame(seqs, 8)):
        client.run(_reset_unpickled)
        with client.as_current():
            results.append(nblstm.dask.predict(model, data).compute())
        counts = client.run(_unpickled)
        # At most once per worker, not once per task (12 and 8 tasks here).
        assert all(count <= 1 for count in counts.values()), counts
        assert sum(counts.values()) >= 1, counts
    bag, frame = results
    _assert_results_equal(bag, list(nblstm.predict(model, seqs)))
    _assert_results_equal(list(frame), list(nblstm.predict(model, seqs)))


@pytest.mark.parametrize("layout, threads", [("two_workers", 1), ("two_threads", 2)])
def test_worker_threads_set_from_the_worker(layout, threads, request):
    client = request.getfixturevalue(layout)
    import numba
    if threads > numba.config.NUMBA_NUM_THREADS:
        pytest.skip(f"needs NUMBA_NUM_THREADS >= {threads}")
    other = 2 if threads == 1 else 1
    if other <= min(client.run(lambda: __import__("numba").config.NUMBA_NUM_THREADS).values()):
        client.run(nblstm.set_num_threads, other)  # so the test sees predict change it
    with client.as_current():
        nblstm.dask.predict(_model(), db.from_sequence(_corpus(20), npartitions=4)).compute()
    assert set(client.run(nblstm.get_num_threads).values()) == {threads}
