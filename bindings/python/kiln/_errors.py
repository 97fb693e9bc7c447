"""kiln's status codes as Python exceptions. Each class derives from KilnError
and from the built-in exception a Python user would expect for that kind of
failure, so `except ValueError` and `except kiln.ShapeError` both work."""


class KilnError(Exception):
    """Base of every error raised from a kiln status; .status is the kiln_status name."""

    status = "KILN_STATUS_UNKNOWN"


class InvalidArgumentError(KilnError, ValueError):
    status = "KILN_STATUS_INVALID_ARGUMENT"


class ShapeError(KilnError, ValueError):
    status = "KILN_STATUS_SHAPE"


class DTypeError(KilnError, TypeError):
    status = "KILN_STATUS_DTYPE"


class DeviceError(KilnError, RuntimeError):
    status = "KILN_STATUS_DEVICE"


class OutOfMemoryError(KilnError, MemoryError):
    status = "KILN_STATUS_OOM"


class KilnIOError(KilnError, OSError):
    status = "KILN_STATUS_IO"


class FormatError(KilnError, ValueError):
    status = "KILN_STATUS_FORMAT"


class NoDeviceError(DeviceError):
    status = "KILN_STATUS_NO_DEVICE"


class BackendError(KilnError, RuntimeError):
    status = "KILN_STATUS_BACKEND"


class StateError(KilnError, RuntimeError):
    status = "KILN_STATUS_STATE"


class AnomalyError(KilnError, RuntimeError):
    status = "KILN_STATUS_ANOMALY"


class KilnNotImplementedError(KilnError, NotImplementedError):
    status = "KILN_STATUS_NOT_IMPLEMENTED"


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
    """The exception for a kiln_status value and its message."""
    cls = _BY_STATUS[status] if 0 < status < len(_BY_STATUS) else KilnError
    return cls(message or cls.status)
