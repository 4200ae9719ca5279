"""Batch inference over a stream of variable-length sequences.

:func:`predict` turns "run this model on each of these sequences" into a few
packed batches: it reads the input a window at a time, sorts each window by
length (so that the sequences of a batch end at about the same step and
every step of the recurrence has many rows), packs runs of the sorted
sequences into batches of at most ``max_rows`` rows, runs the model once per
batch and gives the results back in input order.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator, List, Optional, Tuple, Union

import numpy as np

from .lstm import LSTM, LSTMCell
from .lstm._validation import as_float_array
from .packing import PackedSequence, unpack_sequence

#: Default real rows (sum of lengths) in one packed batch. On the 2-core
#: development VM a batch's throughput stops growing at ~32 sequences a step
#: (``LSTM(40, 128)``), and 65536 rows hold 64-130 speech-length sequences
#: (500-1000 frames) while their input and output stay a few tens of MiB.
DEFAULT_MAX_ROWS = 65536
#: Default window, in multiples of ``max_rows``: enough sequences per window
#: that sorting them leaves batches of near-equal lengths.
WINDOW_BATCHES = 8
OUTPUTS = ("last", "all", "states")

Result = Union[np.ndarray, Tuple[np.ndarray, np.ndarray]]


def predict(model: LSTM, sequences: Iterable[Any], *, max_rows: int = DEFAULT_MAX_ROWS,
            outputs: str = "last", progress: bool = False,
            window_rows: Optional[int] = None) -> Iterator[Result]:
    """Run ``model`` on each sequence of ``sequences``, batching them for speed.

    Parameters
    ----------
    model : nblstm.LSTM
        Any configuration and weight format (float32, float64, ``"int8"``,
        ``"bfloat16"``, torch's quantised LSTM). An :class:`~nblstm.LSTMCell`
        is a ``TypeError``: a cell has no sequence to run over.
    sequences : iterable of array_like, each of shape (L_i, H_in)
        A list, a generator or any other iterable; it is read lazily, one
        window at a time. ``L_i`` may be 0. Integer input is cast to the
        model's dtype; the arrays are never modified.
    max_rows : int, default 65536
        Most real rows (sum of lengths) in one packed batch; a sequence
        longer than this is a batch of its own. Bounds the memory of one
        model call (its input, output and scratch).
    outputs : {"last", "all", "states"}, default "last"
        What to yield for each sequence:

        - ``"last"``: the last layer's final hidden state, shape
          ``(D * H_out,)``: ``np.concatenate(h_n[-D:])`` of that sequence,
          i.e. torch's ``torch.cat([h_n[-2], h_n[-1]])`` for a bidirectional
          model (forward state after the last step, backward state after
          the first step) and ``h_n[-1]`` otherwise;
        - ``"all"``: the output of every step, shape ``(L_i, D * H_out)``;
        - ``"states"``: ``(h_n, c_n)`` of that sequence, shapes
          ``(D * num_layers, H_out)`` and ``(D * num_layers, H)``.

        ``D`` is 2 for a bidirectional model, else 1; ``H_out`` is
        ``proj_size or hidden_size``.
    progress : bool, default False
        Show a ``tqdm`` progress bar counting sequences (with a total when
        ``len(sequences)`` works). Needs ``pip install tqdm``.
    window_rows : int, optional
        How much input is read, sorted and held at a time: a window holds
        at most ``window_rows`` rows (a longer sequence: alone) and
        ``window_rows`` sequences. Default ``8 * max_rows``.

    Yields
    ------
    ndarray or (ndarray, ndarray)
        One result per input sequence, in input order, of the model's dtype
        (float32 for int8 and bfloat16 models). Each equals what
        ``model(sequence)`` (unbatched, zero initial state) gives for that
        sequence; see Notes. The results of one batch are non-overlapping
        views of one fresh buffer.

    Raises
    ------
    TypeError
        If ``model`` is not an :class:`~nblstm.LSTM` (an
        :class:`~nblstm.LSTMCell` included), ``max_rows`` or ``window_rows``
        is not an int, or a sequence does not hold real numbers (raised when
        it is reached; the message names its index).
    ValueError
        If ``max_rows`` or ``window_rows`` is not positive, ``outputs`` is
        not one of the three, or a sequence is not 2-D or has another
        feature size than ``model.input_size`` (raised when it is reached;
        the message names its index).
    ImportError
        If ``progress=True`` and tqdm is not installed.

    Notes
    -----
    Memory is bounded by the window, not by the input: at most one window
    of input (at most ``window_rows`` sequences and ``window_rows`` rows,
    or a single longer sequence), the one sequence read ahead that did not
    fit it, and one window of results are held at a time. The results of a window are
    yielded once all its batches have run, so the reorder buffer holds at
    most one window of results; each slot is released as it is yielded.

    Equality with one call per sequence: nblstm's kernels compute each row
    of a batch on its own, in the same order whatever the batch size, so
    float32, float64, bfloat16 and nblstm's own int8 models give bitwise the
    results of ``model(sequence)`` (tested). The one exception is a model
    from torch's dynamically quantised LSTM (``LSTM.from_torch`` of a
    ``torch.ao.nn.quantized.dynamic.LSTM``): torch quantises the activations
    of a whole batch with one scale, so each sequence there runs as a batch
    of one to keep its results those of a call on it alone. Sequences of
    length 0 do not run: their ``h_n``/``c_n`` are zeros (the initial
    state) and their output is ``(0, D * H_out)``.

    In training mode with dropout the masks depend on the batch, so results
    are not those of per-sequence calls; use ``model.eval()``.

    Examples
    --------
    >>> import numpy as np, nblstm
    >>> lstm = nblstm.LSTM(40, 64, bidirectional=True, seed=0)
    >>> rng = np.random.default_rng(0)
    >>> corpus = (rng.standard_normal((n, 40), dtype=np.float32) for n in [5, 0, 12])
    >>> [v.shape for v in nblstm.predict(lstm, corpus)]
    [(128,), (128,), (128,)]
    """
    _check_model(model)
    max_rows = _check_positive_int(max_rows, "max_rows")
    window_rows = (WINDOW_BATCHES * max_rows if window_rows is None
                   else _check_positive_int(window_rows, "window_rows"))
    if not isinstance(outputs, str) or outputs not in OUTPUTS:
        raise ValueError(f"outputs must be one of {', '.join(map(repr, OUTPUTS))}, "
                         f"got {outputs!r}")
    if isinstance(sequences, PackedSequence) or hasattr(sequences, "batch_sizes"):
        raise TypeError("predict() takes an iterable of (L, H_in) sequences, got a "
                        "PackedSequence; call the model on a PackedSequence directly")
    if isinstance(sequences, np.ndarray) and sequences.ndim < 3:
        raise ValueError(f"sequences must be an iterable of (L, H_in) arrays, got one "
                         f"{sequences.ndim}-D array of shape {sequences.shape}; pass "
                         f"[array] for a single sequence")
    try:
        source = iter(sequences)
    except TypeError:
        raise TypeError(f"sequences must be an iterable of (L, H_in) arrays, got "
                        f"{type(sequences).__name__}") from None
    bar = _progress_bar(sequences) if progress else None
    return _predict(model, source, max_rows, outputs, window_rows, bar)


def _check_model(model: Any) -> None:
    if isinstance(model, LSTMCell):
        raise TypeError("predict() runs a model over sequences, and an LSTMCell has no "
                        "sequence (it computes one step); pass an nblstm.LSTM, or call "
                        "the cell step by step")
    if not isinstance(model, LSTM):
        hint = ("; convert it with nblstm.LSTM.from_torch(module)"
                if getattr(model, "mode", None) == "LSTM" else "")
        raise TypeError(f"predict() needs an nblstm.LSTM model, got "
                        f"{type(model).__name__}{hint}")


def _check_positive_int(value: Any, name: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be a positive int, got {type(value).__name__} "
                        f"({value!r})")
    if value < 1:
        raise ValueError(f"{name} must be a positive int, got {value}")
    return int(value)


def _progress_bar(sequences: Any) -> Callable[[], Any]:
    """A maker of the tqdm bar, called when iteration starts (so that
    results never iterated leave no bar behind); tqdm is imported now."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        raise ImportError("predict(progress=True) needs tqdm: pip install tqdm "
                          "(or pass progress=False)") from None
    try:
        total = len(sequences)
    except TypeError:  # a generator: no total
        total = None
    return lambda: tqdm(total=total, unit="seq", desc="nblstm.predict")


