"""The Tensor class, its factories, kiln.scope and the grad-mode contexts.

A Tensor is the runtime's TensorHandle (kiln/_runtime.py: the handle, the scope it
owns, lifetimes) with the user-facing API: geometry, conversion, autograd, printing,
DLPack, indexing and operators, whose functions live in kiln/ops.py and
kiln/_dlpack.py (imported here; neither imports this module).

kiln.scope() mirrors the C scopes: the tensors created while it is innermost are
released when it exits, even if Python still refers to them (using one afterwards
raises RuntimeError); scope.keep(t) moves t out, cut from the tape as C does.
"""
import ctypes
import numbers
import weakref

from . import _dlpack, _lib, ops
from ._convert import from_host, int64_array, is_number, operand, shape_tuple
from ._runtime import TensorHandle, borrow, call, handle, scope_stack, set_tensor_class
from ._types import as_device, as_dtype, device, float32, from_code, int64

_backward_count = 0


class Tensor(TensorHandle):
    """A kiln tensor: an n-d array on a device, with autograd.

    Create one with kiln.tensor, the factories (zeros, ones, full, rand, randn,
    arange) or kiln.from_dlpack (zero-copy); convert back with .numpy() (a copy)
    or any DLPack consumer (numpy.from_dlpack, torch.from_dlpack: zero-copy).
    """

    __slots__ = ()
    __array_ufunc__ = None  # numpy defers to our reflected operators

    def __init__(self, *args, **kwargs):
        raise TypeError("kiln.Tensor is not constructed directly: use kiln.tensor(data), kiln.zeros(...), "
                        "kiln.from_numpy(array) or kiln.from_dlpack(obj)")

    # ---- geometry --------------------------------------------------------------
    @property
    def shape(self):
        h = handle(self)
        n = _lib.tensor_ndim(h)
        sp = _lib.tensor_shape(h)
        return tuple(sp[i] for i in range(n))

    def size(self, dim=None):
        return self.shape if dim is None else self.shape[dim]

    @property
    def ndim(self):
        return _lib.tensor_ndim(handle(self))

    def dim(self):
        return self.ndim

    @property
    def strides(self):
        """Strides in elements (as torch.Tensor.stride(), not NumPy's bytes)."""
        h = handle(self)
        return tuple(_lib.tensor_stride(h, i) for i in range(_lib.tensor_ndim(h)))

    def stride(self, dim=None):
        return self.strides if dim is None else self.strides[dim]

    def numel(self):
        return _lib.tensor_numel(handle(self))

    @property
    def dtype(self):
        return from_code(_lib.tensor_dtype(handle(self)))

    @property
    def device(self):
        return device._from_c(_lib.tensor_device(handle(self)))

    @property
    def is_cuda(self):
        return self.device.type == "cuda"

    def is_contiguous(self):
        return bool(_lib.tensor_is_contiguous(handle(self)))

    def data_ptr(self):
        return _lib.tensor_data(handle(self)) or 0

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
        h = handle(src)
        out = np.empty(src.shape, dtype=src.dtype.numpy_name)
        _lib.check(_lib.tensor_to_host(h, out.ctypes.data_as(ctypes.c_void_p), out.nbytes))
        return out

    def __array__(self, dtype=None, copy=None):
        a = self.numpy()
        return a if dtype is None else a.astype(dtype, copy=False)

    def tolist(self):
        return self.numpy().tolist()

    def item(self):
        h = handle(self)
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
            if dt.code != _lib.tensor_dtype(handle(t)):
                t = call(_lib.tensor_cast, (handle(t), dt.code), (t,))
        if device is not None:
            dev = as_device(device)
            if dev != t.device:
                t = call(_lib.tensor_to, (handle(t), dev._c), (t,))
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
        return call(_lib.tensor_contiguous, (handle(self),), (self,))

    def clone(self):
        """A copy that shares nothing (not recorded on the tape)."""
        return call(_lib.tensor_clone, (handle(self),), (self,))

    def detach(self):
        """A view of the same memory cut from the tape."""
        return call(_lib.tensor_detach, (handle(self),), (self,))

    # ---- in place (not recorded: refused on tensors that take part in autograd) ----
    def _check_inplace(self, what):
        if _lib.grad_enabled() and self.requires_grad:
            raise RuntimeError(f"kiln: {what} on a tensor that requires grad is not recorded on the tape; do it "
                               "inside kiln.no_grad() or on .detach()")

    def copy_(self, src):
        """Copies src (a tensor, array or number broadcastable to self) into self."""
        self._check_inplace("copy_")
        if not isinstance(src, Tensor):
            src = operand(src, self)
        _lib.check(_lib.tensor_copy_(handle(self), handle(src, "src")), "copy_")
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
        return self._inplace(ops.add, other)

    def sub_(self, other):
        return self._inplace(ops.sub, other)

    def mul_(self, other):
        return self._inplace(ops.mul, other)

    def div_(self, other):
        return self._inplace(ops.div, other)

    __iadd__ = add_
    __isub__ = sub_
    __imul__ = mul_
    __itruediv__ = div_

    # ---- autograd ---------------------------------------------------------------
    @property
    def requires_grad(self):
        return bool(_lib.tensor_requires_grad(handle(self)))

    @requires_grad.setter
    def requires_grad(self, on):
        _lib.check(_lib.tensor_set_requires_grad(handle(self), bool(on)), "requires_grad")

    def requires_grad_(self, on=True):
        self.requires_grad = on
        return self

    @property
    def is_leaf(self):
        return self._parents is None

    @property
    def grad(self):
        """The accumulated gradient (a tensor owned by self), or None."""
        g = _lib.tensor_grad(handle(self))
        if not g or self._grad_none_at == _backward_count:
            return None
        return borrow(g, self)

    @grad.setter
    def grad(self, value):
        if value is not None:
            raise NotImplementedError("kiln: only `t.grad = None` is supported (it zeroes the gradient)")
        _lib.tensor_zero_grad(handle(self))
        self._grad_none_at = _backward_count

    def zero_grad(self):
        _lib.tensor_zero_grad(handle(self))

    def backward(self, gradient=None, retain_graph=False):
        """Back-propagates from self (a scalar, or pass gradient of self's shape);
        gradients accumulate into the leaves' .grad. As in torch, a graph walked
        without retain_graph=True cannot be walked again (StateError)."""
        global _backward_count
        h = handle(self)
        g = None
        if gradient is not None:
            if not isinstance(gradient, Tensor):
                gradient = tensor(gradient, dtype=self.dtype, device=self.device)
            g = handle(gradient, "gradient")
        s = _lib.scope_begin()  # backward's temporaries; the leaves own their gradients
        if not s:
            _lib.raise_last("backward")
        st = _lib.backward_ex(h, g, bool(retain_graph))
        _lib.scope_end(s)
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
        return ops.getitem(self, index)

    # ---- operators (ops.py holds the functions) -------------------------------------
    def _binop(fn, reflected=False):
        def op(self, other):
            if not (isinstance(other, Tensor) or is_number(other)):
                return NotImplemented
            return fn(other, self) if reflected else fn(self, other)

        return op

    __add__ = _binop(lambda a, b: ops.add(a, b))
    __radd__ = _binop(lambda a, b: ops.add(a, b), True)
    __sub__ = _binop(lambda a, b: ops.sub(a, b))
    __rsub__ = _binop(lambda a, b: ops.sub(a, b), True)
    __mul__ = _binop(lambda a, b: ops.mul(a, b))
    __rmul__ = _binop(lambda a, b: ops.mul(a, b), True)
    __truediv__ = _binop(lambda a, b: ops.div(a, b))
    __rtruediv__ = _binop(lambda a, b: ops.div(a, b), True)
    del _binop

    def __matmul__(self, other):
        return ops.matmul(self, other) if isinstance(other, Tensor) else NotImplemented

    def __rmatmul__(self, other):
        return ops.matmul(other, self) if isinstance(other, Tensor) else NotImplemented

    def __pow__(self, exponent):
        if not is_number(exponent):
            return NotImplemented
        return ops.pow(self, exponent)

    def __rpow__(self, base):
        if not is_number(base):
            return NotImplemented
        return ops.pow_base(base, self)

    def __neg__(self):
        return ops.neg(self)

    def __pos__(self):
        return self

    def __abs__(self):
        return ops.abs(self)

    @property
    def T(self):
        return ops.permute(self, *reversed(range(self.ndim)))

    # ---- op methods: the functions of kiln/ops.py as t.sum(axis=1), t.relu(), ... ------
    # (last in the class body: these names shadow builtins here)
    add, sub, mul, div, matmul = ops.add, ops.sub, ops.mul, ops.div, ops.matmul
    maximum, minimum, pow, clamp, clip = ops.maximum, ops.minimum, ops.pow, ops.clamp, ops.clip
    exp, log, sqrt, abs, neg = ops.exp, ops.log, ops.sqrt, ops.abs, ops.neg
    relu, sigmoid, tanh, leaky_relu = ops.relu, ops.sigmoid, ops.tanh, ops.leaky_relu
    softmax, log_softmax = ops.softmax, ops.log_softmax
    sum, mean, max, min, argmax, argmin = ops.sum, ops.mean, ops.max, ops.min, ops.argmax, ops.argmin
    reshape, view, permute, transpose, swapaxes = ops.reshape, ops.view, ops.permute, ops.transpose, ops.swapaxes
    expand, squeeze, unsqueeze, flatten = ops.expand, ops.squeeze, ops.unsqueeze, ops.flatten


