"""Layers, modules, losses and optimizers against PyTorch on the same float64 inputs
and weights: a conv -> batch-norm -> ReLU -> loss stack (bce_with_logits and
cross_entropy) forward and backward, the other layers and losses, state_dict names
of the same architectures (U-Net-16 included), optimizer steps, schedules, clipping."""
import os
import sys

import numpy as np
import pytest

import kiln
from kiln import nn

torch = pytest.importorskip("torch")
F = torch.nn.functional

RTOL, ATOL = 1e-9, 1e-11  # float64 on both sides; only summation orders differ
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", "examples", "python"))


def close(k, t, rtol=RTOL, atol=ATOL):
    np.testing.assert_allclose(k.numpy(), t.detach().numpy(), rtol=rtol, atol=atol)


def rnd(shape, seed, scale=1.0):
    return np.random.default_rng(seed).standard_normal(shape) * scale


def copy_weights(kmod, tmod):
    """torch's weights into the kiln module through load_state_dict (names must agree)."""
    kmod.load_state_dict({k: v for k, v in tmod.state_dict().items()})


def conv_bn_relu(dtype=torch.float64):
    return torch.nn.Sequential(torch.nn.Conv2d(3, 5, 3, padding=1), torch.nn.BatchNorm2d(5),
                               torch.nn.ReLU()).to(dtype)


@pytest.mark.parametrize("loss", ["bce_with_logits", "cross_entropy"])
def test_conv_bn_relu_loss_stack_gradients_match_torch(loss):
    torch.manual_seed(0)
    tm = conv_bn_relu()
    km = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1, dtype="float64"), nn.BatchNorm2d(5, dtype="float64"), nn.ReLU())
    copy_weights(km, tm)
    x = rnd((2, 3, 6, 7), 1)
    kx, tx = kiln.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    kh, th = km(kx), tm(tx)
    if loss == "bce_with_logits":
        y = (rnd((2, 5, 6, 7), 2) > 0).astype(np.float64)
        kl = kiln.bce_with_logits(kh, kiln.tensor(y))
        tl = F.binary_cross_entropy_with_logits(th, torch.tensor(y))
    else:
        y = np.random.default_rng(3).integers(0, 5, (2, 6, 7))
        kl = kiln.cross_entropy(kh, kiln.tensor(y), label_smoothing=0.1)
        tl = F.cross_entropy(th, torch.tensor(y), label_smoothing=0.1)
    close(kl, tl)
    kl.backward()
    tl.backward()
    close(kx.grad, tx.grad)
    kparams = dict(km.named_parameters())
    for name, tp in tm.named_parameters():
        close(kparams[name].grad, tp.grad)
    ks = km.state_dict()
    for name, tb in tm.state_dict().items():  # running statistics after one training step
        close(ks[name], tb)


def test_eval_mode_uses_running_statistics():
    torch.manual_seed(1)
    tm = conv_bn_relu()
    km = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1, dtype="float64"), nn.BatchNorm2d(5, dtype="float64"), nn.ReLU())
    x = rnd((2, 3, 5, 5), 4)
    tm(torch.tensor(x))  # moves the running statistics
    copy_weights(km, tm)
    tm.eval()
    km.eval()
    assert not km.training and not km[1].training
    close(km(kiln.tensor(x)), tm(torch.tensor(x)))


def test_layers_match_torch():
    x = rnd((2, 4, 7, 6), 5)
    w, b = rnd((4, 3, 2, 3), 6), rnd((6,), 7)
    kx, tx = kiln.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    kw, tw = kiln.tensor(w, requires_grad=True), torch.tensor(w, requires_grad=True)
    kb, tb = kiln.tensor(b, requires_grad=True), torch.tensor(b, requires_grad=True)
    k = [kiln.conv_transpose2d(kx, kw, kb, stride=2, padding=1, output_padding=1, groups=2),
         kiln.max_pool2d(kx, 3, stride=2, padding=1, ceil_mode=True),
         kiln.avg_pool2d(kx, 2, count_include_pad=False, padding=1),
         kiln.interpolate(kx, scale_factor=2, mode="nearest"),
         kiln.interpolate(kx, size=(9, 5), mode="bilinear", align_corners=False),
         kiln.conv2d(kx, kiln.tensor(w[:, :2].copy()), None, padding="same", dilation=2, groups=2)]
    t = [F.conv_transpose2d(tx, tw, tb, stride=2, padding=1, output_padding=1, groups=2),
         F.max_pool2d(tx, 3, stride=2, padding=1, ceil_mode=True),
         F.avg_pool2d(tx, 2, count_include_pad=False, padding=1),
         F.interpolate(tx, scale_factor=2, mode="nearest"),
         F.interpolate(tx, size=(9, 5), mode="bilinear", align_corners=False),
         F.conv2d(tx, torch.tensor(w[:, :2].copy()), None, padding="same", dilation=2, groups=2)]
    ks = sum(((a * (i + 1)) ** 2).mean() for i, a in enumerate(k))
    ts = sum(((a * (i + 1)) ** 2).mean() for i, a in enumerate(t))
    for a, c in zip(k, t):
        close(a, c)
    ks.backward()
    ts.backward()
    for a, c in ((kx, tx), (kw, tw), (kb, tb)):
        close(a.grad, c.grad)


