"""Gradients through kiln from Python, against PyTorch on the same float64 inputs,
and the autograd controls: no_grad, requires_grad, .grad, accumulation."""
import numpy as np
import pytest

import kiln

try:
    import torch
except ImportError:  # the finite-difference checks still run
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed")

RTOL, ATOL = 1e-10, 1e-12  # float64 on both sides; only summation order differs


def pair(shape, seed, requires_grad=True):
    a = np.random.default_rng(seed).standard_normal(shape)
    return (kiln.tensor(a, requires_grad=requires_grad),
            torch.tensor(a, dtype=torch.float64, requires_grad=requires_grad))


def close(k, t):
    np.testing.assert_allclose(k.numpy(), t.detach().numpy(), rtol=RTOL, atol=ATOL)


@needs_torch
def test_mlp_stack_matches_torch():
    """matmul, add (broadcast bias), relu, sigmoid, softmax, mul, sum."""
    (kx, tx), (kw1, tw1), (kb1, tb1) = pair((6, 5), 0), pair((5, 8), 1), pair((8,), 2)
    (kw2, tw2), (kt, tt) = pair((8, 4), 3), pair((6, 4), 4, requires_grad=False)
    kl = (kiln.softmax(kiln.relu(kx @ kw1 + kb1) @ kw2, axis=1) * kt).sum() + kiln.sigmoid(kx @ kw1).sum()
    tl = (torch.softmax(torch.relu(tx @ tw1 + tb1) @ tw2, dim=1) * tt).sum() + torch.sigmoid(tx @ tw1).sum()
    close(kl, tl)
    kl.backward()
    tl.backward()
    for k, t in ((kx, tx), (kw1, tw1), (kb1, tb1), (kw2, tw2)):
        close(k.grad, t.grad)
    assert kt.grad is None


@needs_torch
def test_more_ops_match_torch():
    (kx, tx), (ky, ty) = pair((3, 4), 5), pair((3, 4), 6)
    kp, tp = kiln.abs(kx) + 0.5, torch.abs(tx) + 0.5
    k = (kiln.log_softmax(kx, axis=0) * kiln.tanh(ky)).mean() \
        + (kp.sqrt() * kiln.log(kp)).sum(axis=1).max() \
        + (kx / (ky * ky + 1)).sum() \
        + (kx ** 3).mean(axis=(0, 1)) \
        + kiln.exp(kiln.clamp(kx, min=-0.5, max=0.5)).sum() \
        + kiln.where(kx, kiln.maximum(kx, ky), kiln.minimum(kx, ky)).sum() \
        + kiln.leaky_relu(ky, 0.1).transpose(0, 1).reshape(2, 6)[1, 2:].sum() \
        + kiln.concat([kx, ky], axis=1).max(axis=1).sum() \
        + (2 - kx).sum() * 0.25 + (1 / (kp + 1)).sum()
    t = (torch.log_softmax(tx, dim=0) * torch.tanh(ty)).mean() \
        + (tp.sqrt() * torch.log(tp)).sum(dim=1).max() \
        + (tx / (ty * ty + 1)).sum() \
        + (tx ** 3).mean(dim=(0, 1)) \
        + torch.exp(torch.clamp(tx, min=-0.5, max=0.5)).sum() \
        + torch.where(tx != 0, torch.maximum(tx, ty), torch.minimum(tx, ty)).sum() \
        + torch.nn.functional.leaky_relu(ty, 0.1).transpose(0, 1).reshape(2, 6)[1, 2:].sum() \
        + torch.cat([tx, ty], dim=1).amax(dim=1).sum() \
        + (2 - tx).sum() * 0.25 + (1 / (tp + 1)).sum()
    close(k, t)
    k.backward()
    t.backward()
    close(kx.grad, tx.grad)
    close(ky.grad, ty.grad)


@needs_torch
def test_backward_with_gradient_argument():
    (kx, tx), (kg, tg) = pair((2, 3), 7), pair((2, 3), 8, requires_grad=False)
    (kx * kx).backward(kg)
    (tx * tx).backward(tg)
    close(kx.grad, tx.grad)


def test_stack_matches_central_differences():
    """Without PyTorch too: the analytic gradient of the matmul/add/relu/sigmoid/
    softmax/sum stack against float64 central differences of the same kiln function."""
    rng = np.random.default_rng(11)
    x0, w0, b0 = rng.standard_normal((4, 3)), rng.standard_normal((3, 5)), rng.standard_normal(5)

    def f(x, w, b):
        h = x @ w + b
        return (kiln.softmax(kiln.relu(h), axis=1) * kiln.sigmoid(h)).sum()

    params = [kiln.tensor(a, requires_grad=True) for a in (x0, w0, b0)]
    f(*params).backward()
    eps = 1e-6
    for i, a in enumerate((x0, w0, b0)):
        num = np.zeros_like(a)
        for j in np.ndindex(a.shape):
            vals = []
            for sign in (1, -1):
                args = [kiln.tensor(v) for v in (x0, w0, b0)]
                bumped = a.copy()
                bumped[j] += sign * eps
                args[i] = kiln.tensor(bumped)
                vals.append(f(*args).item())
            num[j] = (vals[0] - vals[1]) / (2 * eps)
        np.testing.assert_allclose(params[i].grad.numpy(), num, rtol=1e-6, atol=1e-8)


def test_gradients_accumulate_and_grad_none_resets():
    x = kiln.tensor([1.0, 2.0], dtype="float64", requires_grad=True)
    (x * 3).sum().backward()
    (x * 3).sum().backward()
    assert x.grad.tolist() == [6.0, 6.0]
    x.grad = None
    assert x.grad is None
    (x * x).sum().backward()
    assert x.grad.tolist() == [2.0, 4.0]
    x.zero_grad()
    assert x.grad.tolist() == [0.0, 0.0]


def test_second_backward_needs_retain_graph_as_in_torch():
    x = kiln.tensor([1.0, -2.0], dtype="float64", requires_grad=True)
    y = (x * x).sum()
    y.backward()
    with pytest.raises(kiln.StateError, match="retain_graph"):
        y.backward()
    assert x.grad.tolist() == [2.0, -4.0]  # not doubled
    x.grad = None
    z = (x * x).sum()
    z.backward(retain_graph=True)
    z.backward()
    assert x.grad.tolist() == [4.0, -8.0]


def test_no_grad_records_nothing():
    w = kiln.ones(3, requires_grad=True)
    assert kiln.is_grad_enabled()
    with kiln.no_grad():
        assert not kiln.is_grad_enabled()
        y = w * 2
    assert kiln.is_grad_enabled()
    assert not y.requires_grad and y.is_leaf
    assert (w * 2).requires_grad

    @kiln.no_grad()
    def f(t):
        return t + 1

    assert not f(w).requires_grad


def test_requires_grad_flags():
    x = kiln.zeros(2)
    assert not x.requires_grad and x.is_leaf
    x.requires_grad_()
    y = x + 1
    assert y.requires_grad and not y.is_leaf
    assert not y.detach().requires_grad
    with pytest.raises(TypeError, match="floating-point"):
        kiln.zeros(2, dtype="int64").requires_grad = True


def test_sgd_update_in_place_under_no_grad():
    w = kiln.tensor([1.0, -1.0], requires_grad=True)
    (w * w).sum().backward()
    with pytest.raises(RuntimeError, match="no_grad"):
        w -= 0.1 * w.grad
    with kiln.no_grad():
        w -= 0.1 * w.grad
    np.testing.assert_allclose(w.detach().numpy(), [0.8, -0.8], rtol=1e-6)
