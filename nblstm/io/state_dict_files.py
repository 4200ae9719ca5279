"""``load_state_dict(path)``: the arrays of a state-dict file, without torch.

Three formats, told apart by their content (the file name does not matter):

* ``torch.save`` zip archives (``.pt``/``.pth``, torch >= 1.6), read by
  :mod:`nblstm.io.torch_pickle` with a restricted unpickler;
* NumPy ``.npz`` (``np.savez``/``np.savez_compressed``), read by ``np.load``
  with ``allow_pickle=False``;
* ``.safetensors``, parsed here with NumPy. The format is an 8-byte
  little-endian header length, a JSON header ``{name: {"dtype", "shape",
  "data_offsets"}}`` and the raw little-endian bytes; parsing it directly
  needs no extra package, reads bfloat16 (which ``safetensors.numpy`` cannot,
  NumPy having no bfloat16) and lets every offset be checked against the file.
"""

import json
import os
import zipfile
from typing import Any, BinaryIO, Dict, Mapping

import numpy as np

from .torch_pickle import StateDictFileError, load_torch_zip, torch_zip_prefix

__all__ = ["load_state_dict"]

SUPPORTED = ("supported formats are a torch.save() zip archive (torch >= 1.6, .pt/.pth), "
             "NumPy .npz and .safetensors")

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a local file header; an empty archive
_SAFETENSORS_MAX_HEADER = 100_000_000  # the limit the safetensors library enforces

# safetensors dtype -> how its bytes are stored (little endian). BF16 and BOOL
# are converted after reading.
_SAFETENSORS_DTYPES: Dict[str, np.dtype] = {
    "BOOL": np.dtype("u1"), "U8": np.dtype("u1"), "I8": np.dtype("i1"),
    "I16": np.dtype("<i2"), "U16": np.dtype("<u2"), "I32": np.dtype("<i4"),
    "U32": np.dtype("<u4"), "I64": np.dtype("<i8"), "U64": np.dtype("<u8"),
    "F16": np.dtype("<f2"), "BF16": np.dtype("<u2"), "F32": np.dtype("<f4"),
    "F64": np.dtype("<f8"), "C64": np.dtype("<c8"),
}


