"""include/kiln/image.h from Python: PNG and JPEG files read into (C, H, W) tensors
and written from them (libpng and libjpeg-turbo underneath, as in C).

    img = kiln.image_read("tile.png", channels=3, dtype=kiln.float32)  # (3, H, W) in [0, 1]
    kiln.image_write("mask.png", (pred > 0.5).to(dtype=kiln.uint8) * 255)

The format of a read comes from the file's bytes, of a write from the name's
extension (.png, .jpg, .jpeg). Reads refuse images above KILN_IMAGE_MAX_PIXELS
pixels (default 2**28) before allocating; writes are atomic."""
import ctypes
import os
from ctypes import POINTER, c_char_p, c_int, c_int64, c_void_p

from . import _lib
from ._runtime import call, handle
from ._types import as_device, as_dtype, uint8
from .tensor import Tensor, tensor as _tensor

_read = _lib.declare("kiln_image_read", c_void_p, c_char_p, c_int, c_int, _lib.CDevice)
_read_size = _lib.declare("kiln_image_read_size", c_int, c_char_p, POINTER(c_int64), POINTER(c_int64),
                          POINTER(c_int64))
_write = _lib.declare("kiln_image_write", c_int, c_char_p, c_void_p, c_int)


def _path(p, what):
    try:
        return os.fsencode(os.fspath(p))
    except TypeError:
        raise TypeError(f"kiln.{what}: path must be a str or os.PathLike, not {type(p).__name__}") from None


def _int(v, name, what):
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"kiln.{what}: {name} must be an int, not {type(v).__name__}")
    return v


def image_read(path, channels=0, dtype=uint8, device=None):
    """A new (C, H, W) tensor from a PNG or JPEG file: dtype uint8 (0..255) or
    float32 (value / 255). channels 0 keeps the stored layout (1 gray, 3 RGB, 4 RGBA;
    gray + alpha becomes RGBA), 1, 3 or 4 converts (kiln_image_read's rules). device:
    where the tensor goes (None: the CPU)."""
    return call(_read, (_path(path, "image_read"), _int(channels, "channels", "image_read"), as_dtype(dtype).code,
                        as_device(device)._c))


def image_read_size(path):
    """(channels, height, width) of the image image_read(path) would return, from the
    header only."""
    c, h, w = c_int64(), c_int64(), c_int64()
    _lib.check(_read_size(_path(path, "image_read_size"), ctypes.byref(c), ctypes.byref(h), ctypes.byref(w)),
               "image_read_size")
    return c.value, h.value, w.value


def image_write(path, tensor, quality=95):
    """Writes a (C, H, W) (C 1, 3 or 4) or (H, W) uint8 or float32 tensor (float32
    clamped to [0, 1]) as PNG or JPEG by the path's extension, atomically. quality:
    JPEG quality 1..100 (ignored for PNG). A NumPy array or torch tensor is copied
    through kiln.tensor first."""
    if not isinstance(tensor, Tensor):
        tensor = _tensor(tensor)
    t = handle(tensor, "tensor")
    _lib.check(_write(_path(path, "image_write"), t, _int(quality, "quality", "image_write")), "image_write")
