"""``nblstm.load_state_dict(path)``: state-dict files read without torch.

Oracles: torch (``torch.save``/``torch.load`` and tensors' ``.numpy()``),
safetensors and NumPy (``np.savez``/``np.load``). Hostile files (pickles that
name ``os.system``, ``eval``, a whole module, ...) must be refused before
anything in them runs, which each test checks with a marker file that the
payload would create; malformed files must give a ValueError naming the file.
"""

from __future__ import annotations

import builtins
import collections
import io
import os
import pathlib
import pickle
import subprocess
import sys
import tempfile
import textwrap
import zipfile

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import nblstm  # noqa: E402

nn = torch.nn
CORRUPT = r"truncated or corrupt"


# --------------------------------------------------------------------------- helpers

class Model(nn.Module):
    """A small model with an LSTM inside, as a user would save it."""

    def __init__(self, input_size=5, hidden_size=16, **lstm_kwargs):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(input_size, 8), nn.BatchNorm1d(8), nn.Tanh())
        self.rnn = nn.LSTM(8, hidden_size, **lstm_kwargs)
        out = lstm_kwargs.get("proj_size") or hidden_size
        self.head = nn.Linear(out * (2 if lstm_kwargs.get("bidirectional") else 1), 3)


def make_model(seed=0, **lstm_kwargs):
    torch.manual_seed(seed)
    model = Model(**lstm_kwargs)
    model.train()
    model.encoder(torch.randn(7, 5))  # non-trivial BatchNorm running stats
    return model.eval()


def as_numpy(t):
    """torch's own view of a tensor's values (bfloat16 widened by torch)."""
    t = t.detach()
    if t.dtype == torch.bfloat16:
        t = t.float()
    return t.resolve_neg().numpy()


def assert_same(loaded, expected):
    """``loaded`` (ours) equals ``expected`` (name -> tensor) exactly: keys,
    dtypes, shapes, values; every array fresh, writable, C-contiguous, native."""
    assert list(loaded) == list(expected)
    for name, tensor in expected.items():
        want = as_numpy(tensor) if torch.is_tensor(tensor) else np.asarray(tensor)
        got = loaded[name]
        assert isinstance(got, np.ndarray), name
        assert got.dtype == want.dtype.newbyteorder("="), (name, got.dtype, want.dtype)
        assert got.shape == want.shape, (name, got.shape, want.shape)
        assert np.array_equal(got, want, equal_nan=got.dtype.kind == "f"), name
        assert got.flags.writeable and got.flags.c_contiguous and got.dtype.isnative, name
    bases = [v.base if v.base is not None else v for v in loaded.values()]
    assert len({id(b) for b in bases}) == len(bases), "two values share memory"


def write_zip(path, members, prefix="archive"):
    """A zip laid out like torch.save's: ``members`` maps names under
    ``<prefix>/`` to bytes."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for name, data in members.items():
            z.writestr(f"{prefix}/{name}", data)
    return path


def zip_members(path):
    with zipfile.ZipFile(path) as z:
        prefix = z.namelist()[0].split("/")[0]
        return {n[len(prefix) + 1:]: z.read(n) for n in z.namelist()}


class _FakeStorage:
    def __init__(self, key, numel, kind=None, location="cpu"):
        self.key, self.numel, self.kind = key, numel, kind or torch.FloatStorage
        self.location = location


class _FakeTensor:
    """Pickles like a tensor would, with arguments of our choosing."""

    def __init__(self, storage, offset, size, stride, hooks=None, fn=None, extra=()):
        self.args = (storage, offset, tuple(size), tuple(stride), False,
                     collections.OrderedDict() if hooks is None else hooks, *extra)
        self.fn = fn or torch._utils._rebuild_tensor_v2

    def __reduce__(self):
        return self.fn, self.args


class _TorchLikePickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, _FakeStorage):
            return ("storage", obj.kind, obj.key, obj.location, obj.numel)
        return None


def write_crafted_torch_file(path, obj, storages, byteorder=b"little"):
    """A torch zip whose data.pkl pickles ``obj`` (with _FakeTensor/_FakeStorage
    standing for tensors) and whose ``data/<key>`` are ``storages``."""
    buf = io.BytesIO()
    _TorchLikePickler(buf, protocol=2).dump(obj)
    members = {"data.pkl": buf.getvalue(), "byteorder": byteorder, "version": b"3\n"}
    members.update({f"data/{k}": v for k, v in storages.items()})
    return write_zip(path, members)


class Payload:
    """Runs ``func(*args)`` when unpickled."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def touch_payloads(marker):
    """(id, payload object, a regex of the global its pickle names) that each
    create ``marker`` (protocols < 3 spell ``builtins`` as ``__builtin__``)."""
    m = str(marker)
    code = f"open({m!r}, 'w').close()"
    return [
        ("os.system", Payload(os.system, f"touch {m}"), r"(posix|os)\.system"),
        ("eval", Payload(builtins.eval, code), r"(builtins|__builtin__)\.eval"),
        ("exec", Payload(builtins.exec, code), r"(builtins|__builtin__)\.exec"),
        ("subprocess", Payload(subprocess.call, ["touch", m]), r"(subprocess|commands)\.call"),
    ]