def _predict(model: LSTM, source: Iterator[Any], max_rows: int, outputs: str,
             window_rows: int, make_bar: Optional[Callable[[], Any]]) -> Iterator[Result]:
    # One sequence per batch for torch's quantised numerics, whose
    # activation scale covers the whole batch (see the Notes of predict).
    per_tensor = getattr(model, "_int8_scheme", None) is not None and model._int8_scheme[1]
    batch_rows = 0 if per_tensor else max_rows
    first = 0
    carry: List[np.ndarray] = []
    bar = None if make_bar is None else make_bar()
    try:
        while True:
            window = _read_window(source, first, model, window_rows, carry)
            if not window:
                return
            results = _run_window(model, window, batch_rows, outputs)
            del window  # the input of a window is not needed while it is given out
            first += len(results)
            for k in range(len(results)):
                result, results[k] = results[k], None  # release each slot once given out
                if bar is not None:
                    bar.update(1)
                yield result
    finally:
        if bar is not None:
            bar.close()


def _read_window(source: Iterator[Any], first: int, model: LSTM, window_rows: int,
                 carry: List[np.ndarray]) -> List[np.ndarray]:
    """The next window of sequences, converted to the model dtype and checked
    (``first`` is the input index of the first, for the messages).

    ``carry`` holds the sequence read ahead that did not fit the last
    window (it becomes this one's first; one that would not fit is left
    there for the next), so that a window never has more than
    ``window_rows`` rows unless it is a single longer sequence, and its
    batches fill up.
    """
    window: List[np.ndarray] = []
    rows = 0
    while len(window) < window_rows:
        if carry:
            x = carry.pop()
        else:
            try:
                item = next(source)
            except StopIteration:
                break
            x = _as_sequence(item, first + len(window), model)
        if window and rows + x.shape[0] > window_rows:
            carry.append(x)
            break
        window.append(x)
        rows += x.shape[0]
    return window


