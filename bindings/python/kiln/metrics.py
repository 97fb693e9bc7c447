"""The metrics of include/kiln/metrics.h: accumulators over batches whose names say
what they measure (binary pixel accuracy, IoU, Dice, argmax accuracy, mIoU), never a
bare "accuracy". Counts live on the host; an undefined value (0/0) reads as NaN."""
import ctypes
from ctypes import POINTER, c_double, c_int, c_int64, c_void_p

from . import _lib
from ._runtime import Finalizing, handle, mirrors
from .tensor import Tensor, tensor


@mirrors("kiln_binary_counts", "include/kiln/metrics.h")
class CBinaryCounts(ctypes.Structure):
    """kiln_binary_counts, returned by value."""

    _fields_ = [("tp", c_int64), ("fp", c_int64), ("fn", c_int64), ("tn", c_int64)]


P = c_void_p
_b_create = _lib.declare("kiln_binary_metrics_create", P, c_double, c_int)
_b_update = _lib.declare("kiln_binary_metrics_update", c_int, P, P, P)
_b_reset = _lib.declare("kiln_binary_metrics_reset", None, P)
_b_free = _lib.declare("kiln_binary_metrics_free", None, P)
_b_counts = _lib.declare("kiln_binary_metrics_counts", CBinaryCounts, P)
_b_values = {n: _lib.declare("kiln_binary_metrics_" + n, c_double, P)
             for n in ("pixel_accuracy", "precision", "recall", "dice", "iou")}

_cm_create = _lib.declare("kiln_confusion_matrix_create", P, c_int64, c_int64)
_cm_update = _lib.declare("kiln_confusion_matrix_update", c_int, P, P, P)
_cm_reset = _lib.declare("kiln_confusion_matrix_reset", None, P)
_cm_free = _lib.declare("kiln_confusion_matrix_free", None, P)
_cm_num_classes = _lib.declare("kiln_confusion_matrix_num_classes", c_int64, P)
_cm_counts = _lib.declare("kiln_confusion_matrix_counts", POINTER(c_int64), P)
_cm_scalar = {n: _lib.declare("kiln_confusion_matrix_" + n, c_double, P)
              for n in ("argmax_accuracy", "mean_iou", "mean_dice")}
_cm_per_class = {n: _lib.declare("kiln_confusion_matrix_class_" + n, c_int, P, POINTER(c_double))
                 for n in ("iou", "dice", "precision", "recall")}


def _t(x, what):
    return x if isinstance(x, Tensor) else tensor(x)


class _Handle:
    _free = None

    def __del__(self):
        h, self._p = getattr(self, "_p", None), None
        if h and not Finalizing.on:
            type(self)._free(h)


class BinaryMetrics(_Handle):
    """Counts of one-channel predictions against 0/1 targets. A pixel is positive when
    its probability is above threshold; from_logits=True applies the sigmoid first, so
    a network's raw output can be passed as it is."""

    _free = staticmethod(_b_free)

    def __init__(self, threshold=0.5, from_logits=False):
        self._p = _b_create(float(threshold), 1 if from_logits else 0)
        if not self._p:
            _lib.raise_last("BinaryMetrics")

    def update(self, scores, target):
        s, t = _t(scores, "scores"), _t(target, "target")
        _lib.check(_b_update(self._p, handle(s, "scores"), handle(t, "target")), "BinaryMetrics.update")
        return self

    def reset(self):
        _b_reset(self._p)

    def counts(self):
        c = _b_counts(self._p)
        return {"tp": c.tp, "fp": c.fp, "fn": c.fn, "tn": c.tn}

    def pixel_accuracy(self):
        """(tp + tn) / pixels: binary pixel accuracy at the threshold."""
        return _b_values["pixel_accuracy"](self._p)

    def precision(self):
        return _b_values["precision"](self._p)

    def recall(self):
        return _b_values["recall"](self._p)

    def dice(self):
        """2tp / (2tp + fp + fn) (= F1)."""
        return _b_values["dice"](self._p)

    def iou(self):
        """tp / (tp + fp + fn) (Jaccard)."""
        return _b_values["iou"](self._p)

    def compute(self):
        return {n: f(self._p) for n, f in _b_values.items()}


class ConfusionMatrix(_Handle):
    """counts[target, pred] over num_classes. update takes scores (N,C,...) reduced by
    argmax over axis 1, or int64 class indices of the target's shape; positions whose
    target is ignore_index are skipped."""

    _free = staticmethod(_cm_free)

    def __init__(self, num_classes, ignore_index=-100):
        self._p = _cm_create(int(num_classes), int(ignore_index))
        if not self._p:
            _lib.raise_last("ConfusionMatrix")
        self.num_classes = _cm_num_classes(self._p)

    def update(self, pred, target):
        p, t = _t(pred, "pred"), _t(target, "target")
        _lib.check(_cm_update(self._p, handle(p, "pred"), handle(t, "target")), "ConfusionMatrix.update")
        return self

    def reset(self):
        _cm_reset(self._p)

    def counts(self):
        """A (C, C) int64 NumPy array (a copy)."""
        import numpy as np

        c = self.num_classes
        return np.ctypeslib.as_array(_cm_counts(self._p), shape=(c * c,)).reshape(c, c).copy()

    def argmax_accuracy(self):
        return _cm_scalar["argmax_accuracy"](self._p)

    def mean_iou(self):
        """Mean IoU over the classes present in target or prediction."""
        return _cm_scalar["mean_iou"](self._p)

    def mean_dice(self):
        return _cm_scalar["mean_dice"](self._p)

    def _per_class(self, name):
        import numpy as np

        out = np.empty(self.num_classes, dtype=np.float64)
        _lib.check(_cm_per_class[name](self._p, out.ctypes.data_as(POINTER(c_double))), name)
        return out

    def class_iou(self):
        return self._per_class("iou")

    def class_dice(self):
        return self._per_class("dice")

    def class_precision(self):
        return self._per_class("precision")

    def class_recall(self):
        return self._per_class("recall")
