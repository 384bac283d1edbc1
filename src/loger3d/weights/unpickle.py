"""PyTorch checkpoints read without running anything in them.

A ``.pt`` file is a pickle, and a pickle can call any function it names. ``torch.load(weights_only=True)``
refuses files that name anything but tensors and plain containers, which also refuses the files
training scripts write (their ``args``, numpy scalars, optimizer state, config objects). This
unpickler reads those too: it rebuilds tensors itself (from the file's raw storages, memory-mapped)
and stands an inert placeholder (:class:`Opaque`) in for every other class or function the file
names; a placeholder's construction and ``__setstate__`` store nothing and call nothing, so no code
in the file can ever run. What it met is kept (``UnpickledCheckpoint``): every global named, and the
ones the file *calls* (a ``REDUCE``, as a payload does) rather than instantiates (a class rebuilt
from its state, as argparse namespaces, dataclass configs and optimizer objects are). A file that
calls a function outside the data constructors (numpy's, the builtin containers', ...) or names
``os.system``, ``builtins.eval`` and the like was built to run code, and is refused as unsafe even
though nothing ran.

Both formats ``torch.save`` writes are read: the zip archive (PyTorch >= 1.6) and the legacy stream.
"""

from __future__ import annotations

import contextlib
import io
import mmap
import os
import pickle
import threading
import zipfile
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["CODE_MODULES", "DATA_CALLS", "Opaque", "UnpickledCheckpoint", "unpickle_checkpoint"]

_STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8, "BoolStorage": torch.bool,
    "ComplexFloatStorage": torch.complex64, "ComplexDoubleStorage": torch.complex128,
}

#: Modules whose functions run code, read or write files, or reach the network when called; a checkpoint that
#: names one of them (or ``builtins.eval``/``exec``/... ) was built to run code. Used to word the refusal only:
#: nothing a checkpoint names is ever called, whatever its module.
CODE_MODULES = frozenset({
    "os", "posix", "nt", "subprocess", "sys", "shutil", "importlib", "runpy", "pty", "socket", "ctypes", "code",
    "codeop", "pickle", "_pickle", "marshal", "types", "webbrowser", "multiprocessing", "signal", "platform", "io",
    "_io", "tempfile", "pathlib._local", "urllib", "http", "requests", "asyncio", "threading", "_thread", "commands",
    "popen2", "pdb", "timeit", "operator", "functools", "inspect",
})
_CODE_BUILTINS = frozenset({"eval", "exec", "compile", "__import__", "getattr", "setattr", "delattr", "open",
                            "input", "breakpoint", "globals", "locals", "vars", "exit", "quit", "help", "print"})
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

#: Globals a checkpoint may call (``REDUCE``) to rebuild plain data: by prefix of the qualified name.
DATA_CALLS = (
    "numpy.", "_codecs.encode", "copyreg._reconstructor", "collections.", "datetime.", "pathlib.", "decimal.",
    "fractions.", "uuid.", "enum.", "argparse.Namespace", "torch.device", "torch.Size", "torch._utils.",
    "torch.nn.parameter.", "builtins.set", "builtins.frozenset", "builtins.complex", "builtins.bytearray",
    "builtins.bytes", "builtins.slice", "builtins.range", "builtins.object", "builtins.int", "builtins.float",
    "builtins.str", "builtins.tuple", "builtins.list", "builtins.dict", "builtins.bool",
)
_PYTHON2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}
_LOAD = threading.local()  # the calls of the load in progress on this thread


class Opaque:
    """Stands in for an object of a class (or the result of a function) the checkpoint names but loger3d does not
    rebuild: ``qualified_name`` says which. Building it stores nothing and calls nothing."""

    qualified_name = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> Opaque:
        return object.__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # reached only when the pickle calls the name (REDUCE); rebuilding an instance skips __init__
        calls = getattr(_LOAD, "calls", None)
        if calls is not None:
            calls.append(self.qualified_name)

    def __setstate__(self, state: Any) -> None:
        pass

    def __repr__(self) -> str:
        return f"<opaque {self.qualified_name}>"


@dataclass(frozen=True)
class _StorageType:
    dtype: torch.dtype


