"""Read ``torch.save(state_dict)`` files without torch, and without running them.

A file written by ``torch.save`` (torch >= 1.6) is an uncompressed zip archive::

    <archive>/data.pkl      the pickled object (a dict of tensors)
    <archive>/data/<key>    the raw bytes of each storage
    <archive>/byteorder     "little" or "big" (absent in old files: little)
    <archive>/version       the format version

Unpickling an arbitrary file runs whatever callables it names, so
:class:`RestrictedUnpickler` resolves globals from a fixed allow-list of
exactly what a state dict needs (``collections.OrderedDict``, torch's tensor
and parameter rebuild functions, the typed storage classes) to stand-ins
defined here; any other global is refused before anything from the file is
called. Tensors become NumPy arrays: a strided view of their storage, bounds-
checked against it, then copied.
"""

import collections
import pickle
import zipfile
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np

__all__ = ["StateDictFileError", "RestrictedUnpickler", "load_torch_zip", "torch_zip_prefix"]

FIX_HINT = ("save model.state_dict(), not the model; or load it with "
            "torch.load(weights_only=True) and re-save")


class StateDictFileError(ValueError):
    """A state-dict file that cannot be read: corrupt, truncated, unsupported
    or unsafe. The message names the file."""


# Storage class name -> the NumPy dtype its bytes hold. bfloat16 is read as its
# uint16 bit patterns and widened to float32 afterwards (NumPy has no bfloat16).
STORAGE_DTYPES: Dict[str, np.dtype] = {
    "FloatStorage": np.dtype(np.float32),
    "DoubleStorage": np.dtype(np.float64),
    "HalfStorage": np.dtype(np.float16),
    "BFloat16Storage": np.dtype(np.uint16),
    "CharStorage": np.dtype(np.int8),
    "ByteStorage": np.dtype(np.uint8),
    "ShortStorage": np.dtype(np.int16),
    "IntStorage": np.dtype(np.int32),
    "LongStorage": np.dtype(np.int64),
    "BoolStorage": np.dtype(np.uint8),  # normalised to np.bool_ (!= 0) after the copy
}


class _Frozen:
    """Base of the stand-ins handed to the pickle: no ``__dict__`` and no
    attribute assignment, so a crafted BUILD opcode cannot alter them."""

    __slots__ = ()

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only")

    def __reduce__(self) -> Any:  # never re-pickled
        raise TypeError(f"{type(self).__name__} cannot be pickled")


class StorageType(_Frozen):
    """Stand-in for ``torch.<Name>Storage``: just the dtype of its bytes."""

    __slots__ = ("name", "dtype")

    def __init__(self, name: str) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "dtype", STORAGE_DTYPES[name])

    def __repr__(self) -> str:
        return f"torch.{self.name}"


class Storage(_Frozen):
    """A storage read from ``data/<key>``: ``numel`` elements of ``kind``.

    ``data`` is a read-only 1-D array over the member's bytes, in the file's
    byte order; several tensors (views) may share it.
    """

    __slots__ = ("kind", "key", "data")

    def __init__(self, kind: StorageType, key: str, data: np.ndarray) -> None:
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "key", key)
        object.__setattr__(self, "data", data)


class _Callable(_Frozen):
    """Stand-in for an allowed callable global (a frozen wrapper, so that
    BUILD cannot reach a real function's ``__defaults__`` and the like)."""

    __slots__ = ("qualname", "function")

    def __init__(self, qualname: str, function: Callable[..., Any]) -> None:
        object.__setattr__(self, "qualname", qualname)
        object.__setattr__(self, "function", function)

    def __call__(self, *args: Any) -> Any:
        return self.function(*args)

    def __repr__(self) -> str:
        return self.qualname


