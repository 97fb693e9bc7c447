"""The ops of include/kiln/ops.h with Pythonic names and keyword arguments.

Binary ops broadcast as NumPy/PyTorch do and take Python numbers on either side.
Axes are `axis=` (PyTorch's `dim=` is accepted as an alias) and reductions take
`keepdim=`. Most functions are also Tensor methods (t.sum(axis=1), t.relu(), ...):
kiln/tensor.py binds them in the class body. This module sees tensors only through
the runtime (kiln/_runtime.py) and never imports kiln.tensor.
"""
__all__ = [  # what `import kiln` re-exports; a new op adds its name here
    "abs", "add", "argmax", "argmin", "broadcast_to", "cat", "clamp", "clip", "clone", "concat",
    "contiguous", "detach", "div", "exp", "expand", "flatten", "hardswish", "leaky_relu", "log",
    "log_softmax", "matmul", "max", "maximum", "mean", "min", "minimum", "mul", "neg", "permute",
    "pow", "relu", "reshape", "sigmoid", "slice", "softmax", "sqrt", "squeeze", "stack", "sub",
    "sum", "swapaxes", "tanh", "transpose", "unsqueeze", "view", "where",
]

import builtins
import ctypes
import math
import numbers
import operator

from ctypes import POINTER, c_bool, c_double, c_int, c_int64, c_void_p

from . import _lib
from ._lib import P64, T
from ._convert import as_c_int, int64_array, is_number, operand, shape_tuple
from ._runtime import TensorHandle, call, declare, handle

# ---- the C prototypes (include/kiln/ops.h) -------------------------------------------
PINT = POINTER(c_int)


class _c:
    """kiln_<op> of include/kiln/ops.h, declared here, where they are called."""
    binary = {n: declare("kiln_" + n, T, T, T) for n in ("add", "sub", "mul", "div", "maximum", "minimum", "matmul")}
    unary = {n: declare("kiln_" + n, T, T) for n in ("neg", "exp", "log", "sqrt", "abs", "relu", "sigmoid", "tanh", "hardswish",
                                                     "sum_all", "mean_all")}
    add_scalar = declare("kiln_add_scalar", T, T, c_double)
    mul_scalar = declare("kiln_mul_scalar", T, T, c_double)
    pow_scalar = declare("kiln_pow_scalar", T, T, c_double)
    clamp = declare("kiln_clamp", T, T, c_double, c_double)
    leaky_relu = declare("kiln_leaky_relu", T, T, c_double)
    where = declare("kiln_where", T, T, T, T)
    sum = declare("kiln_sum", T, T, c_int, PINT, c_bool)
    mean = declare("kiln_mean", T, T, c_int, PINT, c_bool)
    max = declare("kiln_max", T, T, c_int, c_bool)
    argmax = declare("kiln_argmax", T, T, c_int, c_bool)
    softmax = declare("kiln_softmax", T, T, c_int)
    log_softmax = declare("kiln_log_softmax", T, T, c_int)
    reshape = declare("kiln_reshape", T, T, c_int, P64)
    permute = declare("kiln_permute", T, T, PINT)
    transpose = declare("kiln_transpose", T, T, c_int, c_int)
    slice = declare("kiln_slice", T, T, c_int, c_int64, c_int64, c_int64)
    expand = declare("kiln_expand", T, T, c_int, P64)
    squeeze = declare("kiln_squeeze", T, T, c_int)
    unsqueeze = declare("kiln_unsqueeze", T, T, c_int)
    flatten = declare("kiln_flatten", T, T, c_int, c_int)
    concat = declare("kiln_concat", T, c_int, POINTER(c_void_p), c_int)
    ALL_AXES = 0x7FFFFFFF

# ---- element-wise ------------------------------------------------------------------


def _pair(a, b, name):
    if not isinstance(a, TensorHandle) and not isinstance(b, TensorHandle):
        raise TypeError(f"kiln.{name}: at least one operand must be a kiln.Tensor")
    if not isinstance(a, TensorHandle):
        a = operand(a, b)
    if not isinstance(b, TensorHandle):
        b = operand(b, a)
    return a, b