@dataclass
class UnpickledCheckpoint:
    """What a checkpoint holds (tensors rebuilt, everything else :class:`Opaque`), every global it named and
    the ones it called."""

    obj: Any
    globals: list[str] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)

    @property
    def code_globals(self) -> list[str]:
        """What would have run code: the globals it called that are not data constructors (:data:`DATA_CALLS`),
        and any global of a code-running module (:data:`CODE_MODULES`), in the order met, once each."""
        found = [g for g in self.calls if not g.startswith(DATA_CALLS)] + [g for g in self.globals if _runs_code(g)]
        return list(dict.fromkeys(found))


def _runs_code(qualified: str) -> bool:
    module, _, name = qualified.rpartition(".")
    return module.split(".")[0] in CODE_MODULES or (module == "builtins" and name in _CODE_BUILTINS)


def _rebuild_tensor(storage: torch.Tensor, offset: int, size: tuple, stride: tuple, *args: Any) -> torch.Tensor:
    """``torch._utils._rebuild_tensor_v2``'s job, on a 1-D tensor holding the storage (no other code)."""
    if not isinstance(storage, torch.Tensor):
        raise pickle.UnpicklingError("a tensor refers to something that is not a storage")
    return storage.as_strided(tuple(size), tuple(stride), int(offset))


def _rebuild_tensor_v3(storage: torch.Tensor, offset: int, size: tuple, stride: tuple, requires_grad: bool,
                       hooks: Any, dtype: torch.dtype, *args: Any) -> torch.Tensor:
    if not isinstance(dtype, torch.dtype):
        raise pickle.UnpicklingError("a tensor names something that is not a dtype")
    return _rebuild_tensor(storage.view(torch.uint8).view(dtype), offset, size, stride)


def _rebuild_parameter(data: torch.Tensor, *args: Any) -> torch.Tensor:
    return data


def _reconstruct(cls: Any, base: Any, state: Any) -> Opaque:
    """``copyreg._reconstructor`` (how protocols 0 and 1 rebuild an instance): a placeholder, nothing called."""
    return object.__new__(cls) if isinstance(cls, type) and issubclass(cls, Opaque) else Opaque.__new__(Opaque)


_REBUILDERS = {
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("collections", "OrderedDict"): OrderedDict,
    ("torch", "Size"): tuple,
    ("copyreg", "_reconstructor"): _reconstruct,
}
_OPAQUE_CLASSES: dict[str, type[Opaque]] = {}


def _opaque(qualified: str) -> type[Opaque]:
    if qualified not in _OPAQUE_CLASSES:
        _OPAQUE_CLASSES[qualified] = type("Opaque", (Opaque,), {"qualified_name": qualified})
    return _OPAQUE_CLASSES[qualified]