def load_state_dict(path: "str | os.PathLike[str]") -> Dict[str, np.ndarray]:
    """Read the arrays of a saved state dict, without importing torch.

    Parameters
    ----------
    path : str or os.PathLike
        A file written by ``torch.save(model.state_dict(), path)`` (torch >=
        1.6 zip format; tensors saved from CUDA load too), by ``np.savez``, or
        by ``safetensors`` (``save_file`` of ``safetensors.torch`` or
        ``safetensors.numpy``). The format is recognised from the content.

    Returns
    -------
    dict of str to ndarray
        Each array is fresh, writable, C-contiguous and in native byte order,
        with the tensor's shape and dtype (float32/float64/float16, int8/16/32/
        64, uint8, bool); bfloat16 tensors come back as float32, widened
        exactly. The mapping is flat: a torch file that holds nested dicts,
        such as a checkpoint ``{"model": state_dict, "epoch": 3, "optimizer":
        {...}}``, is flattened by joining keys with ``"."``
        (``"model.rnn.weight_ih_l0"``, ``"optimizer.state.0.exp_avg"``; int keys
        are written with ``str``). Leaves that are not tensors (numbers,
        strings, None, lists and tuples, even of tensors) are skipped, as are
        string-typed arrays of an ``.npz``. To feed one module, select its
        prefix::

            sd = nblstm.load_state_dict("model.pt")
            lstm.load_state_dict({k[len("rnn."):]: v for k, v in sd.items()
                                  if k.startswith("rnn.")})

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    TypeError
        If ``path`` is not a str or os.PathLike.
    ValueError
        If ``path`` is a directory, is in none of the formats above (e.g. the
        legacy pre-1.6 torch format or a bare pickle), or is truncated or
        corrupt; or if its pickle asks for anything outside a fixed allow-list
        (a whole pickled ``nn.Module``, ``os.system``, ...): such a file is
        refused before anything from it runs. The message names the file.

    Notes
    -----
    A torch file is unpickled with only ``collections.OrderedDict``,
    ``torch._utils._rebuild_tensor``/``_rebuild_tensor_v2``/
    ``_rebuild_parameter`` and the typed storage classes (``torch.FloatStorage``
    ... ``torch.BoolStorage``) resolvable, each to a stand-in defined by
    nblstm; tensor views are bounds-checked against their storage.
    """
    if not isinstance(path, (str, bytes, os.PathLike)):
        raise TypeError(f"load_state_dict() argument 'path' must be a str or os.PathLike, "
                        f"got {type(path).__name__}")
    fspath = os.fspath(path)
    source = repr(os.fsdecode(fspath))
    if os.path.isdir(fspath):
        raise ValueError(f"load_state_dict() argument 'path' is a directory, {source}; "
                         f"expected a state-dict file")
    with open(fspath, "rb") as stream:
        size = os.fstat(stream.fileno()).st_size
        head = stream.read(9)
        if head[:4] in _ZIP_MAGIC:
            return _load_zip(stream, source)
        if len(head) == 9 and head[8:9] == b"{":
            return _load_safetensors(stream, size, source)
    if not head:
        raise StateDictFileError(f"{source} is empty: truncated or corrupt; {SUPPORTED}")
    if head[:1] == b"\x80":
        raise StateDictFileError(
            f"{source} is a bare pickle (the legacy torch < 1.6 format, or pickle.dump), "
            f"which is not read because unpickling it can run arbitrary code; {SUPPORTED}. "
            f"Re-save it with torch >= 1.6: torch.save(model.state_dict(), path)")
    raise StateDictFileError(f"{source} is not a recognised state-dict file (or is truncated "
                             f"or corrupt); {SUPPORTED}")


def _load_zip(stream: BinaryIO, source: str) -> Dict[str, np.ndarray]:
    try:
        archive = zipfile.ZipFile(stream)
        names = archive.namelist()
    except Exception as error:  # noqa: BLE001 - BadZipFile, OSError, struct errors...
        raise StateDictFileError(f"{source}: the file is truncated or corrupt (a broken zip "
                                 f"archive: {type(error).__name__}: {error})") from None
    with archive:
        if torch_zip_prefix(names) is not None:
            return _flatten(load_torch_zip(archive, source), source)
        if all(name.endswith(".npy") for name in names):
            return _load_npz(stream, source)
    raise StateDictFileError(f"{source} is a zip archive but neither a torch.save() archive "
                             f"(no <archive>/data.pkl) nor an .npz; {SUPPORTED}")


def _load_npz(stream: BinaryIO, source: str) -> Dict[str, np.ndarray]:
    out: Dict[str, np.ndarray] = {}
    try:
        stream.seek(0)
        with np.load(stream, allow_pickle=False) as npz:
            for name in npz.files:
                try:
                    array = npz[name]
                except ValueError as error:
                    if "allow_pickle" not in str(error):
                        raise
                    raise StateDictFileError(
                        f"{source}: the .npz array {name!r} holds Python objects, which are "
                        f"only stored as pickles and are not read (nothing from the file "
                        f"was run); save numeric arrays") from None
                if array.dtype.kind in "biufc":
                    out[name] = _fresh(array)
    except StateDictFileError:
        raise
    except Exception as error:  # noqa: BLE001 - zipfile, zlib and numpy.lib.format errors
        raise StateDictFileError(f"{source}: the file is truncated or corrupt (a broken .npz: "
                                 f"{type(error).__name__}: {error})"[:600]) from None
    return out


