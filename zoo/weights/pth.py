"""PyTorch ``.pth`` state_dicts read without PyTorch, and without ever running code from the file.

    sd = read_pth("resnet18-f37072fd.pth")      # {key: numpy array}, in the file's order

Two formats, both pickle-based (``torch.save``):

* zip (PyTorch >= 1.6): ``<root>/data.pkl`` (the pickled object) + ``<root>/data/<key>`` (one raw
  storage per key, little-endian unless ``<root>/byteorder`` says otherwise);
* legacy (torchvision's earliest files): five records one after the other in one stream: the magic
  number, the protocol version (1001), a sys-info dict, the pickled object, the list of storage keys;
  then for each key its raw storage (int64 element count + the bytes).

Every pickle goes through :class:`RestrictedUnpickler`: ``find_class`` resolves only the few globals a
state_dict is made of (``collections.OrderedDict``, ``torch._utils._rebuild_tensor[_v2]`` /
``_rebuild_parameter``, the ``torch.*Storage`` types), each to a local stand-in that builds numpy
arrays; any other global (``os.system``, ``builtins.eval``, ...) raises :class:`UnsafePickleError`
before it is looked up, so nothing from the file ever runs. Storages come through persistent ids
(``('storage', type, key, location, numel[, view])``), read as numpy buffers; a tensor's size, stride
and offset are checked against its storage before a view is taken.
"""
from __future__ import annotations

import collections
import io
import pickle
import zipfile
from pathlib import Path
from typing import Any, Callable

import ml_dtypes
import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

# torch.<Name>Storage -> element dtype
STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "BFloat16Storage": ml_dtypes.bfloat16, "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class UnsafePickleError(pickle.UnpicklingError):
    """The file asks for something a state_dict never needs (a global that is not a tensor, a
    storage or an OrderedDict): refused before anything from it runs."""


class _StorageType:
    """Stand-in for ``torch.FloatStorage`` & co: only carries the element dtype."""

    def __init__(self, name: str):
        self.name, self.dtype = name, np.dtype(STORAGE_DTYPES[name])

    def __call__(self, *args, **kwargs):
        raise UnsafePickleError(f"torch.{self.name} may only appear in a storage reference, not be called")


def _checked_view(storage: np.ndarray, offset: int, size, stride) -> np.ndarray:
    size, stride, offset = tuple(int(s) for s in size), tuple(int(s) for s in stride), int(offset)
    if len(size) != len(stride) or offset < 0 or any(s < 0 for s in size) or any(s < 0 for s in stride):
        raise pickle.UnpicklingError(f"malformed tensor: size {size}, stride {stride}, offset {offset}")
    if 0 in size:
        return np.zeros(size, storage.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= storage.size:
        raise pickle.UnpicklingError(f"tensor of size {size}, stride {stride}, offset {offset} reads past its "
                                     f"storage of {storage.size} elements")
    if not size:  # a 0-d tensor (BatchNorm's num_batches_tracked)
        return np.array(storage[offset])
    base = storage[offset:]
    view = np.lib.stride_tricks.as_strided(base, size, tuple(s * storage.itemsize for s in stride), writeable=False)
    return np.array(view, order="C")  # a C-contiguous copy, owning its data


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None):
    return _rebuild_tensor(storage, storage_offset, size, stride)


def _rebuild_tensor(storage, storage_offset, size, stride):
    if isinstance(storage, _Pending):  # legacy files: the storage bytes follow the pickles
        return _Lazy(storage, storage_offset, size, stride)
    if not isinstance(storage, np.ndarray):
        raise UnsafePickleError(f"a tensor must be built from a storage, got {type(storage).__name__}")
    return _checked_view(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *state):
    if not isinstance(data, (np.ndarray, _Lazy)):
        raise UnsafePickleError(f"a parameter must wrap a tensor, got {type(data).__name__}")
    return data


class _Pending:
    """A legacy storage reference (``key``, optionally a ``[start, start + length)`` view of it),
    resolved once the raw storages behind the pickles are read."""

    def __init__(self, key: str, start: int = 0, length: int | None = None):
        self.key, self.start, self.length = key, start, length

    def view(self, start: int, length: int) -> "_Pending":
        return _Pending(self.key, self.start + start, length)

    def resolve(self, arrays: dict) -> np.ndarray:
        a = arrays[self.key]
        stop = a.size if self.length is None else self.start + self.length
        if self.start < 0 or stop > a.size:
            raise pickle.UnpicklingError("storage view past its storage")
        return a[self.start:stop]


class _Lazy:
    """A legacy tensor waiting for its storage."""

    def __init__(self, storage: _Pending, offset, size, stride):
        self.storage, self.args = storage, (offset, size, stride)

    def resolve(self, arrays: dict) -> np.ndarray:
        return _checked_view(self.storage.resolve(arrays), *self.args)