class _Bad(Exception):
    """Internal: a structural problem found while unpickling (made into a
    :class:`StateDictFileError` naming the file by :func:`load_torch_zip`)."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_hooks(hooks: Any) -> None:
    if not isinstance(hooks, collections.OrderedDict) or hooks:
        raise _Bad(f"backward_hooks must be an empty OrderedDict, got {type(hooks).__name__}"
                   f"{' with entries' if isinstance(hooks, dict) and hooks else ''}")


#: The most bytes a tensor that repeats its storage's elements may expand to.
MAX_REPEATED_VIEW_BYTES = 1 << 28


def _check_shape(value: Any, what: str) -> Tuple[int, ...]:
    if not isinstance(value, (tuple, list)) or not all(_is_int(v) and v >= 0 for v in value):
        raise _Bad(f"tensor {what} must be a tuple of non-negative ints, got {value!r:.80}")
    return tuple(value)


def _rebuild_tensor(storage: Any, storage_offset: Any, size: Any, stride: Any) -> np.ndarray:
    """``torch._utils._rebuild_tensor``: a copy of the strided view of
    ``storage``, after checking that every element it reads lies inside it."""
    if not isinstance(storage, Storage):
        raise _Bad(f"a tensor's storage must be a persistent storage record, got "
                   f"{type(storage).__name__}")
    if not _is_int(storage_offset) or storage_offset < 0:
        raise _Bad(f"storage_offset must be a non-negative int, got {storage_offset!r:.80}")
    shape = _check_shape(size, "size")
    strides = _check_shape(stride, "stride")
    if len(strides) != len(shape):
        raise _Bad(f"tensor size {shape} and stride {strides} differ in length")
    base = storage.data
    available = base.shape[0]
    if 0 in shape:
        if storage_offset > available:
            raise _Bad(f"storage_offset {storage_offset} is past the end of storage "
                       f"data/{storage.key} ({available} elements)")
        view = np.empty(shape, dtype=base.dtype)
    else:
        # Python ints, so a crafted huge stride cannot overflow the check.
        last = storage_offset + sum((n - 1) * s for n, s in zip(shape, strides))
        if last >= available:
            raise _Bad(f"a tensor of size {shape}, stride {strides} and offset "
                       f"{storage_offset} needs {last + 1} elements but storage "
                       f"data/{storage.key} holds {available}: the storage is too short")
        item = base.dtype.itemsize
        elements = int(np.prod(shape, dtype=object))
        if elements > available and elements * item > MAX_REPEATED_VIEW_BYTES:
            # A view that repeats its storage (stride 0, as expand() gives) is
            # copied out whole: a crafted one could ask for terabytes.
            raise _Bad(f"a tensor of size {shape} repeats the {available} elements of storage "
                       f"data/{storage.key} into {elements * item} bytes; refusing more than "
                       f"{MAX_REPEATED_VIEW_BYTES} bytes for such a view")
        view = np.lib.stride_tricks.as_strided(
            base[storage_offset:], shape=shape, strides=tuple(s * item for s in strides),
            writeable=False)
    out = np.array(view, dtype=base.dtype.newbyteorder("="), order="C", copy=True)
    if storage.kind.name == "BFloat16Storage":
        # bfloat16 is the top half of a float32: widening is exact.
        out = (out.astype(np.uint32) << 16).view(np.float32)
    elif storage.kind.name == "BoolStorage":
        out = out != 0
    return out


def _rebuild_tensor_v2(storage: Any, storage_offset: Any, size: Any, stride: Any,
                       requires_grad: Any, backward_hooks: Any,
                       metadata: Any = None) -> np.ndarray:
    """``torch._utils._rebuild_tensor_v2``; ``metadata`` may only carry the
    ``neg`` bit (a ``torch._neg_view``), which is applied."""
    if not isinstance(requires_grad, bool):
        raise _Bad(f"requires_grad must be a bool, got {type(requires_grad).__name__}")
    _check_hooks(backward_hooks)
    negate = False
    if metadata is not None:
        if not isinstance(metadata, dict) or not set(metadata) <= {"neg"} or not all(
                isinstance(v, bool) for v in metadata.values()):
            raise _Bad(f"unsupported tensor metadata {metadata!r:.80} (only 'neg' is read)")
        negate = metadata.get("neg", False)
    out = _rebuild_tensor(storage, storage_offset, size, stride)
    if negate:
        np.negative(out, out=out)
    return out


def _rebuild_parameter(data: Any, requires_grad: Any, backward_hooks: Any) -> np.ndarray:
    """``torch._utils._rebuild_parameter``: an ``nn.Parameter`` is its data."""
    if not isinstance(data, np.ndarray):
        raise _Bad(f"a parameter's data must be a tensor, got {type(data).__name__}")
    if not isinstance(requires_grad, bool):
        raise _Bad(f"requires_grad must be a bool, got {type(requires_grad).__name__}")
    _check_hooks(backward_hooks)
    return data


def _ordered_dict(*args: Any) -> "collections.OrderedDict[Any, Any]":
    if args:  # torch pickles OrderedDict() and fills it with SETITEMS
        raise _Bad("collections.OrderedDict takes no arguments here")
    return collections.OrderedDict()


# The whole allow-list: (module, name) -> the stand-in find_class returns.
ALLOWED_GLOBALS: Dict[Tuple[str, str], Any] = {
    ("collections", "OrderedDict"): _Callable("collections.OrderedDict", _ordered_dict),
    ("torch._utils", "_rebuild_tensor"): _Callable("torch._utils._rebuild_tensor",
                                                   _rebuild_tensor),
    ("torch._utils", "_rebuild_tensor_v2"): _Callable("torch._utils._rebuild_tensor_v2",
                                                      _rebuild_tensor_v2),
    ("torch._utils", "_rebuild_parameter"): _Callable("torch._utils._rebuild_parameter",
                                                      _rebuild_parameter),
    **{("torch", name): StorageType(name) for name in STORAGE_DTYPES},
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickle ``data.pkl`` of a torch zip archive with only
    :data:`ALLOWED_GLOBALS` resolvable.

    Parameters
    ----------
    file : binary file
        The ``data.pkl`` stream.
    read_storage : callable
        ``read_storage(key) -> bytes``, the raw bytes of ``data/<key>``;
        called once per key, when the pickle first refers to it.
    byteorder : {"little", "big"}
        Byte order of the storages.
    source : str
        The file's name, for messages.
    """

    def __init__(self, file: Any, read_storage: Callable[[str], bytes], byteorder: str,
                 source: str) -> None:
        super().__init__(file)
        self._read_storage = read_storage
        self._order = "<" if byteorder == "little" else ">"
        self._source = source
        self._raw: Dict[str, bytes] = {}
        self._storages: Dict[Tuple[str, str], Storage] = {}

    def find_class(self, module: str, name: str) -> Any:
        found = ALLOWED_GLOBALS.get((module, name))
        if found is None:
            raise StateDictFileError(
                f"{self._source}: refusing to load: its pickle asks for the global "
                f"'{module}.{name}', which is not part of a state dict (only tensors, "
                f"OrderedDict and plain containers and scalars are read; nothing from "
                f"the file was run). Fix: {FIX_HINT}.")
        return found

    def persistent_load(self, pid: Any) -> Storage:
        if (not isinstance(pid, tuple) or len(pid) != 5 or pid[0] != "storage"
                or not isinstance(pid[1], StorageType) or not isinstance(pid[2], str)
                or not isinstance(pid[3], str) or not _is_int(pid[4]) or pid[4] < 0):
            raise _Bad(f"unexpected persistent id {pid!r:.100}; expected "
                       f"('storage', <storage type>, key, location, numel)")
        _, kind, key, _location, numel = pid
        cached = self._storages.get((key, kind.name))
        if cached is None:
            raw = self._raw.get(key)
            if raw is None:
                raw = self._raw[key] = self._read_storage(key)
            dtype = kind.dtype.newbyteorder(self._order)
            if len(raw) < numel * dtype.itemsize:
                raise _Bad(f"storage data/{key} has {len(raw)} bytes but declares {numel} "
                           f"elements of {dtype.itemsize} bytes: the storage is too short")
            # The declared numel bounds the tensors, as in torch, not the bytes present.
            cached = Storage(kind, key, np.frombuffer(raw, dtype=dtype, count=numel))
            self._storages[(key, kind.name)] = cached
        elif cached.data.shape[0] * cached.data.dtype.itemsize < numel * kind.dtype.itemsize:
            raise _Bad(f"storage data/{key} is referenced with {numel} elements but holds "
                       f"{cached.data.shape[0]}: the storage is too short")
        return cached


