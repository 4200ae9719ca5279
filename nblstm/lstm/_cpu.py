"""What the CPU Numba compiles for can do, read once at import.

Each weight format picks its register tiles from these flags when a model is
quantised (the choice is part of the weights' type, so one process can hold
both paths, and tests compare them). ``NBLSTM_PORTABLE_KERNELS=1`` forces
every format onto its portable path, whatever the CPU.
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform
import sys
from typing import Callable, Dict, Iterable, Optional, Tuple

from .._config import target_features

#: Set ``NBLSTM_PORTABLE_KERNELS=1`` to run every format's portable kernels.
FORCE_PORTABLE = os.environ.get("NBLSTM_PORTABLE_KERNELS", "") not in ("", "0")

FEATURES: Dict[str, bool] = target_features()

#: u8 x s8 dot products into int32 (``vpdpbusd``), 512-bit or AVX-VNNI 256-bit.
HAS_VNNI = FEATURES.get("avx512vnni", False) or FEATURES.get("avxvnni", False)
#: 16-bit multiply-adds into int32 (``vpmaddwd``), the int8 tiles where VNNI is missing.
HAS_AVX2 = FEATURES.get("avx2", False)
#: Fused multiply-add (with AVX2: the float tiles' explicit FMA steps, ``_x86``).
HAS_FMA = FEATURES.get("fma", False)
#: bfloat16 pair dot products into float32 (``vdpbf16ps``).
HAS_AVX512_BF16 = FEATURES.get("avx512bf16", False)

#: Whether int8 models run on VNNI tiles (unless forced portable).
USE_VNNI = HAS_VNNI and not FORCE_PORTABLE
#: Whether int8 models without VNNI run on vpmaddwd tiles (unless forced portable).
USE_AVX2 = HAS_AVX2 and not FORCE_PORTABLE
#: Whether bfloat16 models run on vdpbf16ps tiles (unless forced portable).
USE_AVX512_BF16 = HAS_AVX512_BF16 and not FORCE_PORTABLE


def _request_amx_state() -> bool:
    """Ask Linux for the AMX tile state (``arch_prctl(ARCH_REQ_XCOMP_PERM,
    XFEATURE_XTILEDATA)``, per process); without it a tile instruction kills
    the process. False where it is refused or not Linux x86-64."""
    if not sys.platform.startswith("linux") or platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.syscall(158, 0x1023, 18) == 0  # SYS_arch_prctl, REQ_XCOMP_PERM, XTILEDATA
    except (OSError, AttributeError):
        return False


#: The CPU has AMX int8 tiles (``tdpbusd``); see :func:`use_amx_int8`.
HAS_AMX_INT8 = (FEATURES.get("amx-int8", False) and FEATURES.get("amx-tile", False)
                and HAS_VNNI)
#: The CPU has AMX bfloat16 tiles (``tdpbf16ps``); see :func:`use_amx_bf16`.
HAS_AMX_BF16 = FEATURES.get("amx-bf16", False) and FEATURES.get("amx-tile", False)


@functools.lru_cache(maxsize=None)
def _amx_allowed() -> bool:
    """Neither ``NBLSTM_PORTABLE_KERNELS=1`` nor ``NBLSTM_NO_AMX=1`` is set,
    and the kernel grants the tile state (asked on the first call)."""
    if FORCE_PORTABLE or os.environ.get("NBLSTM_NO_AMX", "") not in ("", "0"):
        return False
    return _request_amx_state()


def use_amx_int8() -> bool:
    """Whether int8 models use AMX tiles for products of many rows: the CPU
    has them (and VNNI for the other rows) and :func:`_amx_allowed` (asked
    when the first int8 model is built, not at import)."""
    return HAS_AMX_INT8 and _amx_allowed()


def use_amx_bf16() -> bool:
    """Whether bfloat16 models run every product on AMX tiles: the CPU has
    them and :func:`_amx_allowed` (asked when the first bfloat16 model is
    built)."""
    return HAS_AMX_BF16 and _amx_allowed()


def check_kernels(kernels: Optional[str], paths: Iterable[str],
                  needs: Dict[str, Tuple[Callable[[], bool], str]]) -> None:
    """Refuse a kernel path this process cannot run: ``kernels`` must be
    None or one of ``paths``, and where ``needs[kernels]`` is ``(available,
    what)``, ``available()`` must be true (LLVM cannot select an
    instruction the CPU lacks: compiling it would end the process)."""
    paths = list(paths)
    if kernels is None:
        return
    if kernels not in paths:
        raise ValueError(f"kernels must be one of {', '.join(map(repr, paths))}, got {kernels!r}")
    if kernels in needs and not needs[kernels][0]():
        usable = [p for p in paths if p != kernels and (p not in needs or needs[p][0]())]
        raise ValueError(f"kernels={kernels!r} needs {needs[kernels][1]}, which this CPU or kernel "
                         f"does not give; use {' or '.join(map(repr, usable))}")


def describe() -> str:
    """The features that decide the kernel paths, as ``name=yes/no`` pairs."""
    names = ("avx2", "avx512f", "avx512vnni", "avxvnni", "avx512bf16", "amx-int8", "amx-bf16")
    return ", ".join(f"{n}={'yes' if FEATURES.get(n, False) else 'no'}" for n in names)
