"""Bad input to the layers, modules, losses, metrics, optimizers and checkpoints
raises the Python exception a user expects, carrying kiln's message."""
import numpy as np
import pytest

import kiln
from kiln import nn


def test_layer_errors():
    x = kiln.ones(1, 3, 5, 5)
    with pytest.raises(kiln.ShapeError, match="conv2d"):
        kiln.conv2d(x, kiln.ones(4, 2, 3, 3))  # in-channels mismatch
    with pytest.raises(ValueError):
        kiln.conv2d(x, kiln.ones(4, 3, 3, 3), padding="full")
    with pytest.raises(TypeError):
        kiln.max_pool2d(x, "2")
    with pytest.raises(ValueError):
        kiln.max_pool2d(x, 2, padding=2)  # more than half the kernel
    with pytest.raises(ValueError, match="exactly one"):
        kiln.interpolate(x)
    with pytest.raises(ValueError, match="align_corners"):
        kiln.interpolate(x, scale_factor=2, align_corners=True)
    with pytest.raises(TypeError):
        kiln.conv2d(np.ones((1, 3, 5, 5)), kiln.ones(4, 3, 3, 3))


def test_module_errors():
    with pytest.raises(ValueError):
        nn.Conv2d(3, 4, 3, groups=2)  # 3 channels do not divide by 2
    with pytest.raises(ValueError):
        nn.Dropout(1.5)
    with pytest.raises(kiln.ShapeError, match="in_features"):
        nn.Linear(3, 2)(kiln.ones(2, 4))
    with pytest.raises(kiln.ShapeError, match="'1'"):  # the message names the module's path
        nn.Sequential(nn.ReLU(), nn.Conv2d(3, 4, 1))(kiln.ones(1, 2, 4, 4))
    m = nn.Sequential(nn.Linear(2, 2))
    with pytest.raises(KeyError):
        m.add_module("a.b", nn.ReLU())
    with pytest.raises(KeyError, match="already has"):
        m.add_module("0", nn.ReLU())
    with pytest.raises(TypeError):
        m.append("relu")

    class NoSuper(nn.Module):
        def __init__(self):
            self.fc = nn.Linear(1, 1)

    with pytest.raises(RuntimeError, match="super"):
        NoSuper()

    class NoForward(nn.Module):
        pass

    with pytest.raises(NotImplementedError):
        NoForward()(kiln.ones(1))
    with pytest.raises(AttributeError):
        nn.Linear(1, 1).nonexistent


def test_loss_errors():
    x = kiln.zeros(2, 3)
    with pytest.raises(kiln.ShapeError):
        kiln.bce_with_logits(x, kiln.zeros(2, 1))  # never a silent broadcast
    with pytest.raises(ValueError, match="bce_with_logits"):
        kiln.bce(x + 2, kiln.zeros(2, 3))  # probabilities outside [0, 1]
    with pytest.raises(ValueError, match="sigmoid"):
        kiln.cross_entropy(kiln.zeros(2, 1), kiln.tensor([0, 0]))  # one class: use BCE
    with pytest.raises(ValueError):
        kiln.cross_entropy(x, kiln.tensor([0, 3]))  # class out of range
    with pytest.raises(ValueError, match="reduction"):
        kiln.mse_loss(x, x, reduction="avg")


def test_metric_optimizer_checkpoint_errors(tmp_path):
    with pytest.raises(ValueError):
        kiln.BinaryMetrics(threshold=2.0)
    m = kiln.BinaryMetrics()
    with pytest.raises(kiln.ShapeError):
        m.update(kiln.zeros(2, 2), kiln.zeros(2, 3))
    with pytest.raises(ValueError):
        m.update(kiln.full((2,), 3.0), kiln.zeros(2))  # not probabilities
    with pytest.raises(ValueError):
        kiln.ConfusionMatrix(1)
    with pytest.raises(ValueError, match="empty"):
        kiln.optim.SGD([])
    with pytest.raises(TypeError):
        kiln.optim.Adam([np.ones(3)])
    w = kiln.ones(2, requires_grad=True)
    with pytest.raises(ValueError):
        kiln.optim.SGD([w], lr=-1.0)
    with pytest.raises(ValueError):
        kiln.optim.OneCycleLR(kiln.optim.SGD([w]), max_lr=1.0, total_steps=4, anneal_strategy="exp")
    with pytest.raises(kiln.KilnIOError):
        kiln.load_file(tmp_path / "missing.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\xff" * 16)
    with pytest.raises(kiln.FormatError):
        kiln.load_file(bad)
    good = tmp_path / "m.safetensors"
    kiln.save_checkpoint(good, nn.Linear(2, 2))
    with pytest.raises(kiln.ShapeError):
        kiln.load_checkpoint(good, nn.Linear(3, 2))
    with pytest.raises(TypeError):
        kiln.save_file([kiln.ones(1)], good)


def test_examples_errors():
    with pytest.raises(ValueError):
        kiln.examples.scene_batch(0, 1, size=4)  # scenes are 8..4096 on a side
    with pytest.raises(ValueError, match="split"):
        kiln.examples.scene_batch(0, 1, split="test")