def _binary(name, a, b):
    a, b = _pair(a, b, name)
    return call(_c.binary[name], (handle(a), handle(b)), (a, b))


def add(a, b):
    if is_number(b) and isinstance(a, TensorHandle):
        return call(_c.add_scalar, (handle(a), float(b)), (a,))
    if is_number(a) and isinstance(b, TensorHandle):
        return call(_c.add_scalar, (handle(b), float(a)), (b,))
    return _binary("add", a, b)


def sub(a, b):
    if is_number(b) and isinstance(a, TensorHandle):
        return call(_c.add_scalar, (handle(a), -float(b)), (a,))
    if is_number(a) and isinstance(b, TensorHandle):
        return add(neg(b), a)
    return _binary("sub", a, b)


def mul(a, b):
    if is_number(b) and isinstance(a, TensorHandle):
        return call(_c.mul_scalar, (handle(a), float(b)), (a,))
    if is_number(a) and isinstance(b, TensorHandle):
        return call(_c.mul_scalar, (handle(b), float(a)), (b,))
    return _binary("mul", a, b)


def div(a, b):
    return _binary("div", a, b)


def maximum(a, b):
    return _binary("maximum", a, b)


def minimum(a, b):
    return _binary("minimum", a, b)


def _unary(name, a):
    return call(_c.unary[name], (handle(a),), (a,))


def neg(a):
    return _unary("neg", a)


def exp(a):
    return _unary("exp", a)


def log(a):
    return _unary("log", a)


def sqrt(a):
    return _unary("sqrt", a)


def abs(a):
    return _unary("abs", a)


def relu(a):
    return _unary("relu", a)


def sigmoid(a):
    return _unary("sigmoid", a)


def tanh(a):
    return _unary("tanh", a)


def hardswish(a):
    """x * relu6(x + 3) / 6, as torch.nn.functional.hardswish."""
    return _unary("hardswish", a)


def pow(a, exponent):
    """a ** exponent for a number exponent."""
    if not is_number(exponent):
        raise TypeError("kiln.pow: the exponent must be a number (kiln has no tensor ** tensor op)")
    return call(_c.pow_scalar, (handle(a), float(exponent)), (a,))


def pow_base(base, a):
    """base ** a for a positive number base, as exp(a * log(base))."""
    if not base > 0:
        raise ValueError(f"kiln: {base} ** tensor needs a positive base")
    return exp(mul(a, math.log(base)))


def clamp(a, min=None, max=None):
    if min is None and max is None:
        raise ValueError("kiln.clamp: give min, max or both")
    lo = -math.inf if min is None else float(min)
    hi = math.inf if max is None else float(max)
    return call(_c.clamp, (handle(a), lo, hi), (a,))


clip = clamp


def leaky_relu(a, negative_slope=0.01):
    return call(_c.leaky_relu, (handle(a), float(negative_slope)), (a,))


def where(condition, a, b):
    """a where condition is nonzero, else b (a or b may be numbers)."""
    c = condition
    if not isinstance(c, TensorHandle):
        c = operand(c, a if isinstance(a, TensorHandle) else b)
    a, b = _pair(a, b, "where")
    if c.requires_grad:  # the condition is not differentiable; kiln_where would expect a gradient for it
        c = c.detach()
    return call(_c.where, (handle(c, "condition"), handle(a), handle(b)), (c, a, b))


# ---- reductions -----------------------------------------------------------------------


def _axis_arg(axis, dim, name):
    if dim is not None:
        if axis is not None:
            raise TypeError(f"kiln.{name}: give axis or dim, not both")
        axis = dim
    return axis


def _axes(axis, name):
    if axis is None:
        return ()
    if isinstance(axis, (tuple, list)):
        return tuple(as_c_int(x, f"{name} axis") for x in axis)
    return (as_c_int(axis, f"{name} axis"),)


def _reduce(fn, name, a, axis, keepdim, dim):
    axes = _axes(_axis_arg(axis, dim, name), name)
    arr = (ctypes.c_int * builtins.max(len(axes), 1))(*axes)
    return call(fn, (handle(a), len(axes), arr, bool(keepdim)), (a,))


