"""The Tensor class, factories, scopes and autograd contexts.

Lifetimes. Every kiln call the package makes runs in a fresh C scope that is then
detached (kiln_scope_detach): the result, any helper tensors the op made and its
tape node belong to that small scope, and the Python Tensor owns it. Dropping the
Python object frees it (kiln_scope_free), in any order. A result that requires
grad keeps its inputs' Python objects alive (._parents), so every node a later
backward() can reach still has live inputs. Views share reference-counted
storage, so freeing a base before its views is safe.

kiln.scope() mirrors the C scopes: the tensors created while it is innermost are
released when it exits, even if Python still refers to them (using one afterwards
raises RuntimeError); scope.keep(t) moves t out, cut from the tape as C does.
"""
import ctypes
import numbers
import operator
import threading
import weakref

from . import _lib
from ._types import as_device, as_dtype, device, float32, from_code, int64

_begin = _lib.scope_begin
_detach = _lib.scope_detach
_end = _lib.scope_end
_free = _lib.scope_free
_requires_grad = _lib.tensor_requires_grad

_RELEASED = ("kiln: this tensor was released when the kiln.scope() that created it ended; keep it with "
             "scope.keep(t) or compute it outside the scope")

_state = threading.local()
_backward_count = 0


class _Finalizing:
    on = False


def _at_exit():
    # Interpreter teardown frees objects in no useful order and may unload ctypes
    # first: from here on, Python objects leave kiln memory to the process exit.
    _Finalizing.on = True


import atexit  # noqa: E402

atexit.register(_at_exit)


def _scopes():
    s = getattr(_state, "scopes", None)
    if s is None:
        s = _state.scopes = []
    return s


def _h(t, what="argument"):
    """The kiln handle of a live tensor."""
    if not isinstance(t, Tensor):
        raise TypeError(f"kiln: {what} must be a kiln.Tensor, not {type(t).__name__}")
    try:
        h = t._h
        base = t._base
    except AttributeError:
        raise RuntimeError("kiln: this Tensor was not made by kiln (use kiln.tensor, kiln.zeros, ...)") from None
    if h is None or (base is not None and base._h is None):
        raise RuntimeError(_RELEASED)
    return h


def _adopt(p, s, inputs=()):
    """Wraps handle p owned by the detached scope s."""
    t = object.__new__(Tensor)
    t._h = p
    t._own = s
    t._base = None
    t._parents = inputs if inputs and _requires_grad(p) else None
    t._grad_none_at = -1
    stack = getattr(_state, "scopes", None)
    if stack:
        stack[-1]._track(t)
    return t


class _Holder:
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
        _lib.raise_last(fn.__name__)
    for t in inputs:
        if t._h == p:
            return t
    for t in inputs:  # a tensor from outside the call: the module call's result keeps it alive
        if t._base is not hold:
            hold.keep[id(t)] = t
    t = _borrow(p, hold)
    if _requires_grad(p):
        t._parents = ()
    return t


class _own_scopes:
    """For helpers that open a C scope of their own around _call (and end it): their
    results must get their own owners even inside a Python module's forward."""

    def __enter__(self):
        self.saved = getattr(_state, "holder", None)
        _state.holder = None

    def __exit__(self, *exc):
        _state.holder = self.saved
        return False


def _call(fn, args, inputs=()):
    """Runs one kiln call that returns a new tensor, in its own detached scope."""
    hold = getattr(_state, "holder", None)
    if hold is not None:
        return _call_inline(fn, args, inputs, hold)
    s = _begin()
    if not s:
        _lib.raise_last("kiln_scope_begin")
    p = fn(*args)
    if not p:
        _end(s)
        _lib.raise_last(fn.__name__)
    if _detach(s) != 0:  # the call left a scope open: free everything it made
        _end(s)
        _lib.raise_last(fn.__name__)
    for t in inputs:
        if t._h == p:  # the call returned an input (e.g. contiguous of a contiguous tensor)
            _free(s)
            return t
    return _adopt(p, s, inputs)


def _borrow(p, base):
    """Wraps handle p owned by base's tensor (its .grad): valid while base lives."""
    t = object.__new__(Tensor)
    t._h = p
    t._own = None
    t._base = base
    t._parents = None
    t._grad_none_at = -1
    return t


