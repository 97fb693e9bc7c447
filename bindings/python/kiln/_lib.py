"""Loads libkiln.so and declares the C prototypes the package calls.

Only the public API is used, through opaque handles (c_void_p); no kiln struct is
mirrored here except the two small by-value ones the public headers define
(kiln_device, kiln_pool_stats). Area modules (layers, losses, optim, ...) declare
their own prototypes with `declare` when they are added.

The library is loaded with ctypes.PyDLL: calls keep the GIL. kiln's scopes, error
state and RNG are per thread or unsynchronised, and storage reference counts are
plain ints, so serialising calls is what keeps threaded Python programs safe.
"""
import ctypes
import os
from ctypes import POINTER, c_bool, c_char_p, c_double, c_int, c_int64, c_size_t, c_uint64, c_void_p
from pathlib import Path

from ._errors import exception_for


class CDevice(ctypes.Structure):
    """kiln_device, passed by value."""

    _fields_ = [("type", c_int), ("index", c_int)]


class CPoolStats(ctypes.Structure):
    """kiln_pool_stats, returned by value."""

    _fields_ = [
        ("in_use", c_size_t),
        ("peak_in_use", c_size_t),
        ("reserved", c_size_t),
        ("cached", c_size_t),
        ("n_allocs", c_uint64),
        ("n_backing_allocs", c_uint64),
        ("n_backing_frees", c_uint64),
        ("n_oom_retries", c_uint64),
        ("limit", c_size_t),
    ]


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


T = c_void_p  # kiln_tensor *
P64 = POINTER(c_int64)

# ---- errors ------------------------------------------------------------------
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


# ---- dtypes and devices ------------------------------------------------------
dtype_size = declare("kiln_dtype_size", c_size_t, c_int)
device_parse = declare("kiln_device_parse", c_int, c_char_p, POINTER(CDevice))
device_available = declare("kiln_device_available", c_bool, CDevice)
cuda_device_count = declare("kiln_cuda_device_count", c_int)
default_device = declare("kiln_default_device", CDevice)
synchronize = declare("kiln_synchronize", c_int, CDevice)

# ---- memory pools ------------------------------------------------------------
memory_stats = declare("kiln_memory_stats", CPoolStats, CDevice)
memory_release_cache = declare("kiln_memory_release_cache", None, CDevice)
memory_set_limit = declare("kiln_memory_set_limit", None, CDevice, c_size_t)
memory_reset_peak = declare("kiln_memory_reset_peak", None, CDevice)

# ---- tensors -----------------------------------------------------------------
tensor_empty = declare("kiln_tensor_empty", T, c_int, P64, c_int, CDevice)
tensor_zeros = declare("kiln_tensor_zeros", T, c_int, P64, c_int, CDevice)
tensor_full = declare("kiln_tensor_full", T, c_int, P64, c_double, c_int, CDevice)
tensor_scalar = declare("kiln_tensor_scalar", T, c_double, c_int, CDevice)
tensor_from_host = declare("kiln_tensor_from_host", T, c_void_p, c_int, P64, c_int, CDevice)
tensor_to_host = declare("kiln_tensor_to_host", c_int, T, c_void_p, c_size_t)
tensor_arange = declare("kiln_tensor_arange", T, c_double, c_double, c_double, c_int, CDevice)
tensor_fill = declare("kiln_tensor_fill", c_int, T, c_double)
tensor_rand = declare("kiln_tensor_rand", T, c_int, P64, c_double, c_double, c_int, CDevice)
tensor_randn = declare("kiln_tensor_randn", T, c_int, P64, c_double, c_double, c_int, CDevice)
manual_seed = declare("kiln_manual_seed", None, c_uint64)
rng_get_state = declare("kiln_rng_get_state", None, POINTER(c_uint64), POINTER(c_uint64))
rng_set_state = declare("kiln_rng_set_state", None, c_uint64, c_uint64)
tensor_to = declare("kiln_tensor_to", T, T, CDevice)
tensor_contiguous = declare("kiln_tensor_contiguous", T, T)
tensor_clone = declare("kiln_tensor_clone", T, T)
tensor_detach = declare("kiln_tensor_detach", T, T)
tensor_cast = declare("kiln_tensor_cast", T, T, c_int)
tensor_copy_ = declare("kiln_tensor_copy_", c_int, T, T)
tensor_ndim = declare("kiln_tensor_ndim", c_int, T)
tensor_shape = declare("kiln_tensor_shape", P64, T)
tensor_stride = declare("kiln_tensor_stride", c_int64, T, c_int)
tensor_numel = declare("kiln_tensor_numel", c_int64, T)
tensor_dtype = declare("kiln_tensor_dtype", c_int, T)
tensor_device = declare("kiln_tensor_device", CDevice, T)
tensor_is_contiguous = declare("kiln_tensor_is_contiguous", c_bool, T)
tensor_data = declare("kiln_tensor_data", c_void_p, T)
tensor_item = declare("kiln_tensor_item", c_double, T)
tensor_from_external = declare(
    "kiln_tensor_from_external", T, c_void_p, c_int, P64, P64, c_int, CDevice, c_void_p, c_void_p
)

# ---- scopes --------------------------------------------------------------------
scope_begin = declare("kiln_scope_begin", c_void_p)
scope_end = declare("kiln_scope_end", None, c_void_p)
scope_keep = declare("kiln_scope_keep", T, T)
scope_detach = declare("kiln_scope_detach", c_int, c_void_p)
scope_free = declare("kiln_scope_free", None, c_void_p)

# ---- autograd ------------------------------------------------------------------
tensor_set_requires_grad = declare("kiln_tensor_set_requires_grad", c_int, T, c_bool)
tensor_requires_grad = declare("kiln_tensor_requires_grad", c_bool, T)
tensor_grad = declare("kiln_tensor_grad", T, T)
tensor_zero_grad = declare("kiln_tensor_zero_grad", None, T)
backward = declare("kiln_backward", c_int, T, T)
backward_ex = declare("kiln_backward_ex", c_int, T, T, c_bool)
no_grad_begin = declare("kiln_no_grad_begin", None)
no_grad_end = declare("kiln_no_grad_end", None)
grad_enabled = declare("kiln_grad_enabled", c_bool)
set_anomaly_mode = declare("kiln_set_anomaly_mode", None, c_bool)
anomaly_mode = declare("kiln_anomaly_mode", c_bool)

# ---- ops (include/kiln/ops.h) ---------------------------------------------------
PINT = POINTER(c_int)
binary = {n: declare("kiln_" + n, T, T, T) for n in ("add", "sub", "mul", "div", "maximum", "minimum", "matmul")}
unary = {n: declare("kiln_" + n, T, T) for n in ("neg", "exp", "log", "sqrt", "abs", "relu", "sigmoid", "tanh",
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
MAX_DIMS = 8