def sum(a, axis=None, keepdim=False, *, dim=None):
    """Sum over axis (an int or a tuple; None: every axis)."""
    return _reduce(_c.sum, "sum", a, axis, keepdim, dim)


def mean(a, axis=None, keepdim=False, *, dim=None):
    return _reduce(_c.mean, "mean", a, axis, keepdim, dim)


def _over_all(fn, a, keepdim):
    flat = reshape(a, -1)
    r = call(fn, (handle(flat), 0, False), (flat,))
    return reshape(r, *([1] * a.ndim)) if keepdim else r


def max(a, axis=None, keepdim=False, *, dim=None):
    """The largest values along axis (None: of every element), as torch.amax; the
    gradient goes to the first maximal element. Indices: kiln.argmax."""
    axis = _axis_arg(axis, dim, "max")
    if axis is None:
        return _over_all(_c.max, a, keepdim)
    return call(_c.max, (handle(a), as_c_int(axis, "max axis"), bool(keepdim)), (a,))


def min(a, axis=None, keepdim=False, *, dim=None):
    """The smallest values along axis, as -max(-a)."""
    return neg(max(neg(a), axis, keepdim, dim=dim))


def argmax(a, axis=None, keepdim=False, *, dim=None):
    """int64 index of the first maximal element along axis (None: into the flattened tensor)."""
    axis = _axis_arg(axis, dim, "argmax")
    if axis is None:
        return _over_all(_c.argmax, a, keepdim)
    return call(_c.argmax, (handle(a), as_c_int(axis, "argmax axis"), bool(keepdim)), (a,))


def argmin(a, axis=None, keepdim=False, *, dim=None):
    return argmax(neg(a), axis, keepdim, dim=dim)


def softmax(a, axis=None, *, dim=None):
    """Softmax along axis (axis 1 of NCHW: the per-pixel softmax over channels)."""
    axis = _axis_arg(axis, dim, "softmax")
    if axis is None:
        raise TypeError("kiln.softmax: give the axis to normalise over (axis=...)")
    return call(_c.softmax, (handle(a), as_c_int(axis, "softmax axis")), (a,))


def log_softmax(a, axis=None, *, dim=None):
    axis = _axis_arg(axis, dim, "log_softmax")
    if axis is None:
        raise TypeError("kiln.log_softmax: give the axis to normalise over (axis=...)")
    return call(_c.log_softmax, (handle(a), as_c_int(axis, "log_softmax axis")), (a,))


# ---- matrix products ---------------------------------------------------------------------


def matmul(a, b):
    """(.., M, K) @ (.., K, N) with broadcast batch dims; 1-d operands as torch.matmul."""
    return _binary("matmul", a, b)


# ---- shape and views ------------------------------------------------------------------------


def reshape(a, *shape):
    """A view when the strides allow, else a copy; one size may be -1."""
    s = shape_tuple(shape)
    return call(_c.reshape, (handle(a), len(s), int64_array(s)), (a,))


view = reshape


def permute(a, *dims):
    if len(dims) == 1 and not isinstance(dims[0], numbers.Integral):
        dims = tuple(dims[0])
    h = handle(a)
    n = _lib.tensor_ndim(h)
    if len(dims) != n:  # the C side reads exactly ndim entries
        raise ValueError(f"kiln.permute: {len(dims)} dims {tuple(dims)} for a {n}-d tensor; give one per axis")
    perm = (ctypes.c_int * builtins.max(n, 1))(*(as_c_int(d, "permute dim") for d in dims))
    return call(_c.permute, (h, perm), (a,))


def transpose(a, dim0, dim1):
    return call(_c.transpose, (handle(a), as_c_int(dim0, "dim0"), as_c_int(dim1, "dim1")), (a,))


def swapaxes(a, axis0, axis1):
    return transpose(a, axis0, axis1)