def _c_int(x, what):
    try:
        v = operator.index(x)
    except TypeError:
        raise TypeError(f"kiln: {what} must be an int, not {type(x).__name__}") from None
    if not -(2**31) <= v < 2**31:
        raise ValueError(f"kiln: {what} {v} is out of range")
    return v


def _shape_tuple(shape, what="shape"):
    if len(shape) == 1 and not isinstance(shape[0], numbers.Integral):
        shape = shape[0]
    try:
        dims = tuple(shape)
    except TypeError:
        raise TypeError(f"kiln: {what} must be ints or a sequence of ints, not {type(shape).__name__}") from None
    out = []
    for d in dims:
        try:
            v = operator.index(d)
        except TypeError:
            raise TypeError(f"kiln: {what} {dims!r} holds a {type(d).__name__}; sizes are ints") from None
        if not -(2**62) <= v < 2**62:
            raise ValueError(f"kiln: size {v} in {what} {dims!r} is out of range")
        out.append(v)
    if len(out) > _lib.MAX_DIMS:
        raise ValueError(f"kiln: {what} {tuple(out)} has {len(out)} dimensions; kiln tensors have at most "
                         f"{_lib.MAX_DIMS}")
    return tuple(out)


def _i64(shape):
    return (ctypes.c_int64 * len(shape))(*shape)


def _is_number(x):
    return isinstance(x, numbers.Real) and not isinstance(x, Tensor)


