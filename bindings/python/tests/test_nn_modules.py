"""Module objects without PyTorch: Python forwards called from C containers,
ownership of trees, train/eval, zero_grad, parameter registration, load_state_dict,
metrics, and 1,000 training steps of a module with an optimizer at flat memory."""
import gc

import numpy as np
import pytest

import kiln
from kiln import nn


class Scale(nn.Module):
    """A Python module with its own parameter and a C child."""

    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 1, dtype="float64")
        self.gain = nn.Parameter(kiln.full((c, 1, 1), 2.0, dtype="float64"))
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return kiln.relu(self.conv(x)) * self.gain


def test_python_forward_runs_inside_a_c_sequential():
    s = Scale(3)
    seq = nn.Sequential(nn.Conv2d(2, 3, 1, dtype="float64"), s, nn.Sigmoid())
    assert [k for k, _ in seq.named_parameters()] == ["0.weight", "0.bias", "1.gain", "1.conv.weight", "1.conv.bias"]
    x = kiln.tensor(np.random.default_rng(0).standard_normal((2, 2, 3, 3)), requires_grad=True)
    y = seq(x)
    assert s.calls == 1 and y.shape == (2, 3, 3, 3)
    # the same computation by hand from the module's own tensors
    w0, b0 = seq[0].weight, seq[0].bias
    h = kiln.conv2d(x, w0, b0)
    ref = kiln.sigmoid(kiln.relu(kiln.conv2d(h, s.conv.weight, s.conv.bias)) * s.gain)
    np.testing.assert_allclose(y.numpy(), ref.numpy(), rtol=1e-14)
    y.sum().backward()
    assert s.gain.grad is not None and np.abs(s.gain.grad.numpy()).sum() > 0
    assert x.grad is not None


def test_results_of_a_python_forward_outlive_the_call():
    seq = nn.Sequential(Scale(2), nn.ReLU())
    kept = []

    class Spy(nn.Module):
        def forward(self, x):
            h = x * 3
            kept.append(h)  # escapes the call: still valid while the result lives
            return h

    seq.append(Spy())
    y = seq(kiln.ones(1, 2, 2, 2, dtype="float64"))
    gc.collect()
    assert kept[0].shape == (1, 2, 2, 2)
    np.testing.assert_allclose(kept[0].numpy(), y.numpy())
    ref = y.numpy()
    del y  # the escaped tensor keeps the call's scope alive by itself
    gc.collect()
    np.testing.assert_allclose(kept[0].numpy(), ref)

    class Fails(nn.Module):
        def forward(self, x):
            kept.append(x * 2)
            raise ValueError("late")

    with pytest.raises(ValueError, match="late"):
        nn.Sequential(nn.ReLU(), Fails())(kiln.ones(2))
    assert kept[-1].is_released  # released with the failed call's scope, never dangling
    with pytest.raises(RuntimeError, match="released"):
        kept[-1].numpy()


def test_exceptions_in_a_python_forward_come_out_unchanged():
    class Bad(nn.Module):
        def forward(self, x):
            raise ZeroDivisionError("boom")

    seq = nn.Sequential(nn.ReLU(), Bad())
    with pytest.raises(ZeroDivisionError, match="boom"):
        seq(kiln.ones(2))

    class NotATensor(nn.Module):
        def forward(self, x):
            return 3

    with pytest.raises(TypeError, match="returned int"):
        NotATensor()(kiln.ones(2))


def test_forward_returning_a_parameter_or_its_input():
    class P(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(kiln.ones(3))

        def forward(self, x):
            return self.w

    class Identity(nn.Module):
        def forward(self, x):
            return x

    m = P()
    y = m(kiln.zeros(3))
    (y * 2).sum().backward()
    assert m.w.grad.tolist() == [2.0, 2.0, 2.0]
    x = kiln.arange(3.0)
    assert Identity()(x).tolist() == [0.0, 1.0, 2.0]


def test_trees_live_while_any_part_is_referenced():
    root = nn.Sequential(nn.Linear(3, 4), nn.ReLU())
    lin = root[0]
    w = lin.weight
    del root, lin
    gc.collect()
    assert w.shape == (4, 3)  # the tree is still alive through its parameter
    root = nn.Sequential(nn.Linear(3, 4))
    with pytest.raises(ValueError, match="already has a parent"):
        nn.Sequential(root[0])


def test_modes_zero_grad_counts_and_registration():
    m = nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.5), nn.BatchNorm2d(2))
    assert m.training and m[1].training
    m.eval()
    assert not m.training and not m[1].training
    m.train()
    assert m[2].training
    assert m.num_parameters() == 3 * 4 + 4 + 2 + 2
    x = kiln.ones(2, 3)
    m[0](x).sum().backward()
    assert np.abs(m[0].weight.grad.numpy()).sum() > 0
    m.zero_grad()
    assert np.abs(m[0].weight.grad.numpy()).sum() == 0
    c = nn.Module()
    c.register_buffer("steps", kiln.zeros(1))
    b = c.register_parameter("bias", kiln.zeros(2))
    assert b.requires_grad and list(c.state_dict()) == ["bias", "steps"]
    assert m.flat_parameters().shape == (m.num_parameters(),)


