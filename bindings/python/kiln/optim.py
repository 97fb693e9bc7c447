"""include/kiln/optim.h from Python: SGD, Adam and AdamW with torch's update
formulas and defaults, learning-rate schedules (torch's lr_scheduler names, closed
forms computed by kiln_schedule_lr), and gradient clipping.

An optimizer keeps the parameter tensors it was given alive (the C optimizer holds
their pointers); its state lives in C arenas and is freed with the Python object."""
import ctypes
import math
import numbers
from ctypes import POINTER, c_bool, c_char_p, c_double, c_int, c_int64, c_void_p

from . import _lib
from .checkpoint import CMetadataEntry, CNamedTensor
from ._runtime import Finalizing, call, handle, mirrors, own_scopes
from .tensor import Tensor, no_grad, tensor

T = c_void_p
O = c_void_p


@mirrors("kiln_sgd_options", "include/kiln/optim.h")
class CSgdOptions(ctypes.Structure):
    _fields_ = [("lr", c_double), ("momentum", c_double), ("dampening", c_double), ("weight_decay", c_double),
                ("nesterov", c_bool), ("maximize", c_bool)]


@mirrors("kiln_adam_options", "include/kiln/optim.h")
class CAdamOptions(ctypes.Structure):
    _fields_ = [("lr", c_double), ("beta1", c_double), ("beta2", c_double), ("eps", c_double),
                ("weight_decay", c_double), ("amsgrad", c_bool), ("maximize", c_bool)]


MAX_MILESTONES = 32


@mirrors("kiln_schedule", "include/kiln/optim.h")
class CSchedule(ctypes.Structure):
    """kiln_schedule."""

    _fields_ = [("kind", c_int), ("base_lr", c_double), ("gamma", c_double), ("step_size", c_int64),
                ("n_milestones", c_int), ("milestones", c_int64 * MAX_MILESTONES), ("t_max", c_int64),
                ("eta_min", c_double), ("start_factor", c_double), ("end_factor", c_double),
                ("total_iters", c_int64), ("total_steps", c_int64), ("pct_start", c_double),
                ("div_factor", c_double), ("final_div_factor", c_double), ("anneal_linear", c_bool)]


_PT = POINTER(c_void_p)
_sgd = _lib.declare("kiln_optim_sgd", O, _PT, c_int, CSgdOptions)
_adam = _lib.declare("kiln_optim_adam", O, _PT, c_int, CAdamOptions)
_adamw = _lib.declare("kiln_optim_adamw", O, _PT, c_int, CAdamOptions)
_opt_free = _lib.declare("kiln_optimizer_free", None, O)
_step = _lib.declare("kiln_optimizer_step", c_int, O)
_zero_grad = _lib.declare("kiln_optimizer_zero_grad", None, O)
_set_lr = _lib.declare("kiln_optimizer_set_lr", c_int, O, c_double)
_get_lr = _lib.declare("kiln_optimizer_get_lr", c_double, O)
_step_count = _lib.declare("kiln_optimizer_step_count", c_int64, O)
_kind = _lib.declare("kiln_optimizer_kind", c_char_p, O)
_fused = _lib.declare("kiln_optimizer_fused_updates", c_int64, O)
_state = _lib.declare("kiln_optimizer_state", c_int, O, POINTER(CNamedTensor), c_int)
_metadata = _lib.declare("kiln_optimizer_metadata", c_int, O, POINTER(CMetadataEntry), c_int)
_clone = _lib.tensor_clone

_sched_lr = _lib.declare("kiln_schedule_lr", c_double, POINTER(CSchedule), c_int64)
_clip_norm = _lib.declare("kiln_clip_grad_norm", c_double, _PT, c_int, c_double, c_double)
_clip_value = _lib.declare("kiln_clip_grad_value", c_int, _PT, c_int, c_double)


def _param_list(params, what):
    if hasattr(params, "parameters") and callable(params.parameters):
        params = params.parameters()
    if isinstance(params, Tensor):
        params = [params]
    ps = list(params)
    for p in ps:
        if not isinstance(p, Tensor):
            raise TypeError(f"kiln.{what}: parameters must be kiln tensors, not {type(p).__name__}")
    return ps


def _handles(ps):
    return (c_void_p * max(len(ps), 1))(*(handle(p, "parameter") for p in ps))


