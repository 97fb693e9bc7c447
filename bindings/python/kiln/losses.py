"""The losses of include/kiln/losses.h with torch.nn.functional's names, argument
names and defaults. Targets must match their input's shape (no silent broadcast);
raw network outputs belong in the *_with_logits / cross_entropy forms."""
import ctypes
from ctypes import c_double, c_int, c_int64, c_void_p

from . import _lib
from ._runtime import call, handle, mirrors

T = c_void_p
_REDUCTIONS = {"none": 0, "mean": 1, "sum": 2}


@mirrors("kiln_cross_entropy_options", "include/kiln/losses.h")
class CCrossEntropyOptions(ctypes.Structure):
    """kiln_cross_entropy_options."""

    _fields_ = [("weight", c_void_p), ("ignore_index", c_int64), ("label_smoothing", c_double), ("reduction", c_int)]


_bce = _lib.declare("kiln_bce", T, T, T, T, c_int)
_bce_with_logits = _lib.declare("kiln_bce_with_logits", T, T, T, T, T, c_int)
_cross_entropy = _lib.declare("kiln_cross_entropy", T, T, T, ctypes.POINTER(CCrossEntropyOptions))
_nll_loss = _lib.declare("kiln_nll_loss", T, T, T, ctypes.POINTER(CCrossEntropyOptions))
_mse = _lib.declare("kiln_mse_loss", T, T, T, c_int)
_l1 = _lib.declare("kiln_l1_loss", T, T, T, c_int)
_dice = _lib.declare("kiln_dice_loss", T, T, T, c_double, c_int)
_dice_mc = _lib.declare("kiln_dice_loss_multiclass", T, T, T, c_double, c_int)
_focal = _lib.declare("kiln_sigmoid_focal_loss", T, T, T, c_double, c_double, c_int)


def reduction_code(reduction):
    try:
        return _REDUCTIONS[reduction]
    except (KeyError, TypeError):
        raise ValueError(f"kiln: reduction {reduction!r} must be 'none', 'mean' or 'sum'") from None


def _opt(t, what):
    return None if t is None else handle(t, what)


def _present(*ts):
    return tuple(t for t in ts if t is not None)


def binary_cross_entropy(input, target, weight=None, reduction="mean"):
    """BCE on probabilities in [0,1] (logs clamped at -100 as torch); values outside
    [0,1] are an error that points to bce_with_logits."""
    r = reduction_code(reduction)
    return call(_bce, (handle(input, "input"), handle(target, "target"), _opt(weight, "weight"), r),
                _present(input, target, weight))


def binary_cross_entropy_with_logits(input, target, weight=None, pos_weight=None, reduction="mean"):
    """max(x,0) - x*y + log1p(exp(-|x|)), optionally weighted; pos_weight scales the positive term."""
    r = reduction_code(reduction)
    return call(_bce_with_logits, (handle(input, "input"), handle(target, "target"), _opt(weight, "weight"),
                                   _opt(pos_weight, "pos_weight"), r), _present(input, target, weight, pos_weight))


bce = binary_cross_entropy
bce_with_logits = binary_cross_entropy_with_logits


def _ce_options(weight, ignore_index, label_smoothing, reduction):
    o = CCrossEntropyOptions()
    o.weight = _opt(weight, "weight")
    o.ignore_index = int(ignore_index)
    o.label_smoothing = float(label_smoothing)
    o.reduction = reduction_code(reduction)
    return o


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    """Log-softmax over the class axis (1; 0 for 1-d input) fused with the NLL, on logits
    (N,C), (N,C,d1..dk) or (C). target: int64 class indices (N,d1..dk), or class
    probabilities of input's shape."""
    o = _ce_options(weight, ignore_index, label_smoothing, reduction)
    return call(_cross_entropy, (handle(input, "input"), handle(target, "target"), ctypes.byref(o)),
                _present(input, target, weight))


def nll_loss(input, target, weight=None, ignore_index=-100, reduction="mean"):
    o = _ce_options(weight, ignore_index, 0.0, reduction)
    return call(_nll_loss, (handle(input, "input"), handle(target, "target"), ctypes.byref(o)),
                _present(input, target, weight))


def mse_loss(input, target, reduction="mean"):
    return call(_mse, (handle(input, "input"), handle(target, "target"), reduction_code(reduction)), (input, target))


def l1_loss(input, target, reduction="mean"):
    return call(_l1, (handle(input, "input"), handle(target, "target"), reduction_code(reduction)), (input, target))


def dice_loss(input, target, smooth=1.0, reduction="mean"):
    """1 - soft Dice per sample (sums over every axis but 0) on probabilities; reduction over samples."""
    return call(_dice, (handle(input, "input"), handle(target, "target"), float(smooth), reduction_code(reduction)),
                (input, target))


def dice_loss_multiclass(input, target, smooth=1.0, reduction="mean"):
    """1 - mean over classes of the soft Dice of class probabilities (N,C,...) against
    int64 class indices (N,...)."""
    return call(_dice_mc, (handle(input, "input"), handle(target, "target"), float(smooth), reduction_code(reduction)),
                (input, target))


def sigmoid_focal_loss(input, target, alpha=0.25, gamma=2.0, reduction="none"):
    """As torchvision.ops.sigmoid_focal_loss (its defaults); alpha < 0 disables the alpha weighting."""
    return call(_focal, (handle(input, "input"), handle(target, "target"), float(alpha), float(gamma),
                         reduction_code(reduction)), (input, target))
