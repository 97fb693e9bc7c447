"""The runtime every kiln module builds on: it loads libkiln.so, declares C
prototypes, raises kiln's pending error as a Python exception, checks each ctypes
mirror of a public struct against the library's own layout, and wraps tensor handles
in Python objects that own their C scopes. It imports no other kiln module but
_errors; kiln/_lib.py declares the core API on top of it, kiln/tensor.py the Tensor
class.

The library is loaded with ctypes.PyDLL: calls keep the GIL. kiln's scopes, error
state and RNG are per thread or unsynchronised, and storage reference counts are
plain ints, so serialising calls is what keeps threaded Python programs safe.

Lifetimes. Every kiln call the package makes runs in a fresh C scope that is then
detached (kiln_scope_detach): the result, any helper tensors the op made and its
tape node belong to that small scope, and the Python Tensor owns it. Dropping the
Python object frees it (kiln_scope_free), in any order. A result that requires
grad keeps its inputs' Python objects alive (._parents), so every node a later
backward() can reach still has live inputs. Views share reference-counted
storage, so freeing a base before its views is safe. Inside a Python module's
forward called from C, results go into the outermost module call's scope instead
(Holder).
"""
import atexit
import ctypes
import os
import threading
from ctypes import c_bool, c_char_p, c_int, c_size_t, c_void_p
from pathlib import Path

from ._errors import exception_for

# ---- loading -----------------------------------------------------------------------


def _candidates():
    here = Path(__file__).resolve().parent
    yield here / "libkiln.so"  # installed wheel
    repo = here.parents[2]  # bindings/python/kiln -> repository root (source checkout)
    for build in ("build-python", "build"):
        yield repo / build / "libkiln.so"


def _find_library():
    env = os.environ.get("KILN_LIBRARY")
    if env:
        if not os.path.isfile(env):
            raise ImportError(f"kiln: KILN_LIBRARY={env!r} is not a file; point it at a built libkiln.so")
        return env
    tried = []
    for p in _candidates():
        tried.append(str(p))
        if p.is_file():
            return str(p)
    raise ImportError(
        "kiln: libkiln.so not found (looked in " + ", ".join(tried) + "). Install the package with "
        "`pip install ./bindings/python` (it builds the library), or build it with CMake and set "
        "KILN_LIBRARY=/path/to/libkiln.so"
    )


path = _find_library()
lib = ctypes.PyDLL(path)

declared = {}  # C name -> ctypes function, for every function the package calls (kiln/_messages.py)


def declare(name, restype, *argtypes):
    """Sets and returns the prototype of one exported function."""
    try:
        f = getattr(lib, name)
    except AttributeError:
        raise ImportError(f"kiln: {path} does not export {name}; rebuild the library from this source tree") from None
    f.restype = restype
    f.argtypes = list(argtypes)
    declared[name] = f
    return f


# ---- errors --------------------------------------------------------------------------
last_status = declare("kiln_last_status", c_int)
last_error = declare("kiln_last_error", c_char_p)
clear_error = declare("kiln_clear_error", None)
status_name = declare("kiln_status_name", c_char_p, c_int)


def raise_last(what=None):
    """Raises the pending kiln error as a Python exception and clears it. The message
    names Python calls (kiln/_messages.py); the C library's text is .c_message."""
    st = last_status()
    msg = (last_error() or b"").decode("utf-8", "replace")
    clear_error()
    if st == 0:
        raise RuntimeError(f"kiln: {what or 'a call'} failed without an error message (a kiln bug; please report it)")
    raise exception_for(st, msg)


def check(status, what=None):
    if status != 0:
        raise_last(what)


# ---- struct mirrors (include/kiln/abi.h) ------------------------------------------------
# A ctypes Structure is a copy of a C struct's layout written by hand; if the header
# changes and the copy does not, calls read and write the wrong bytes. Each mirror is
# declared with @mirrors and compared with the library's sizeof and offsetof when its
# module is imported.
abi_sizeof = declare("kiln_abi_sizeof", c_size_t, c_char_p)
abi_offsetof = declare("kiln_abi_offsetof", c_size_t, c_char_p, c_char_p)
_NO_OFFSET = ctypes.c_size_t(-1).value

