"""dtypes and devices: small immutable Python objects over kiln_dtype and
kiln_device, accepted anywhere as objects or as strings ("float32", "cuda:0")."""
import ctypes

from . import _lib


class dtype:
    """A kiln element type (kiln.float32, kiln.int64, ...)."""

    __slots__ = ("name", "code", "itemsize", "numpy_name", "is_floating_point")

    def __init__(self, name, code, itemsize, numpy_name, is_floating_point):
        self.name, self.code, self.itemsize = name, code, itemsize
        self.numpy_name, self.is_floating_point = numpy_name, is_floating_point

    def __repr__(self):
        return "kiln." + self.name

    def __reduce__(self):
        return (as_dtype, (self.name,))


# codes follow kiln_dtype in include/kiln/core.h
float32 = dtype("float32", 0, 4, "float32", True)
float64 = dtype("float64", 1, 8, "float64", True)
float16 = dtype("float16", 2, 2, "float16", True)
bfloat16 = dtype("bfloat16", 3, 2, None, True)  # NumPy has no bfloat16: to_numpy widens it to float32
int32 = dtype("int32", 4, 4, "int32", False)
int64 = dtype("int64", 5, 8, "int64", False)
uint8 = dtype("uint8", 6, 1, "uint8", False)

_BY_CODE = [float32, float64, float16, bfloat16, int32, int64, uint8]
_BY_NAME = {d.name: d for d in _BY_CODE}
_BY_NAME.update({"float": float32, "double": float64, "half": float16, "int": int32, "long": int64,
                 "f32": float32, "f64": float64, "f16": float16, "bf16": bfloat16, "i32": int32, "i64": int64,
                 "u8": uint8, "bool": uint8})


def as_dtype(x):
    """A kiln dtype from a dtype, a name, a NumPy dtype or a torch dtype."""
    if isinstance(x, dtype):
        return x
    if isinstance(x, str):
        d = _BY_NAME.get(x)
        if d is None:
            raise TypeError(f"kiln: unknown dtype {x!r}; use one of {', '.join(d.name for d in _BY_CODE)}")
        return d
    name = str(x).replace("torch.", "")
    try:  # a NumPy dtype or scalar type
        import numpy as np

        if not str(x).startswith("torch."):
            name = np.dtype(x).name
    except TypeError:
        pass
    if name in _BY_NAME:
        return _BY_NAME[name]
    raise TypeError(f"kiln: no kiln dtype for {x!r}; kiln has {', '.join(d.name for d in _BY_CODE)}")


def from_code(code):
    return _BY_CODE[code]


class device:
    """A kiln device: device("cpu"), device("cuda"), device("cuda:1"), device("cuda", 1)."""

    __slots__ = ("type", "index", "_c")

    def __init__(self, spec="cpu", index=None):
        if isinstance(spec, device):
            self.type, self.index, self._c = spec.type, spec.index, spec._c
            return
        if not isinstance(spec, str):
            raise TypeError(f"kiln: a device is a string like 'cpu' or 'cuda:0', not {type(spec).__name__}")
        if index is not None:
            spec = f"{spec}:{int(index)}"
        c = _lib.CDevice()
        if _lib.device_parse(spec.encode(), ctypes.byref(c)) != 0:
            _lib.raise_last()
        self._c = c
        self.type = "cpu" if c.type == 0 else "cuda"
        self.index = c.index if c.type == 1 else None

    @classmethod
    def _from_c(cls, c):
        d = object.__new__(cls)
        d.type = "cpu" if c.type == 0 else "cuda"
        d.index = c.index if c.type == 1 else None
        d._c = _lib.CDevice(c.type, c.index if c.type == 1 else 0)
        return d

    def __str__(self):
        return "cpu" if self.type == "cpu" else f"cuda:{self.index}"

    def __repr__(self):
        return f"device('{self}')"

    def __eq__(self, other):
        if isinstance(other, str):
            try:
                other = device(other)
            except Exception:
                return False
        return isinstance(other, device) and (self.type, self.index) == (other.type, other.index)

    def __hash__(self):
        return hash((self.type, self.index))

    def __reduce__(self):
        return (device, (str(self),))


CPU = device("cpu")


def as_device(x):
    if x is None:
        return CPU
    return x if isinstance(x, device) else device(x)


def default_device():
    """$KILN_DEVICE if set, else cuda:0 when available, else cpu (kiln_default_device)."""
    d = device._from_c(_lib.default_device())
    _lib.clear_error()
    return d