_DTYPE_NAMES = {"float32", "float64", "float16", "bfloat16", "int32", "int64", "uint8", "float", "double", "half",
                "long", "int"}

set_tensor_class(Tensor)  # the runtime's results are Tensors


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
        scope_stack().append(self)
        return self

    def __exit__(self, *exc):
        stack = scope_stack()
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
        stack = scope_stack()
        outer = None
        if self in stack:
            i = stack.index(self)
            outer = stack[i - 1] if i > 0 else None
        for t in tensors:
            h = handle(t, "keep's argument")
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
    s = shape_tuple(shape)
    t = call(_lib.tensor_empty, (len(s), int64_array(s), _dt(dtype).code, as_device(device)._c))
    return _finish(t, requires_grad)


def zeros(*shape, dtype=None, device=None, requires_grad=False):
    return full(shape_tuple(shape), 0.0, dtype=dtype, device=device, requires_grad=requires_grad)


def ones(*shape, dtype=None, device=None, requires_grad=False):
    return full(shape_tuple(shape), 1.0, dtype=dtype, device=device, requires_grad=requires_grad)


def full(shape, fill_value, dtype=None, device=None, requires_grad=False):
    s = shape_tuple((shape,) if isinstance(shape, numbers.Integral) else tuple(shape))
    t = call(_lib.tensor_full, (len(s), int64_array(s), float(fill_value), _dt(dtype).code, as_device(device)._c))
    return _finish(t, requires_grad)