class Tensor:
    """A kiln tensor: an n-d array on a device, with autograd.

    Create one with kiln.tensor, the factories (zeros, ones, full, rand, randn,
    arange) or kiln.from_dlpack (zero-copy); convert back with .numpy() (a copy)
    or any DLPack consumer (numpy.from_dlpack, torch.from_dlpack: zero-copy).
    """

    __slots__ = ("_h", "_own", "_base", "_parents", "_grad_none_at", "__weakref__")
    __array_ufunc__ = None  # numpy defers to our reflected operators

    def __init__(self, *args, **kwargs):
        raise TypeError("kiln.Tensor is not constructed directly: use kiln.tensor(data), kiln.zeros(...), "
                        "kiln.from_numpy(array) or kiln.from_dlpack(obj)")

    def __del__(self):
        s = getattr(self, "_own", None)
        if s is not None and not _Finalizing.on:
            self._own = None
            self._h = None
            try:
                _free(s)
            except Exception:  # interpreter teardown
                pass

    def _release(self):
        s = self._own
        self._own = None
        self._h = None
        self._parents = None
        if s is not None:
            _free(s)

    # ---- geometry --------------------------------------------------------------
    @property
    def shape(self):
        h = _h(self)
        n = _lib.tensor_ndim(h)
        sp = _lib.tensor_shape(h)
        return tuple(sp[i] for i in range(n))

    def size(self, dim=None):
        return self.shape if dim is None else self.shape[dim]

    @property
    def ndim(self):
        return _lib.tensor_ndim(_h(self))

    def dim(self):
        return self.ndim

    @property
    def strides(self):
        """Strides in elements (as torch.Tensor.stride(), not NumPy's bytes)."""
        h = _h(self)
        return tuple(_lib.tensor_stride(h, i) for i in range(_lib.tensor_ndim(h)))

    def stride(self, dim=None):
        return self.strides if dim is None else self.strides[dim]

    def numel(self):
        return _lib.tensor_numel(_h(self))

    @property
    def dtype(self):
        return from_code(_lib.tensor_dtype(_h(self)))

    @property
    def device(self):
        return device._from_c(_lib.tensor_device(_h(self)))

    @property
    def is_cuda(self):
        return self.device.type == "cuda"

    def is_contiguous(self):
        return bool(_lib.tensor_is_contiguous(_h(self)))

    def data_ptr(self):
        return _lib.tensor_data(_h(self)) or 0

    def element_size(self):
        return self.dtype.itemsize

    @property
    def is_released(self):
        return self._h is None or (self._base is not None and self._base._h is None)

    # ---- conversion -------------------------------------------------------------
    def numpy(self):
        """A NumPy copy of the values (bfloat16 widens to float32). Zero-copy: numpy.from_dlpack(t)."""
        import numpy as np

        src = self if self.dtype.numpy_name else self.to(dtype=float32)
        h = _h(src)
        out = np.empty(src.shape, dtype=src.dtype.numpy_name)
        _lib.check(_lib.tensor_to_host(h, out.ctypes.data_as(ctypes.c_void_p), out.nbytes))
        return out

    def __array__(self, dtype=None, copy=None):
        a = self.numpy()
        return a if dtype is None else a.astype(dtype, copy=False)

    def tolist(self):
        return self.numpy().tolist()

    def item(self):
        h = _h(self)
        if _lib.tensor_numel(h) != 1 or self.dtype.is_floating_point:
            v = _lib.tensor_item(h)
            if _lib.last_status() != 0:
                _lib.raise_last("item")
            return v
        return self.numpy().reshape(()).item()  # exact for int64

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __bool__(self):
        if self.numel() != 1:
            raise ValueError(f"kiln: the truth value of a tensor of shape {self.shape} is ambiguous; use "
                             ".sum(), .max() or .item()")
        return bool(self.item())

    def __len__(self):
        shape = self.shape
        if not shape:
            raise TypeError("kiln: len() of a 0-d tensor")
        return shape[0]

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def to(self, device=None, dtype=None):
        """A copy on another device and/or with another dtype; self when nothing changes.
        A dtype change is a copy that records nothing on the tape."""
        if isinstance(device, str) and device in _DTYPE_NAMES and dtype is None:
            device, dtype = None, device
        t = self
        if dtype is not None:
            dt = as_dtype(dtype)
            if dt.code != _lib.tensor_dtype(_h(t)):
                t = _call(_lib.tensor_cast, (_h(t), dt.code), (t,))
        if device is not None:
            dev = as_device(device)
            if dev != t.device:
                t = _call(_lib.tensor_to, (_h(t), dev._c), (t,))
        return t

    def cpu(self):
        return self.to("cpu")

    def cuda(self, index=0):
        return self.to(device("cuda", index))

    def float(self):
        return self.to(dtype=float32)

    def double(self):
        return self.to(dtype="float64")

    def half(self):
        return self.to(dtype="float16")

    def long(self):
        return self.to(dtype=int64)

    def int(self):
        return self.to(dtype="int32")

    def contiguous(self):
        return _call(_lib.tensor_contiguous, (_h(self),), (self,))

    def clone(self):
        """A copy that shares nothing (not recorded on the tape)."""
        return _call(_lib.tensor_clone, (_h(self),), (self,))

    def detach(self):
        """A view of the same memory cut from the tape."""
        return _call(_lib.tensor_detach, (_h(self),), (self,))

    # ---- in place (not recorded: refused on tensors that take part in autograd) ----
    def _check_inplace(self, what):
        if _lib.grad_enabled() and self.requires_grad:
            raise RuntimeError(f"kiln: {what} on a tensor that requires grad is not recorded on the tape; do it "
                               "inside kiln.no_grad() or on .detach()")

    def copy_(self, src):
        """Copies src (a tensor, array or number broadcastable to self) into self."""
        self._check_inplace("copy_")
        if not isinstance(src, Tensor):
            src = _operand(src, self)
        _lib.check(_lib.tensor_copy_(_h(self), _h(src, "src")), "copy_")
        return self

    def fill_(self, value):
        return self.copy_(value)

    def zero_(self):
        return self.copy_(0)

    def __setitem__(self, index, value):
        self._check_inplace("item assignment")
        view = self.__getitem__(index)
        view.copy_(value)

    def _inplace(self, fn, other):
        self._check_inplace("an in-place operator")
        return self.copy_(fn(self, other))

    def add_(self, other):
        return self._inplace(_ops.add, other)

    def sub_(self, other):
        return self._inplace(_ops.sub, other)

    def mul_(self, other):
        return self._inplace(_ops.mul, other)

    def div_(self, other):
        return self._inplace(_ops.div, other)

    __iadd__ = add_
    __isub__ = sub_
    __imul__ = mul_
    __itruediv__ = div_

    # ---- autograd ---------------------------------------------------------------
    @property
    def requires_grad(self):
        return bool(_requires_grad(_h(self)))

    @requires_grad.setter
    def requires_grad(self, on):
        _lib.check(_lib.tensor_set_requires_grad(_h(self), bool(on)), "requires_grad")

    def requires_grad_(self, on=True):
        self.requires_grad = on
        return self

    @property
    def is_leaf(self):
        return self._parents is None

    @property
    def grad(self):
        """The accumulated gradient (a tensor owned by self), or None."""
        g = _lib.tensor_grad(_h(self))
        if not g or self._grad_none_at == _backward_count:
            return None
        return _borrow(g, self)

    @grad.setter
    def grad(self, value):
        if value is not None:
            raise NotImplementedError("kiln: only `t.grad = None` is supported (it zeroes the gradient)")
        _lib.tensor_zero_grad(_h(self))
        self._grad_none_at = _backward_count

    def zero_grad(self):
        _lib.tensor_zero_grad(_h(self))

    def backward(self, gradient=None, retain_graph=False):
        """Back-propagates from self (a scalar, or pass gradient of self's shape);
        gradients accumulate into the leaves' .grad. As in torch, a graph walked
        without retain_graph=True cannot be walked again (StateError)."""
        global _backward_count
        h = _h(self)
        g = None
        if gradient is not None:
            if not isinstance(gradient, Tensor):
                gradient = tensor(gradient, dtype=self.dtype, device=self.device)
            g = _h(gradient, "gradient")
        s = _begin()  # backward's temporaries; the leaves own their gradients
        if not s:
            _lib.raise_last("backward")
        st = _lib.backward_ex(h, g, bool(retain_graph))
        _end(s)
        _backward_count += 1
        _lib.check(st, "backward")

    # ---- printing -----------------------------------------------------------------
    def __repr__(self):
        if self.is_released:
            return "tensor(<released>)"
        import numpy as np

        arr = self.numpy()
        body = np.array2string(arr, separator=", ", prefix="tensor(", threshold=200, edgeitems=3)
        extra = [f"dtype={self.dtype!r}"]
        dev = self.device
        if dev.type != "cpu":
            extra.append(f"device='{dev}'")
        if self.requires_grad:
            extra.append("requires_grad=True")
        return f"tensor({body}, {', '.join(extra)})"

    __str__ = __repr__

    # ---- DLPack -------------------------------------------------------------------
    def __dlpack__(self, *, stream=None, max_version=None, dl_device=None, copy=None):
        return _dlpack.export(self, stream=stream, max_version=max_version, dl_device=dl_device, copy=copy)

    def __dlpack_device__(self):
        return _dlpack.device_of(self)

    # ---- indexing -------------------------------------------------------------------
    def __getitem__(self, index):
        return _ops.getitem(self, index)

    # ---- operators (ops.py holds the functions) -------------------------------------
    def _binop(fn, reflected=False):
        def op(self, other):
            if not (isinstance(other, Tensor) or _is_number(other)):
                return NotImplemented
            return fn(other, self) if reflected else fn(self, other)

        return op

    __add__ = _binop(lambda a, b: _ops.add(a, b))
    __radd__ = _binop(lambda a, b: _ops.add(a, b), True)
    __sub__ = _binop(lambda a, b: _ops.sub(a, b))
    __rsub__ = _binop(lambda a, b: _ops.sub(a, b), True)
    __mul__ = _binop(lambda a, b: _ops.mul(a, b))
    __rmul__ = _binop(lambda a, b: _ops.mul(a, b), True)
    __truediv__ = _binop(lambda a, b: _ops.div(a, b))
    __rtruediv__ = _binop(lambda a, b: _ops.div(a, b), True)
    del _binop

    def __matmul__(self, other):
        return _ops.matmul(self, other) if isinstance(other, Tensor) else NotImplemented

    def __rmatmul__(self, other):
        return _ops.matmul(other, self) if isinstance(other, Tensor) else NotImplemented

    def __pow__(self, exponent):
        if not _is_number(exponent):
            return NotImplemented
        return _ops.pow(self, exponent)

    def __rpow__(self, base):
        if not _is_number(base):
            return NotImplemented
        return _ops.pow_base(base, self)

    def __neg__(self):
        return _ops.neg(self)

    def __pos__(self):
        return self

    def __abs__(self):
        return _ops.abs(self)

    @property
    def T(self):
        return _ops.permute(self, *reversed(range(self.ndim)))


