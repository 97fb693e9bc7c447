"""Zero-copy exchange through DLPack (https://dmlc.github.io/dlpack/latest/).

Import: the producer's DLManagedTensor becomes the storage of a kiln tensor made
by kiln_tensor_from_external, whose deleter is the producer's own deleter, called
from C when the last kiln view dies (no Python runs on that path).
Export: a capsule over a new kiln view of the tensor (storage is reference
counted), owned by the capsule's context until the consumer calls our deleter
(or the capsule dies unconsumed).
"""
import ctypes
from ctypes import POINTER, c_char_p, c_int, c_int32, c_int64, c_uint8, c_uint16, c_uint32, c_uint64, c_void_p

from . import _lib
from ._errors import NoDeviceError
from ._runtime import Finalizing, TensorHandle, call, handle

kDLCPU, kDLCUDA, kDLCUDAHost, kDLCUDAManaged = 1, 2, 3, 13
kDLInt, kDLUInt, kDLFloat, kDLBfloat, kDLBool = 0, 1, 2, 4, 6
FLAG_READ_ONLY = 1

# The structs of dlpack.h (DLPack 1.x), whose layout the DLPack standard fixes; no kiln
# header defines them, so the runtime's struct checks (kiln/_runtime.py) skip them.


class DLDevice(ctypes.Structure):
    _fields_ = [("device_type", c_int32), ("device_id", c_int32)]


class DLDataType(ctypes.Structure):
    _fields_ = [("code", c_uint8), ("bits", c_uint8), ("lanes", c_uint16)]


class DLTensor(ctypes.Structure):
    _fields_ = [("data", c_void_p), ("device", DLDevice), ("ndim", c_int32), ("dtype", DLDataType),
                ("shape", POINTER(c_int64)), ("strides", POINTER(c_int64)), ("byte_offset", c_uint64)]


class DLManagedTensor(ctypes.Structure):
    _fields_ = [("dl_tensor", DLTensor), ("manager_ctx", c_void_p), ("deleter", c_void_p)]


class DLPackVersion(ctypes.Structure):
    _fields_ = [("major", c_uint32), ("minor", c_uint32)]


class DLManagedTensorVersioned(ctypes.Structure):
    _fields_ = [("version", DLPackVersion), ("manager_ctx", c_void_p), ("deleter", c_void_p), ("flags", c_uint64),
                ("dl_tensor", DLTensor)]


# (code, bits) <-> kiln dtype code (include/kiln/core.h)
_TO_KILN = {(kDLFloat, 32): 0, (kDLFloat, 64): 1, (kDLFloat, 16): 2, (kDLBfloat, 16): 3, (kDLInt, 32): 4,
            (kDLInt, 64): 5, (kDLUInt, 8): 6, (kDLBool, 8): 6}
_FROM_KILN = {0: (kDLFloat, 32), 1: (kDLFloat, 64), 2: (kDLFloat, 16), 3: (kDLBfloat, 16), 4: (kDLInt, 32),
              5: (kDLInt, 64), 6: (kDLUInt, 8)}

# Capsule names must outlive the capsules: these buffers live as long as the module.
_NAME = ctypes.create_string_buffer(b"dltensor")
_NAME_V = ctypes.create_string_buffer(b"dltensor_versioned")
_USED = ctypes.create_string_buffer(b"used_dltensor")
_USED_V = ctypes.create_string_buffer(b"used_dltensor_versioned")

_api = ctypes.pythonapi
_CapsuleDestructor = ctypes.CFUNCTYPE(None, c_void_p)
_capsule_new = _api.PyCapsule_New
_capsule_new.restype = ctypes.py_object
_capsule_new.argtypes = [c_void_p, c_void_p, _CapsuleDestructor]
_capsule_get_name = _api.PyCapsule_GetName
_capsule_get_name.restype = c_char_p
_capsule_get_name.argtypes = [ctypes.py_object]
_capsule_get_pointer = _api.PyCapsule_GetPointer
_capsule_get_pointer.restype = c_void_p
_capsule_get_pointer.argtypes = [ctypes.py_object, c_void_p]
_capsule_set_name = _api.PyCapsule_SetName
_capsule_set_name.restype = c_int
_capsule_set_name.argtypes = [ctypes.py_object, c_void_p]
# The destructor sees a dying capsule: raw pointers only, no new references.
_capsule_is_valid_raw = ctypes.PyDLL(None).PyCapsule_IsValid
_capsule_is_valid_raw.restype = c_int
_capsule_is_valid_raw.argtypes = [c_void_p, c_void_p]
_capsule_get_pointer_raw = ctypes.PyDLL(None).PyCapsule_GetPointer
_capsule_get_pointer_raw.restype = c_void_p
_capsule_get_pointer_raw.argtypes = [c_void_p, c_void_p]

