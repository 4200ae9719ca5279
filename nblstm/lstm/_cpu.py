"""What the CPU Numba compiles for can do, read once at import.

Each weight format picks its register tiles from these flags when a model is
quantised (the choice is part of the weights' type, so one process can hold
both paths, and tests compare them). ``NBLSTM_PORTABLE_KERNELS=1`` forces
every format onto its portable path, whatever the CPU.
"""

from __future__ import annotations

import os
from typing import Dict

from .._config import target_features

#: Set ``NBLSTM_PORTABLE_KERNELS=1`` to run every format's portable kernels.
FORCE_PORTABLE = os.environ.get("NBLSTM_PORTABLE_KERNELS", "") not in ("", "0")

FEATURES: Dict[str, bool] = target_features()

#: u8 x s8 dot products into int32 (``vpdpbusd``), 512-bit or AVX-VNNI 256-bit.
HAS_VNNI = FEATURES.get("avx512vnni", False) or FEATURES.get("avxvnni", False)
#: bfloat16 pair dot products into float32 (``vdpbf16ps``).
HAS_AVX512_BF16 = FEATURES.get("avx512bf16", False)

#: Whether int8 models run on VNNI tiles (unless forced portable).
USE_VNNI = HAS_VNNI and not FORCE_PORTABLE


def describe() -> str:
    """The features that decide the kernel paths, as ``name=yes/no`` pairs."""
    names = ("avx512f", "avx512vnni", "avxvnni", "avx512bf16", "amx-int8", "amx-bf16")
    return ", ".join(f"{n}={'yes' if FEATURES.get(n, False) else 'no'}" for n in names)