class Optimizer:
    """Base of SGD, Adam and AdamW."""

    def __init__(self, params, create, opts, what):
        self._params = _param_list(params, what)
        if not self._params:
            raise ValueError(f"kiln.{what}: got an empty parameter list")
        arr = _handles(self._params)
        self._o = create(arr, len(self._params), opts)
        if not self._o:
            _lib.raise_last(what)

    def __del__(self):
        o, self._o = getattr(self, "_o", None), None
        if o and not Finalizing.on:
            _opt_free(o)

    def step(self):
        """One update of every parameter that has a gradient (outside the tape)."""
        _lib.check(_step(self._o), "optimizer.step")

    def zero_grad(self, set_to_none=None):
        _zero_grad(self._o)

    @property
    def lr(self):
        return _get_lr(self._o)

    @lr.setter
    def lr(self, value):
        _lib.check(_set_lr(self._o, float(value)), "optimizer.lr")

    @property
    def step_count(self):
        return _step_count(self._o)

    @property
    def kind(self):
        return _kind(self._o).decode()

    @property
    def fused_updates(self):
        """Updates done as one kernel over a parameter arena."""
        return _fused(self._o)

    @property
    def params(self):
        return list(self._params)

    def _views(self, use):
        """Calls use(name, view) for each state tensor, the views living in a scope ended after."""
        with own_scopes():
            self._views_in_scope(use)

    def _views_in_scope(self, use):
        s = _lib.scope_begin()
        if not s:
            _lib.raise_last("optimizer state")
        try:
            n = _state(self._o, None, 0)
            if n < 0:
                _lib.raise_last("optimizer state")
            arr = (CNamedTensor * max(n, 1))()
            if _state(self._o, arr, n) < 0:
                _lib.raise_last("optimizer state")
            for e in arr[:n]:
                use(e.name.decode(), e.tensor)
        finally:
            _lib.scope_end(s)

    def state_dict(self):
        """The state as copies, named as torch's flattened optimizer state_dict
        ("state.<i>.exp_avg", ...), and the hyper-parameters under "param_groups"."""
        out = {}
        self._views(lambda name, p: out.__setitem__(name, call(_clone, (p,))))
        n = _metadata(self._o, None, 0)
        meta = (CMetadataEntry * max(n, 1))()
        n = _metadata(self._o, meta, n)
        out["param_groups"] = {e.key.decode(): e.value.decode() for e in meta[:max(n, 0)]}
        return out

    def load_state_dict(self, state):
        """Copies state tensors (from state_dict) back by name; shapes must match."""
        missing = []

        def load(name, p):
            if name not in state:
                missing.append(name)
                return
            src = state[name]
            if not isinstance(src, Tensor):
                src = tensor(src)
            st = _lib.tensor_copy_(p, handle(src))
            _lib.check(st, "optimizer.load_state_dict")

        with no_grad():
            self._views(load)
        if missing:
            raise KeyError(f"kiln: optimizer.load_state_dict: missing {missing}")


class SGD(Optimizer):
    """torch.optim.SGD; lr defaults to 1e-3 (torch >= 2.2)."""

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False,
                 maximize=False):
        o = CSgdOptions(float(lr), float(momentum), float(dampening), float(weight_decay), bool(nesterov),
                        bool(maximize))
        super().__init__(params, _sgd, o, "optim.SGD")


def _adam_opts(lr, betas, eps, weight_decay, amsgrad, maximize):
    b1, b2 = betas
    return CAdamOptions(float(lr), float(b1), float(b2), float(eps), float(weight_decay), bool(amsgrad),
                        bool(maximize))


class Adam(Optimizer):
    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False,
                 maximize=False):
        super().__init__(params, _adam, _adam_opts(lr, betas, eps, weight_decay, amsgrad, maximize), "optim.Adam")


