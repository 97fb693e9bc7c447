"""The core C API (include/kiln/core.h and ops.h) under short names: the prototypes
of the tensor, scope, autograd and op functions, and the two by-value structs those
headers define (kiln_device, kiln_pool_stats). Everything else is an opaque handle
(c_void_p). Loading, declare, errors and the struct checks are kiln/_runtime.py's,
re-exported here; area modules (layers, losses, optim, ...) declare their own
prototypes with declare.
"""
from ctypes import POINTER, Structure, c_bool, c_char_p, c_double, c_int, c_int64, c_size_t, c_uint64, c_void_p

from ._runtime import (check, clear_error, declare, declared, last_error, last_status, lib, mirrors,  # noqa: F401
                       path, raise_last, scope_begin, scope_detach, scope_end, scope_free, scope_keep,
                       status_name, tensor_requires_grad)


@mirrors("kiln_device", "include/kiln/core.h")
class CDevice(Structure):
    """kiln_device, passed by value."""

    _fields_ = [("type", c_int), ("index", c_int)]


@mirrors("kiln_pool_stats", "include/kiln/core.h")
class CPoolStats(Structure):
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


T = c_void_p  # kiln_tensor *
P64 = POINTER(c_int64)

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

# ---- autograd ------------------------------------------------------------------
tensor_set_requires_grad = declare("kiln_tensor_set_requires_grad", c_int, T, c_bool)
tensor_grad = declare("kiln_tensor_grad", T, T)
tensor_zero_grad = declare("kiln_tensor_zero_grad", None, T)
backward = declare("kiln_backward", c_int, T, T)
backward_ex = declare("kiln_backward_ex", c_int, T, T, c_bool)
no_grad_begin = declare("kiln_no_grad_begin", None)
no_grad_end = declare("kiln_no_grad_end", None)
grad_enabled = declare("kiln_grad_enabled", c_bool)
set_anomaly_mode = declare("kiln_set_anomaly_mode", None, c_bool)
anomaly_mode = declare("kiln_anomaly_mode", c_bool)

MAX_DIMS = 8  # KILN_MAX_DIMS (include/kiln/core.h)
