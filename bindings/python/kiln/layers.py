"""The convolution-family ops of include/kiln/layers.h on NCHW tensors: conv2d,
conv_transpose2d, max/avg pooling and nearest/bilinear upsampling, with PyTorch's
argument names, defaults and weight layouts (torch.nn.functional's signatures)."""
import ctypes
import numbers
from ctypes import POINTER, c_bool, c_double, c_int64, c_void_p

from . import _lib
from ._runtime import call, handle, mirrors

_I2 = c_int64 * 2


@mirrors("kiln_conv2d_params", "include/kiln/layers.h")
class CConv2dParams(ctypes.Structure):
    """kiln_conv2d_params."""

    _fields_ = [("stride", _I2), ("padding", _I2), ("dilation", _I2), ("groups", c_int64), ("padding_same", c_bool)]


@mirrors("kiln_conv_transpose2d_params", "include/kiln/layers.h")
class CConvTranspose2dParams(ctypes.Structure):
    """kiln_conv_transpose2d_params."""

    _fields_ = [("stride", _I2), ("padding", _I2), ("output_padding", _I2), ("dilation", _I2), ("groups", c_int64)]


@mirrors("kiln_pool2d_params", "include/kiln/layers.h")
class CPool2dParams(ctypes.Structure):
    """kiln_pool2d_params."""

    _fields_ = [("kernel", _I2), ("stride", _I2), ("padding", _I2), ("dilation", _I2), ("ceil_mode", c_bool),
                ("count_include_pad", c_bool)]


T = c_void_p
_conv2d = _lib.declare("kiln_conv2d", T, T, T, T, POINTER(CConv2dParams))
_conv_transpose2d = _lib.declare("kiln_conv_transpose2d", T, T, T, T, POINTER(CConvTranspose2dParams))
_max_pool2d = _lib.declare("kiln_max_pool2d", T, T, POINTER(CPool2dParams))
_avg_pool2d = _lib.declare("kiln_avg_pool2d", T, T, POINTER(CPool2dParams))
_up_nearest = _lib.declare("kiln_upsample_nearest2d", T, T, c_int64, c_int64)
_up_nearest_scale = _lib.declare("kiln_upsample_nearest2d_scale", T, T, c_double, c_double)
_up_bilinear = _lib.declare("kiln_upsample_bilinear2d", T, T, c_int64, c_int64, c_bool)
_up_bilinear_scale = _lib.declare("kiln_upsample_bilinear2d_scale", T, T, c_double, c_double, c_bool)


def pair(v, what):
    """(h, w) from an int or a pair of ints, as torch's _pair."""
    if isinstance(v, numbers.Integral) and not isinstance(v, bool):
        return (int(v), int(v))
    try:
        a, b = v
    except (TypeError, ValueError):
        raise TypeError(f"kiln: {what} must be an int or a pair of ints, not {v!r}") from None
    for x in (a, b):
        if not isinstance(x, numbers.Integral) or isinstance(x, bool):
            raise TypeError(f"kiln: {what} must be an int or a pair of ints, not {v!r}")
    return (int(a), int(b))


def conv2d_params(stride=1, padding=0, dilation=1, groups=1):
    p = CConv2dParams()
    p.stride[:] = pair(stride, "stride")
    p.dilation[:] = pair(dilation, "dilation")
    p.groups = int(groups)
    if isinstance(padding, str):
        if padding == "same":
            p.padding_same = True
        elif padding == "valid":
            p.padding[:] = (0, 0)
        else:
            raise ValueError(f"kiln.conv2d: padding {padding!r} must be 'same', 'valid' or ints")
    else:
        p.padding[:] = pair(padding, "padding")
    return p


def conv_transpose2d_params(stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    p = CConvTranspose2dParams()
    p.stride[:] = pair(stride, "stride")
    p.padding[:] = pair(padding, "padding")
    p.output_padding[:] = pair(output_padding, "output_padding")
    p.dilation[:] = pair(dilation, "dilation")
    p.groups = int(groups)
    return p


def pool2d_params(kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, count_include_pad=True):
    p = CPool2dParams()
    p.kernel[:] = pair(kernel_size, "kernel_size")
    p.stride[:] = (0, 0) if stride is None else pair(stride, "stride")  # 0: the kernel size
    p.padding[:] = pair(padding, "padding")
    p.dilation[:] = pair(dilation, "dilation")
    p.ceil_mode = bool(ceil_mode)
    p.count_include_pad = bool(count_include_pad)
    return p


def _opt(t, what):
    return None if t is None else handle(t, what)


def _inputs(*ts):
    return tuple(t for t in ts if t is not None)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """As torch.nn.functional.conv2d: input (N, C_in, H, W), weight (C_out, C_in/groups, kH, kW),
    bias (C_out) or None; padding is ints, 'same' or 'valid'."""
    p = conv2d_params(stride, padding, dilation, groups)
    return call(_conv2d, (handle(input, "input"), handle(weight, "weight"), _opt(bias, "bias"), ctypes.byref(p)),
                _inputs(input, weight, bias))


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """As torch.nn.functional.conv_transpose2d: weight (C_in, C_out/groups, kH, kW)."""
    p = conv_transpose2d_params(stride, padding, output_padding, groups, dilation)
    return call(_conv_transpose2d, (handle(input, "input"), handle(weight, "weight"), _opt(bias, "bias"),
                                    ctypes.byref(p)), _inputs(input, weight, bias))


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """As torch.nn.functional.max_pool2d (stride None: the kernel size); no indices."""
    p = pool2d_params(kernel_size, stride, padding, dilation, ceil_mode)
    return call(_max_pool2d, (handle(input, "input"), ctypes.byref(p)), (input,))


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    p = pool2d_params(kernel_size, stride, padding, 1, ceil_mode, count_include_pad)
    return call(_avg_pool2d, (handle(input, "input"), ctypes.byref(p)), (input,))


def _scale_pair(s):
    if isinstance(s, numbers.Real):
        return (float(s), float(s))
    a, b = s
    return (float(a), float(b))


def interpolate(input, size=None, scale_factor=None, mode="nearest", align_corners=None):
    """As torch.nn.functional.interpolate for 4-d input, modes 'nearest' and 'bilinear'."""
    if (size is None) == (scale_factor is None):
        raise ValueError("kiln.interpolate: give exactly one of size and scale_factor")
    if mode not in ("nearest", "bilinear"):
        raise ValueError(f"kiln.interpolate: mode {mode!r} is not supported; kiln has 'nearest' and 'bilinear'")
    if mode == "nearest" and align_corners is not None:
        raise ValueError("kiln.interpolate: align_corners only goes with mode='bilinear' (as torch)")
    x = handle(input, "input")
    ac = bool(align_corners)
    if size is not None:
        oh, ow = pair(size, "size")
        if mode == "nearest":
            return call(_up_nearest, (x, oh, ow), (input,))
        return call(_up_bilinear, (x, oh, ow, ac), (input,))
    sh, sw = _scale_pair(scale_factor)
    if mode == "nearest":
        return call(_up_nearest_scale, (x, sh, sw), (input,))
    return call(_up_bilinear_scale, (x, sh, sw, ac), (input,))


upsample = interpolate