def test_linear_modules_and_functional_match_torch():
    torch.manual_seed(2)
    tm = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3),
                             torch.nn.LeakyReLU(0.2), torch.nn.Sigmoid()).double()
    km = nn.Sequential(nn.Flatten(), nn.Linear(12, 5, dtype="float64"), nn.Tanh(), nn.Linear(5, 3, dtype="float64"),
                       nn.LeakyReLU(0.2), nn.Sigmoid())
    copy_weights(km, tm)
    x = rnd((4, 3, 2, 2), 8)
    close(km(kiln.tensor(x)), tm(torch.tensor(x)))
    w, b = rnd((5, 12), 9), rnd((5,), 10)
    close(kiln.linear(kiln.tensor(x.reshape(4, 12)), kiln.tensor(w), kiln.tensor(b)),
          F.linear(torch.tensor(x.reshape(4, 12)), torch.tensor(w), torch.tensor(b)))


def test_losses_match_torch():
    x, y = rnd((3, 4, 5), 11), rnd((3, 4, 5), 12)
    p, q = 1 / (1 + np.exp(-x)), (y > 0).astype(np.float64)
    K, T = kiln.tensor, torch.tensor
    for red in ("none", "mean", "sum"):
        close(kiln.mse_loss(K(x), K(y), reduction=red), F.mse_loss(T(x), T(y), reduction=red))
        close(kiln.l1_loss(K(x), K(y), reduction=red), F.l1_loss(T(x), T(y), reduction=red))
        close(kiln.bce(K(p), K(q), reduction=red), F.binary_cross_entropy(T(p), T(q), reduction=red))
    pw = np.array([0.5, 1.0, 2.0, 3.0]).reshape(4, 1)
    close(kiln.bce_with_logits(K(x), K(q), pos_weight=K(pw)), F.binary_cross_entropy_with_logits(T(x), T(q),
                                                                                                 pos_weight=T(pw)))
    t = np.random.default_rng(13).integers(0, 4, (3, 5))
    t[0, 0] = -100
    wc = np.array([1.0, 2.0, 0.5, 1.5])
    close(kiln.cross_entropy(K(x), K(t), weight=K(wc)), F.cross_entropy(T(x), T(t), weight=T(wc)))
    close(kiln.nll_loss(kiln.log_softmax(K(x), axis=1), K(t), reduction="sum"),
          F.nll_loss(F.log_softmax(T(x), 1), T(t), reduction="sum"))
    # soft Dice per sample on probabilities, and torchvision's focal loss formula
    num = 2 * (p * q).sum(axis=(1, 2)) + 1
    den = p.sum(axis=(1, 2)) + q.sum(axis=(1, 2)) + 1
    np.testing.assert_allclose(kiln.dice_loss(K(p), K(q), reduction="none").numpy(), 1 - num / den, rtol=1e-12)
    ce = F.binary_cross_entropy_with_logits(T(x), T(q), reduction="none").numpy()
    pt = p * q + (1 - p) * (1 - q)
    focal = (0.25 * q + 0.75 * (1 - q)) * ce * (1 - pt) ** 2
    np.testing.assert_allclose(kiln.sigmoid_focal_loss(K(x), K(q)).numpy(), focal, rtol=1e-10, atol=1e-14)


