"""Python values into kiln arguments: ints and shapes checked for the C types they
become, and host data (NumPy arrays, nested lists, numbers) copied into tensors with
kiln.tensor's rules (Python floats become float32 and ints int64, as torch.tensor).
Used by tensor.py, ops.py and the area modules; it knows Tensors only as the
runtime's TensorHandle."""
import ctypes
import numbers
import operator

from . import _lib
from ._runtime import TensorHandle, call, handle
from ._types import as_device, as_dtype, float32


def as_c_int(x, what):
    """x as a C int, or TypeError/ValueError naming what."""
    try:
        v = operator.index(x)
    except TypeError:
        raise TypeError(f"kiln: {what} must be an int, not {type(x).__name__}") from None
    if not -(2**31) <= v < 2**31:
        raise ValueError(f"kiln: {what} {v} is out of range")
    return v


def shape_tuple(shape, what="shape"):
    """A shape given as ints or as one sequence of ints, checked: a tuple of ints."""
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


def int64_array(shape):
    """A C int64_t array of the ints in shape."""
    return (ctypes.c_int64 * len(shape))(*shape)


def is_number(x):
    return isinstance(x, numbers.Real) and not isinstance(x, TensorHandle)


def from_host(data, dtype=None, device=None):
    """A new tensor holding a copy of data (a NumPy array, nested lists or a number);
    kiln.tensor's conversion without its Tensor case."""
    import numpy as np

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
    s = shape_tuple(arr.shape)
    t = call(_lib.tensor_from_host, (arr.ctypes.data_as(ctypes.c_void_p), len(s), int64_array(s), host_dt.code,
                                     as_device(device)._c))
    if host_dt is not target:
        t = t.to(dtype=target)
    return t


def operand(x, ref):
    """A tensor for x next to ref: numbers become 0-d tensors of ref's dtype and
    device, host data a copy with ref's dtype and device."""
    if isinstance(x, TensorHandle):
        return x
    href = handle(ref)
    if is_number(x):
        return call(_lib.tensor_scalar, (float(x), _lib.tensor_dtype(href), _lib.tensor_device(href)))
    if x is None:
        raise TypeError("kiln: an operand is None (an earlier step returned nothing?)")
    return from_host(x, dtype=ref.dtype, device=ref.device)