mirrored = {}  # C struct name -> (ctypes Structure, header), every mirror the package has


def mirrors(c_name, header):
    """Class decorator: cls mirrors the C struct c_name of header (a path from the
    repository root); checks it now (ImportError on a mismatch) and records it."""

    def register(cls):
        check_struct(cls, c_name, header)
        mirrored[c_name] = (cls, header)
        return cls

    return register


def check_struct(cls, c_name, header):
    """ImportError unless cls has the size of c_name in this library and each of its
    fields the C field's offset."""
    where = f"{cls.__module__}.{cls.__qualname__}"
    fix = f"update {where} to match {c_name} in {header}, or rebuild {path} from this source tree"
    c_size = abi_sizeof(c_name.encode())
    if c_size == 0:
        raise ImportError(f"kiln: {path} knows no struct {c_name} (mirrored by {where}); {fix} "
                          "(core/abi.c lists the structs it knows)")
    py_size = ctypes.sizeof(cls)
    if py_size != c_size:
        raise ImportError(f"kiln: struct {c_name} is {c_size} bytes in {path} but its mirror {where} is "
                          f"{py_size} bytes; {fix}")
    for name, *_ in cls._fields_:
        c_off = abi_offsetof(c_name.encode(), name.encode())
        py_off = getattr(cls, name).offset
        if c_off == _NO_OFFSET:
            raise ImportError(f"kiln: {where} has a field {name!r} that struct {c_name} in {path} does not have; "
                              f"{fix} (core/abi.c lists the fields it knows)")
        if c_off != py_off:
            raise ImportError(f"kiln: field {name!r} of struct {c_name} is at offset {c_off} in {path} but at "
                              f"{py_off} in its mirror {where}; {fix}")


def check_structs():
    """Checks every recorded mirror again (each was checked when declared)."""
    for c_name, (cls, header) in mirrored.items():
        check_struct(cls, c_name, header)


# ---- tensor handles ----------------------------------------------------------------------
scope_begin = declare("kiln_scope_begin", c_void_p)
scope_end = declare("kiln_scope_end", None, c_void_p)
scope_keep = declare("kiln_scope_keep", c_void_p, c_void_p)
scope_detach = declare("kiln_scope_detach", c_int, c_void_p)
scope_free = declare("kiln_scope_free", None, c_void_p)
tensor_requires_grad = declare("kiln_tensor_requires_grad", c_bool, c_void_p)

RELEASED = ("kiln: this tensor was released when the kiln.scope() that created it ended; keep it with "
            "scope.keep(t) or compute it outside the scope")

state = threading.local()  # .scopes: the open kiln.scope()s; .holder: the Holder of a Python forward C runs


class Finalizing:
    """on: the interpreter is exiting; objects leave kiln memory to the process exit."""

    on = False


def _at_exit():
    # Interpreter teardown frees objects in no useful order and may unload ctypes first.
    Finalizing.on = True


atexit.register(_at_exit)


def scope_stack():
    """This thread's open kiln.scope() objects, innermost last."""
    s = getattr(state, "scopes", None)
    if s is None:
        s = state.scopes = []
    return s


class TensorHandle:
    """The part of a kiln.Tensor the runtime owns: _h, the kiln_tensor handle (None
    once released); _own, the detached scope the object frees with itself, or None;
    _base, the object whose lifetime bounds a borrowed tensor (the tensor a .grad
    belongs to, a module, a Holder), or None; _parents, the input Tensors a result
    that requires grad keeps alive; _grad_none_at, Tensor.grad's bookkeeping.
    kiln.Tensor is its one subclass; the runtime makes instances of that class."""

    __slots__ = ("_h", "_own", "_base", "_parents", "_grad_none_at", "__weakref__")

    def __del__(self):
        s = getattr(self, "_own", None)
        if s is not None and not Finalizing.on:
            self._own = None
            self._h = None
            try:
                scope_free(s)
            except Exception:  # interpreter teardown
                pass

    def _release(self):
        s = self._own
        self._own = None
        self._h = None
        self._parents = None
        if s is not None:
            scope_free(s)