def test_state_dict_names_match_torch():
    tm = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                             torch.nn.Sequential(torch.nn.ConvTranspose2d(4, 2, 2, stride=2), torch.nn.Dropout(0.1)),
                             torch.nn.MaxPool2d(2), torch.nn.AvgPool2d(2), torch.nn.Upsample(scale_factor=2),
                             torch.nn.Flatten(), torch.nn.Linear(8, 3))
    km = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),
                       nn.Sequential(nn.ConvTranspose2d(4, 2, 2, stride=2), nn.Dropout(0.1)),
                       nn.MaxPool2d(2), nn.AvgPool2d(2), nn.Upsample(scale_factor=2), nn.Flatten(), nn.Linear(8, 3))
    assert [(k, tuple(v.shape)) for k, v in km.state_dict().items()] == \
           [(k, tuple(v.shape)) for k, v in tm.state_dict().items()]
    assert [k for k, _ in km.named_parameters()] == [k for k, _ in tm.named_parameters()]
    assert [k for k, _ in km.named_buffers()] == [k for k, _ in tm.named_buffers()]
    assert km.num_parameters() == sum(p.numel() for p in tm.parameters())


def torch_unet():
    """The PyTorch U-Net of tests/fixtures/torch_unet.py (the fixture's reference)."""
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", "tests", "fixtures"))
    from torch_unet import UNet

    return UNet


def test_unet16_matches_torch_and_c():
    from unet import UNet

    km, tm = UNet(3, 1, 16), torch_unet()(3, 1, 16)
    assert [(k, tuple(v.shape)) for k, v in km.state_dict().items()] == \
           [(k, tuple(v.shape)) for k, v in tm.state_dict().items()]
    assert km.num_parameters() == 483441  # the C U-Net-16's count (examples/models/unet.h)
    # the same forward and backward on the same weights, in float64
    tm, km = torch_unet()(3, 1, 4).double(), UNet(3, 1, 4, dtype="float64")
    copy_weights(km, tm)
    x, y = rnd((2, 3, 16, 16), 14), (rnd((2, 1, 16, 16), 15) > 1).astype(np.float64)
    kx = kiln.tensor(x)
    kl = kiln.bce_with_logits(km(kx), kiln.tensor(y))
    tl = F.binary_cross_entropy_with_logits(tm(torch.tensor(x)), torch.tensor(y))
    close(kl, tl, rtol=1e-8)
    kl.backward()
    tl.backward()
    kp = dict(km.named_parameters())
    for name, p in tm.named_parameters():
        close(kp[name].grad, p.grad, rtol=1e-7, atol=1e-10)


def params_pair(seed):
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal((3, 4)), rng.standard_normal(4)]
    grads = [[rng.standard_normal(a.shape) for a in arrays] for _ in range(3)]
    return arrays, grads


@pytest.mark.parametrize("kind,kw", [
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("SGD", dict(lr=0.1, momentum=0.5, dampening=0.1, maximize=True)),
    ("Adam", dict(lr=0.01, betas=(0.8, 0.9), weight_decay=0.1)),
    ("Adam", dict(lr=0.01, amsgrad=True)),
    ("AdamW", dict(lr=0.01, weight_decay=0.05)),
])
def test_optimizer_steps_match_torch(kind, kw):
    arrays, grads = params_pair(16)
    kp = [kiln.tensor(a, requires_grad=True) for a in arrays]
    tp = [torch.tensor(a, requires_grad=True) for a in arrays]
    ko, to = getattr(kiln.optim, kind)(kp, **kw), getattr(torch.optim, kind)(tp, **kw)
    for step in grads:  # the same gradients, handed in through backward on both sides
        ko.zero_grad()
        to.zero_grad()
        sum((k * kiln.tensor(g)).sum() for k, g in zip(kp, step)).backward()
        sum((t * torch.tensor(g)).sum() for t, g in zip(tp, step)).backward()
        ko.step()
        to.step()
        for k, t in zip(kp, tp):
            close(k, t, rtol=1e-12, atol=1e-14)
    assert ko.step_count == 3 and ko.kind == kind.lower()


