"""Lifetimes: tensors are freed when Python drops them, kiln.scope() releases a
step's intermediates, views and gradients keep what they need, and a 1,000-step
training loop keeps the pool's in-use bytes flat."""
import gc

import numpy as np
import pytest

import kiln


def in_use():
    gc.collect()
    return kiln.memory_stats()["in_use"]


def test_dropping_a_tensor_frees_it():
    base = in_use()
    t = kiln.zeros(1 << 18)
    assert in_use() >= base + (1 << 20)
    del t
    assert in_use() == base


def test_views_and_grads_keep_their_memory():
    base = in_use()
    a = kiln.arange(12, dtype="float32").reshape(3, 4)
    v = a[1:, ::2]
    del a
    assert v.tolist() == [[4.0, 6.0], [8.0, 10.0]]
    w = kiln.ones(4, requires_grad=True)
    (w * 3).sum().backward()
    g = w.grad
    del w
    assert g.tolist() == [3.0] * 4
    del v, g
    assert in_use() == base


def test_graph_inputs_live_until_backward():
    w = kiln.tensor([2.0], dtype="float64", requires_grad=True)
    y = w * 3  # the intermediate dies as a Python name, its node stays reachable
    for _ in range(3):
        y = kiln.sigmoid(y) * w
    z = y.sum()
    del y
    gc.collect()
    z.backward()
    assert w.grad is not None and np.isfinite(w.grad.item())


def test_scope_releases_everything_made_inside_and_keep_moves_out():
    base = in_use()
    with kiln.scope() as s:
        a = kiln.ones(1000)
        b = a * 2
        kept = s.keep(b.sum())
        with kiln.scope() as inner:
            c = inner.keep(a + 1)
        assert not c.is_released
    assert a.is_released and b.is_released and c.is_released
    assert kept.item() == 2000.0 and in_use() > base
    del kept
    assert in_use() == base


def test_keep_cuts_the_tape_like_c():
    w = kiln.ones(2, requires_grad=True)
    with kiln.scope() as s:
        y = s.keep(w * 2)
    # as kiln_scope_keep: a computed tensor leaves the tape and stops requiring grad
    assert y.is_leaf and not y.requires_grad and y.tolist() == [2.0, 2.0]
    with pytest.raises(kiln.StateError):
        y.sum().backward()
    assert w.grad is None
    with kiln.scope() as s:
        leaf = s.keep(kiln.ones(2, requires_grad=True))  # a leaf keeps its flag
    assert leaf.requires_grad


def make_model():
    kiln.manual_seed(0)
    return [kiln.randn(16, 32, std=0.3, requires_grad=True), kiln.zeros(32, requires_grad=True),
            kiln.randn(32, 4, std=0.3, requires_grad=True)]


def train_step(params, x, target, lr=0.05):
    w1, b1, w2 = params
    logits = kiln.relu(x @ w1 + b1) @ w2
    loss = -(kiln.log_softmax(logits, axis=1) * target).sum(axis=1).mean()
    loss.backward()
    with kiln.no_grad():
        for p in params:
            p -= lr * p.grad
            p.grad = None
    return loss.item()


def data():
    kiln.manual_seed(1)
    x = kiln.randn(64, 16)
    xn = x.numpy()
    labels = (xn[:, 0] > 0).astype(int) + 2 * (xn[:, 1] > 0).astype(int)
    return x, kiln.tensor(np.eye(4, dtype=np.float32)[labels])


@pytest.mark.parametrize("use_scope", [True, False], ids=["kiln.scope", "refcounting"])
def test_thousand_steps_keep_in_use_flat(use_scope):
    params, (x, target) = make_model(), data()
    losses, marks = [], {}
    for step in range(1000):
        if use_scope:
            with kiln.scope():
                losses.append(train_step(params, x, target))
        else:
            losses.append(train_step(params, x, target))
        if step in (10, 999):
            marks[step] = kiln.memory_stats()
    assert marks[999]["in_use"] == marks[10]["in_use"]
    assert marks[999]["n_backing_allocs"] == marks[10]["n_backing_allocs"]  # steady state: no new segments
    assert losses[-1] < 0.5 * losses[0]  # and it learned


def test_threads_share_the_library_safely():
    import threading

    errors = []

    def work(seed):
        try:
            w = kiln.tensor(np.full(8, float(seed)), dtype="float64", requires_grad=True)
            for _ in range(200):
                with kiln.scope():
                    (kiln.sigmoid(w) * w).sum().backward()
            expected = 200 * (1 / (1 + np.exp(-seed)) * (1 + seed * (1 - 1 / (1 + np.exp(-seed)))))
            np.testing.assert_allclose(w.grad.numpy(), expected, rtol=1e-9)
        except Exception as e:  # reported below, in the main thread
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
