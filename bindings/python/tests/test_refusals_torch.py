"""What torch 1.13 computes and kiln used to refuse, against torch on the same float64 inputs:
unbatched (C, H, W) conv2d / conv_transpose2d / pooling (functional and modules), batch_norm
and BatchNorm1d on (N, C) and (N, C, L), linear with a 1-d weight, squeeze on an axis not of
size 1; and interpolate on 3-d input, which torch reads as (N, C, W) and kiln still refuses."""
import numpy as np
import pytest

import kiln
from kiln import nn

torch = pytest.importorskip("torch")
F = torch.nn.functional
RTOL, ATOL = 1e-9, 1e-11


def close(k, t, rtol=RTOL, atol=ATOL):
    np.testing.assert_allclose(k.numpy(), t.detach().numpy(), rtol=rtol, atol=atol)


def rnd(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape)


def pair(*arrays):
    k = [kiln.tensor(a, requires_grad=True) for a in arrays]
    t = [torch.tensor(a, requires_grad=True) for a in arrays]
    return k, t


def check_grads(ky, ty, ks, ts, seed=99):
    g = rnd(tuple(ty.shape), seed)
    (ky * kiln.tensor(g)).sum().backward()
    (ty * torch.tensor(g)).sum().backward()
    for k, t in zip(ks, ts):
        close(k.grad, t.grad)


@pytest.mark.parametrize("op", ["conv2d", "conv_transpose2d"])
def test_unbatched_conv_matches_torch(op):
    w, b = ((4, 3, 3, 3), (4,)) if op == "conv2d" else ((3, 2, 3, 3), (2,))  # torch's weight layouts
    (kx, kw, kb), (tx, tw, tb) = pair(rnd((3, 5, 6), 1), rnd(w, 2), rnd(b, 3))
    if op == "conv2d":
        ky, ty = kiln.conv2d(kx, kw, kb, stride=2, padding=1), F.conv2d(tx, tw, tb, stride=2, padding=1)
    else:
        ky = kiln.conv_transpose2d(kx, kw, kb, stride=2, output_padding=1)
        ty = F.conv_transpose2d(tx, tw, tb, stride=2, output_padding=1)
    assert tuple(ky.shape) == tuple(ty.shape) and len(ty.shape) == 3
    close(ky, ty)
    check_grads(ky, ty, (kx, kw, kb), (tx, tw, tb))


def test_unbatched_pooling_and_modules_match_torch():
    (kx,), (tx,) = pair(rnd((2, 7, 6), 4))
    ky = kiln.max_pool2d(kx, 3, stride=2, padding=1, ceil_mode=True) + kiln.avg_pool2d(kx, 3, stride=2, padding=1,
                                                                                      ceil_mode=True)
    ty = F.max_pool2d(tx, 3, stride=2, padding=1, ceil_mode=True) + F.avg_pool2d(tx, 3, stride=2, padding=1,
                                                                                  ceil_mode=True)
    assert tuple(ky.shape) == tuple(ty.shape) == (2, 4, 4)
    close(ky, ty)
    check_grads(ky, ty, (kx,), (tx,))
    torch.manual_seed(0)
    tm = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3, padding=1), torch.nn.MaxPool2d(2)).double()
    km = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, dtype="float64"), nn.MaxPool2d(2))
    km.load_state_dict(dict(tm.state_dict()))
    close(km(kiln.tensor(rnd((2, 7, 6), 5))), tm(torch.tensor(rnd((2, 7, 6), 5))))


def test_interpolate_3d_is_still_refused():
    # torch 1.13: interpolate on (3, 5, 5) is a 1-d resampling of (N, C, W) = (3, 5, 5)
    assert tuple(F.interpolate(torch.zeros(3, 5, 5), scale_factor=2.0).shape) == (3, 5, 10)
    with pytest.raises(ValueError, match="N, C, W"):
        kiln.interpolate(kiln.zeros(3, 5, 5), scale_factor=2.0)


@pytest.mark.parametrize("shape", [(5, 3), (2, 3, 4)])
def test_batch_norm_1d_matches_torch(shape):
    (kx, kw, kb), (tx, tw, tb) = pair(rnd(shape, 6) * 2 + 1, rnd((3,), 7) + 2, rnd((3,), 8))
    krm, krv = kiln.tensor(np.zeros(3)), kiln.tensor(np.ones(3))
    trm, trv = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    ky = nn.batch_norm(kx, krm, krv, kw, kb, training=True)
    ty = F.batch_norm(tx, trm, trv, tw, tb, training=True)
    close(ky, ty)
    close(krm, trm)
    close(krv, trv)
    check_grads(ky, ty, (kx, kw, kb), (tx, tw, tb))
    xe = rnd(shape, 9)
    close(nn.batch_norm(kiln.tensor(xe), krm, krv, kw, kb), F.batch_norm(torch.tensor(xe), trm, trv, tw, tb))


def test_batch_norm1d_module_matches_torch():
    tm = torch.nn.BatchNorm1d(3).double()
    km = nn.BatchNorm1d(3, dtype="float64")
    assert list(km.state_dict()) == list(tm.state_dict())
    for i, shape in enumerate([(4, 3), (2, 3, 5)]):
        x = rnd(shape, 10 + i)
        close(km(kiln.tensor(x)), tm(torch.tensor(x)))
    for name, t in tm.state_dict().items():
        close(km.state_dict()[name], t)
    km.eval()
    tm.eval()
    x = rnd((2, 3, 2), 12)
    close(km(kiln.tensor(x)), tm(torch.tensor(x)))


@pytest.mark.parametrize("xshape,bias", [((2, 2, 3, 4), True), ((3, 4), False), ((4,), True), ((2, 3, 4), False)])
def test_linear_vector_weight_matches_torch(xshape, bias):
    arrays = [rnd(xshape, 13), rnd((4,), 14)] + ([np.array(0.75)] if bias else [])
    ks, ts = pair(*arrays)
    ky = nn.linear(*ks)
    ty = F.linear(*ts)  # torch 1.13 refuses a bias with 2-d and 3-d input (its addmm path): not tested there
    assert tuple(ky.shape) == tuple(ty.shape) == xshape[:-1]
    close(ky, ty)
    check_grads(ky, ty, ks, ts)


def test_squeeze_axis_not_one_is_a_view():
    a = np.arange(6.0).reshape(2, 3)
    k = kiln.squeeze(kiln.tensor(a), 1)
    t = torch.tensor(a).squeeze(1)
    assert tuple(k.shape) == tuple(t.shape) == (2, 3)
    close(k, t)
    assert tuple(kiln.squeeze(kiln.tensor(np.array(2.0)), 0).shape) == tuple(torch.tensor(2.0).squeeze(0).shape)