class _Unpickler(pickle._Unpickler):
    """``find_class`` returns only the rebuilders above, dtypes and storage types; anything else, a placeholder.

    The pure-Python unpickler, so that ``BUILD`` can be changed: it sets no state on anything (a
    placeholder keeps none; a real object's ``__setstate__``, a tensor's for instance, is never
    reached). Checkpoint pickles are small (the tensors' bytes are outside them), so speed is moot.
    """

    dispatch = dict(pickle._Unpickler.dispatch)

    def load_build(self) -> None:
        self.stack.pop()  # the state, dropped

    dispatch[pickle.BUILD[0]] = load_build

    def __init__(self, file: io.BufferedIOBase, load_storage, seen: list[str]) -> None:
        super().__init__(file)
        self._load_storage = load_storage
        self._seen = seen

    def find_class(self, module: str, name: str) -> Any:
        module = _PYTHON2_MODULES.get(module, module)  # protocol 2 writes Python 2's names
        self._seen.append(f"{module}.{name}")
        if (module, name) in _REBUILDERS:
            return _REBUILDERS[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        return _opaque(f"{module}.{name}")

    def persistent_load(self, pid: Any) -> torch.Tensor:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unknown persistent id {str(pid)[:60]}")
        storage_type, key, numel = pid[1], str(pid[2]), int(pid[4])
        dtype = storage_type.dtype if isinstance(storage_type, _StorageType) else torch.uint8
        return self._load_storage(key, dtype, numel)


def unpickle_checkpoint(path: str | os.PathLike) -> UnpickledCheckpoint:
    """Read a file ``torch.save`` wrote (zip or legacy format) without running anything in it.

    Tensors are CPU views of the memory-mapped file (copy-on-write: writing to them never changes
    the file). Raises ``pickle.UnpicklingError`` (or ``ValueError``/``EOFError``) for a file that is
    not a readable checkpoint.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            raise EOFError("the file is empty")
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
    if zipfile.is_zipfile(path):
        return _read_zip(path, mapped)
    return _read_legacy(mapped)


@contextlib.contextmanager
def _recording() -> Iterator[list[str]]:
    calls: list[str] = []
    _LOAD.calls = calls
    try:
        yield calls
    finally:
        _LOAD.calls = None


def _from_buffer(mapped: mmap.mmap, offset: int, nbytes: int, dtype: torch.dtype) -> torch.Tensor:
    if offset < 0 or offset + nbytes > len(mapped):
        raise EOFError("a storage runs past the end of the file (cut short?)")
    raw = torch.frombuffer(mapped, dtype=torch.uint8, count=nbytes, offset=offset) if nbytes else \
        torch.empty(0, dtype=torch.uint8)
    return raw.view(dtype)


def _read_zip(path: str, mapped: mmap.mmap) -> UnpickledCheckpoint:
    with zipfile.ZipFile(path) as archive:
        members = {info.filename: info for info in archive.infolist()}
        pickles = [name for name in members if name.endswith("/data.pkl") or name == "data.pkl"]
        if len(pickles) != 1:
            raise pickle.UnpicklingError("no data.pkl in the archive: not a torch.save checkpoint")
        prefix = pickles[0][: -len("data.pkl")]
        data = archive.read(pickles[0])
    storages: dict[str, torch.Tensor] = {}

    def load_storage(key: str, dtype: torch.dtype, numel: int) -> torch.Tensor:
        if key not in storages:
            info = members.get(f"{prefix}data/{key}")
            if info is None or info.compress_type != zipfile.ZIP_STORED:
                raise pickle.UnpicklingError(f"storage {key} is missing from the archive")
            header = mapped[info.header_offset: info.header_offset + 30]
            if len(header) < 30 or header[:4] != b"PK\x03\x04":
                raise EOFError(f"storage {key}'s record is damaged")
            start = info.header_offset + 30 + int.from_bytes(header[26:28], "little") + \
                int.from_bytes(header[28:30], "little")
            storages[key] = _from_buffer(mapped, start, info.file_size, torch.uint8)
        raw = storages[key]
        size = numel * torch.empty(0, dtype=dtype).element_size()
        if raw.numel() < size:
            raise EOFError(f"storage {key} is shorter than its {numel} elements")
        return raw[:size].view(dtype)

    seen: list[str] = []
    with _recording() as calls:
        obj = _Unpickler(io.BytesIO(data), load_storage, seen).load()
    return UnpickledCheckpoint(obj, seen, calls)


def _read_legacy(mapped: mmap.mmap) -> UnpickledCheckpoint:
    """The stream before PyTorch 1.6: magic, protocol, system info, the object, storage keys, then each
    storage as an int64 element count and its bytes, in the order of the keys."""
    stream = io.BytesIO(mapped)
    seen: list[str] = []
    pending: dict[str, tuple[torch.dtype, list[torch.Tensor]]] = {}

    def deferred(key: str, dtype: torch.dtype, numel: int) -> torch.Tensor:
        # the bytes come after the object: hand out a placeholder tensor filled in below
        holder = torch.empty(numel, dtype=dtype)
        pending.setdefault(key, (dtype, []))[1].append(holder)
        return holder

    with _recording() as calls:
        first = _Unpickler(stream, deferred, seen).load()
        if first != _LEGACY_MAGIC:  # a plain pickle, not torch.save's: what it holds, for the caller to judge
            if pending:
                raise pickle.UnpicklingError("not a torch.save file (no magic number)")
            return UnpickledCheckpoint(first, seen, calls)
        _Unpickler(stream, deferred, seen).load()  # protocol version
        _Unpickler(stream, deferred, seen).load()  # system info
        obj = _Unpickler(stream, deferred, seen).load()
        keys = _Unpickler(stream, deferred, seen).load()
    if not isinstance(keys, list):
        raise pickle.UnpicklingError("the storage list is damaged")
    for key in keys:
        count = int.from_bytes(stream.read(8), "little")
        dtype, holders = pending.get(str(key), (torch.uint8, []))
        nbytes = count * torch.empty(0, dtype=dtype).element_size()
        data = _from_buffer(mapped, stream.tell(), nbytes, torch.uint8).view(dtype)
        stream.seek(nbytes, io.SEEK_CUR)
        for holder in holders:
            if holder.numel() > data.numel():
                raise EOFError(f"storage {key} is shorter than its {holder.numel()} elements")
            holder.copy_(data[: holder.numel()])
    return UnpickledCheckpoint(obj, seen, calls)
