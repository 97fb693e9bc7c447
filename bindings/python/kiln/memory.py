"""The device pools' statistics and knobs (kiln_memory_* in include/kiln/core.h)."""
from . import _lib
from ._types import as_device


def memory_stats(device="cpu"):
    """The pool of device as a dict: in_use, peak_in_use, reserved, cached (bytes),
    n_allocs, n_backing_allocs, n_backing_frees, n_oom_retries, limit (0: none)."""
    s = _lib.memory_stats(as_device(device)._c)
    _lib.clear_error()  # a CUDA device this build lacks reports zeros
    return {name: getattr(s, name) for name, _ in _lib.CPoolStats._fields_}


def empty_cache(device="cpu"):
    """Returns every cached, wholly free segment to the backing allocator."""
    _lib.memory_release_cache(as_device(device)._c)


def set_memory_limit(device, nbytes):
    """Caps the bytes the device pool may reserve (0 or None removes the cap)."""
    _lib.memory_set_limit(as_device(device)._c, int(nbytes or 0))


def reset_peak_memory_stats(device="cpu"):
    _lib.memory_reset_peak(as_device(device)._c)
