"""Stepping benchmarks: the per-call cost of a decoding step or a streamed frame.

``time_cell_step``: ``LSTMCell(H, H)`` at batch 1 with the state updated in
place (``out=(h, c)``), against torch's ``LSTMCell`` call; ``time_stream``: a
``Stream`` of ``LSTM(128, 128)`` fed one frame (or 10) per call, against
torch's ``LSTM`` called with the carried state. ``python -m nblstm_bench
--stepping`` measures the same calls interleaved, with targets.
"""

import os

import numpy as np

THREADS = int(os.environ.get("NBLSTM_BENCH_THREADS", "2"))


def _torch():
    try:
        import torch
    except ImportError:
        raise NotImplementedError("torch is not installed")
    torch.set_num_threads(THREADS)
    return torch


def _nblstm():
    import nblstm

    if not hasattr(nblstm.LSTM, "stream"):
        raise NotImplementedError("this nblstm has no stepping path")
    nblstm.set_num_threads(THREADS)
    return nblstm


class CellStep:
    params = (["nblstm", "torch"], [128, 512])
    param_names = ["impl", "hidden"]

    def setup(self, impl, hidden):
        rng = np.random.default_rng(0)
        x = rng.standard_normal((1, hidden), dtype=np.float32)
        if impl == "nblstm":
            cell = _nblstm().LSTMCell(hidden, hidden, seed=0)
            h, c = np.zeros((1, hidden), np.float32), np.zeros((1, hidden), np.float32)
            self.step = lambda: cell(x, (h, c), out=(h, c))
        else:
            torch = _torch()
            cell = torch.nn.LSTMCell(hidden, hidden).eval()
            xt, state = torch.from_numpy(x), (torch.zeros(1, hidden), torch.zeros(1, hidden))

            def step():
                with torch.inference_mode():
                    cell(xt, state)

            self.step = step
        self.step()

    def time_cell_step(self, impl, hidden):
        self.step()


class Stream:
    params = (["nblstm", "torch"], [1, 2], [1, 10])
    param_names = ["impl", "layers", "frames"]

    def setup(self, impl, layers, frames):
        rng = np.random.default_rng(0)
        chunk = rng.standard_normal((frames, 1, 128), dtype=np.float32)
        if impl == "nblstm":
            stream = _nblstm().LSTM(128, 128, layers, seed=0).stream()
            chunk = chunk.reshape(128) if frames == 1 else chunk
            self.step = lambda: stream(chunk)
        else:
            torch = _torch()
            lstm = torch.nn.LSTM(128, 128, layers).eval()
            xt = torch.from_numpy(chunk)
            state = [(torch.zeros(layers, 1, 128), torch.zeros(layers, 1, 128))]

            def step():
                with torch.inference_mode():
                    state[0] = lstm(xt, state[0])[1]

            self.step = step
        self.step()

    def time_stream(self, impl, layers, frames):
        self.step()