_tensor_class = TensorHandle


def set_tensor_class(cls):
    """Makes adopt and borrow return instances of cls (kiln.Tensor, at its import)."""
    global _tensor_class
    if not issubclass(cls, TensorHandle):
        raise TypeError(f"kiln: {cls.__name__} is not a TensorHandle")
    _tensor_class = cls


def handle(t, what="argument"):
    """The kiln handle of a live tensor."""
    if not isinstance(t, TensorHandle):
        raise TypeError(f"kiln: {what} must be a kiln.Tensor, not {type(t).__name__}")
    try:
        h = t._h
        base = t._base
    except AttributeError:
        raise RuntimeError("kiln: this Tensor was not made by kiln (use kiln.tensor, kiln.zeros, ...)") from None
    if h is None or (base is not None and base._h is None):
        raise RuntimeError(RELEASED)
    return h


def adopt(p, s, inputs=()):
    """Wraps handle p owned by the detached scope s."""
    t = object.__new__(_tensor_class)
    t._h = p
    t._own = s
    t._base = None
    t._parents = inputs if inputs and tensor_requires_grad(p) else None
    t._grad_none_at = -1
    stack = getattr(state, "scopes", None)
    if stack:
        stack[-1]._track(t)
    return t


def borrow(p, base):
    """Wraps handle p owned by base (a tensor's .grad, a module's parameter): valid
    while base lives."""
    t = object.__new__(_tensor_class)
    t._h = p
    t._own = None
    t._base = base
    t._parents = None
    t._grad_none_at = -1
    return t


class Holder:
    """The owner of the tensors made while Python code runs inside a C module's
    forward (a kiln.nn.Module subclass called from C): they go straight into the C
    scope of the outermost module call, whose result tensor then owns them all.
    Until that result exists the holder itself stands for it (live); if the call
    fails, they are released with its scope."""

    __slots__ = ("owner", "live", "keep", "exc")

    def __init__(self):
        self.owner, self.live, self.keep, self.exc = None, True, {}, None

    @property
    def _h(self):
        if self.owner is not None:
            return self.owner._h
        return 1 if self.live else None


def _call_inline(fn, args, inputs, hold):
    p = fn(*args)
    if not p:
        raise_last(fn.__name__)
    for t in inputs:
        if t._h == p:
            return t
    for t in inputs:  # a tensor from outside the call: the module call's result keeps it alive
        if t._base is not hold:
            hold.keep[id(t)] = t
    t = borrow(p, hold)
    if tensor_requires_grad(p):
        t._parents = ()
    return t


class own_scopes:
    """For helpers that open a C scope of their own around call (and end it): their
    results must get their own owners even inside a Python module's forward."""

    def __enter__(self):
        self.saved = getattr(state, "holder", None)
        state.holder = None

    def __exit__(self, *exc):
        state.holder = self.saved
        return False


def call(fn, args, inputs=()):
    """Runs one kiln call that returns a new tensor, in its own detached scope, and
    wraps the result; inputs are the Tensors among its arguments."""
    hold = getattr(state, "holder", None)
    if hold is not None:
        return _call_inline(fn, args, inputs, hold)
    s = scope_begin()
    if not s:
        raise_last("kiln_scope_begin")
    p = fn(*args)
    if not p:
        scope_end(s)
        raise_last(fn.__name__)
    if scope_detach(s) != 0:  # the call left a scope open: free everything it made
        scope_end(s)
        raise_last(fn.__name__)
    for t in inputs:
        if t._h == p:  # the call returned an input (e.g. contiguous of a contiguous tensor)
            scope_free(s)
            return t
    return adopt(p, s, inputs)