def test_module_optimizer_uses_the_arena():
    torch.manual_seed(3)
    tm = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 2)).double()
    km = nn.Sequential(nn.Linear(4, 6, dtype="float64"), nn.ReLU(), nn.Linear(6, 2, dtype="float64"))
    copy_weights(km, tm)
    ko, to = kiln.optim.Adam(km, lr=0.01), torch.optim.Adam(tm.parameters(), lr=0.01)
    x = rnd((5, 4), 17)
    for _ in range(4):
        km.zero_grad()
        to.zero_grad()
        (km(kiln.tensor(x)) ** 2).mean().backward()
        (tm(torch.tensor(x)) ** 2).mean().backward()
        ko.step()
        to.step()
    for (name, k), (_, t) in zip(km.state_dict().items(), tm.state_dict().items()):
        close(k, t, rtol=1e-11)
    assert ko.fused_updates > 0  # the parameters are back to back in the module's arena


def test_schedules_match_torch():
    cases = [
        (lambda o: kiln.optim.StepLR(o, 3, 0.5), lambda o: torch.optim.lr_scheduler.StepLR(o, 3, 0.5)),
        (lambda o: kiln.optim.MultiStepLR(o, [2, 5], 0.1), lambda o: torch.optim.lr_scheduler.MultiStepLR(o, [2, 5])),
        (lambda o: kiln.optim.ExponentialLR(o, 0.9), lambda o: torch.optim.lr_scheduler.ExponentialLR(o, 0.9)),
        (lambda o: kiln.optim.CosineAnnealingLR(o, T_max=7, eta_min=0.01),
         lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=7, eta_min=0.01)),
        (lambda o: kiln.optim.LinearLR(o, start_factor=0.25, total_iters=4),
         lambda o: torch.optim.lr_scheduler.LinearLR(o, start_factor=0.25, total_iters=4)),
        (lambda o: kiln.optim.OneCycleLR(o, max_lr=0.5, total_steps=10),
         lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.5, total_steps=10, cycle_momentum=False)),
    ]
    for make_k, make_t in cases:
        ko = kiln.optim.SGD([kiln.zeros(1, requires_grad=True)], lr=0.1)
        to = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        ks, ts = make_k(ko), make_t(to)
        for _ in range(9):
            assert ko.lr == pytest.approx(to.param_groups[0]["lr"], rel=1e-12, abs=1e-15)
            to.step()
            ks.step()
            ts.step()


@pytest.mark.parametrize("strategy", ["linear", "cos"])
def test_onecycle_last_step_of_a_standard_loop_matches_torch(strategy):
    # total_steps optimizer steps, each followed by scheduler.step(): the last one goes past
    # the schedule's end, where torch extrapolates (below 0 for 'linear') and does not raise
    ko = kiln.optim.SGD([kiln.zeros(1, requires_grad=True)], lr=0.1)
    to = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    ks = kiln.optim.OneCycleLR(ko, max_lr=0.1, total_steps=10, anneal_strategy=strategy)
    ts = torch.optim.lr_scheduler.OneCycleLR(to, max_lr=0.1, total_steps=10, anneal_strategy=strategy,
                                             cycle_momentum=False)
    for _ in range(10):
        to.step()
        ks.step()
        ts.step()
        assert ko.lr == pytest.approx(to.param_groups[0]["lr"], rel=1e-12, abs=1e-15)
    assert ks.get_last_lr()[0] == pytest.approx(ts.get_last_lr()[0], rel=1e-12, abs=1e-15)
    with pytest.raises(ValueError):
        ts.step()
    with pytest.raises(Exception):
        ks.step()


def test_clipping_matches_torch():
    arrays, grads = params_pair(18)
    for norm_type in (2.0, 1.0, float("inf")):
        kp = [kiln.tensor(a, requires_grad=True) for a in arrays]
        tp = [torch.tensor(a, requires_grad=True) for a in arrays]
        sum((k * kiln.tensor(g)).sum() for k, g in zip(kp, grads[0])).backward()
        sum((t * torch.tensor(g)).sum() for t, g in zip(tp, grads[0])).backward()
        kn = kiln.optim.clip_grad_norm_(kp, 1.5, norm_type)
        tn = torch.nn.utils.clip_grad_norm_(tp, 1.5, norm_type)
        assert kn == pytest.approx(tn.item(), rel=1e-12)
        for k, t in zip(kp, tp):
            close(k.grad, t.grad)
    kiln.optim.clip_grad_value_(kp, 0.1)
    torch.nn.utils.clip_grad_value_(tp, 0.1)
    for k, t in zip(kp, tp):
        close(k.grad, t.grad)
