"""Numba compilation options and threading-layer set-up, in one place.

Every kernel in nblstm is compiled with the options defined here, never with
literals of its own.

Fast-math flags
    ``fastmath=True`` would include ``nnan`` and ``ninf``, which let LLVM assume
    that no NaN or infinity exists; NaN inputs and saturating inputs such as
    ``1e30`` would then give undefined results. We keep only the flags that
    allow vectorisation and contraction into FMA without that assumption.

Threading layer
    Numba's ``workqueue`` layer aborts the process when two Python threads call
    a parallel function at once, and GNU ``omp`` kills children forked after
    parallel work. ``tbb`` survives both, but the ``tbb`` wheel installs
    ``libtbb.so.12`` into ``<prefix>/lib``, which the dynamic loader does not
    search inside a virtual environment. :func:`_preload_tbb` loads it
    globally before Numba looks for it. If no safe layer can be had, calls into
    parallel kernels are serialised by :data:`PARALLEL_LOCK` so that nothing
    aborts.
"""

from __future__ import annotations

import ctypes
import glob
import os
import sys
import threading

FASTMATH_FLAGS = {"nsz", "arcp", "contract", "afn", "reassoc"}

#: Options for serial kernels.
JIT_OPTIONS = dict(nogil=True, cache=True, fastmath=FASTMATH_FLAGS, error_model="numpy")
#: Options for scalar code that must round exactly as IEEE arithmetic does
#: (fbgemm's quantisation parameters: with ``arcp`` a division became a
#: multiplication by the reciprocal and moved a zero point off a .5 tie).
#: ``fastmath=False`` must be explicit: a function that leaves it unset
#: inherits its caller's flags when a kernel's call compiles it first
#: (Numba's ``inherit_if_not_set``), and that compiled version then also
#: served, and was cached for, direct calls.
EXACT_JIT_OPTIONS = dict(nogil=True, cache=True, fastmath=False, error_model="numpy")

#: Options for kernels with ``prange`` loops.
PARALLEL_JIT_OPTIONS = dict(JIT_OPTIONS, parallel=True)

#: Options for ``@overload`` implementations (inlined into the calling kernel).
INLINE_JIT_OPTIONS = dict(fastmath=FASTMATH_FLAGS, error_model="numpy")


def target_features() -> dict:
    """The CPU features Numba compiles for: the host's, or as overridden by
    ``NUMBA_CPU_FEATURES`` (``+avx512f,+avx512vnni,...``) or a
    ``NUMBA_CPU_NAME`` other than ``host`` (then only the listed ones, or none)."""
    features = os.environ.get("NUMBA_CPU_FEATURES", "")
    if features:
        return {f[1:]: f[0] == "+" for f in features.split(",") if f[:1] in "+-" and f[1:]}
    if os.environ.get("NUMBA_CPU_NAME", "host") != "host":
        return {}
    from llvmlite import binding

    return dict(binding.get_host_cpu_features())


def _target_has_avx512() -> bool:
    """Whether Numba compiles for a CPU with AVX-512F."""
    return bool(target_features().get("avx512f", False))


#: Vector width (bits) the hot kernels ask LLVM for, or 0 for its default.
#: LLVM's tuning for recent Intel cores prefers 256-bit vectors even where
#: AVX-512 exists; the kernels here are dense FMA loops over data in cache,
#: where 512-bit registers measured 1.3-1.45x faster. The request is a
#: per-function attribute (see ``_codegen.prefer_vector_width``), so it
#: changes no other code in the process.
PREFERRED_VECTOR_BITS = 512 if _target_has_avx512() else 0


def _preload_tbb() -> bool:
    """Load ``libtbb.so.12`` from the interpreter prefix if it is there."""
    if sys.platform.startswith("win") or sys.platform == "darwin":
        return False
    for prefix in dict.fromkeys((sys.prefix, sys.base_prefix, sys.exec_prefix)):
        for path in sorted(glob.glob(os.path.join(prefix, "lib", "libtbb.so.12*"))):
            try:
                ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
                return True
            except OSError:
                continue
    return False


TBB_PRELOADED = _preload_tbb()

#: Held around parallel kernels only when the active threading layer is not
#: thread-safe (``workqueue``), so concurrent callers wait instead of aborting.
PARALLEL_LOCK = threading.RLock()

_layer_is_safe: bool | None = None


def threading_layer_is_safe() -> bool:
    """Whether the active Numba threading layer tolerates concurrent callers.

    Only meaningful after the first parallel call (Numba picks the layer
    lazily); before that it reports ``False`` so callers take the lock.
    """
    global _layer_is_safe
    if _layer_is_safe is None:
        import numba

        try:
            layer = numba.threading_layer()
        except ValueError:  # no parallel function has run yet
            return False
        _layer_is_safe = layer in ("tbb", "omp")
    return _layer_is_safe