_DTYPE_NAMES = {"float32", "float64", "float16", "bfloat16", "int32", "int64", "uint8", "float", "double", "half",
                "long", "int"}


def _operand(x, ref):
    """A tensor for x next to ref: numbers become 0-d tensors of ref's dtype and device."""
    if isinstance(x, Tensor):
        return x
    href = _h(ref)
    if _is_number(x):
        return _call(_lib.tensor_scalar, (float(x), _lib.tensor_dtype(href), _lib.tensor_device(href)))
    if x is None:
        raise TypeError("kiln: an operand is None (an earlier step returned nothing?)")
    return tensor(x, dtype=ref.dtype, device=ref.device)


# ---- scopes and grad modes ------------------------------------------------------------
class scope:
    """Releases the tensors created inside it on exit, as a C scope does:

        for batch in data:
            with kiln.scope() as s:
                loss = step(batch)
                loss.backward()
                last = s.keep(loss)   # survives the scope, detached from the tape
    """

    def __init__(self):
        self._tensors = {}
        self._open = False

    def __enter__(self):
        if self._open:
            raise RuntimeError("kiln: this kiln.scope() is already open")
        self._open = True
        _scopes().append(self)
        return self

    def __exit__(self, *exc):
        stack = _scopes()
        if self in stack:  # inner scopes left open by a generator or a bug close with it
            while stack:
                inner = stack.pop()
                inner._release_all()
                if inner is self:
                    break
        self._open = False
        return False

    def _track(self, t):
        self._tensors[id(t)] = weakref.ref(t)

    def _release_all(self):
        refs, self._tensors = self._tensors, {}
        self._open = False
        for r in refs.values():
            t = r()
            if t is not None:
                t._release()

    def keep(self, *tensors):
        """Moves tensors out of this scope (to the enclosing one, if any), cut from
        the tape; returns the tensor, or a tuple for several."""
        stack = _scopes()
        outer = None
        if self in stack:
            i = stack.index(self)
            outer = stack[i - 1] if i > 0 else None
        for t in tensors:
            h = _h(t, "keep's argument")
            if self._tensors.pop(id(t), None) is None:
                continue
            _lib.scope_keep(h)
            t._parents = None
            if outer is not None:
                outer._track(t)
        return tensors[0] if len(tensors) == 1 else tensors


