"""include/kiln/checkpoint.h from Python: safetensors files (the format of the
`safetensors` package, so torch, NumPy and C programs read them) and training
checkpoints of a module with its optimizer and the generator's position.

The function names follow the safetensors package (save_file, load_file); writes
are atomic and reads validate the whole header first."""
import ctypes
import os
from ctypes import POINTER, c_bool, c_char_p, c_int, c_int64, c_uint64, c_void_p

from . import _lib
from ._runtime import call, handle, mirrors
from .tensor import Tensor, tensor


@mirrors("kiln_named_tensor", "include/kiln/checkpoint.h")
class CNamedTensor(ctypes.Structure):
    """kiln_named_tensor."""

    _fields_ = [("name", c_char_p), ("tensor", c_void_p)]


@mirrors("kiln_metadata_entry", "include/kiln/checkpoint.h")
class CMetadataEntry(ctypes.Structure):
    """kiln_metadata_entry."""

    _fields_ = [("key", c_char_p), ("value", c_char_p)]


P = c_void_p
_save = _lib.declare("kiln_safetensors_save", c_int, c_char_p, POINTER(CNamedTensor), c_int, POINTER(CMetadataEntry),
                     c_int)
_load = _lib.declare("kiln_safetensors_load", c_int, c_char_p, POINTER(CNamedTensor), c_int, c_bool)
_open = _lib.declare("kiln_safetensors_open", P, c_char_p)
_close = _lib.declare("kiln_safetensors_close", None, P)
_count = _lib.declare("kiln_safetensors_count", c_int, P)
_read = _lib.declare("kiln_safetensors_read", P, P, c_char_p)
_meta = _lib.declare("kiln_safetensors_metadata", c_int, P, POINTER(POINTER(CMetadataEntry)))
_ckpt_save = _lib.declare("kiln_checkpoint_save", c_int, c_char_p, P, P, POINTER(CMetadataEntry), c_int)
_ckpt_load = _lib.declare("kiln_checkpoint_load", c_int, c_char_p, P, P, c_bool)


@mirrors("kiln_safetensors_entry", "include/kiln/checkpoint.h")
class CSafetensorsEntry(ctypes.Structure):
    """kiln_safetensors_entry, read through a pointer (only its name is used here)."""

    _fields_ = [("name", c_char_p), ("dtype_name", c_char_p), ("dtype", c_int), ("ndim", c_int),
                ("shape", c_int64 * _lib.MAX_DIMS), ("begin", c_uint64), ("end", c_uint64)]


_entry_at = _lib.declare("kiln_safetensors_entry_at", POINTER(CSafetensorsEntry), P, c_int)


def _path(p):
    return os.fsencode(os.fspath(p))


def _named(tensors, what):
    """(array of kiln_named_tensor, the tensors kept alive while it is used)."""
    if not hasattr(tensors, "items"):
        raise TypeError(f"kiln.{what}: tensors must be a dict of name -> tensor, not {type(tensors).__name__}")
    keep, names = [], []
    for name, t in tensors.items():
        if not isinstance(name, str):
            raise TypeError(f"kiln.{what}: tensor names are strings, not {type(name).__name__}")
        if not isinstance(t, Tensor):
            if hasattr(t, "detach") and hasattr(t, "cpu"):  # torch
                t = t.detach().cpu().numpy()
            t = tensor(t)
        keep.append(t)
        names.append(name.encode())
    arr = (CNamedTensor * max(len(keep), 1))()
    for i, (n, t) in enumerate(zip(names, keep)):
        arr[i].name = n
        arr[i].tensor = handle(t, "tensor")
    return arr, len(keep), (keep, names)


def _metadata(meta, what):
    meta = meta or {}
    items = [(str(k).encode(), str(v).encode()) for k, v in meta.items()]
    arr = (CMetadataEntry * max(len(items), 1))()
    for i, (k, v) in enumerate(items):
        arr[i].key, arr[i].value = k, v
    return arr, len(items), items


def save_file(tensors, filename, metadata=None):
    """Writes a dict of name -> tensor (kiln, NumPy or torch) and string metadata to
    filename atomically, in the safetensors format."""
    arr, n, _keep = _named(tensors, "save_file")
    marr, nm, _mkeep = _metadata(metadata, "save_file")
    _lib.check(_save(_path(filename), arr, n, marr, nm), "save_file")


def load_file(filename):
    """Every tensor of a safetensors file as a dict of name -> new CPU kiln tensor."""
    f = _open(_path(filename))
    if not f:
        _lib.raise_last("load_file")
    try:
        out = {}
        for i in range(_count(f)):
            name = _entry_at(f, i).contents.name
            out[name.decode()] = call(_read, (f, name))
        return out
    finally:
        _close(f)


def read_metadata(filename):
    """The file's "__metadata__" string map."""
    f = _open(_path(filename))
    if not f:
        _lib.raise_last("read_metadata")
    try:
        entries = POINTER(CMetadataEntry)()
        n = _meta(f, ctypes.byref(entries))
        return {entries[i].key.decode(): entries[i].value.decode() for i in range(n)}
    finally:
        _close(f)


def load_into(filename, tensors, strict=True):
    """Loads the file's tensors into existing ones by name (dtype and shape must match);
    strict: missing and unexpected names are errors. Nothing is written on any error."""
    arr, n, _keep = _named(tensors, "load_into")
    for t in _keep[0]:
        if t.requires_grad:
            raise ValueError("kiln.load_into: a target requires grad; pass module.state_dict() or .detach() views")
    _lib.check(_load(_path(filename), arr, n, bool(strict)), "load_into")


def save_checkpoint(path, module, optimizer=None, extra=None):
    """module's state_dict (torch's names: torch's load_state_dict reads the file), the
    optimizer's state and hyper-parameters when given, the generator's position, and
    extra string metadata (e.g. {"epoch": 3})."""
    marr, nm, _mkeep = _metadata(extra, "save_checkpoint")
    o = optimizer._o if optimizer is not None else None
    _lib.check(_ckpt_save(_path(path), module._handle(), o, marr, nm), "save_checkpoint")


def load_checkpoint(path, module, optimizer=None, strict=True):
    """Restores what save_checkpoint wrote (or a safetensors state_dict from PyTorch) into
    module and optimizer, and the generator's position; returns the file's metadata."""
    o = optimizer._o if optimizer is not None else None
    _lib.check(_ckpt_load(_path(path), module._handle(), o, bool(strict)), "load_checkpoint")
    return read_metadata(path)