def _load_safetensors(stream: BinaryIO, size: int, source: str) -> Dict[str, np.ndarray]:
    corrupt = f"{source}: the file is truncated or corrupt (a broken .safetensors file"
    stream.seek(0)
    length = int.from_bytes(stream.read(8), "little")
    if length > _SAFETENSORS_MAX_HEADER or 8 + length > size:
        raise StateDictFileError(f"{corrupt}: its header length {length} is larger than the "
                                 f"file, {size} bytes)")
    try:
        header = json.loads(stream.read(length).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise StateDictFileError(f"{corrupt}: its JSON header does not parse: {error})"
                                 [:600]) from None
    if not isinstance(header, dict):
        raise StateDictFileError(f"{corrupt}: its header is not a JSON object)")
    start = 8 + length
    buffer_size = size - start
    out: Dict[str, np.ndarray] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if (not isinstance(info, dict) or not isinstance(info.get("shape"), list)
                or not isinstance(info.get("data_offsets"), list)
                or len(info["data_offsets"]) != 2
                or not all(_is_int(v) and v >= 0 for v in info["shape"] + info["data_offsets"])):
            raise StateDictFileError(f"{corrupt}: the header entry of {name!r} is not "
                                     f"{{'dtype', 'shape', 'data_offsets'}})")
        kind = info.get("dtype")
        if kind not in _SAFETENSORS_DTYPES:
            raise StateDictFileError(
                f"{source}: tensor {name!r} has the safetensors dtype {kind!r:.20}, which "
                f"is not supported; supported: {', '.join(_SAFETENSORS_DTYPES)}")
        dtype = _SAFETENSORS_DTYPES[kind]
        shape = tuple(info["shape"])
        begin, end = info["data_offsets"]
        needed = int(np.prod(shape, dtype=object)) * dtype.itemsize
        if not begin <= end <= buffer_size or end - begin != needed:
            raise StateDictFileError(
                f"{corrupt}: tensor {name!r} of shape {shape} and dtype {kind} needs "
                f"{needed} bytes but its data_offsets are [{begin}, {end}] in a data "
                f"section of {buffer_size} bytes)")
        array = np.empty(shape, dtype=dtype)
        stream.seek(start + begin)
        if stream.readinto(array.reshape(-1).view(np.uint8)) != needed:
            raise StateDictFileError(f"{corrupt}: tensor {name!r} is cut short)")
        if kind == "BF16":
            array = (array.astype(np.uint32) << 16).view(np.float32)
        elif kind == "BOOL":
            array = array != 0
        out[name] = _fresh(array)
    return out


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _fresh(array: np.ndarray) -> np.ndarray:
    """``array`` itself if it is already a writable, C-contiguous, native-order
    array owning its data, else such a copy."""
    if (array.dtype.isnative and array.flags.c_contiguous and array.flags.writeable
            and array.flags.owndata):
        return array
    return np.array(array, dtype=array.dtype.newbyteorder("="), order="C", copy=True)


def _flatten(obj: Any, source: str) -> Dict[str, np.ndarray]:
    if isinstance(obj, np.ndarray) or not isinstance(obj, Mapping):
        raise StateDictFileError(
            f"{source} holds a {type(obj).__name__}, not a state dict (a mapping of names "
            f"to tensors); save model.state_dict()")
    out: Dict[str, np.ndarray] = {}
    seen: set = set()

    def walk(mapping: Mapping[Any, Any], prefix: str, depth: int) -> None:
        if depth > 100:
            raise StateDictFileError(f"{source}: its dicts nest more than 100 deep")
        for key, value in mapping.items():
            if isinstance(key, bool) or not isinstance(key, (str, int)):
                continue
            name = prefix + str(key)
            if isinstance(value, np.ndarray):
                if name in out:
                    raise StateDictFileError(f"{source}: the key {name!r} occurs twice once "
                                             f"nested dicts are joined with '.'")
                # One tensor saved under two keys unpickles to one array: copy the
                # second, so that every value is a separate array.
                out[name] = value.copy() if id(value) in seen else value
                seen.add(id(value))
            elif isinstance(value, Mapping):
                walk(value, name + ".", depth + 1)

    walk(obj, "", 0)
    return out
