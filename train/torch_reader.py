"""Read PyTorch checkpoint files into numpy arrays without torch and without running pickled code.

(`load_pickle` reads a plain pickle of numpy arrays, such as a Paddle .pdparams, the same way.)

Both containers torch.save has written are read:
  - zip (torch >= 1.6): `<name>/data.pkl` plus one raw record `<name>/data/<key>` per storage;
  - legacy (torch < 1.6, and `_use_new_zipfile_serialization=False`): in one stream the pickles
    magic number, protocol version, sys_info, the object (storages as persistent ids), the list of
    storage keys, then each storage as an int64 element count followed by its raw bytes.

Unpickling resolves the names in `_ALLOWED` (containers, tensor and parameter rebuilding, storage
types, plain numpy arrays and scalars, collections.Counter) to the real thing. Nothing else is ever
imported or called: a global from a module that can run code (builtins, os, posix, subprocess,
sys, ...; `_REFUSED_MODULES`) means a crafted file and is refused outright, and any other name
(mmengine's HistoryBuffer in a 1.x `message_hub`, an optimizer or scheduler class) becomes an
`Inert` stand-in that records its name, arguments and state and does nothing. Such files load;
an importer that finds a stand-in among the tensors it needs refuses the file (`find_inert`).
"""
import collections
import io
import pickle
import struct
import zipfile

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

# torch storage class -> numpy dtype; bfloat16 is read as its raw 16 bits and widened to float32
STORAGE_DTYPES = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "BFloat16Storage": np.uint16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class TorchFileError(ValueError):
    """The file is not a PyTorch checkpoint this reader can read safely."""


class _StorageType:
    """Stands in for torch.FloatStorage and friends: only its name is used."""

    def __init__(self, name):
        self.name = name


class _Storage:
    """A storage's elements as a 1-D numpy array (filled in later for the legacy container)."""

    def __init__(self, type_name, numel):
        self.type_name = type_name
        self.numel = numel
        self.data = None

    def fill(self, raw, byteorder):
        """Set the elements from the file's bytes; `byteorder` is "<" or ">"."""
        dtype = np.dtype(STORAGE_DTYPES[self.type_name]).newbyteorder(byteorder)
        data = np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("="), copy=False)
        if self.type_name == "BFloat16Storage":  # the upper half of a float32
            data = (data.astype(np.uint32) << 16).view(np.float32)
        self.data = data


class _StorageView:
    """Legacy containers may pickle a view into a larger root storage."""

    def __init__(self, root, offset, numel):
        self.root, self.offset, self.numel = root, offset, numel

    @property
    def data(self):
        if self.root.data is None:
            return None
        return self.root.data[self.offset : self.offset + self.numel]


def _rebuild_tensor(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    return _PendingTensor(storage, int(storage_offset), tuple(size), tuple(stride))


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *state):
    return data


