"""How many threads nblstm uses.

nblstm's kernels run on Numba's thread pool (``prange``), the input
projection included; no product runs on BLAS, so results are bitwise the
same for any thread count (see ``lstm._driver``). ``set_num_threads`` also
limits the BLAS libraries loaded in the process (with threadpoolctl), for
the NumPy code around the model.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Iterator, Optional

import numba

from . import _config

_lock = threading.Lock()
_num_threads: Optional[int] = None


def get_num_threads() -> int:
    """The number of threads nblstm's kernels use (default: all of Numba's)."""
    return _num_threads if _num_threads is not None else numba.config.NUMBA_NUM_THREADS


def set_num_threads(n: int) -> None:
    """Set the number of threads for nblstm's kernels and, when threadpoolctl is
    installed, for the BLAS libraries loaded in this process.

    Parameters
    ----------
    n : int
        Between 1 and ``numba.config.NUMBA_NUM_THREADS`` (set the environment
        variable ``NUMBA_NUM_THREADS`` before import to change that ceiling).

    Notes
    -----
    Without threadpoolctl, limit BLAS with ``OPENBLAS_NUM_THREADS`` (or
    ``OMP_NUM_THREADS``) in the environment before NumPy is imported.
    """
    global _num_threads
    limit = numba.config.NUMBA_NUM_THREADS
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"set_num_threads(): n must be an int, got {n!r}")
    if not 1 <= n <= limit:
        raise ValueError(f"set_num_threads(): n must be between 1 and {limit} "
                         f"(NUMBA_NUM_THREADS), got {n}")
    with _lock:
        _num_threads = n
        try:
            import threadpoolctl
        except ImportError:
            return
        threadpoolctl.threadpool_limits(limits=n, user_api="blas")


@contextlib.contextmanager
def parallel_section() -> Iterator[int]:
    """Run the enclosed parallel kernels with :func:`get_num_threads` threads.

    Numba's thread count is per calling thread; it is restored on exit. If
    the active threading layer is not thread-safe (``workqueue``, when
    neither TBB nor OpenMP is available), concurrent callers are serialised
    here instead of aborting the process.
    """
    lock = None if _config.threading_layer_is_safe() else _config.PARALLEL_LOCK
    if lock is not None:
        lock.acquire()
    wanted = get_num_threads()
    previous = numba.get_num_threads()
    if previous != wanted:
        numba.set_num_threads(wanted)
    try:
        yield wanted
    finally:
        if previous != wanted:
            numba.set_num_threads(previous)
        if lock is not None:
            lock.release()