_exports = {}  # address of the managed struct -> (struct, shape, strides, detached scope)


def _release_export(addr):
    ctx = _exports.pop(addr, None)
    if ctx is not None and not Finalizing.on:
        _lib.scope_free(ctx[3])


@ctypes.CFUNCTYPE(None, c_void_p)
def _deleter(managed_addr):  # the consumer is done with the memory
    try:
        _release_export(managed_addr)
    except Exception:
        pass


@_CapsuleDestructor
def _capsule_destructor(capsule):  # a capsule that no consumer took
    try:
        for name in (_NAME, _NAME_V):
            if _capsule_is_valid_raw(capsule, ctypes.addressof(name)):
                _release_export(_capsule_get_pointer_raw(capsule, ctypes.addressof(name)))
                return
    except Exception:
        pass


_DELETER_ADDR = ctypes.cast(_deleter, c_void_p).value


def device_of(t):
    d = t.device
    return (kDLCPU, 0) if d.type == "cpu" else (kDLCUDA, d.index)


def export(t, stream=None, max_version=None, dl_device=None, copy=None):
    h = handle(t)
    if _lib.tensor_requires_grad(h):
        raise RuntimeError("kiln: cannot export a tensor that requires grad through DLPack; use t.detach()")
    if dl_device is not None and tuple(dl_device) != device_of(t):
        raise BufferError(f"kiln: the tensor is on {t.device}; DLPack export does not move it to {dl_device}")
    if copy:
        t = t.clone()
        h = handle(t)
    dev = _lib.tensor_device(h)
    if dev.type == 1:
        # kiln's queue is not the consumer's stream: finish queued work so the data is there
        _lib.check(_lib.synchronize(dev), "__dlpack__")
    v = call(_lib.tensor_detach, (h,), ())  # a view of its own, owned by the capsule
    vh, scope = v._h, v._own
    v._own = None  # ownership moves to _exports; v must not free it
    nd = _lib.tensor_ndim(vh)
    sp = _lib.tensor_shape(vh)
    shape = (c_int64 * max(nd, 1))(*(sp[i] for i in range(nd)))
    strides = (c_int64 * max(nd, 1))(*(_lib.tensor_stride(vh, i) for i in range(nd)))
    versioned = max_version is not None and tuple(max_version)[0] >= 1
    m = DLManagedTensorVersioned() if versioned else DLManagedTensor()
    dl = m.dl_tensor
    dl.data = _lib.tensor_data(vh)
    dl.device = DLDevice(*device_of(t))
    dl.ndim = nd
    code, bits = _FROM_KILN[_lib.tensor_dtype(vh)]
    dl.dtype = DLDataType(code, bits, 1)
    dl.shape = ctypes.cast(shape, POINTER(c_int64))
    dl.strides = ctypes.cast(strides, POINTER(c_int64))
    dl.byte_offset = 0
    if versioned:
        m.version = DLPackVersion(1, 0)
        m.flags = 0
    m.deleter = _DELETER_ADDR
    addr = ctypes.addressof(m)
    m.manager_ctx = addr
    _exports[addr] = (m, shape, strides, scope)
    name = _NAME_V if versioned else _NAME
    try:
        return _capsule_new(addr, ctypes.addressof(name), _capsule_destructor)
    except BaseException:
        _release_export(addr)
        raise