def rand(*shape, low=0.0, high=1.0, dtype=None, device=None, requires_grad=False):
    """Uniform values in [low, high) from the global Philox generator (kiln.manual_seed)."""
    s = shape_tuple(shape)
    t = call(_lib.tensor_rand, (len(s), int64_array(s), float(low), float(high), _dt(dtype).code, as_device(device)._c))
    return _finish(t, requires_grad)


def randn(*shape, mean=0.0, std=1.0, dtype=None, device=None, requires_grad=False):
    s = shape_tuple(shape)
    t = call(_lib.tensor_randn, (len(s), int64_array(s), float(mean), float(std), _dt(dtype).code,
                                 as_device(device)._c))
    return _finish(t, requires_grad)


def arange(start, end=None, step=1, dtype=None, device=None, requires_grad=False):
    """As torch.arange: int64 when start, end and step are ints, else float32."""
    if end is None:
        start, end = 0, start
    if dtype is None:
        ints = all(isinstance(v, numbers.Integral) for v in (start, end, step))
        dtype = int64 if ints else float32
    t = call(_lib.tensor_arange, (float(start), float(end), float(step), as_dtype(dtype).code,
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
    if isinstance(data, Tensor):
        t = data.detach().to(device=device, dtype=dtype)
        t = t.clone() if t._h is not None and _lib.tensor_data(t._h) == _lib.tensor_data(handle(data)) else t
        return _finish(t, requires_grad)
    return _finish(from_host(data, dtype, device), requires_grad)


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
