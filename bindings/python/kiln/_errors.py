"""kiln's status codes as Python exceptions. Each class derives from KilnError
and from the built-in exception a Python user would expect for that kind of
failure, so `except ValueError` and `except kiln.ShapeError` both work."""


class KilnError(Exception):
    """Base of every error raised from a kiln status: .code is the kiln_status value,
    .status its name (kiln_status_name), .c_message the C library's own text (which
    names C functions and constants; str(e) names their Python equivalents)."""

    code, status = -1, "unknown"
    c_message = None


class InvalidArgumentError(KilnError, ValueError):
    code, status = 1, "invalid argument"  # KILN_STATUS_INVALID_ARGUMENT


class ShapeError(KilnError, ValueError):
    code, status = 2, "shape error"  # KILN_STATUS_SHAPE


class DTypeError(KilnError, TypeError):
    code, status = 3, "dtype error"  # KILN_STATUS_DTYPE


class DeviceError(KilnError, RuntimeError):
    code, status = 4, "device error"  # KILN_STATUS_DEVICE


class OutOfMemoryError(KilnError, MemoryError):
    code, status = 5, "out of memory"  # KILN_STATUS_OOM


class KilnIOError(KilnError, OSError):
    code, status = 6, "i/o error"  # KILN_STATUS_IO


class FormatError(KilnError, ValueError):
    code, status = 7, "format error"  # KILN_STATUS_FORMAT


class NoDeviceError(DeviceError):
    code, status = 8, "no device"  # KILN_STATUS_NO_DEVICE


class BackendError(KilnError, RuntimeError):
    code, status = 9, "backend error"  # KILN_STATUS_BACKEND


class StateError(KilnError, RuntimeError):
    code, status = 10, "state error"  # KILN_STATUS_STATE


class AnomalyError(KilnError, RuntimeError):
    code, status = 11, "anomaly"  # KILN_STATUS_ANOMALY


class KilnNotImplementedError(KilnError, NotImplementedError):
    code, status = 12, "not implemented"  # KILN_STATUS_NOT_IMPLEMENTED


# index = the kiln_status value (include/kiln/core.h)
_BY_STATUS = [
    None,  # KILN_STATUS_OK
    InvalidArgumentError,
    ShapeError,
    DTypeError,
    DeviceError,
    OutOfMemoryError,
    KilnIOError,
    FormatError,
    NoDeviceError,
    BackendError,
    StateError,
    AnomalyError,
    KilnNotImplementedError,
]


def exception_for(status, message):
    """The exception for a kiln_status value and its message, in Python's spelling
    (kiln/_messages.py); .c_message keeps the C text."""
    cls = _BY_STATUS[status] if 0 < status < len(_BY_STATUS) else KilnError
    text = message or cls.status
    from ._messages import translate  # the C spellings in Python's (loaded on the first error)

    e = cls(translate(text))
    e.c_message = text
    return e