def _capsule_of(obj):
    if type(obj).__name__ == "PyCapsule":
        return obj
    if not hasattr(obj, "__dlpack__"):
        raise TypeError(f"kiln.from_dlpack: {type(obj).__name__} is neither a DLPack capsule nor has __dlpack__")
    dev_type, dev_id = obj.__dlpack_device__() if hasattr(obj, "__dlpack_device__") else (kDLCPU, 0)
    if dev_type in (kDLCUDA, kDLCUDAManaged):
        _check_cuda(dev_id)
        # stream 1: the producer orders its work before the legacy default stream
        return obj.__dlpack__(stream=1)
    if dev_type not in (kDLCPU, kDLCUDAHost):
        raise RuntimeError(f"kiln.from_dlpack: DLPack device type {dev_type} is not one kiln has (cpu, cuda)")
    return obj.__dlpack__()


def _check_cuda(dev_id):
    if not _lib.device_available(_lib.CDevice(1, dev_id)):
        _lib.clear_error()
        why = "this kiln build has no CUDA backend" if _lib.cuda_device_count() == 0 else "no such device"
        raise NoDeviceError(f"kiln.from_dlpack: the tensor is on cuda:{dev_id} but {why}; move it to the cpu "
                            "first (e.g. t.cpu())")


def from_dlpack(obj):
    """A kiln tensor sharing the memory of obj: a NumPy array, a torch tensor (cpu or
    cuda), any object with __dlpack__, or a DLPack capsule."""
    if isinstance(obj, TensorHandle):
        return obj
    cap = _capsule_of(obj)
    name = _capsule_get_name(cap)
    if name == b"dltensor":
        ptr = _capsule_get_pointer(cap, ctypes.addressof(_NAME))
        m = DLManagedTensor.from_address(ptr)
        used = _USED
    elif name == b"dltensor_versioned":
        ptr = _capsule_get_pointer(cap, ctypes.addressof(_NAME_V))
        m = DLManagedTensorVersioned.from_address(ptr)
        if m.version.major != 1:
            raise BufferError(f"kiln.from_dlpack: DLPack version {m.version.major}.{m.version.minor}; kiln reads 1.x")
        if m.flags & FLAG_READ_ONLY:
            raise BufferError("kiln.from_dlpack: the tensor is read-only and kiln views are writable; copy it first")
        used = _USED_V
    elif name and name.startswith(b"used_"):
        raise ValueError("kiln.from_dlpack: this DLPack capsule was already consumed")
    else:
        raise TypeError(f"kiln.from_dlpack: a capsule named {name!r} is not a DLPack tensor")
    dl = m.dl_tensor
    dt = dl.dtype
    key = (dt.code, dt.bits)
    if dt.lanes != 1 or key not in _TO_KILN:
        raise TypeError(f"kiln.from_dlpack: DLPack dtype (code {dt.code}, {dt.bits} bits, {dt.lanes} lanes) has no "
                        "kiln counterpart; kiln has float32/64, float16, bfloat16, int32/64 and uint8")
    dtype = _TO_KILN[key]
    if dl.device.device_type in (kDLCUDA, kDLCUDAManaged):
        _check_cuda(dl.device.device_id)
        dev = _lib.CDevice(1, dl.device.device_id)
    elif dl.device.device_type in (kDLCPU, kDLCUDAHost):
        dev = _lib.CDevice(0, 0)
    else:
        raise RuntimeError(f"kiln.from_dlpack: DLPack device type {dl.device.device_type} is not cpu or cuda")
    nd = dl.ndim
    if nd > _lib.MAX_DIMS:
        raise ValueError(f"kiln.from_dlpack: {nd} dimensions; kiln tensors have at most {_lib.MAX_DIMS}")
    shape = (c_int64 * max(nd, 1))(*(dl.shape[i] for i in range(nd)))
    strides = (c_int64 * max(nd, 1))(*(dl.strides[i] for i in range(nd))) if dl.strides else None
    data = (dl.data or 0) + dl.byte_offset
    t = call(_lib.tensor_from_external, (data or None, nd, shape, strides, dtype, dev, m.deleter, ptr))
    # kiln owns the producer's tensor now: the capsule must not free it again
    _capsule_set_name(cap, ctypes.addressof(used))
    return t


def to_dlpack(t):
    """A DLPack capsule of t (legacy form), for consumers that take capsules."""
    return export(t)
