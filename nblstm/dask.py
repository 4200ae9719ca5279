"""Batch inference on Dask collections (the optional extra ``nblstm[dask]``).

Not imported by ``import nblstm``; use ``import nblstm.dask``. Each
partition runs :func:`nblstm.predict` (window, sort, packed batches), so the
results are those of :func:`nblstm.predict` on the whole input, in order.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, List, Optional

import numpy as np

try:
    import dask
    import dask.bag as db
    import dask.dataframe as dd
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError("nblstm.dask needs Dask: pip install 'nblstm[dask]' "
                      "(or pip install 'dask[bag,dataframe]' distributed)") from error

from ._threads import get_num_threads, set_num_threads
from .lstm import LSTM
from .predict import DEFAULT_MAX_ROWS, OUTPUTS, _check_model, _check_positive_int
from .predict import predict as _predict_local

__all__ = ["predict"]


def predict(model: LSTM, data: Any, *, max_rows: int = DEFAULT_MAX_ROWS,
            outputs: str = "last", column: Optional[str] = None, meta: Any = None) -> Any:
    """:func:`nblstm.predict` on each partition of a Dask Bag or DataFrame.

    Parameters
    ----------
    model : nblstm.LSTM
        Any model :func:`nblstm.predict` takes. It reaches each worker once
        (see Notes), so it must be picklable (nblstm models are).
    data : dask.bag.Bag, dask.dataframe.DataFrame or dask.dataframe.Series
        A Bag of ``(L, H_in)`` arrays (or nested lists); or a DataFrame with
        one sequence per row in ``column`` (a Series: its values), each an
        ``(L, H_in)`` array, a list of ``L`` rows, or an object array of
        ``L`` rows (what pyarrow list columns give); an empty list is a
        sequence of length 0.
    max_rows : int, default 65536
        Rows per packed batch, as :func:`nblstm.predict`'s; partitions are
        batched on their own, so a partition of fewer rows is one batch.
    outputs : {"last", "all", "states"}, default "last"
        As :func:`nblstm.predict`'s: ``(D * H_out,)``, ``(L, D * H_out)`` or
        ``(h_n, c_n)`` per sequence.
    column : str, optional
        The DataFrame column of the sequences; default its only column.
    meta : optional
        Dask ``meta`` of the resulting Series (DataFrame input only);
        default an object Series named like the column.

    Returns
    -------
    dask.bag.Bag or dask.dataframe.Series
        A Bag of the results in the input's order, or a Series of them
        (object dtype) with the input's index and divisions.

    Raises
    ------
    TypeError
        For a model :func:`nblstm.predict` refuses, ``data`` that is not a
        Bag, DataFrame or Series, or a column of strings (see Notes).
    ValueError
        For a bad ``max_rows`` or ``outputs``, a ``column`` that is not one
        of the DataFrame's, or no ``column`` for a DataFrame of several.
        Bad sequences raise :func:`nblstm.predict`'s errors at compute time,
        naming the row's index label (DataFrame) or the position within
        its partition (Bag).

    Notes
    -----
    How the model reaches the workers: if a ``distributed`` client is
    active when this is called, the model is scattered to every worker
    (``client.scatter(model, broadcast=True)``), so each worker unpickles it
    once and every task reads that copy; compute the result on that
    client. Otherwise it enters the graph once as ``dask.delayed(model)``:
    with the local threaded scheduler every task shares the caller's object.

    Threads: each task on a ``distributed`` worker first sets nblstm's
    thread count (:func:`nblstm.set_num_threads`, process-wide) to the
    worker's thread count (capped at ``NUMBA_NUM_THREADS``). A worker with
    several threads runs that many tasks at once, each asking for that many
    threads; for CPU-bound inference, one thread per worker and a worker
    per core is the layout to start from (see ``docs/predict.md``).

    Dask converts object columns to strings when it builds a DataFrame
    from pandas (``dataframe.convert-string``), turning lists into their
    text; build such a DataFrame under
    ``dask.config.set({"dataframe.convert-string": False})``.
    """
    _check_model(model)
    max_rows = _check_positive_int(max_rows, "max_rows")
    if not isinstance(outputs, str) or outputs not in OUTPUTS:
        raise ValueError(f"outputs must be one of {', '.join(map(repr, OUTPUTS))}, "
                         f"got {outputs!r}")
    if isinstance(data, db.Bag):
        return data.map_partitions(_predict_bag_partition, _shipped(model),
                                   max_rows=max_rows, outputs=outputs)
    if isinstance(data, dd.DataFrame):
        series = data[_column(data, column)]
    elif isinstance(data, dd.Series):
        series = data
    else:
        raise TypeError(f"nblstm.dask.predict() takes a dask Bag, DataFrame or Series, got "
                        f"{type(data).__name__}; for an iterable use nblstm.predict()")
    if _is_string_dtype(series.dtype):
        raise TypeError(f"column {series.name!r} holds strings ({series.dtype}), not "
                        f"sequences: Dask turns object columns of lists into strings when it "
                        f"builds a DataFrame; build it under dask.config.set("
                        f"{{'dataframe.convert-string': False}})")
    if meta is None:
        import pandas as pd
        meta = pd.Series(dtype=object, name=series.name)
    return series.map_partitions(_predict_series_partition, _shipped(model),
                                 max_rows=max_rows, outputs=outputs, meta=meta)


def _column(frame: Any, column: Optional[str]) -> Any:
    columns = list(frame.columns)
    if column is None:
        if len(columns) != 1:
            raise ValueError(f"the DataFrame has {len(columns)} columns {columns}; name the "
                             f"one holding the sequences with column=")
        return columns[0]
    if column not in columns:
        raise ValueError(f"column={column!r} is not a column of the DataFrame; its columns "
                         f"are {columns}")
    return column


def _is_string_dtype(dtype: Any) -> bool:
    return getattr(dtype, "kind", None) in ("U", "S") or str(dtype).startswith("string")


def _shipped(model: LSTM) -> Any:
    """What the graph holds for the model: a broadcast future of the active
    distributed client, else a delayed literal (one graph key)."""
    try:
        from distributed import get_client
        client = get_client()
    except (ImportError, ValueError):
        return dask.delayed(model, pure=False)
    if client.asynchronous:  # its scatter is a coroutine, for the caller's loop
        return dask.delayed(model, pure=False)
    return client.scatter(model, broadcast=True, hash=False)


def _use_worker_threads() -> None:
    """On a distributed worker, nblstm's threads = the worker's threads."""
    try:
        from distributed import get_worker
        worker = get_worker()
    except (ImportError, ValueError):  # the local scheduler, or no distributed
        return
    state = getattr(worker, "state", None)
    threads = getattr(state, "nthreads", None) or getattr(worker, "nthreads", None)
    if not threads:
        return
    import numba
    threads = min(int(threads), numba.config.NUMBA_NUM_THREADS)
    if get_num_threads() != threads:
        set_num_threads(threads)


def _run(model: LSTM, sequences: List[Any], max_rows: int, outputs: str, where: Any) -> List[Any]:
    """:func:`nblstm.predict` on one partition; ``where(k)`` names item ``k``
    in error messages."""
    _use_worker_threads()
    try:
        return list(_predict_local(model, sequences, max_rows=max_rows, outputs=outputs))
    except (TypeError, ValueError) as error:
        message = re.sub(r"sequences\[(\d+)\]", lambda m: where(int(m.group(1))), str(error))
        raise type(error)(message) from None


def _predict_bag_partition(partition: Iterable[Any], model: LSTM, *, max_rows: int,
                           outputs: str) -> List[Any]:
    items = [_as_rows(item, model.input_size) for item in partition]
    return _run(model, items, max_rows, outputs,
                lambda k: f"item {k} of its Bag partition")


def _predict_series_partition(part: Any, model: LSTM, *, max_rows: int, outputs: str) -> Any:
    import pandas as pd
    labels = part.index
    sequences = [_as_rows(value, model.input_size) for value in part.tolist()]
    results = _run(model, sequences, max_rows, outputs,
                   lambda k: f"the sequence at index {labels[k]!r}")
    values = np.empty(len(results), dtype=object)
    for k, result in enumerate(results):  # element-wise: a slice would broadcast
        values[k] = result
    return pd.Series(values, index=part.index, name=part.name, dtype=object)


def _as_rows(value: Any, input_size: int) -> Any:
    """One DataFrame cell as an array of rows: an object array of row arrays
    (pyarrow lists) stacked; an empty list as ``(0, input_size)``."""
    if isinstance(value, np.ndarray) and value.dtype == object:
        value = value.tolist()  # rows as arrays or lists, which asarray stacks
    if isinstance(value, (list, tuple)) and len(value) == 0:
        return np.zeros((0, input_size), np.float32)
    return value