class _PendingTensor:
    """A tensor whose storage bytes may not have been read yet (legacy container)."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def to_numpy(self):
        flat = self.storage.data
        if not self.size:
            return np.array(flat[self.offset])
        needed = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride)) + 1
        if min(self.size) > 0 and needed > flat.size:
            raise TorchFileError(f"a tensor of shape {self.size} reaches past its storage of {flat.size} elements")
        itemsize = flat.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            flat[self.offset :], shape=self.size, strides=tuple(s * itemsize for s in self.stride), writeable=False
        )
        return np.array(view)  # own, contiguous copy


class Inert:
    """Stands in for a pickled global the reader does not resolve: accepts any arguments and state,
    records them, and runs nothing. `global_name` is "module.name" as the file wrote it."""

    global_name = "?"

    def __new__(cls, *args, **kwargs):  # pickle's NEWOBJ calls only this
        self = super().__new__(cls)
        self.args, self.kwargs, self.state, self.items = args, kwargs, None, []
        return self

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs

    def __setstate__(self, state):
        self.state = state

    def __setitem__(self, key, value):
        self.items.append((key, value))

    def append(self, value):
        self.items.append(value)

    def extend(self, values):
        self.items.extend(values)

    def __repr__(self):
        return f"<inert stand-in for {self.global_name}>"


def _inert_class(module, name):
    return type(f"Inert[{module}.{name}]", (Inert,), {"global_name": f"{module}.{name}", "__slots__": ()})


# globals that can reach the OS, the interpreter or code: only a crafted pickle refers to these
_REFUSED_MODULES = {
    "builtins", "__builtin__", "os", "posix", "nt", "posixpath", "ntpath", "subprocess", "sys", "shutil",
    "importlib", "runpy", "pickle", "_pickle", "socket", "ctypes", "pty", "marshal", "types", "code", "codeop",
    "tempfile", "webbrowser", "multiprocessing", "signal", "platform", "inspect", "pydoc", "shelve", "dbm",
    "glob", "zipimport", "asyncio",
}


def find_inert(obj, path=""):
    """The (key path, Inert) pairs inside dicts, lists and tuples of `obj`, depth first."""
    if isinstance(obj, Inert):
        return [(path, obj)]
    if isinstance(obj, dict):
        return [hit for k, v in obj.items() for hit in find_inert(v, f"{path}.{k}" if path else str(k))]
    if isinstance(obj, (list, tuple)):
        return [hit for i, v in enumerate(obj) for hit in find_inert(v, f"{path}[{i}]")]
    return []


_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("collections", "Counter"): collections.Counter,  # MMEngine's MultiStepLR milestones
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "slice"): slice,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    # numpy arrays and scalars appear in checkpoint metadata (pickle protocol 2 encodes bytes via _codecs)
    ("_codecs", "encode"): lambda text, encoding="latin1": text.encode(encoding),
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


def _numpy_scalar(dtype, data=None):
    return np.frombuffer(data, dtype=dtype, count=1)[0] if data is not None else dtype.type()


def _numpy_array_reconstruct(subtype, shape, dtype):
    if subtype is not np.ndarray:
        raise TorchFileError(f"numpy array subclass {subtype!r} is not allowed")
    return np.ndarray.__new__(np.ndarray, shape, dtype)


for _module in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _ALLOWED[(_module, "scalar")] = _numpy_scalar
    _ALLOWED[(_module, "_reconstruct")] = _numpy_array_reconstruct
for _name in STORAGE_DTYPES:
    _ALLOWED[("torch", _name)] = _StorageType(_name)


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, stream, source, persistent_load=None):
        super().__init__(stream, encoding="latin1")
        self.source = source
        self._persistent = persistent_load

    def find_class(self, module, name):
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module.split(".", 1)[0] in _REFUSED_MODULES:
            raise TorchFileError(
                f"{self.source}: refers to {module}.{name}, which no weights file needs: the file is crafted "
                "to run code when unpickled, and is refused (nothing in it was run)"
            )
        return _inert_class(module, name)

    def persistent_load(self, pid):
        if self._persistent is None:
            raise TorchFileError(f"{self.source}: unexpected storage reference {pid!r}")
        return self._persistent(pid)


def _storage_of(source, pid):
    """('storage', storage_type, key, location, numel[, view_metadata]) -> (key, _Storage, view)."""
    if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage" and isinstance(pid[1], _StorageType)):
        raise TorchFileError(f"{source}: unexpected persistent id {pid!r}")
    storage_type, key, numel = pid[1], str(pid[2]), int(pid[4])
    storage = _Storage(storage_type.name, numel)
    view = pid[5] if len(pid) > 5 else None
    return key, storage, view


def load(path):
    """A PyTorch checkpoint (zip or legacy container) -> the pickled object with tensors as numpy arrays."""
    path = str(path)
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except FileNotFoundError:
        raise TorchFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise TorchFileError(f"{path}: is a folder, expected a PyTorch checkpoint file") from None
    try:
        obj = _load_zip(path) if head.startswith(b"PK") else _load_legacy(path)
    except TorchFileError:
        raise
    except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, KeyError, ValueError, struct.error, IndexError,
            TypeError, AttributeError) as error:
        raise TorchFileError(f"{path}: not a readable PyTorch checkpoint ({type(error).__name__}: {error})") from None
    return _materialise(obj)


def load_pickle(path):
    """A plain pickle of dicts, lists and numpy arrays (such as a Paddle .pdparams) -> the object,
    read with the same restrictions: no name outside the allowlist is imported or called."""
    path = str(path)
    try:
        with open(path, "rb") as f:
            return _RestrictedUnpickler(f, path).load()
    except FileNotFoundError:
        raise TorchFileError(f"{path}: no such file") from None
    except TorchFileError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as error:
        raise TorchFileError(f"{path}: not a readable pickle of arrays ({type(error).__name__}: {error})") from None


def _load_zip(path):
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise TorchFileError(f"{path}: a zip file, but not a torch.save archive (no single <name>/data.pkl)")
        prefix = pickles[0][: -len("data.pkl")]
        byteorder = "little"
        if prefix + "byteorder" in names:
            byteorder = archive.read(prefix + "byteorder").decode().strip()
        storages = {}

        def persistent_load(pid):
            key, storage, _ = _storage_of(path, pid)
            if key not in storages:
                storage.fill(archive.read(f"{prefix}data/{key}"), "<" if byteorder == "little" else ">")
                storages[key] = storage
            return storages[key]

        return _RestrictedUnpickler(io.BytesIO(archive.read(pickles[0])), path, persistent_load).load()


def _load_legacy(path):
    with open(path, "rb") as f:
        def plain():
            return _RestrictedUnpickler(f, path).load()

        magic = plain()
        if magic != LEGACY_MAGIC:
            raise TorchFileError(f"{path}: not a PyTorch checkpoint (neither a zip archive nor the legacy magic number)")
        protocol = plain()
        if protocol != LEGACY_PROTOCOL:
            raise TorchFileError(f"{path}: legacy PyTorch protocol {protocol}, this reader knows {LEGACY_PROTOCOL}")
        sys_info = plain()
        little_endian = not isinstance(sys_info, dict) or sys_info.get("little_endian", True)
        roots = {}

        def persistent_load(pid):
            key, storage, view = _storage_of(path, pid)
            root = roots.setdefault(key, storage)
            if view is not None:
                _, offset, numel = view
                return _StorageView(root, int(offset), int(numel))
            return root

        obj = _RestrictedUnpickler(f, path, persistent_load).load()
        keys = plain()
        order = "<" if little_endian else ">"
        for key in keys:
            storage = roots[str(key)]
            (numel,) = struct.unpack(order + "q", f.read(8))
            nbytes = numel * np.dtype(STORAGE_DTYPES[storage.type_name]).itemsize
            raw = f.read(nbytes)
            if len(raw) != nbytes:
                raise TorchFileError(f"{path}: truncated (storage {key} needs {nbytes} bytes, {len(raw)} left)")
            storage.fill(raw, order)
    return obj


def _materialise(obj):
    """Replace pending tensors by numpy arrays throughout dicts, lists and tuples."""
    if isinstance(obj, _PendingTensor):
        if obj.storage.data is None:
            raise TorchFileError("a tensor's storage is missing from the file")
        return obj.to_numpy()
    if isinstance(obj, dict):
        out = type(obj)() if isinstance(obj, collections.OrderedDict) else {}
        for key, value in obj.items():
            out[key] = _materialise(value)
        return out
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialise(v) for v in obj)
    return obj