def test_load_state_dict_round_trip_and_errors():
    a, b = nn.Linear(3, 2), nn.Linear(3, 2)
    b.load_state_dict(a.state_dict())
    np.testing.assert_array_equal(a.weight.numpy(), b.weight.numpy())
    with pytest.raises(KeyError, match="missing"):
        b.load_state_dict({"weight": np.zeros((2, 3), np.float32)})
    with pytest.raises(ValueError, match="shape"):
        b.load_state_dict({"weight": np.zeros((3, 3), np.float32), "bias": np.zeros(2, np.float32)})
    missing, unexpected = b.load_state_dict({"bias": np.ones(2, np.float32), "x": np.ones(1)}, strict=False)
    assert missing == ["weight"] and unexpected == ["x"] and b.bias.tolist() == [1.0, 1.0]


def test_init_functions():
    kiln.manual_seed(0)
    t = kiln.empty(64, 32)
    nn.init.kaiming_uniform_(t, a=0.0, nonlinearity="relu")
    bound = np.sqrt(2.0) * np.sqrt(3.0 / 32)
    assert np.abs(t.numpy()).max() <= bound and np.abs(t.numpy()).max() > 0.9 * bound
    assert nn.init.calculate_gain("tanh") == pytest.approx(5 / 3)
    nn.init.constant_(t, 0.5)
    assert set(t.numpy().ravel()) == {0.5}


def test_metrics_values():
    scores = np.array([[0.9, 0.2], [0.6, 0.4]], np.float32)
    target = np.array([[1, 0], [0, 1]], np.float32)
    m = kiln.BinaryMetrics(threshold=0.5)
    m.update(kiln.tensor(scores), kiln.tensor(target))
    assert m.counts() == {"tp": 1, "fp": 1, "fn": 1, "tn": 1}
    assert m.pixel_accuracy() == 0.5 and m.iou() == pytest.approx(1 / 3) and m.dice() == 0.5
    logits = kiln.BinaryMetrics(from_logits=True).update(kiln.tensor(np.log(scores / (1 - scores))), target)
    assert logits.counts() == m.counts()
    cm = kiln.ConfusionMatrix(3)
    pred = np.array([[0, 1, 2, 2]], np.int64)
    tgt = np.array([[0, 1, 1, 2]], np.int64)
    cm.update(kiln.tensor(pred), kiln.tensor(tgt))
    np.testing.assert_array_equal(cm.counts(), [[1, 0, 0], [0, 1, 1], [0, 0, 1]])
    assert cm.argmax_accuracy() == 0.75
    np.testing.assert_allclose(cm.class_iou(), [1.0, 0.5, 0.5])
    assert cm.mean_iou() == pytest.approx(2 / 3)


def in_use():
    gc.collect()
    return kiln.memory_stats()["in_use"]


@pytest.mark.parametrize("use_scope", [True, False], ids=["kiln.scope", "refcounting"])
def test_thousand_module_steps_keep_in_use_flat(use_scope):
    kiln.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), Scale4(),
                          nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
    opt = kiln.optim.Adam(model, lr=1e-2)
    x = kiln.randn(8, 1, 6, 6)
    y = kiln.tensor(np.arange(8) % 2)
    x = x + kiln.reshape(y.to(dtype="float32"), 8, 1, 1, 1)  # learnable
    losses, marks = [], {}

    def step():
        opt.zero_grad()
        loss = kiln.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss.item()

    for i in range(1000):
        if use_scope:
            with kiln.scope():
                losses.append(step())
        else:
            losses.append(step())
        if i in (10, 999):
            marks[i] = kiln.memory_stats()
    assert marks[999]["in_use"] == marks[10]["in_use"]
    assert marks[999]["n_backing_allocs"] == marks[10]["n_backing_allocs"]
    assert losses[-1] < 0.1 * losses[0]


class Scale4(nn.Module):
    def __init__(self):
        super().__init__()
        self.g = nn.Parameter(kiln.ones(4, 1, 1))

    def forward(self, x):
        return x * self.g


def test_freeing_a_model_returns_its_memory():
    base = in_use()
    m = nn.Sequential(nn.Linear(256, 256), Scale4())
    m(kiln.ones(2, 256)).sum().backward()
    assert in_use() > base
    del m
    assert in_use() == base


def test_module_to_moves_in_place_and_cuda_without_a_device_is_a_clear_error():
    net = nn.Sequential(nn.Linear(3, 2, dtype="float64"), nn.ReLU())
    w = net.parameters()[0]
    assert net.to("cpu") is net and net.cpu() is net
    assert str(net.device) == "cpu"
    x = kiln.tensor(np.ones((4, 3)), dtype="float64")
    before = net(x).numpy()
    if kiln.cuda.is_available():
        assert net.cuda() is net and str(net.device) == "cuda:0"
        assert w.device == net.device  # the Parameter object followed its tensor
        np.testing.assert_allclose(net(x.to("cuda")).numpy(), before, rtol=1e-12)
        net.cpu()
    else:
        with pytest.raises(kiln.NoDeviceError, match="cuda"):
            net.cuda()
    np.testing.assert_array_equal(net(x).numpy(), before)  # still whole on the cpu
    with pytest.raises(kiln.KilnError, match="not a root"):
        net[0].to("cpu")
