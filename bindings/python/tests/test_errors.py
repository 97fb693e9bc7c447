"""Bad input raises Python exceptions carrying kiln's message (and leaves no kiln
error pending: the conftest fixture checks that after every test); nothing a user
does crashes the interpreter."""
import gc

import numpy as np
import pytest

import kiln
from kiln import _errors, _lib


def test_shape_errors_are_value_errors_with_kiln_message():
    with pytest.raises(kiln.ShapeError) as e:
        kiln.ones(2, 3) + kiln.ones(4)
    assert isinstance(e.value, ValueError)
    assert "[2, 3]" in str(e.value) and "[4]" in str(e.value)
    with pytest.raises(ValueError, match="matmul"):
        kiln.ones(2, 3) @ kiln.ones(2, 3)
    with pytest.raises(ValueError, match="sigmoid"):  # the size-1 softmax guardrail
        kiln.softmax(kiln.ones(4, 1), axis=1)
    with pytest.raises(ValueError, match="one"):
        kiln.ones(3).item()
    # the error was cleared: the next call works
    assert (kiln.ones(2) + 1).tolist() == [2.0, 2.0]


def test_dtype_errors_are_type_errors():
    with pytest.raises(kiln.DTypeError) as e:
        kiln.arange(3) + kiln.arange(3)
    assert isinstance(e.value, TypeError) and "int64" in str(e.value)  # kiln's i64 in Python's spelling
    assert "i64" in e.value.c_message
    with pytest.raises(TypeError, match="different dtypes"):
        kiln.ones(2) + kiln.ones(2, dtype="float64")
    with pytest.raises(TypeError, match="unknown dtype"):
        kiln.zeros(2, dtype="complex")


def test_out_of_memory_is_a_memory_error():
    kiln.set_memory_limit("cpu", 1)
    try:
        with pytest.raises(MemoryError) as e:
            kiln.empty(1 << 26)
        assert isinstance(e.value, kiln.OutOfMemoryError)
        assert str(e.value)
    finally:
        kiln.set_memory_limit("cpu", 0)
    assert kiln.empty(1 << 16).numel() == 1 << 16


@pytest.mark.skipif(kiln.cuda.is_available(), reason="needs a machine without CUDA")
def test_missing_device_is_a_runtime_error():
    with pytest.raises(RuntimeError, match="cuda"):
        kiln.zeros(2, device="cuda")
    with pytest.raises(RuntimeError):
        kiln.ones(2).to("cuda:0")
    with pytest.raises(ValueError, match="unknown device"):
        kiln.zeros(2, device="tpu")


def test_invalid_arguments_are_value_errors():
    with pytest.raises(ValueError, match="axis 5"):
        kiln.ones(2, 3).sum(axis=5)
    with pytest.raises(ValueError, match="negative"):
        kiln.zeros(-1)
    with pytest.raises(ValueError, match="at most 8"):
        kiln.zeros(*([1] * 9))
    with pytest.raises(ValueError, match="one per axis"):
        kiln.ones(2, 3).permute(0)
    with pytest.raises(ValueError):
        kiln.ones(6).reshape(4, -1)
    with pytest.raises(ValueError):
        kiln.arange(0, 1, 0)
    with pytest.raises(ValueError, match="out of range"):
        kiln.ones(3).sum(axis=2**40)
    with pytest.raises(ValueError):
        kiln.clamp(kiln.ones(2))


def test_backward_misuse():
    w = kiln.ones(3, requires_grad=True)
    with pytest.raises(ValueError, match="not a scalar"):
        (w * 2).backward()
    with pytest.raises(RuntimeError, match="does not require grad"):
        kiln.ones(1).backward()
    with pytest.raises(ValueError, match="does not match"):
        (w * 2).backward(kiln.ones(2))


def test_null_ish_misuse_raises_instead_of_crashing():
    t = kiln.ones(2)
    with pytest.raises(TypeError):
        kiln.add(None, t)
    with pytest.raises(TypeError):
        kiln.relu(None)
    with pytest.raises(TypeError):
        t + None
    with pytest.raises(TypeError):
        t + "x"
    with pytest.raises(TypeError):
        kiln.concat([t, None])
    with pytest.raises(TypeError, match="not constructed directly"):
        kiln.Tensor([1, 2])
    fake = object.__new__(kiln.Tensor)
    with pytest.raises(RuntimeError, match="not made by kiln"):
        kiln.relu(fake)
    del fake
    with pytest.raises(TypeError):
        kiln.zeros("a")
    with pytest.raises(TypeError):
        kiln.ones(2).sum(axis=1.5)
    with pytest.raises(TypeError):
        t @ 3


def test_released_tensors_raise_runtime_error():
    with kiln.scope():
        t = kiln.ones(2)
        g = None
        w = kiln.ones(2, requires_grad=True)
        (w * w).sum().backward()
        g = w.grad
    for use in (lambda: t + 1, lambda: t.shape, lambda: t.numpy(), lambda: g.numpy(), lambda: kiln.relu(t)):
        with pytest.raises(RuntimeError, match="released"):
            use()
    assert "released" in repr(t)


def test_fuzz_bad_calls_never_crash():
    t = kiln.ones(2, 3)
    bad = [None, "s", -1, 2**63, 1.5, (), [None], np.zeros((2, 2), dtype=np.complex64), object(), kiln.ones(5)]
    fns = [kiln.add, kiln.matmul, kiln.maximum, kiln.where, kiln.sum, kiln.mean, kiln.max, kiln.argmax, kiln.softmax,
           kiln.reshape, kiln.permute, kiln.transpose, kiln.expand, kiln.squeeze, kiln.unsqueeze, kiln.flatten,
           kiln.clamp, kiln.pow, kiln.leaky_relu, kiln.concat, kiln.slice, kiln.tensor, kiln.full, kiln.from_dlpack]
    for f in fns:
        for x in bad:
            for args in ((x,), (t, x), (x, t), (t, x, x)):
                try:
                    f(*args)
                except (TypeError, ValueError, RuntimeError, IndexError, MemoryError, OverflowError, BufferError):
                    pass
    gc.collect()
    assert (t + 1).sum().item() == 12.0


def test_every_status_maps_to_the_expected_builtin():
    expected = {1: ValueError, 2: ValueError, 3: TypeError, 4: RuntimeError, 5: MemoryError, 6: OSError,
                7: ValueError, 8: RuntimeError, 9: RuntimeError, 10: RuntimeError, 11: RuntimeError,
                12: NotImplementedError}
    for status, base in expected.items():
        e = _errors.exception_for(status, "msg")
        assert isinstance(e, base) and isinstance(e, kiln.KilnError) and str(e) == "msg"
        assert e.code == status and _lib.status_name(status).decode() == e.status
