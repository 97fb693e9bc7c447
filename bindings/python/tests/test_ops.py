"""Every op of include/kiln/ops.h from Python, against NumPy: operators with
broadcasting and Python numbers, reductions with axis/keepdim, views, indexing,
factories and printing."""
import math

import numpy as np
import pytest

import kiln

A = np.arange(1, 25, dtype=np.float64).reshape(2, 3, 4) / 7.0 - 1.5
B = np.linspace(-2, 2, 4)


def k(a):
    return kiln.tensor(a)


def eq(t, expected, rtol=1e-12):
    assert isinstance(t, kiln.Tensor)
    e = np.asarray(expected)
    assert t.shape == e.shape, (t.shape, e.shape)
    np.testing.assert_allclose(t.numpy(), e, rtol=rtol, atol=1e-12)


def test_arithmetic_operators_broadcast_and_take_numbers():
    a, b = k(A), k(B)
    eq(a + b, A + B)
    eq(a - b, A - B)
    eq(a * b, A * B)
    eq(a / (b + 3), A / (B + 3))
    eq(a + 2, A + 2)
    eq(2 + a, 2 + A)
    eq(a - 2.5, A - 2.5)
    eq(2.5 - a, 2.5 - A)
    eq(a * 3, A * 3)
    eq(3 * a, 3 * A)
    eq(a / 4, A / 4)
    eq(1 / (a + 2), 1 / (A + 2))
    eq(-a, -A)
    eq(abs(a), np.abs(A))
    eq(a ** 2, A ** 2)
    eq(2 ** a, 2 ** A)
    eq(a + np.float64(1), A + 1)
    eq(a @ k(np.ones((4, 2))), A @ np.ones((4, 2)))
    eq(kiln.add(a, b), A + B)


def test_unary_and_binary_functions():
    a, p = k(A), k(np.abs(A) + 0.1)
    eq(kiln.exp(a), np.exp(A))
    eq(kiln.log(p), np.log(np.abs(A) + 0.1))
    eq(p.sqrt(), np.sqrt(np.abs(A) + 0.1))
    eq(a.relu(), np.maximum(A, 0))
    eq(kiln.sigmoid(a), 1 / (1 + np.exp(-A)))
    eq(kiln.tanh(a), np.tanh(A))
    eq(kiln.leaky_relu(a, negative_slope=0.2), np.where(A > 0, A, 0.2 * A))
    eq(kiln.clamp(a, min=-0.5), np.maximum(A, -0.5))
    eq(a.clamp(max=0.25), np.minimum(A, 0.25))
    eq(kiln.clamp(a, -0.5, 0.5), np.clip(A, -0.5, 0.5))
    eq(kiln.maximum(a, k(B)), np.maximum(A, B))
    eq(kiln.minimum(a, 0.0), np.minimum(A, 0.0))
    eq(kiln.pow(a, 3), A ** 3)
    eq(kiln.where(a, k(B), 7.0), np.where(A != 0, B, 7.0))


def test_reductions_with_axis_and_keepdim():
    a = k(A)
    eq(a.sum(), A.sum())
    eq(kiln.sum(a, axis=1), A.sum(axis=1))
    eq(a.sum(axis=(0, 2), keepdim=True), A.sum(axis=(0, 2), keepdims=True))
    eq(a.sum(dim=-1), A.sum(axis=-1))
    eq(a.mean(), A.mean())
    eq(a.mean(axis=0, keepdim=True), A.mean(axis=0, keepdims=True))
    eq(a.max(), A.max())
    eq(a.max(axis=2), A.max(axis=2))
    eq(a.max(axis=1, keepdim=True), A.max(axis=1, keepdims=True))
    eq(a.min(axis=0), A.min(axis=0))
    eq(a.argmax(), np.argmax(A))
    eq(a.argmax(axis=1), np.argmax(A, axis=1))
    eq(kiln.argmin(a, axis=2, keepdim=True), np.argmin(A, axis=2)[..., None])
    assert a.argmax(axis=1).dtype == kiln.int64


def test_softmax_and_log_softmax():
    a = k(A)
    e = np.exp(A - A.max(axis=1, keepdims=True))
    sm = e / e.sum(axis=1, keepdims=True)
    eq(kiln.softmax(a, axis=1), sm)
    eq(a.log_softmax(dim=1), np.log(sm))


def test_views_share_memory_and_match_numpy():
    a = k(A)
    eq(a.reshape(6, 4), A.reshape(6, 4))
    eq(a.reshape(-1), A.reshape(-1))
    eq(a.view(4, -1), A.reshape(4, -1))
    eq(a.permute(2, 0, 1), A.transpose(2, 0, 1))
    eq(a.transpose(0, 2), A.transpose(2, 1, 0))
    eq(a.T, A.T)
    eq(kiln.expand(k(B).reshape(1, 4), 3, 4), np.broadcast_to(B, (3, 4)))
    eq(k(A[:, :1]).squeeze(), A[:, 0])
    eq(a.unsqueeze(1), A[:, None])
    eq(a.flatten(), A.reshape(-1))
    eq(a.flatten(1), A.reshape(2, 12))
    eq(kiln.slice(a, 2, 1, 4, 2), A[:, :, 1:4:2])
    v = a.transpose(0, 1)
    assert v.data_ptr() == a.data_ptr() and v.strides == (4, 12, 1)
    assert not v.is_contiguous() and v.contiguous().is_contiguous()


