"""Copies to and from NumPy: values and dtypes survive the round trip, for
contiguous and strided data on both sides."""
import numpy as np
import pytest

import kiln

DTYPES = [np.float32, np.float64, np.float16, np.int32, np.int64, np.uint8]
SHAPES = [(), (0,), (5,), (2, 3, 4), (1, 7, 1)]


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_round_trip_values_and_dtype(dt, shape):
    rng = np.random.default_rng(0)
    a = (rng.standard_normal(shape) * 50).astype(dt)
    t = kiln.tensor(a)
    assert t.shape == shape
    assert t.dtype == kiln._types.as_dtype(dt)
    assert t.device == "cpu"
    b = t.numpy()
    assert b.dtype == a.dtype and b.shape == a.shape
    np.testing.assert_array_equal(b, a)


def test_bfloat16_goes_through_float32():
    a = np.array([1.5, -2.25, 3.0, 0.0078125], dtype=np.float32)  # exact in bfloat16
    t = kiln.tensor(a, dtype=kiln.bfloat16)
    assert t.dtype == kiln.bfloat16
    np.testing.assert_array_equal(t.numpy(), a)
    assert t.numpy().dtype == np.float32


def test_strided_numpy_input_is_copied_in_logical_order():
    a = np.arange(24, dtype=np.float64).reshape(4, 6)
    for view in (a.T, a[::2, 1::3], a[:, ::-1]):
        np.testing.assert_array_equal(kiln.tensor(view).numpy(), view)


def test_strided_kiln_views_come_out_in_logical_order():
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    t = kiln.tensor(a)
    np.testing.assert_array_equal(t.transpose(0, 2).numpy(), a.transpose(2, 1, 0))
    np.testing.assert_array_equal(t[:, 1:, ::2].numpy(), a[:, 1:, ::2])
    np.testing.assert_array_equal(t[:, :1].expand(2, 5, 4).numpy(), np.broadcast_to(a[:, :1], (2, 5, 4)))


def test_copies_are_independent():
    a = np.ones(4, dtype=np.float32)
    t = kiln.tensor(a)
    a[0] = 7
    b = t.numpy()
    b[1] = 9
    np.testing.assert_array_equal(t.numpy(), np.ones(4))


def test_python_data_dtypes_follow_torch():
    assert kiln.tensor([1.0, 2.0]).dtype == kiln.float32
    assert kiln.tensor([1, 2]).dtype == kiln.int64
    assert kiln.tensor([True, False]).dtype == kiln.uint8
    assert kiln.tensor(3.5).shape == ()
    assert kiln.tensor(np.float64(3.5)).dtype == kiln.float64
    assert kiln.tensor([[1, 2]], dtype="float64").dtype == kiln.float64
    np.testing.assert_array_equal(np.asarray(kiln.tensor([[1, 2], [3, 4]])), [[1, 2], [3, 4]])


def test_item_tolist_and_python_numbers():
    assert kiln.tensor([[2.5]]).item() == 2.5
    big = 2**53 + 1
    assert kiln.tensor([big]).item() == big  # int64 exact
    assert kiln.tensor([[1, 2], [3, 4]]).tolist() == [[1, 2], [3, 4]]
    assert float(kiln.tensor(1.25)) == 1.25 and int(kiln.tensor(7)) == 7
    assert bool(kiln.tensor([1.0])) and not bool(kiln.tensor(0.0))
    assert len(kiln.zeros(3, 2)) == 3
    assert [r.tolist() for r in kiln.tensor([[1, 2], [3, 4]])] == [[1, 2], [3, 4]]


def test_casts_and_devices():
    t = kiln.tensor([1.7, -2.2])
    assert t.to("float64").dtype == kiln.float64
    np.testing.assert_array_equal(t.to(dtype=kiln.int32).numpy(), [1, -2])  # C cast truncates toward 0
    assert t.to("cpu") is t
    assert t.double().dtype == kiln.float64 and t.long().dtype == kiln.int64 and t.half().dtype == kiln.float16