PAYLOAD_IDS = [p[0] for p in touch_payloads("x")]


# --------------------------------------------------------------------------- torch.save files

MODEL_CASES = {
    "float32": (dict(), None),
    "float32-2layer-batch_first": (dict(num_layers=2, batch_first=True), None),
    "bidirectional-proj": (dict(num_layers=2, bidirectional=True, proj_size=4), None),
    "float64": (dict(), torch.float64),
    "bfloat16": (dict(), torch.bfloat16),
    "float16": (dict(bidirectional=True), torch.float16),
}


@pytest.mark.parametrize("case", list(MODEL_CASES))
def test_torch_save_state_dict_matches_torch(tmp_path, case):
    kwargs, dtype = MODEL_CASES[case]
    model = make_model(**kwargs)
    if dtype is not None:
        model = model.to(dtype)
    sd = model.state_dict()
    path = tmp_path / "m.pt"
    torch.save(sd, path)
    loaded = nblstm.load_state_dict(path)
    assert_same(loaded, sd)
    assert loaded["encoder.1.num_batches_tracked"].dtype == np.int64
    if dtype is not None:
        want = {torch.float64: np.float64, torch.bfloat16: np.float32,
                torch.float16: np.float16}[dtype]
        assert loaded["rnn.weight_ih_l0"].dtype == want
    assert nblstm.load_state_dict(str(path)).keys() == loaded.keys()


def test_every_storage_dtype(tmp_path):
    g = torch.Generator().manual_seed(1)
    values = torch.randn(3, 4, generator=g) * 50
    sd = {
        "f32": values, "f64": values.double(), "f16": values.half(),
        "bf16": values.bfloat16(), "i8": values.to(torch.int8), "u8": values.abs().to(torch.uint8),
        "i16": values.to(torch.int16), "i32": values.to(torch.int32), "i64": values.to(torch.int64),
        "bool": values > 0, "scalar": torch.tensor(2.5), "empty": torch.zeros(0, 3),
        "special": torch.tensor([float("inf"), -float("inf"), float("nan"), -0.0]),
    }
    path = tmp_path / "dtypes.pt"
    torch.save(sd, path)
    loaded = nblstm.load_state_dict(path)
    assert_same(loaded, sd)
    assert {k: str(v.dtype) for k, v in loaded.items()} == {
        "f32": "float32", "f64": "float64", "f16": "float16", "bf16": "float32",
        "i8": "int8", "u8": "uint8", "i16": "int16", "i32": "int32", "i64": "int64",
        "bool": "bool", "scalar": "float32", "empty": "float32", "special": "float32"}
    assert np.signbit(loaded["special"][3])


def test_bfloat16_is_widened_exactly(tmp_path):
    bits = torch.arange(0, 1 << 16, 97, dtype=torch.int32).to(torch.int16)  # all kinds of patterns
    bf = bits.view(torch.bfloat16)
    torch.save({"bf": bf}, tmp_path / "bf.pt")
    got = nblstm.load_state_dict(tmp_path / "bf.pt")["bf"]
    want = bf.float().numpy()
    assert got.dtype == np.float32
    finite = np.isfinite(want)
    assert np.array_equal(got[finite], want[finite])
    assert np.array_equal(np.isnan(got), np.isnan(want))


def test_views_sharing_one_storage(tmp_path):
    t = torch.arange(48, dtype=torch.float32).reshape(6, 8)
    sd = {"a": t[2:], "b": t.T, "c": t[1:, 1::3], "d": t[4, 5], "e": t[:, 2:3].expand(6, 5),
          "f": t.T[3:, ::2], "whole": t}
    path = tmp_path / "views.pt"
    torch.save(sd, path)
    storages = [n for n in zip_members(path) if n.startswith("data/")]
    assert storages == ["data/0"], "the views should share one storage"
    loaded = nblstm.load_state_dict(path)
    assert_same(loaded, sd)
    loaded["a"][0, 0] = -1  # fresh arrays: writing one does not change another
    assert loaded["whole"][2, 0] == 16 and loaded["b"][0, 2] == 16


def test_parameters_and_neg_views(tmp_path):
    p = nn.Parameter(torch.randn(3, 2))
    sd = {"param": p, "neg": torch._neg_view(torch.arange(4.0)), "plain": torch.ones(2)}
    torch.save(sd, tmp_path / "p.pt")
    assert_same(nblstm.load_state_dict(tmp_path / "p.pt"), sd)


def test_same_tensor_under_two_keys_gives_two_arrays(tmp_path):
    t = torch.randn(4)
    torch.save({"x": t, "y": t}, tmp_path / "tied.pt")
    loaded = nblstm.load_state_dict(tmp_path / "tied.pt")
    assert_same(loaded, {"x": t, "y": t})
    loaded["x"][0] = 99
    assert loaded["y"][0] == t[0].item()