def _resolve(obj, arrays: dict):
    """``obj`` with every legacy tensor built (dicts, lists and tuples walked)."""
    if isinstance(obj, _Lazy):
        return obj.resolve(arrays)
    if isinstance(obj, dict):
        return type(obj)((k, _resolve(v, arrays)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_resolve(v, arrays) for v in obj)
    return obj


ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): _StorageType(name) for name in STORAGE_DTYPES},
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that knows only :data:`ALLOWED`; ``load_storage(type, key, numel, location)``
    returns the 1-D numpy array of a storage."""

    def __init__(self, file, load_storage: Callable[[_StorageType, str, int], np.ndarray], what: str):
        super().__init__(file)
        self._load_storage, self._what = load_storage, what

    def find_class(self, module: str, name: str):
        try:
            return ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(f"{self._what}: refused to load {module}.{name}: a weight file may only hold "
                                    f"tensors in (ordered) dicts; this one asks for code to run") from None

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"
                and isinstance(pid[1], _StorageType)):
            raise UnsafePickleError(f"{self._what}: unknown persistent id {str(pid)[:80]!r}")
        storage_type, key, numel = pid[1], str(pid[2]), int(pid[4])
        storage = self._load_storage(storage_type, key, numel)
        view = pid[5] if len(pid) == 6 else None
        if view is None:
            return storage
        if not isinstance(storage, _Pending):
            raise pickle.UnpicklingError(f"{self._what}: storage views appear only in legacy files")
        _, start, length = view  # legacy (view_key, offset, view_size): a slice of the root storage
        return storage.view(int(start), int(length))


def _storage_array(raw: bytes, storage_type: _StorageType, numel: int, byteorder: str, what: str) -> np.ndarray:
    dtype = storage_type.dtype.newbyteorder("<" if byteorder == "little" else ">")
    if len(raw) < numel * dtype.itemsize:
        raise pickle.UnpicklingError(f"{what}: storage holds {len(raw)} bytes, {numel * dtype.itemsize} expected "
                                     f"(truncated file?)")
    return np.frombuffer(raw, dtype, count=numel).astype(storage_type.dtype, copy=False)


def _read_zip(path: Path) -> Any:
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        pkl = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
        if len(pkl) != 1:
            raise pickle.UnpicklingError(f"{path}: a zip .pth holds one <root>/data.pkl; found {pkl or 'none'}")
        root = pkl[0][: -len("data.pkl")]
        byteorder = z.read(root + "byteorder").decode().strip() if root + "byteorder" in names else "little"
        if byteorder not in ("little", "big"):
            raise pickle.UnpicklingError(f"{path}: unknown byteorder {byteorder!r}")
        cache: dict[str, np.ndarray] = {}

        def load_storage(storage_type, key, numel):
            if key not in cache:
                member = f"{root}data/{key}"
                if member not in names:
                    raise pickle.UnpicklingError(f"{path}: storage {key!r} is not in the archive")
                cache[key] = _storage_array(z.read(member), storage_type, numel, byteorder, str(path))
            return cache[key]

        return RestrictedUnpickler(io.BytesIO(z.read(pkl[0])), load_storage, str(path)).load()


def _read_legacy(path: Path) -> Any:
    declared: dict[str, tuple[_StorageType, int]] = {}

    def declare(storage_type, key, numel):  # the bytes come after the pickles
        declared.setdefault(key, (storage_type, numel))
        return _Pending(key)

    with open(path, "rb") as f:
        def record():
            return RestrictedUnpickler(f, declare, str(path)).load()

        if record() != LEGACY_MAGIC:
            raise pickle.UnpicklingError(f"{path}: not a PyTorch file (neither a zip archive nor the legacy format)")
        if record() != LEGACY_PROTOCOL:
            raise pickle.UnpicklingError(f"{path}: unsupported legacy protocol version")
        record()  # sys info: {'protocol_version', 'little_endian', 'type_sizes'}
        obj = record()
        keys = record()
        if not isinstance(keys, list) or set(map(str, keys)) != set(declared):
            raise pickle.UnpicklingError(f"{path}: the storage key list does not match the tensors")
        arrays = {}
        for key in map(str, keys):
            storage_type, numel = declared[key]
            head = f.read(8)
            count = int(np.frombuffer(head, "<i8")[0]) if len(head) == 8 else -1
            if count != numel:
                raise pickle.UnpicklingError(f"{path}: storage {key!r} holds {count} elements, {numel} declared "
                                             f"(truncated file?)")
            arrays[key] = _storage_array(f.read(numel * storage_type.dtype.itemsize), storage_type, numel, "little",
                                         str(path))
    return _resolve(obj, arrays)


def read_pth(path) -> Any:
    """The object a ``torch.save`` file holds (a state_dict: ``{key: numpy array}``), zip or legacy
    format, tensors as numpy arrays. Raises :class:`UnsafePickleError` for anything that would run
    code, ``pickle.UnpicklingError`` / ``ValueError`` for a damaged file."""
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            return _read_zip(path)
        with open(path, "rb") as f:
            if f.read(4) == b"PK\x03\x04":   # a zip's first entry, but no directory at its end
                raise zipfile.BadZipFile("a truncated or damaged zip archive (torch.save's format): copy or "
                                         "download the file again")
        return _read_legacy(path)
    except UnsafePickleError:
        raise
    except RecursionError:   # containers nested thousands deep: no state_dict is (README "Safety": a refusal)
        raise pickle.UnpicklingError(f"{path}: not a readable PyTorch weight file (containers nested too deeply "
                                     f"for a state_dict)") from None
    except (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, KeyError, ValueError, TypeError, IndexError) as e:
        raise pickle.UnpicklingError(f"{path}: not a readable PyTorch weight file ({type(e).__name__}: {e})") from e