class AdamW(Optimizer):
    """Adam with decoupled weight decay (p -= lr * weight_decay * p); torch's default decay 1e-2."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False,
                 maximize=False):
        super().__init__(params, _adamw, _adam_opts(lr, betas, eps, weight_decay, amsgrad, maximize),
                         "optim.AdamW")


# ---- schedules ----------------------------------------------------------------------------------
class LRScheduler:
    """A learning rate as a function of the step t (torch's last_epoch). Give an optimizer
    (its lr is the base, and step() sets the next lr on it, as torch) or a base lr number
    (then use lr_at(t)). Construction sets lr_at(0) on the optimizer, as torch does."""

    _kind = 0

    def __init__(self, optimizer, base_lr=None):
        if isinstance(optimizer, numbers.Real):
            self.optimizer, base = None, float(optimizer)
        else:
            self.optimizer, base = optimizer, optimizer.lr
        self._s = CSchedule()
        self._s.kind = self._kind
        self._s.base_lr = float(base if base_lr is None else base_lr)
        self._configure(self._s)
        self.last_epoch = 0
        first = self.lr_at(0)
        if self.optimizer is not None:
            self.optimizer.lr = first

    def _configure(self, s):
        pass

    def lr_at(self, t):
        v = _sched_lr(ctypes.byref(self._s), int(t))
        if math.isnan(v) and _lib.last_status() != 0:
            _lib.raise_last(type(self).__name__)
        return v

    def step(self):
        self.last_epoch += 1
        lr = self.lr_at(self.last_epoch)
        if self.optimizer is not None:
            self.optimizer.lr = lr
        return lr

    def get_last_lr(self):
        return [self.lr_at(self.last_epoch)]


class ConstantLR(LRScheduler):
    """A constant learning rate (kiln's KILN_SCHEDULE_CONSTANT, not torch's ConstantLR factor)."""

    _kind = 0


class StepLR(LRScheduler):
    _kind = 1

    def __init__(self, optimizer, step_size, gamma=0.1):
        self._a = (int(step_size), float(gamma))
        super().__init__(optimizer)

    def _configure(self, s):
        s.step_size, s.gamma = self._a


class MultiStepLR(LRScheduler):
    _kind = 2

    def __init__(self, optimizer, milestones, gamma=0.1):
        ms = [int(m) for m in milestones]
        if len(ms) > MAX_MILESTONES:
            raise ValueError(f"kiln.optim.MultiStepLR: at most {MAX_MILESTONES} milestones, got {len(ms)}")
        self._a = (ms, float(gamma))
        super().__init__(optimizer)

    def _configure(self, s):
        ms, s.gamma = self._a
        s.n_milestones = len(ms)
        for i, m in enumerate(ms):
            s.milestones[i] = m


class ExponentialLR(LRScheduler):
    _kind = 3

    def __init__(self, optimizer, gamma):
        self._a = float(gamma)
        super().__init__(optimizer)

    def _configure(self, s):
        s.gamma = self._a


class CosineAnnealingLR(LRScheduler):
    _kind = 4

    def __init__(self, optimizer, T_max, eta_min=0.0):
        self._a = (int(T_max), float(eta_min))
        super().__init__(optimizer)

    def _configure(self, s):
        s.t_max, s.eta_min = self._a


class LinearLR(LRScheduler):
    _kind = 5

    def __init__(self, optimizer, start_factor=1.0 / 3, end_factor=1.0, total_iters=5):
        self._a = (float(start_factor), float(end_factor), int(total_iters))
        super().__init__(optimizer)

    def _configure(self, s):
        s.start_factor, s.end_factor, s.total_iters = self._a


class OneCycleLR(LRScheduler):
    """torch's OneCycleLR for the learning rate (no momentum cycling)."""

    _kind = 6

    def __init__(self, optimizer, max_lr, total_steps, pct_start=0.3, anneal_strategy="cos", div_factor=25.0,
                 final_div_factor=1e4):
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(f"kiln.optim.OneCycleLR: anneal_strategy {anneal_strategy!r} must be 'cos' or 'linear'")
        self._a = (int(total_steps), float(pct_start), float(div_factor), float(final_div_factor),
                   anneal_strategy == "linear")
        super().__init__(optimizer, base_lr=float(max_lr))

    def _configure(self, s):
        s.total_steps, s.pct_start, s.div_factor, s.final_div_factor, s.anneal_linear = self._a


# ---- clipping ---------------------------------------------------------------------------------------
def clip_grad_norm_(parameters, max_norm, norm_type=2.0):
    """torch.nn.utils.clip_grad_norm_: scales every gradient by min(1, max_norm / (total + 1e-6));
    returns the total norm before clipping (a float)."""
    ps = _param_list(parameters, "clip_grad_norm_")
    v = _clip_norm(_handles(ps), len(ps), float(max_norm), float(norm_type))
    if math.isnan(v) and _lib.last_status() != 0:
        _lib.raise_last("clip_grad_norm_")
    return v


def clip_grad_value_(parameters, clip_value):
    ps = _param_list(parameters, "clip_grad_value_")
    _lib.check(_clip_value(_handles(ps), len(ps), float(clip_value)), "clip_grad_value_")