def test_checkpoint_dict_is_flattened_with_dots(tmp_path):
    model = make_model(num_layers=2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss = model.head(model.rnn(model.encoder(torch.randn(7, 5)).unsqueeze(1))[0]).sum()
    loss.backward()
    opt.step()
    sd = model.state_dict()
    ckpt = {"model": sd, "epoch": 3, "optimizer": opt.state_dict(), "note": "hi",
            "history": [0.5, 0.25], "best": None, "lr": 1e-3, "flag": True,
            "nested": {"deeper": {"w": torch.ones(2, dtype=torch.float64)}, "n": 1}}
    path = tmp_path / "ckpt.pt"
    torch.save(ckpt, path)
    loaded = nblstm.load_state_dict(path)
    opt_state = opt.state_dict()["state"]
    expected = {f"model.{k}": v for k, v in sd.items()}
    expected.update({f"optimizer.state.{i}.{name}": v for i, s in opt_state.items()
                     for name, v in s.items() if torch.is_tensor(v)})
    expected["nested.deeper.w"] = ckpt["nested"]["deeper"]["w"]
    assert_same(loaded, expected)
    assert "epoch" not in loaded and "model.rnn.weight_ih_l0" in loaded


def test_big_endian_file(tmp_path):
    """A file with byteorder 'big' (as a big-endian machine writes): torch reads
    it, and so must we, to the same values."""
    sd = {"f": torch.randn(3, 2), "d": torch.randn(4, dtype=torch.float64)[1:],
          "h": torch.arange(-3, 3, dtype=torch.int16), "bf": torch.randn(5).bfloat16(),
          "i8": torch.arange(-4, 4, dtype=torch.int8)}
    little = tmp_path / "little.pt"
    torch.save(sd, little)
    members = zip_members(little)
    assert members["byteorder"] == b"little"
    itemsizes = {"0": 4, "1": 8, "2": 2, "3": 2, "4": 1}  # torch numbers storages in order
    for key, size in itemsizes.items():
        raw = np.frombuffer(members[f"data/{key}"], dtype=f"<u{size}")
        members[f"data/{key}"] = raw.astype(f">u{size}").tobytes()
    members["byteorder"] = b"big"
    big = write_zip(tmp_path / "big.pt", members)
    from_torch = torch.load(big, weights_only=True)
    for k in sd:
        assert torch.equal(from_torch[k], sd[k]), k  # the crafted file is right
    assert_same(nblstm.load_state_dict(big), sd)


def test_file_without_byteorder_is_little_endian(tmp_path):
    sd = {"w": torch.randn(2, 3)}
    torch.save(sd, tmp_path / "a.pt")
    members = zip_members(tmp_path / "a.pt")
    del members["byteorder"]
    path = write_zip(tmp_path / "old.pt", members)
    assert torch.equal(torch.load(path, weights_only=True)["w"], sd["w"])
    assert_same(nblstm.load_state_dict(path), sd)


def test_crafted_strided_tensor_matches_torch(tmp_path):
    """A hand-written valid file (offset, strides, zero strides): we read what torch reads."""
    storage = np.arange(20, dtype=np.float32).tobytes()
    s = _FakeStorage("7", 20)
    obj = collections.OrderedDict(
        a=_FakeTensor(s, 3, (2, 3), (5, 2)), b=_FakeTensor(s, 19, (4,), (0,)),
        c=_FakeTensor(s, 20, (0, 3), (3, 1)), d=_FakeTensor(s, 0, (), ()))
    path = write_crafted_torch_file(tmp_path / "crafted.pt", obj, {"7": storage})
    assert_same(nblstm.load_state_dict(path), torch.load(path, weights_only=True))


def test_cuda_saved_tensors_load_on_cpu(tmp_path):
    """The storage location ('cuda:0' for tensors saved from a GPU) is ignored."""
    s = _FakeStorage("0", 6, kind=torch.DoubleStorage, location="cuda:0")
    obj = {"w": _FakeTensor(s, 1, (2, 2), (1, 2))}
    path = write_crafted_torch_file(tmp_path / "gpu.pt", obj,
                                    {"0": np.arange(6, dtype=np.float64).tobytes()})
    assert_same(nblstm.load_state_dict(path), torch.load(path, weights_only=True,
                                                         map_location="cpu"))


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_torch_save_pickle_protocols(tmp_path, protocol):
    sd = make_model(num_layers=2).state_dict()
    torch.save(sd, tmp_path / "p.pt", pickle_protocol=protocol)
    assert_same(nblstm.load_state_dict(tmp_path / "p.pt"), sd)


@st.composite
def saved_views(draw):
    dtype = draw(st.sampled_from([torch.float32, torch.float64, torch.float16, torch.int8]))
    ndim = draw(st.integers(1, 3))
    shape = draw(st.lists(st.integers(1, 6), min_size=ndim, max_size=ndim))
    base = (torch.arange(int(np.prod(shape)), dtype=torch.float64) * 1.5 - 7).to(dtype)
    view = base.reshape(shape)
    index = []
    for n in shape:
        start = draw(st.integers(0, n - 1))
        step = draw(st.integers(1, 3))
        index.append(slice(start, None, step))
    view = view[tuple(index)]
    if ndim > 1 and draw(st.booleans()):
        view = view.transpose(0, ndim - 1)
    return {"view": view, "flat": base[draw(st.integers(0, base.numel() - 1)):]}


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(saved_views())
def test_property_random_views_equal_torch(sd):
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "v.pt"
        torch.save(sd, path)
        assert_same(nblstm.load_state_dict(path), sd)


# --------------------------------------------------------------------------- safetensors and npz

def test_safetensors_written_by_torch(tmp_path):
    st_torch = pytest.importorskip("safetensors.torch")
    g = torch.Generator().manual_seed(2)
    values = torch.randn(4, 3, generator=g)
    sd = {"w": values, "bf": values.bfloat16(), "h": values.half(), "d": values.double(),
          "i8": (values * 30).to(torch.int8), "i64": torch.arange(5), "mask": values > 0,
          "u8": torch.arange(6, dtype=torch.uint8), "scalar": torch.tensor(1.5),
          "empty": torch.zeros(0, 2)}
    path = tmp_path / "m.safetensors"
    st_torch.save_file(sd, str(path))
    loaded = nblstm.load_state_dict(path)
    assert sorted(loaded) == sorted(sd)
    assert_same({k: loaded[k] for k in sd}, sd)


def test_safetensors_of_a_model_state_dict(tmp_path):
    st_torch = pytest.importorskip("safetensors.torch")
    sd = make_model(bidirectional=True).to(torch.bfloat16).state_dict()
    path = tmp_path / "model.bin"  # the name does not matter, the content does
    st_torch.save_file(sd, str(path), metadata={"format": "pt"})
    loaded = nblstm.load_state_dict(path)
    assert_same({k: loaded[k] for k in sd}, sd)


def test_safetensors_written_by_numpy(tmp_path):
    st_numpy = pytest.importorskip("safetensors.numpy")
    rng = np.random.default_rng(3)
    arrays = {"a": rng.standard_normal((3, 5)).astype(np.float32),
              "b": rng.standard_normal(4), "c": rng.integers(-9, 9, (2, 2)).astype(np.int16),
              "d": np.arange(3, dtype=np.uint32), "e": rng.standard_normal(2).astype(np.float16)}
    path = tmp_path / "np.safetensors"
    st_numpy.save_file(arrays, str(path))
    oracle = st_numpy.load_file(str(path))
    loaded = nblstm.load_state_dict(path)
    assert sorted(loaded) == sorted(arrays)
    assert_same({k: loaded[k] for k in oracle}, oracle)
    assert_same({k: loaded[k] for k in arrays}, arrays)


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed], ids=["savez", "compressed"])
def test_npz(tmp_path, save):
    rng = np.random.default_rng(4)
    arrays = {"rnn.weight_ih_l0": rng.standard_normal((8, 3)).astype(np.float32),
              "b": rng.standard_normal(2), "big_endian": np.arange(4, dtype=">i4"),
              "sliced": np.arange(12.0).reshape(3, 4)[:, ::2], "flag": np.array(True),
              "name": np.array("lstm")}
    path = tmp_path / "w.npz"
    save(path, **arrays)
    loaded = nblstm.load_state_dict(path)
    with np.load(path) as oracle:
        expected = {k: oracle[k] for k in oracle.files if k != "name"}
    assert_same(loaded, expected)
    assert loaded["big_endian"].dtype == np.int32 and "name" not in loaded


