"""CUDA device queries (the backend is optional: a CPU-only build reports none)."""
from . import _lib
from ._types import device


def is_available():
    ok = bool(_lib.device_available(_lib.CDevice(1, 0)))
    _lib.clear_error()
    return ok


def device_count():
    return _lib.cuda_device_count()


def synchronize(dev="cuda"):
    _lib.check(_lib.synchronize(device(dev)._c), "synchronize")