def test_basic_indexing():
    a = k(A)
    for idx in [0, -1, (1, 2), (slice(None), 1), (Ellipsis, 2), (None, 0), (slice(1, None), slice(None, None, 2)),
                (0, slice(0, 3, 2), slice(-3, -1)), (Ellipsis, None), slice(5, 9), (1, Ellipsis, slice(2, 1))]:
        eq(a[idx], A[idx])
    with pytest.raises(IndexError):
        a[2]
    with pytest.raises(IndexError):
        a[0, 0, 0, 0]
    with pytest.raises(ValueError, match="positive steps"):
        a[::-1]
    with pytest.raises(TypeError, match="advanced indexing"):
        a[[0, 1]]


def test_setitem_writes_through_views():
    a = kiln.zeros(3, 4)
    a[1] = 5.0
    a[:, 3] = kiln.tensor([1.0, 2.0, 3.0])
    a[0, :2] = np.array([7.0, 8.0])
    expected = np.zeros((3, 4))
    expected[1] = 5
    expected[:, 3] = [1, 2, 3]
    expected[0, :2] = [7, 8]
    eq(a, expected)


def test_concat_and_stack():
    x, y = k(A[:, :1]), k(A[:, 1:])
    eq(kiln.concat([x, y], axis=1), A)
    eq(kiln.cat((x, y), dim=1), A)
    eq(kiln.stack([k(B), k(B * 2)]), np.stack([B, B * 2]))


def test_factories():
    assert kiln.zeros(2, 3).shape == (2, 3) and kiln.zeros((2, 3)).dtype == kiln.float32
    eq(kiln.ones(2, dtype="float64"), np.ones(2))
    eq(kiln.full((2, 2), 3.5, dtype=kiln.float64), np.full((2, 2), 3.5))
    eq(kiln.arange(5), np.arange(5))
    assert kiln.arange(5).dtype == kiln.int64 and kiln.arange(0, 1, 0.25).dtype == kiln.float32
    eq(kiln.arange(1, 2, 0.25, dtype="float64"), np.arange(1, 2, 0.25))
    assert kiln.empty(4).shape == (4,)
    like = kiln.zeros_like(kiln.ones(2, 2, dtype="float64"))
    assert like.dtype == kiln.float64 and like.shape == (2, 2)
    eq(kiln.full_like(like, 2), np.full((2, 2), 2.0))
    assert kiln.zeros(3, requires_grad=True).requires_grad


def test_random_is_seeded_and_distributed():
    kiln.manual_seed(1234)
    a = kiln.rand(1000, dtype="float64").numpy()
    state = kiln.get_rng_state()
    kiln.manual_seed(1234)
    np.testing.assert_array_equal(kiln.rand(1000, dtype="float64").numpy(), a)
    assert kiln.get_rng_state() == state
    assert 0 <= a.min() and a.max() < 1 and abs(a.mean() - 0.5) < 0.05
    n = kiln.randn(20000, mean=1.0, std=2.0).numpy()
    assert abs(n.mean() - 1.0) < 0.1 and abs(n.std() - 2.0) < 0.1
    u = kiln.rand(100, low=-3, high=-2).numpy()
    assert u.min() >= -3 and u.max() < -2


def test_properties_and_repr():
    t = kiln.tensor([[1.0, 2.0, 3.0]], requires_grad=True)
    assert t.shape == (1, 3) and t.ndim == 2 and t.numel() == 3 and t.size(1) == 3
    assert t.strides == (3, 1) and t.dtype == kiln.float32 and str(t.device) == "cpu"
    r = repr(t)
    assert r.startswith("tensor([[1., 2., 3.]]") and "kiln.float32" in r and "requires_grad=True" in r
    assert "..." in repr(kiln.zeros(1000))
    assert repr(kiln.device("cuda:1")) == "device('cuda:1')"
    assert kiln.device("cuda", 2) == "cuda:2"
    assert math.isclose(kiln.tensor(2.0).item(), 2.0)


def test_float64_lists_keep_every_digit():
    # torch.tensor(list, dtype=torch.float64) converts straight to float64; without a dtype a
    # list of floats becomes float32, as torch's default
    assert kiln.tensor([1e-13, 0.9999999], dtype="float64").numpy().tolist() == [1e-13, 0.9999999]
    assert kiln.tensor([0.1]).dtype == kiln.float32


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_hardswish_matches_torch(dtype):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    x = rng.uniform(-6, 6, size=(5, 37)).astype(dtype)
    g = rng.uniform(-1, 1, size=x.shape).astype(dtype)
    kx = kiln.tensor(x, requires_grad=True)
    ky = kiln.hardswish(kx)
    ky.backward(kiln.tensor(g))
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.nn.functional.hardswish(tx)
    ty.backward(torch.tensor(g))
    tol = 1e-6 if dtype == "float32" else 1e-15
    np.testing.assert_allclose(ky.numpy(), ty.detach().numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(kx.grad.numpy(), tx.grad.numpy(), rtol=tol, atol=tol)
    # At the kink x = 3 and at NaN kiln takes torch's CUDA / scalar-loop rule, which a
    # one-element CPU tensor also runs (1.5 g at 3; g at NaN); -0 below -3 as torch.
    for v, slope in ((3.0, 1.5), (float("nan"), 1.0), (-3.0, -0.5)):
        kv = kiln.tensor([v], requires_grad=True)
        kiln.hardswish(kv).sum().backward()
        tv = torch.tensor([v], dtype=torch.float64, requires_grad=True)
        torch.nn.functional.hardswish(tv).sum().backward()
        assert kv.grad.numpy()[0] == tv.grad.numpy()[0] == slope
    below = kiln.hardswish(kiln.tensor([-4.0])).numpy()[0]
    assert below == 0 and math.copysign(1, below) == -1