class no_grad:
    """Context manager (and decorator) in which ops record nothing on the tape."""

    def __enter__(self):
        _lib.no_grad_begin()
        return self

    def __exit__(self, *exc):
        _lib.no_grad_end()
        return False

    def __call__(self, fn):
        import functools

        @functools.wraps(fn)
        def wrapper(*a, **k):
            with no_grad():
                return fn(*a, **k)

        return wrapper


def is_grad_enabled():
    return bool(_lib.grad_enabled())


def set_anomaly_enabled(on):
    """Anomaly mode: every op checks its output for NaN/Inf and raises naming itself."""
    _lib.set_anomaly_mode(bool(on))


def is_anomaly_enabled():
    return bool(_lib.anomaly_mode())


# ---- factories ----------------------------------------------------------------------------
def _finish(t, requires_grad):
    if requires_grad:
        t.requires_grad = True
    return t


def _dt(dtype, default=float32):
    return default if dtype is None else as_dtype(dtype)


def empty(*shape, dtype=None, device=None, requires_grad=False):
    s = _shape_tuple(shape)
    t = _call(_lib.tensor_empty, (len(s), _i64(s), _dt(dtype).code, as_device(device)._c))
    return _finish(t, requires_grad)


def zeros(*shape, dtype=None, device=None, requires_grad=False):
    return full(_shape_tuple(shape), 0.0, dtype=dtype, device=device, requires_grad=requires_grad)


def ones(*shape, dtype=None, device=None, requires_grad=False):
    return full(_shape_tuple(shape), 1.0, dtype=dtype, device=device, requires_grad=requires_grad)


def full(shape, fill_value, dtype=None, device=None, requires_grad=False):
    s = _shape_tuple((shape,) if isinstance(shape, numbers.Integral) else tuple(shape))
    t = _call(_lib.tensor_full, (len(s), _i64(s), float(fill_value), _dt(dtype).code, as_device(device)._c))
    return _finish(t, requires_grad)


def rand(*shape, low=0.0, high=1.0, dtype=None, device=None, requires_grad=False):
    """Uniform values in [low, high) from the global Philox generator (kiln.manual_seed)."""
    s = _shape_tuple(shape)
    t = _call(_lib.tensor_rand, (len(s), _i64(s), float(low), float(high), _dt(dtype).code, as_device(device)._c))
    return _finish(t, requires_grad)