def _as_sequence(item: Any, index: int, model: LSTM) -> np.ndarray:
    name = f"sequences[{index}]"
    x = as_float_array(item, name, model.dtype)  # a copy only where it casts
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D (L, H_in), got {x.ndim}-D of shape {x.shape}")
    if x.shape[1] != model.input_size:
        raise ValueError(f"{name} has {x.shape[1]} features, but the model's input_size is "
                         f"{model.input_size} (shape {x.shape})")
    return x


def _batches(lengths: np.ndarray, order: np.ndarray, max_rows: int) -> Iterator[np.ndarray]:
    """Runs of ``order`` (window positions, longest first, no empty ones) of
    at most ``max_rows`` rows each; a longer sequence alone.

    A run closes before the sequence that would take it past ``max_rows``,
    or once it holds its share of the rows left (those rows over the fewest
    runs of ``max_rows`` that hold them): the window is cut into that many
    runs of about equal size, not full runs and a small remainder.
    """
    if max_rows == 0:  # one sequence a batch
        yield from (order[k:k + 1] for k in range(len(order)))
        return
    left = int(lengths[order].sum())
    if left == 0:
        return
    start, rows = 0, 0
    share = left / -(-left // max_rows)
    for k, position in enumerate(order):
        length = int(lengths[position])
        if k > start and rows + length > max_rows:
            yield order[start:k]
            left -= rows
            start, rows = k, 0
            share = left / -(-left // max_rows)
        rows += length
        if rows >= share:
            yield order[start:k + 1]
            left -= rows
            start, rows = k + 1, 0
            share = left / -(-left // max_rows) if left else 0.0
    if start < len(order):
        yield order[start:]


def _pack(sequences: List[np.ndarray], dtype: np.dtype) -> PackedSequence:
    """:func:`~nblstm.packing.pack_sequence` of sequences sorted longest
    first, none empty, already checked: one copy into the packed rows."""
    lengths = np.array([x.shape[0] for x in sequences], dtype=np.int64)
    steps = np.arange(lengths[0], dtype=np.int64)
    # batch_sizes[t]: how many sequences are longer than t.
    batch_sizes = len(lengths) - np.searchsorted(lengths[::-1], steps, side="right")
    offsets = np.zeros(len(steps) + 1, dtype=np.int64)
    np.cumsum(batch_sizes, out=offsets[1:])
    data = np.empty((int(offsets[-1]), sequences[0].shape[1]), dtype=dtype)
    for i, x in enumerate(sequences):  # step t of sequence i is row offsets[t] + i
        data[offsets[:x.shape[0]] + i] = x
    return PackedSequence(data, batch_sizes.astype(np.int64))


def _run_window(model: LSTM, window: List[np.ndarray], max_rows: int, outputs: str
                ) -> List[Any]:
    """The results of one window's sequences, in window order."""
    lengths = np.array([x.shape[0] for x in window], dtype=np.int64)
    # Stable, so that equal lengths keep their input order.
    order = np.argsort(-lengths, kind="stable")
    order = order[lengths[order] > 0]
    results: List[Any] = [None] * len(window)
    for batch in _batches(lengths, order, max_rows):
        packed = _pack([window[k] for k in batch], model.dtype)
        out, (h_n, c_n) = model(packed)
        for k, result in zip(batch, _split(out, h_n, c_n, model, outputs)):
            results[k] = result
    empty = np.flatnonzero(lengths == 0)
    if len(empty):
        for k, result in zip(empty, _empty_results(model, len(empty), outputs)):
            results[k] = result
    return results


def _split(out: PackedSequence, h_n: np.ndarray, c_n: np.ndarray, model: LSTM,
           outputs: str) -> List[Any]:
    """Per-sequence results of one batch, in its (sorted) order."""
    if outputs == "all":
        return unpack_sequence(PackedSequence(out.data, out.batch_sizes))
    if outputs == "last":
        d = model.num_directions
        last = np.ascontiguousarray(h_n[-d:].transpose(1, 0, 2)).reshape(h_n.shape[1], -1)
        return list(last)
    h = np.ascontiguousarray(h_n.transpose(1, 0, 2))
    c = np.ascontiguousarray(c_n.transpose(1, 0, 2))
    return list(zip(h, c))


def _empty_results(model: LSTM, count: int, outputs: str) -> List[Any]:
    """Results of ``count`` sequences of length 0: the zero initial state,
    and no output rows."""
    d, width = model.num_directions, model.output_size
    if outputs == "all":
        return list(np.zeros((count, 0, d * width), model.dtype))
    if outputs == "last":
        return list(np.zeros((count, d * width), model.dtype))
    states = d * model.num_layers
    h = np.zeros((count, states, width), model.dtype)
    c = np.zeros((count, states, model.hidden_size), model.dtype)
    return list(zip(h, c))
