"""Zero-copy exchange through DLPack with NumPy and PyTorch, both directions:
each test writes through one side and reads the change through the other."""
import gc

import numpy as np
import pytest

import kiln

try:
    import torch
except ImportError:  # the NumPy half still runs
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed")


def in_use():
    return kiln.memory_stats()["in_use"]


def test_numpy_to_kiln_shares_memory():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    t = kiln.from_dlpack(a)
    assert t.shape == (3, 4) and t.dtype == kiln.float32
    assert t.data_ptr() == a.ctypes.data
    a[1, 2] = 100.0  # numpy writes, kiln reads
    assert t[1, 2].item() == 100.0
    t[0] = -1.0  # kiln writes, numpy reads
    np.testing.assert_array_equal(a[0], [-1, -1, -1, -1])
    assert kiln.from_numpy(a).data_ptr() == a.ctypes.data


def test_kiln_to_numpy_shares_memory():
    t = kiln.arange(6, dtype="float64").reshape(2, 3)
    a = np.from_dlpack(t)
    assert a.ctypes.data == t.data_ptr() and a.dtype == np.float64
    t[1, 1] = 42.0  # kiln writes, numpy reads (NumPy 1.x marks DLPack arrays read-only)
    assert a[1, 1] == 42.0
    np.testing.assert_array_equal(a, t.numpy())


def test_strided_numpy_views_keep_their_strides():
    a = np.arange(24, dtype=np.float64).reshape(4, 6)
    v = a[1:, ::2]
    t = kiln.from_dlpack(v)
    assert t.strides == (6, 2)
    np.testing.assert_array_equal(t.numpy(), v)
    a[3, 4] = -5
    assert t[2, 2].item() == -5
    np.testing.assert_array_equal(kiln.from_dlpack(a.T).numpy(), a.T)


@needs_torch
def test_torch_to_kiln_shares_memory():
    x = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    t = kiln.from_dlpack(x)
    assert t.data_ptr() == x.data_ptr()
    x[2, 3] = 77.0  # torch writes, kiln reads
    assert t[2, 3].item() == 77.0
    t[0, :2] = 5.0  # kiln writes, torch reads
    assert x[0, :2].tolist() == [5.0, 5.0]
    xt = x.t()
    k = kiln.from_dlpack(xt)
    assert k.strides == xt.stride() and k.shape == tuple(xt.shape)
    np.testing.assert_array_equal(k.numpy(), xt.numpy())


@needs_torch
def test_kiln_to_torch_shares_memory():
    t = kiln.zeros(2, 3, dtype="float64")
    x = torch.from_dlpack(t)
    assert x.data_ptr() == t.data_ptr() and x.dtype == torch.float64
    x[1, 2] = 3.5  # torch writes, kiln reads
    assert t[1, 2].item() == 3.5
    t[0, 0] = -2.0  # kiln writes, torch reads
    assert x[0, 0].item() == -2.0
    v = kiln.arange(12, dtype="float32").reshape(3, 4).transpose(0, 1)[1:]
    xv = torch.utils.dlpack.from_dlpack(v.__dlpack__())
    assert xv.stride() == v.strides and tuple(xv.shape) == v.shape
    np.testing.assert_array_equal(xv.numpy(), v.numpy())


@needs_torch
@pytest.mark.parametrize("tname,kdt", [("float16", kiln.float16), ("bfloat16", kiln.bfloat16), ("int32", kiln.int32),
                                       ("int64", kiln.int64), ("uint8", kiln.uint8)])
def test_dtypes_cross_with_torch(tname, kdt):
    tdt = getattr(torch, tname)
    x = torch.arange(6).to(tdt)
    t = kiln.from_dlpack(x)
    assert t.dtype == kdt
    back = torch.from_dlpack(t)
    assert back.dtype == tdt and back.data_ptr() == x.data_ptr()
    assert torch.equal(back, x)


@needs_torch
def test_imported_memory_outlives_the_producer_object():
    x = torch.arange(1000, dtype=torch.float64)
    t = kiln.from_dlpack(x)
    v = t[10:20]
    del x, t
    gc.collect()
    assert v.numpy().tolist() == list(range(10, 20))


@needs_torch
def test_exported_memory_outlives_the_kiln_tensor_and_is_freed_after():
    base = in_use()
    t = kiln.full((256, 256), 2.0)
    x = torch.from_dlpack(t)
    with kiln.scope():
        y = kiln.from_dlpack(x) * 1  # a scope using the shared memory
    del t
    gc.collect()
    assert in_use() > base
    assert float(x.sum()) == 2.0 * 256 * 256
    del x
    gc.collect()
    assert in_use() == base


def test_unconsumed_capsule_releases_its_view():
    base = in_use()
    t = kiln.ones(1000)
    cap = t.__dlpack__()
    del t
    gc.collect()
    assert in_use() > base
    del cap
    gc.collect()
    assert in_use() == base


def test_capsules_are_consumed_once_and_versioned_ones_work():
    t = kiln.ones(3)
    cap = t.__dlpack__()
    k = kiln.from_dlpack(cap)
    assert k.data_ptr() == t.data_ptr()
    with pytest.raises(ValueError, match="already consumed"):
        kiln.from_dlpack(cap)
    capv = t.__dlpack__(max_version=(1, 0))
    kv = kiln.from_dlpack(capv)
    kv[0] = 9.0
    assert t[0].item() == 9.0


@needs_torch
def test_export_refuses_tensors_that_require_grad():
    w = kiln.ones(2, requires_grad=True)
    with pytest.raises(RuntimeError, match="detach"):
        w.__dlpack__()
    assert torch.from_dlpack(w.detach()).tolist() == [1.0, 1.0]


def test_unsupported_dtype_is_a_type_error():
    with pytest.raises(TypeError, match="no kiln counterpart"):
        kiln.from_dlpack(np.zeros(3, dtype=np.complex64))
    with pytest.raises(TypeError):
        kiln.from_dlpack([1, 2, 3])


class FakeCudaTensor:
    def __dlpack_device__(self):
        return (2, 0)

    def __dlpack__(self, stream=None):
        raise AssertionError("a capsule must not be requested when CUDA is missing")


@pytest.mark.skipif(kiln.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_capsule_without_cuda_is_a_clear_runtime_error():
    with pytest.raises(RuntimeError, match="cuda:0"):
        kiln.from_dlpack(FakeCudaTensor())


@pytest.mark.skipif(not (kiln.cuda.is_available() and torch is not None and torch.cuda.is_available()),
                    reason="needs CUDA in kiln and torch")
def test_cuda_round_trip_with_torch():
    x = torch.arange(8, dtype=torch.float32, device="cuda")
    t = kiln.from_dlpack(x)
    assert t.device == "cuda:0" and t.data_ptr() == x.data_ptr()
    y = torch.from_dlpack(t)
    y[0] = 5
    torch.cuda.synchronize()
    assert t[0].item() == 5.0