def slice(a, axis, start, end, step=1):
    """Elements start, start+step, ... < end along axis (a view)."""
    return call(_c.slice, (handle(a), as_c_int(axis, "slice axis"), operator.index(start), operator.index(end),
                             operator.index(step)), (a,))


def expand(a, *shape):
    """Broadcasts size-1 axes to shape (a view with stride 0); -1 keeps a size."""
    s = shape_tuple(shape)
    return call(_c.expand, (handle(a), len(s), int64_array(s)), (a,))


def broadcast_to(a, shape):
    return expand(a, *shape)


def squeeze(a, axis=None, *, dim=None):
    """Removes axis (of size 1), or every size-1 axis when axis is None."""
    axis = _axis_arg(axis, dim, "squeeze")
    ax = _c.ALL_AXES if axis is None else as_c_int(axis, "squeeze axis")
    return call(_c.squeeze, (handle(a), ax), (a,))


def unsqueeze(a, axis=None, *, dim=None):
    axis = _axis_arg(axis, dim, "unsqueeze")
    if axis is None:
        raise TypeError("kiln.unsqueeze: give the axis to insert")
    return call(_c.unsqueeze, (handle(a), as_c_int(axis, "unsqueeze axis")), (a,))


def flatten(a, start_axis=0, end_axis=-1, *, start_dim=None, end_dim=None):
    s = start_axis if start_dim is None else start_dim
    e = end_axis if end_dim is None else end_dim
    return call(_c.flatten, (handle(a), as_c_int(s, "start_axis"), as_c_int(e, "end_axis")), (a,))


def concat(tensors, axis=0, *, dim=None):
    """Joins tensors along axis; every other size must match."""
    axis = _axis_arg(None if dim is not None else axis, dim, "concat")
    ts = tuple(tensors)
    if not ts:
        raise ValueError("kiln.concat: no tensors to join")
    arr = (ctypes.c_void_p * len(ts))(*(handle(t, "concat input") for t in ts))
    return call(_c.concat, (len(ts), arr, as_c_int(axis, "concat axis")), ts)


cat = concat


def stack(tensors, axis=0, *, dim=None):
    """Joins tensors along a new axis."""
    axis = _axis_arg(None if dim is not None else axis, dim, "stack")
    return concat([unsqueeze(t, axis) for t in tensors], axis)


def contiguous(a):
    return a.contiguous()


def clone(a):
    return a.clone()


def detach(a):
    return a.detach()


# ---- indexing ---------------------------------------------------------------------------------


def getitem(t, index):
    """Basic indexing: ints, slices with positive steps, None and Ellipsis; all views."""
    if not isinstance(index, tuple):
        index = (index,)
    ndim = t.ndim
    n_axes = builtins.sum(1 for i in index if i is not None and i is not Ellipsis)
    if builtins.sum(1 for i in index if i is Ellipsis) > 1:
        raise IndexError("kiln: an index can only have a single ellipsis ('...')")
    if n_axes > ndim:
        raise IndexError(f"kiln: too many indices for a {ndim}-d tensor: {n_axes} were given")
    out, axis = t, 0
    for item in index:
        if item is Ellipsis:
            axis += ndim - n_axes
        elif item is None:
            out = unsqueeze(out, axis)
            axis += 1
        elif isinstance(item, builtins.slice):
            size = out.shape[axis]
            start, stop, step = item.indices(size)
            if step <= 0:
                raise ValueError("kiln: slices take positive steps (no negative strides in kiln views)")
            stop = builtins.max(stop, start)
            if (start, stop, step) != (0, size, 1):
                out = slice(out, axis, start, stop, step)
            axis += 1
        elif isinstance(item, numbers.Integral) and not isinstance(item, bool):
            size = out.shape[axis]
            i = operator.index(item)
            if not -size <= i < size:
                raise IndexError(f"kiln: index {i} is out of range for axis {axis} of size {size}")
            i %= size
            out = squeeze(slice(out, axis, i, i + 1, 1), axis)
        else:
            raise TypeError(f"kiln: indices are ints, slices, None and ...; {type(item).__name__} indexing "
                            "(advanced indexing) is not supported")
    return out