def torch_zip_prefix(names: Any) -> Optional[str]:
    """The archive directory of a torch zip (the ``X`` of ``X/data.pkl``), or
    None when ``names`` (the zip's member names) has no ``data.pkl`` there."""
    for name in names:
        parts = name.split("/")
        if len(parts) == 2 and parts[1] == "data.pkl" and parts[0]:
            return parts[0]
    return None


def load_torch_zip(archive: zipfile.ZipFile, source: str) -> Any:
    """Unpickle the object of an opened ``torch.save`` zip archive.

    Parameters
    ----------
    archive : zipfile.ZipFile
        The opened file.
    source : str
        The file's name, for messages.

    Returns
    -------
    object
        What was saved, with every tensor (or ``nn.Parameter``) as a fresh
        C-contiguous NumPy array in native byte order (bfloat16 widened
        exactly to float32); dicts, lists, tuples and scalars as themselves.

    Raises
    ------
    StateDictFileError
        (a ValueError) If the pickle asks for a global outside the allow-list,
        or the archive is truncated or corrupt.
    """
    corrupt = f"{source}: the file is truncated or corrupt (not a readable torch.save archive)"
    try:
        prefix = torch_zip_prefix(archive.namelist())
        if prefix is None:
            raise _Bad("no <archive>/data.pkl member")
        names = set(archive.namelist())
        byteorder = "little"
        if f"{prefix}/byteorder" in names:
            byteorder = archive.read(f"{prefix}/byteorder").decode("ascii", "replace").strip()
            if byteorder not in ("little", "big"):
                raise _Bad(f"byteorder is {byteorder!r:.40}, expected 'little' or 'big'")

        def read_storage(key: str) -> bytes:
            member = f"{prefix}/data/{key}"
            if member not in names:
                raise _Bad(f"the storage {member} is missing")
            if archive.getinfo(member).compress_type != zipfile.ZIP_STORED:
                # torch stores storages uncompressed; a compressed one could
                # inflate far beyond the file (a zip bomb).
                raise _Bad(f"the storage {member} is compressed, which torch.save never does")
            return archive.read(member)

        with archive.open(f"{prefix}/data.pkl") as stream:
            unpickler = RestrictedUnpickler(stream, read_storage, byteorder, source)
            return unpickler.load()
    except StateDictFileError:
        raise
    except _Bad as error:
        raise StateDictFileError(f"{corrupt}: {error}") from None
    except RecursionError:
        raise StateDictFileError(f"{corrupt}: its pickle nests too deeply") from None
    except MemoryError:
        raise StateDictFileError(f"{corrupt}: it asks for more memory than is available") from None
    except Exception as error:  # noqa: BLE001 - zipfile/pickle/zlib raise many types
        # pickle.UnpicklingError, EOFError, zipfile.BadZipFile, zlib.error, a
        # TypeError from calling a stand-in with the wrong arguments, ...
        raise StateDictFileError(f"{corrupt}: {type(error).__name__}: {error}"[:600]) from None