def randn(*shape, mean=0.0, std=1.0, dtype=None, device=None, requires_grad=False):
    s = _shape_tuple(shape)
    t = _call(_lib.tensor_randn, (len(s), _i64(s), float(mean), float(std), _dt(dtype).code, as_device(device)._c))
    return _finish(t, requires_grad)


def arange(start, end=None, step=1, dtype=None, device=None, requires_grad=False):
    """As torch.arange: int64 when start, end and step are ints, else float32."""
    if end is None:
        start, end = 0, start
    if dtype is None:
        ints = all(isinstance(v, numbers.Integral) for v in (start, end, step))
        dtype = int64 if ints else float32
    t = _call(_lib.tensor_arange, (float(start), float(end), float(step), as_dtype(dtype).code,
                                   as_device(device)._c))
    return _finish(t, requires_grad)


def _like(fn, t, *args, dtype=None, device=None, requires_grad=False, **kw):
    return fn(*args, dtype=dtype or t.dtype, device=device or t.device, requires_grad=requires_grad, **kw)


def zeros_like(t, **kw):
    return _like(zeros, t, t.shape, **kw)


def ones_like(t, **kw):
    return _like(ones, t, t.shape, **kw)


def empty_like(t, **kw):
    return _like(empty, t, t.shape, **kw)


def full_like(t, fill_value, **kw):
    return _like(full, t, t.shape, fill_value, **kw)


def rand_like(t, **kw):
    return _like(rand, t, t.shape, **kw)


def randn_like(t, **kw):
    return _like(randn, t, t.shape, **kw)


def tensor(data, dtype=None, device=None, requires_grad=False):
    """A new tensor holding a copy of data (a NumPy array, nested lists, a number or
    a tensor). Python floats become float32 and ints int64, as in torch.tensor; with a
    dtype given they convert straight to it (float64 keeps every digit, as torch)."""
    import numpy as np

    if isinstance(data, Tensor):
        t = data.detach().to(device=device, dtype=dtype)
        t = t.clone() if t._h is not None and _lib.tensor_data(t._h) == _lib.tensor_data(_h(data)) else t
        return _finish(t, requires_grad)
    if isinstance(data, np.ndarray) or isinstance(data, np.generic):
        arr = np.asarray(data)
    else:
        arr = np.asarray(data)
        if arr.dtype == np.float64 and dtype is None:
            arr = arr.astype(np.float32)
        elif arr.dtype.kind in "iu" and arr.dtype != np.uint8:
            arr = arr.astype(np.int64)
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8)
    target = as_dtype(dtype) if dtype is not None else None
    if target is None:
        try:
            target = as_dtype(arr.dtype)
        except TypeError:
            raise TypeError(f"kiln: NumPy dtype {arr.dtype} has no kiln counterpart; kiln has float32, float64, "
                            "float16, bfloat16, int32, int64 and uint8") from None
    host_dt = target if target.numpy_name else float32  # bfloat16 goes through float32
    if arr.dtype.kind in "OUSVcmM":
        raise TypeError(f"kiln: cannot make a tensor from {arr.dtype} data")
    arr = arr.astype(host_dt.numpy_name, copy=False)
    if not arr.flags.c_contiguous:
        arr = arr.copy(order="C")
    s = _shape_tuple(arr.shape)
    t = _call(_lib.tensor_from_host, (arr.ctypes.data_as(ctypes.c_void_p), len(s), _i64(s), host_dt.code,
                                      as_device(device)._c))
    if host_dt is not target:
        t = t.to(dtype=target)
    return _finish(t, requires_grad)


def from_numpy(array):
    """A tensor sharing array's memory (zero-copy, as torch.from_numpy)."""
    return _dlpack.from_dlpack(array)


def manual_seed(seed):
    _lib.manual_seed(int(seed) & 0xFFFFFFFFFFFFFFFF)


def get_rng_state():
    """(seed, offset): the generator's position, for checkpoints."""
    s, o = ctypes.c_uint64(), ctypes.c_uint64()
    _lib.rng_get_state(ctypes.byref(s), ctypes.byref(o))
    return (s.value, o.value)


def set_rng_state(state):
    seed, offset = state
    _lib.rng_set_state(int(seed), int(offset))


from . import ops as _ops  # noqa: E402  (ops builds on Tensor)
from . import _dlpack  # noqa: E402
