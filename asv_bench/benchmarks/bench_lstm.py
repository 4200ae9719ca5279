"""LSTM forward benchmarks: nblstm against torch and ONNX Runtime.

Parametrised by implementation and, for ``Forward``, weight precision
(``float32``; ``int8``: nblstm ``quantize("int8")``, torch qint8, ONNX Runtime
int8; ``bfloat16``: nblstm ``quantize("bfloat16")``, torch bfloat16; input and
output stay float32). An implementation that is not installed or cannot run a
combination (ORT has no double or bfloat16 LSTM; reduced precision is float32
in/out only) is skipped by raising ``NotImplementedError`` in ``setup``. Runners are built, compiled and warmed up
in ``setup``; each ``time_`` method does exactly one forward call.

asv runs each benchmark in its own process, so these absolute times are for
tracking nblstm over commits; for peer-to-peer ratios use the interleaved
``python -m nblstm_bench``.
"""

import os
import subprocess
import sys
import tempfile

from . import _cases


class Forward:
    """One forward pass on each grid case (``padded_bi_h256`` = packed_bi_h256's
    data as a padded array; ``packed_bi_h256`` = PackedSequence for nblstm and
    torch, ``sequence_lens`` for ORT) at each weight precision."""

    params = [_cases.IMPLS, _cases.CASE_NAMES, _cases.DTYPES, _cases.PRECISIONS]
    param_names = ["impl", "case", "dtype", "precision"]
    timeout = 300
    # b64_h512 takes ~0.1 s a call: keep the sample count modest.
    repeat = (1, 10, 20.0)

    def setup(self, impl, case, dtype, precision):
        self.run = _cases.make_runner(impl, case, dtype, precision=precision).fn

    def time_forward(self, impl, case, dtype, precision):
        self.run()


class PeakMem:
    """Peak RSS of a process that runs one forward on T=20000, B=8, I=H=256
    (single layer, float32). The whole process counts (asv reads ru_maxrss), so
    setup compiles on a tiny input and nblstm never imports torch."""

    params = [_cases.IMPLS]
    param_names = ["impl"]
    timeout = 300

    def setup(self, impl):
        _cases.require(impl)
        _cases.warmup_small(impl)
        self.run = _cases.make_runner(impl, _cases.PEAKMEM_CASE.name, "float32", warmup=False).fn

    def peakmem_forward(self, impl):
        self.run()


_COLD_STMT = {
    "nblstm": (
        "import numpy as np\n"
        "import nblstm\n"
        "m = nblstm.LSTM(128, 128)\n"
        "m(np.ones((10, 1, 128), dtype=np.float32))\n"
    ),
    "torch": (
        "import torch\n"
        "m = torch.nn.LSTM(128, 128).eval()\n"
        "with torch.inference_mode():\n"
        "    m(torch.ones(10, 1, 128))\n"
    ),
}

#: Numba cache for the warm-cache variant (primed in setup, outside the timing).
_WARM_CACHE = os.path.join(tempfile.gettempdir(), "nblstm-asv-warm-numba-cache")


def _cache_setup(cache_dir_expr):
    return f"import os\nos.environ['NUMBA_CACHE_DIR'] = {cache_dir_expr}\n"


class ColdStart:
    """Fresh process: ``import`` + build LSTM(128, 128) + one forward on
    (10, 1, 128). ``nblstm_warm_cache`` runs with a primed Numba cache,
    ``nblstm_empty_cache`` with a new empty cache directory (full compile)."""

    params = [["nblstm_warm_cache", "nblstm_empty_cache", "torch"]]
    param_names = ["variant"]
    number = 1
    repeat = (1, 5, 120.0)
    timeout = 600

    def setup(self, variant):
        _cases.require("torch" if variant == "torch" else "nblstm")
        if variant == "nblstm_warm_cache":
            code = _cache_setup(repr(_WARM_CACHE)) + _COLD_STMT["nblstm"]
            subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)

    def timeraw_import_build_forward(self, variant):
        if variant == "torch":
            return _COLD_STMT["torch"]
        if variant == "nblstm_warm_cache":
            return _COLD_STMT["nblstm"], _cache_setup(repr(_WARM_CACHE))
        return _COLD_STMT["nblstm"], "import tempfile\n" + _cache_setup("tempfile.mkdtemp(prefix='nblstm-cold-')")