def test_npz_with_object_array_is_refused(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "obj.npz"
    np.savez(path, w=np.ones(2), evil=np.array([Payload(os.system, f"touch {marker}")],
                                               dtype=object))
    with pytest.raises(ValueError, match=r"obj\.npz.*'evil'.*objects"):
        nblstm.load_state_dict(path)
    assert not marker.exists()


# --------------------------------------------------------------------------- round trip into nblstm

@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
@pytest.mark.parametrize("kwargs", [dict(num_layers=2),
                                    dict(bidirectional=True, proj_size=5, batch_first=True)],
                         ids=["2layer", "bidir-proj-batch_first"])
def test_round_trip_into_nblstm(tmp_path, kwargs):
    model = make_model(hidden_size=12, **kwargs)
    path = tmp_path / "m.pt"
    torch.save(model.state_dict(), path)
    loaded = nblstm.load_state_dict(path)
    lstm = nblstm.LSTM(8, 12, **kwargs)
    lstm.load_state_dict({k[len("rnn."):]: v for k, v in loaded.items() if k.startswith("rnn.")})
    x = np.random.default_rng(5).standard_normal((4, 3, 8)).astype(np.float32)
    out, (h, c) = lstm(x)
    with torch.no_grad():
        t_out, (t_h, t_c) = model.rnn(torch.from_numpy(x))
    np.testing.assert_allclose(out, t_out.numpy(), atol=1e-5, rtol=0)
    np.testing.assert_allclose(h, t_h.numpy(), atol=1e-5, rtol=0)
    np.testing.assert_allclose(c, t_c.numpy(), atol=1e-5, rtol=0)


BLOCK_TORCH = textwrap.dedent("""
    import sys

    class BlockTorch:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError("torch is blocked in this process: " + name)
            return None

    sys.meta_path.insert(0, BlockTorch())
    try:
        import torch  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("the torch block does not work")
""")


def test_no_torch_process_loads_and_runs(tmp_path):
    """Acceptance: a process that cannot import torch reads a torch.save file
    and runs the LSTM in it to torch's output."""
    model = make_model(hidden_size=10, num_layers=2, bidirectional=True)
    pt = tmp_path / "model.pt"
    torch.save(model.state_dict(), pt)
    x = np.random.default_rng(6).standard_normal((5, 2, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    code = BLOCK_TORCH + textwrap.dedent("""
        import numpy as np
        import nblstm
        pt, xs, outs = sys.argv[1:4]
        sd = nblstm.load_state_dict(pt)
        assert sys.modules.get("torch") is None, "torch was imported"
        lstm = nblstm.LSTM(8, 10, num_layers=2, bidirectional=True)
        lstm.load_state_dict({k[len("rnn."):]: v for k, v in sd.items() if k.startswith("rnn.")})
        out, (h, c) = lstm(np.load(xs))
        np.savez(outs, out=out, h=h, c=c)
        print("torch-free:", sorted(m for m in sys.modules if m.split(".")[0] == "torch"))
    """)
    result = subprocess.run([sys.executable, "-c", code, str(pt), str(tmp_path / "x.npy"),
                             str(tmp_path / "out.npz")], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "torch-free: []" in result.stdout
    with torch.no_grad():
        t_out, (t_h, t_c) = model.rnn(torch.from_numpy(x))
    with np.load(tmp_path / "out.npz") as got:
        np.testing.assert_allclose(got["out"], t_out.numpy(), atol=1e-5, rtol=0)
        np.testing.assert_allclose(got["h"], t_h.numpy(), atol=1e-5, rtol=0)
        np.testing.assert_allclose(got["c"], t_c.numpy(), atol=1e-5, rtol=0)


def test_import_nblstm_imports_no_optional_package():
    code = ("import sys, nblstm; nblstm.load_state_dict; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'safetensors', 'onnx', 'keras')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "[]"


def test_safetensors_and_npz_need_no_torch(tmp_path):
    st_torch = pytest.importorskip("safetensors.torch")
    sd = {"w": torch.randn(3, 2).bfloat16(), "b": torch.randn(2)}
    st_torch.save_file(sd, str(tmp_path / "a.safetensors"))
    np.savez(tmp_path / "a.npz", w=np.ones(3))
    code = BLOCK_TORCH + textwrap.dedent("""
        import numpy as np, nblstm
        a = nblstm.load_state_dict(sys.argv[1]); b = nblstm.load_state_dict(sys.argv[2])
        assert sys.modules.get("torch") is None
        np.savez(sys.argv[3], **a)
        print(sorted(a), sorted(b))
    """)
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "a.safetensors"),
                             str(tmp_path / "a.npz"), str(tmp_path / "out.npz")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split("\n")[0] == "['b', 'w'] ['w']"
    with np.load(tmp_path / "out.npz") as got:
        assert_same({k: got[k] for k in sd}, sd)


# --------------------------------------------------------------------------- hostile files

def test_payloads_are_live(tmp_path):
    """The payloads below really run when unpickled normally (so the refusal
    tests would notice if the loader unpickled them)."""
    for i in range(len(PAYLOAD_IDS)):
        marker = tmp_path / f"proof{i}"
        _, payload, _ = touch_payloads(marker)[i]
        pickle.loads(pickle.dumps(payload))
        assert marker.exists(), PAYLOAD_IDS[i]


@pytest.mark.parametrize("protocol", [0, 2, 4])
@pytest.mark.parametrize("which", range(len(PAYLOAD_IDS)), ids=PAYLOAD_IDS)
def test_malicious_pickle_in_torch_zip_is_refused(tmp_path, which, protocol):
    marker = tmp_path / "ran"
    _, payload, global_name = touch_payloads(marker)[which]
    obj = {"weight": 1.0, "evil": payload}
    path = write_zip(tmp_path / "evil.pt", {"data.pkl": pickle.dumps(obj, protocol=protocol),
                                              "byteorder": b"little", "version": b"3\n"})
    with pytest.raises(ValueError, match=rf"evil\.pt.*'{global_name}'.*state_dict\(\)"):
        nblstm.load_state_dict(path)
    assert not marker.exists()


def test_whole_pickled_module_is_refused(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "module.pt"
    model = make_model()
    # A module whose unpickling would run code (as a normal torch.load would).
    model.rnn.extra = Payload(os.system, f"touch {marker}")
    torch.save(model, path)
    with pytest.raises(ValueError, match=r"module\.pt.*Model'.*model\.state_dict\(\), not "
                                         r"the model.*weights_only=True"):
        nblstm.load_state_dict(path)
    assert not marker.exists()
    torch.save(nn.LSTM(2, 3), tmp_path / "lstm.pt")
    with pytest.raises(ValueError, match=r"lstm\.pt.*'torch\.nn\.modules\.rnn\.LSTM'"):
        nblstm.load_state_dict(tmp_path / "lstm.pt")


def test_pickled_numpy_array_is_refused(tmp_path):
    path = write_zip(tmp_path / "np.pt", {"data.pkl": pickle.dumps({"w": np.ones(3)}, protocol=2)})
    with pytest.raises(ValueError, match=r"np\.pt.*'numpy\.(_core|core)\.multiarray\."
                                         r"_reconstruct'"):
        nblstm.load_state_dict(path)


def test_payload_after_valid_tensors_is_refused(tmp_path):
    """A real state dict with a payload appended to it."""
    marker = tmp_path / "ran"
    sd = make_model().state_dict()
    sd["zz_evil"] = Payload(os.system, f"touch {marker}")
    torch.save(sd, tmp_path / "mixed.pt")
    with pytest.raises(ValueError, match=r"mixed\.pt.*'(posix|os)\.system'"):
        nblstm.load_state_dict(tmp_path / "mixed.pt")
    assert not marker.exists()


@pytest.mark.parametrize("which", range(len(PAYLOAD_IDS)), ids=PAYLOAD_IDS)
def test_raw_pickle_file_is_refused(tmp_path, which):
    marker = tmp_path / "ran"
    _, payload, _ = touch_payloads(marker)[which]
    path = tmp_path / "raw.pkl"
    path.write_bytes(pickle.dumps({"w": payload}, protocol=2))
    with pytest.raises(ValueError, match=r"raw\.pkl.*pickle.*not read"):
        nblstm.load_state_dict(path)
    assert not marker.exists()


def test_legacy_torch_format_is_refused_with_advice(tmp_path):
    path = tmp_path / "legacy.pt"
    torch.save({"w": torch.ones(2)}, path, _use_new_zipfile_serialization=False)
    assert not zipfile.is_zipfile(path)
    with pytest.raises(ValueError, match=r"legacy\.pt.*legacy torch < 1\.6.*torch\.save"):
        nblstm.load_state_dict(path)


def test_build_cannot_alter_the_stand_ins(tmp_path):
    """BUILD on an allowed global (setting attributes on it) is refused, and
    later files still load."""
    # {"x": torch.FloatStorage} with BUILD (slot state {"dtype": "bad"}, or a
    # __dict__ state) applied to the storage type or the rebuild function, by hand:
    for i, target in enumerate([b"ctorch\nFloatStorage\n",
                                b"ctorch._utils\n_rebuild_tensor_v2\n"]):
        for j, state in enumerate([b"N}X\x05\x00\x00\x00dtypeX\x03\x00\x00\x00bads\x86",
                                   b"}X\x0c\x00\x00\x00__defaults__K\x01s"]):
            data = b"\x80\x02}q\x00X\x01\x00\x00\x00x" + target + state + b"bs."
            path = write_zip(tmp_path / f"build{i}{j}.pt", {"data.pkl": data})
            with pytest.raises(ValueError, match=rf"build{i}{j}\.pt.*{CORRUPT}"):
                nblstm.load_state_dict(path)
    sd = {"w": torch.randn(3)}
    torch.save(sd, tmp_path / "ok.pt")
    assert_same(nblstm.load_state_dict(tmp_path / "ok.pt"), sd)


# --------------------------------------------------------------------------- malformed files

def test_truncated_torch_file(tmp_path):
    torch.save(make_model().state_dict(), tmp_path / "full.pt")
    data = (tmp_path / "full.pt").read_bytes()
    for name, cut in [("half.pt", data[: len(data) // 2]), ("most.pt", data[:-30]),
                      ("head.pt", data[:10])]:
        (tmp_path / name).write_bytes(cut)
        with pytest.raises(ValueError, match=rf"{name.replace('.', '[.]')}.*{CORRUPT}"):
            nblstm.load_state_dict(tmp_path / name)


def test_random_bytes_and_empty_file(tmp_path):
    rng = np.random.default_rng(7)
    for i in range(20):
        data = rng.bytes(int(rng.integers(1, 4000)))
        (tmp_path / "random.bin").write_bytes(data)
        with pytest.raises(ValueError, match=r"random\.bin"):
            nblstm.load_state_dict(tmp_path / "random.bin")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(ValueError, match=rf"empty\.pt.*{CORRUPT}.*supported formats"):
        nblstm.load_state_dict(tmp_path / "empty.pt")
    (tmp_path / "text.txt").write_text("hello, I am not weights\n")
    with pytest.raises(ValueError, match=r"text\.txt.*not a recognised.*\.npz.*safetensors"):
        nblstm.load_state_dict(tmp_path / "text.txt")


def test_corrupt_data_pkl(tmp_path):
    torch.save({"w": torch.ones(3)}, tmp_path / "a.pt")
    members = zip_members(tmp_path / "a.pt")
    for i, garbage in enumerate([b"garbage!", members["data.pkl"][:-5], b"",
                                 b"\x80\x02K\x01.", b"\x80\x02}q\x00X\x01\x00\x00\x00w"
                                 b"ctorch._utils\n_rebuild_tensor_v2\nK\x01\x85R\x85s."]):
        path = write_zip(tmp_path / f"bad{i}.pt", {**members, "data.pkl": garbage})
        with pytest.raises(ValueError, match=rf"bad{i}\.pt.*"
                                             rf"({CORRUPT}|not a state dict)"):
            nblstm.load_state_dict(path)


def test_zip_flipped_bytes_crc(tmp_path):
    torch.save({"w": torch.ones(64)}, tmp_path / "a.pt")
    data = bytearray((tmp_path / "a.pt").read_bytes())
    i = data.index(np.ones(64, np.float32).tobytes())  # inside the storage member
    data[i + 10] ^= 0xFF
    (tmp_path / "flipped.pt").write_bytes(bytes(data))
    with pytest.raises(ValueError, match=rf"flipped\.pt.*{CORRUPT}"):
        nblstm.load_state_dict(tmp_path / "flipped.pt")


def test_missing_or_short_storage_member(tmp_path):
    torch.save({"w": torch.ones(4, 3)}, tmp_path / "a.pt")
    members = zip_members(tmp_path / "a.pt")
    short = write_zip(tmp_path / "short.pt", {**members, "data/0": members["data/0"][:20]})
    with pytest.raises(Exception):
        torch.load(short, weights_only=True)  # the oracle refuses it too
    with pytest.raises(ValueError, match=rf"short\.pt.*{CORRUPT}.*too short"):
        nblstm.load_state_dict(short)
    del members["data/0"]
    missing = write_zip(tmp_path / "missing.pt", members)
    with pytest.raises(ValueError, match=rf"missing\.pt.*{CORRUPT}.*missing"):
        nblstm.load_state_dict(missing)


@pytest.mark.parametrize("offset,size,stride", [
    (0, (5, 5), (5, 1)),        # 25 elements from a storage of 20
    (18, (3,), (1,)),           # runs past the end from an offset
    (0, (2, 3), (100, 1)),      # a huge stride
    (21, (1,), (1,)),           # the offset alone is past the end
    (0, (2,), (2 ** 62,)),      # a stride that would overflow int64 byte offsets
    (0, (3,), (-1,)),           # negative strides are not torch's
    (-1, (3,), (1,)),           # negative offset
], ids=["size", "offset+size", "stride", "offset", "overflow", "negative-stride",
        "negative-offset"])
def test_tensor_reaching_outside_its_storage(tmp_path, offset, size, stride):
    storage = np.arange(20, dtype=np.float32).tobytes() + b"SECRET-BYTES-AFTER"
    obj = {"w": _FakeTensor(_FakeStorage("0", 20), offset, size, stride)}
    path = write_crafted_torch_file(tmp_path / "oob.pt", obj, {"0": storage})
    with pytest.raises(Exception):
        torch.load(path, weights_only=True)  # the oracle refuses it too
    with pytest.raises(ValueError, match=rf"oob\.pt.*{CORRUPT}"):
        nblstm.load_state_dict(path)


def test_storage_declaring_more_elements_than_its_bytes(tmp_path):
    obj = {"w": _FakeTensor(_FakeStorage("0", 100), 0, (100,), (1,))}
    path = write_crafted_torch_file(tmp_path / "liar.pt", obj, {"0": b"\0" * 40})
    with pytest.raises(ValueError, match=rf"liar\.pt.*{CORRUPT}.*too short"):
        nblstm.load_state_dict(path)


def test_view_repeating_its_storage_into_terabytes_is_refused(tmp_path):
    """A stride-0 view passes the bounds check; copying it out would ask for
    4 TB, so it is refused instead (a real expanded tensor of a few elements
    still loads, as test_views_sharing_one_storage shows)."""
    obj = {"w": _FakeTensor(_FakeStorage("0", 1), 0, (10 ** 6, 10 ** 6), (0, 0))}
    path = write_crafted_torch_file(tmp_path / "expand.pt", obj, {"0": b"\0" * 4})
    with pytest.raises(ValueError, match=rf"expand\.pt.*{CORRUPT}.*repeats the 1 elements"):
        nblstm.load_state_dict(path)


def test_compressed_storage_member_is_refused(tmp_path):
    """torch never compresses a storage; a compressed one could be a zip bomb."""
    path = tmp_path / "bomb.pt"
    torch.save({"w": torch.zeros(1000)}, path)
    members = zip_members(path)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(f"archive/{name}", data)
    with pytest.raises(ValueError, match=rf"bomb\.pt.*{CORRUPT}.*is compressed"):
        nblstm.load_state_dict(path)


def test_bad_rebuild_arguments(tmp_path):
    s = _FakeStorage("0", 4)
    raw = {"0": np.ones(4, np.float32).tobytes()}
    cases = {
        "hooks": _FakeTensor(s, 0, (4,), (1,), hooks=collections.OrderedDict(x=1)),
        "not-a-storage": _FakeTensor(3, 0, (4,), (1,)),
        "metadata": _FakeTensor(s, 0, (4,), (1,), extra=({"conj": True},)),
        "rank": _FakeTensor(s, 0, (2, 2), (1,)),
        "float-size": _FakeTensor(s, 0, (4.0,), (1,)),
    }
    for name, tensor in cases.items():
        path = write_crafted_torch_file(tmp_path / f"{name}.pt", {"w": tensor}, raw)
        with pytest.raises(ValueError, match=rf"{name}\.pt.*{CORRUPT}"):
            nblstm.load_state_dict(path)
    bad_byteorder = write_crafted_torch_file(tmp_path / "order.pt",
                                             {"w": _FakeTensor(s, 0, (4,), (1,))}, raw,
                                             byteorder=b"middle")
    with pytest.raises(ValueError, match=rf"order\.pt.*{CORRUPT}.*byteorder"):
        nblstm.load_state_dict(bad_byteorder)


def test_not_a_state_dict(tmp_path):
    torch.save(torch.ones(3), tmp_path / "tensor.pt")
    with pytest.raises(ValueError, match=r"tensor\.pt.*not a state dict"):
        nblstm.load_state_dict(tmp_path / "tensor.pt")
    torch.save([torch.ones(3)], tmp_path / "list.pt")
    with pytest.raises(ValueError, match=r"list\.pt.*holds a list, not a state dict"):
        nblstm.load_state_dict(tmp_path / "list.pt")


def test_zip_that_is_neither_torch_nor_npz(tmp_path):
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as z:
        z.writestr("readme.txt", "hi")
    with pytest.raises(ValueError, match=r"other\.zip.*neither a torch\.save\(\) archive"):
        nblstm.load_state_dict(tmp_path / "other.zip")


def test_truncated_npz(tmp_path):
    np.savez(tmp_path / "w.npz", a=np.ones(1000), b=np.zeros(10))
    data = (tmp_path / "w.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=rf"cut\.npz.*{CORRUPT}"):
        nblstm.load_state_dict(tmp_path / "cut.npz")
    members = {}
    with zipfile.ZipFile(tmp_path / "w.npz") as z:
        members = {n: z.read(n) for n in z.namelist()}
    with zipfile.ZipFile(tmp_path / "badnpy.npz", "w") as z:
        z.writestr("a.npy", members["a.npy"][:200])
    with pytest.raises(ValueError, match=rf"badnpy\.npz.*{CORRUPT}"):
        nblstm.load_state_dict(tmp_path / "badnpy.npz")


def _safetensors_file(path, header, data=b""):
    import json

    raw = json.dumps(header).encode()
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + data)
    return path


def test_truncated_and_corrupt_safetensors(tmp_path):
    st_torch = pytest.importorskip("safetensors.torch")
    st_torch.save_file({"w": torch.randn(64, 8), "b": torch.randn(8)}, str(tmp_path / "a.st"))
    data = (tmp_path / "a.st").read_bytes()
    (tmp_path / "half.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=rf"half\.safetensors.*{CORRUPT}"):
        nblstm.load_state_dict(tmp_path / "half.safetensors")
    (tmp_path / "long.safetensors").write_bytes((10 ** 6).to_bytes(8, "little") + b"{}")
    with pytest.raises(ValueError, match=rf"long\.safetensors.*{CORRUPT}.*header length "
                                         rf"1000000 is larger than the file"):
        nblstm.load_state_dict(tmp_path / "long.safetensors")
    cases = {
        "json": None,
        "offsets": {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 32]}},
        "size": {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}},
        "reversed": {"w": {"dtype": "F32", "shape": [0], "data_offsets": [8, 4]}},
        "entry": {"w": [1, 2]},
        "shape": {"w": {"dtype": "F32", "shape": [-4], "data_offsets": [0, 16]}},
        "array": [1, 2],
    }
    for name, header in cases.items():
        path = tmp_path / f"{name}.safetensors"
        if header is None:
            path.write_bytes((6).to_bytes(8, "little") + b"{nope}" + b"\0" * 16)
        else:
            _safetensors_file(path, header, b"\0" * 16)
        if header is not None and not isinstance(header, list):
            with pytest.raises(Exception):
                st_torch.load_file(str(path))  # the oracle refuses it too
        with pytest.raises(ValueError, match=rf"{name}\.safetensors.*{CORRUPT}"):
            nblstm.load_state_dict(path)


def test_safetensors_unsupported_dtype(tmp_path):
    path = _safetensors_file(tmp_path / "f8.safetensors",
                             {"w": {"dtype": "F8_E4M3", "shape": [2], "data_offsets": [0, 2]}},
                             b"\0\0")
    with pytest.raises(ValueError, match=r"f8\.safetensors.*'F8_E4M3'.*not supported"):
        nblstm.load_state_dict(path)


# --------------------------------------------------------------------------- the argument

def test_bad_path_arguments(tmp_path):
    with pytest.raises(ValueError, match=r"'path' is a directory"):
        nblstm.load_state_dict(tmp_path)
    with pytest.raises(TypeError, match=r"'path' must be a str or os\.PathLike, got int"):
        nblstm.load_state_dict(3)
    with pytest.raises(TypeError, match=r"'path' must be a str or os\.PathLike, got dict"):
        nblstm.load_state_dict({"w": np.ones(2)})
    with pytest.raises(FileNotFoundError):
        nblstm.load_state_dict(tmp_path / "nope.pt")
