"""include/kiln/module.h from Python: the functional linear, batch_norm and dropout,
parameter initialisation (kiln.nn.init), and module objects over kiln's C module
tree (Linear, Conv2d, ..., Sequential, and Python subclasses of kiln.nn.Module).

Every Module is a C kiln_module: names, state_dict order, train/eval and the
parameter arenas are the C side's, so `state_dict()` names are torch's and a C
program, a Python program and PyTorch read each other's checkpoints.

Ownership. A tree is freed (kiln_module_free) when the last Python object of any of
its modules (or of their parameters) is gone: each wrapper holds the tree's _Tree.
Adding a module under another (attribute assignment, Sequential) moves it into the
parent's tree, as in C; a module can have one parent.

Python forwards. A subclass's forward is a ctypes callback that C calls from
kiln_module_forward, so a Python module runs inside C containers (a Sequential)
and a C-side root packs its arena first. The tensors its forward makes go into the
C scope of the outermost module call and are owned by that call's result
(kiln/_runtime.py, Holder); an exception in forward comes out of the call unchanged.
"""
import collections
import ctypes
import itertools
import math
import numbers
import weakref
from ctypes import CFUNCTYPE, POINTER, c_bool, c_char_p, c_double, c_int, c_int64, c_void_p

from . import _lib
from ._runtime import Finalizing, Holder, adopt, borrow, call, handle, state
from ._types import as_device, as_dtype, float32
from .layers import (conv2d_params, conv_transpose2d_params, pair, pool2d_params, CConv2dParams,
                     CConvTranspose2dParams, CPool2dParams)
from .tensor import Tensor, no_grad, tensor as _to_tensor

T = c_void_p
M = c_void_p  # kiln_module *
_PCHAR = POINTER(c_char_p)

# ---- functional ----------------------------------------------------------------------
_linear = _lib.declare("kiln_linear", T, T, T, T)
_batch_norm = _lib.declare("kiln_batch_norm", T, T, T, T, T, T, c_bool, c_double, c_double)
_dropout = _lib.declare("kiln_dropout", T, T, c_double, c_bool)


def _opt(t, what):
    return None if t is None else handle(t, what)


def _present(*ts):
    return tuple(t for t in ts if t is not None)


def linear(input, weight, bias=None):
    """y = input @ weight.T + bias over any leading axes; weight (out_features, in_features), or
    1-d (in_features) for input @ weight (the last axis reduced) with a 0-d or one-value bias."""
    return call(_linear, (handle(input, "input"), handle(weight, "weight"), _opt(bias, "bias")),
                _present(input, weight, bias))


def batch_norm(input, running_mean=None, running_var=None, weight=None, bias=None, training=False, momentum=0.1,
               eps=1e-5):
    """As torch.nn.functional.batch_norm on (N, C), (N, C, L) or (N, C, H, W): in training the
    batch statistics normalise and the running ones (when given) are updated in place."""
    return call(_batch_norm, (handle(input, "input"), _opt(weight, "weight"), _opt(bias, "bias"),
                              _opt(running_mean, "running_mean"), _opt(running_var, "running_var"),
                              bool(training), float(momentum), float(eps)),
                _present(input, weight, bias, running_mean, running_var))


def dropout(input, p=0.5, training=True):
    """Zeroes elements with probability p and scales the rest by 1/(1-p) (kiln.manual_seed's generator)."""
    return call(_dropout, (handle(input, "input"), float(p), bool(training)), (input,))


# ---- initialisation ---------------------------------------------------------------------
class _Init:
    """kiln.nn.init: torch.nn.init's in-place fills (not recorded on the tape)."""

    _NL = {"linear": 0, "conv1d": 0, "conv2d": 0, "conv3d": 0, "conv_transpose1d": 0, "conv_transpose2d": 0,
           "conv_transpose3d": 0, "sigmoid": 0, "tanh": 1, "relu": 2, "leaky_relu": 3, "selu": 4}
    _gain = _lib.declare("kiln_init_gain", c_double, c_int, c_double)
    _uniform = _lib.declare("kiln_init_uniform", c_int, T, c_double, c_double)
    _normal = _lib.declare("kiln_init_normal", c_int, T, c_double, c_double)
    _constant = _lib.declare("kiln_init_constant", c_int, T, c_double)
    _kaiming_uniform = _lib.declare("kiln_init_kaiming_uniform", c_int, T, c_double, c_int, c_int)
    _kaiming_normal = _lib.declare("kiln_init_kaiming_normal", c_int, T, c_double, c_int, c_int)
    _xavier_uniform = _lib.declare("kiln_init_xavier_uniform", c_int, T, c_double)
    _xavier_normal = _lib.declare("kiln_init_xavier_normal", c_int, T, c_double)
    _default = _lib.declare("kiln_init_default", c_int, T, T)

    def _nl(self, name):
        try:
            return self._NL[name]
        except KeyError:
            raise ValueError(f"kiln.nn.init: unknown nonlinearity {name!r}; one of {', '.join(self._NL)}") from None

    @staticmethod
    def _mode(mode):
        if mode not in ("fan_in", "fan_out"):
            raise ValueError(f"kiln.nn.init: mode {mode!r} must be 'fan_in' or 'fan_out'")
        return 0 if mode == "fan_in" else 1

    def calculate_gain(self, nonlinearity, param=None):
        a = 0.01 if param is None else float(param)
        return self._gain(self._nl(nonlinearity), a)

    def uniform_(self, t, a=0.0, b=1.0):
        _lib.check(self._uniform(handle(t), float(a), float(b)), "init.uniform_")
        return t

    def normal_(self, t, mean=0.0, std=1.0):
        _lib.check(self._normal(handle(t), float(mean), float(std)), "init.normal_")
        return t

    def constant_(self, t, val):
        _lib.check(self._constant(handle(t), float(val)), "init.constant_")
        return t

    def zeros_(self, t):
        return self.constant_(t, 0.0)

    def ones_(self, t):
        return self.constant_(t, 1.0)

    def kaiming_uniform_(self, t, a=0.0, mode="fan_in", nonlinearity="leaky_relu"):
        _lib.check(self._kaiming_uniform(handle(t), float(a), self._mode(mode), self._nl(nonlinearity)),
                   "init.kaiming_uniform_")
        return t

    def kaiming_normal_(self, t, a=0.0, mode="fan_in", nonlinearity="leaky_relu"):
        _lib.check(self._kaiming_normal(handle(t), float(a), self._mode(mode), self._nl(nonlinearity)),
                   "init.kaiming_normal_")
        return t

    def xavier_uniform_(self, t, gain=1.0):
        _lib.check(self._xavier_uniform(handle(t), float(gain)), "init.xavier_uniform_")
        return t

    def xavier_normal_(self, t, gain=1.0):
        _lib.check(self._xavier_normal(handle(t), float(gain)), "init.xavier_normal_")
        return t

    def default_(self, weight, bias=None):
        """torch's reset_parameters of Linear and Conv (kaiming_uniform(a=sqrt(5)) and the bias range)."""
        _lib.check(self._default(handle(weight), _opt(bias, "bias")), "init.default_")
        return weight


init = _Init()

# ---- the C module API ----------------------------------------------------------------------
_FORWARD = CFUNCTYPE(c_void_p, c_void_p, c_void_p)
_create = _lib.declare("kiln_module_create", M, c_char_p, _FORWARD, c_void_p, c_void_p)
_ctx = _lib.declare("kiln_module_ctx", c_void_p, M)
_free_module = _lib.declare("kiln_module_free", None, M)
_add = _lib.declare("kiln_module_add", c_int, M, c_char_p, M)
_register_parameter = _lib.declare("kiln_module_register_parameter", T, M, c_char_p, T)
_register_buffer = _lib.declare("kiln_module_register_buffer", T, M, c_char_p, T)
_forward = _lib.declare("kiln_module_forward", T, M, T)
_type = _lib.declare("kiln_module_type", c_char_p, M)
_num_children = _lib.declare("kiln_module_num_children", c_int, M)
_child_at = _lib.declare("kiln_module_child_at", M, M, c_int, _PCHAR)
_num_parameters = _lib.declare("kiln_module_num_parameters", c_int, M)
_parameter = _lib.declare("kiln_module_parameter", T, M, c_int, _PCHAR)
_parameter_count = _lib.declare("kiln_module_parameter_count", c_int64, M)
_num_buffers = _lib.declare("kiln_module_num_buffers", c_int, M)
_buffer = _lib.declare("kiln_module_buffer", T, M, c_int, _PCHAR)
_num_state = _lib.declare("kiln_module_num_state", c_int, M)
_state_at = _lib.declare("kiln_module_state", T, M, c_int, _PCHAR, POINTER(c_bool))
_get = _lib.declare("kiln_module_get", T, M, c_char_p)
_train = _lib.declare("kiln_module_train", None, M, c_bool)
_is_training = _lib.declare("kiln_module_is_training", c_bool, M)
_finalize = _lib.declare("kiln_module_finalize", c_int, M)
_zero_grad = _lib.declare("kiln_module_zero_grad", c_int, M)
_module_to = _lib.declare("kiln_module_to", c_int, M, _lib.CDevice)
_flat_parameters = _lib.declare("kiln_module_flat_parameters", T, M)
_flat_gradients = _lib.declare("kiln_module_flat_gradients", T, M)
_set_error = _lib.declare("kiln_set_error", c_int, c_int, c_char_p, c_char_p)
_add_scalar = _lib.declare("kiln_add_scalar", T, T, c_double)

_linear_create = _lib.declare("kiln_linear_create", M, c_int64, c_int64, c_bool, c_int)
_bn_create = _lib.declare("kiln_batch_norm2d_create_ex", M, c_int64, c_double, c_double, c_bool, c_bool, c_int)
_bn1d_create = _lib.declare("kiln_batch_norm1d_create_ex", M, c_int64, c_double, c_double, c_bool, c_bool, c_int)
_dropout_create = _lib.declare("kiln_dropout_create", M, c_double)
_relu_create = _lib.declare("kiln_relu_create", M)
_leaky_relu_create = _lib.declare("kiln_leaky_relu_create", M, c_double)
_sigmoid_create = _lib.declare("kiln_sigmoid_create", M)
_tanh_create = _lib.declare("kiln_tanh_create", M)
_flatten_create = _lib.declare("kiln_flatten_create", M, c_int, c_int)
_sequential_create = _lib.declare("kiln_sequential_create", M)
_sequential_append = _lib.declare("kiln_sequential_append", c_int, M, M)
_conv2d_create = _lib.declare("kiln_conv2d_create_ex", M, c_int64, c_int64, c_int64, c_int64, POINTER(CConv2dParams),
                              c_bool, c_int)
_convt_create = _lib.declare("kiln_conv_transpose2d_create_ex", M, c_int64, c_int64, c_int64, c_int64,
                             POINTER(CConvTranspose2dParams), c_bool, c_int)
_max_pool_create = _lib.declare("kiln_max_pool2d_create_ex", M, POINTER(CPool2dParams))
_avg_pool_create = _lib.declare("kiln_avg_pool2d_create_ex", M, POINTER(CPool2dParams))
_upsample_create = _lib.declare("kiln_upsample_create", M, c_int64, c_int64, c_int, c_bool)
_upsample_scale_create = _lib.declare("kiln_upsample_scale_create", M, c_double, c_double, c_int, c_bool)

_STATUS_INVALID_ARGUMENT = 1


class _Tree:
    """Owns one C module tree: frees it with its last Python reference."""

    __slots__ = ("h",)

    def __init__(self, h):
        self.h = h

    def __del__(self):
        h, self.h = self.h, None
        if h and not Finalizing.on:
            _free_module(h)


_keys = itertools.count(1)
_python_modules = weakref.WeakValueDictionary()  # ctx key -> the Python Module whose forward C calls


def _forward_callback(mh, xh):
    hold = getattr(state, "holder", None)
    try:
        if hold is None:
            raise RuntimeError("kiln: a Python module's forward was called from C outside a kiln module call")
        mod = _python_modules.get(_ctx(mh) or 0)
        if mod is None:
            raise RuntimeError("kiln: the Python object of this module was garbage-collected")
        x = borrow(xh, hold)
        y = mod.forward(x)
        if not isinstance(y, Tensor):
            raise TypeError(f"kiln: {type(mod).__name__}.forward returned {type(y).__name__}; a module called "
                            "through kiln returns one kiln.Tensor")
        yh = handle(y, "forward's result")
        if y._base is not hold and yh != xh:
            # made outside this call (a parameter, a constant): hand C a tensor of the call's own scope
            yh = handle(call(_add_scalar, (yh, 0.0), (y,)))
        return yh
    except BaseException as e:  # noqa: B902 (any exception must stop here: C is below us)
        if hold is not None and hold.exc is None:
            hold.exc = e
        msg = f"{type(e).__name__}: {e}"
        _set_error(_STATUS_INVALID_ARGUMENT, b"%s", msg.encode("utf-8", "replace"))
        return None


_FORWARD_CB = _FORWARD(_forward_callback)


def _check_name(name):
    if not isinstance(name, str) or not name or "." in name:
        raise KeyError(f"kiln: module attribute name {name!r} must be a non-empty string without '.'")
    return name.encode()


def _module_call(m, x):
    """Runs kiln_module_forward(m, x) and wraps the result."""
    xh = handle(x, "input")
    hold = getattr(state, "holder", None)
    if hold is not None:  # inside a Python forward that C called: the outer call owns everything
        return call(_forward, (m._h, xh), (x,))
    hold = Holder()
    s = _lib.scope_begin()
    if not s:
        _lib.raise_last("kiln_scope_begin")
    state.holder = hold
    try:
        p = _forward(m._h, xh)
    finally:
        state.holder = None
    if not p or hold.exc is not None or _lib.scope_detach(s) != 0:
        _lib.scope_end(s)
        hold.live = False
        if hold.exc is not None:
            _lib.clear_error()
            raise hold.exc
        _lib.raise_last("forward")
    r = adopt(p, s, (x,))
    keep = tuple(hold.keep.values())
    if keep or p == xh:
        r._parents = (x,) + keep
    hold.owner = r
    return r


class Parameter:
    """Marks a tensor to be registered as a parameter by attribute assignment:
    `self.scale = kiln.nn.Parameter(kiln.ones(4))` (the module keeps a copy)."""

    __slots__ = ("data",)

    def __init__(self, data):
        self.data = data if isinstance(data, Tensor) else _to_tensor(data)


class Module:
    """A kiln module. Subclass it, assign child modules and kiln.nn.Parameter
    attributes in __init__ (after super().__init__()), and define forward(x):

        class Block(kiln.nn.Module):
            def __init__(self, c):
                super().__init__()
                self.conv = kiln.nn.Conv2d(c, c, 3, padding=1)
                self.scale = kiln.nn.Parameter(kiln.ones(c, 1, 1))
            def forward(self, x):
                return kiln.relu(self.conv(x)) * self.scale

    Calling a module with one tensor runs kiln_module_forward (C), which calls a
    Python forward back; other calls go to forward directly.
    """

    def __init__(self):
        key = next(_keys)
        h = _create(type(self).__name__.encode(), _FORWARD_CB, key, None)
        if not h:
            _lib.raise_last("Module")
        self._bind(h)
        _python_modules[key] = self

    def _bind(self, h, tree=None):
        d = self.__dict__
        d["_h"] = h
        d["_tree"] = tree if tree is not None else _Tree(h)
        d["_modules"] = collections.OrderedDict()

    @classmethod
    def _wrap_new(cls, h, what):
        if not h:
            _lib.raise_last(what)
        m = object.__new__(cls)
        m._bind(h)
        return m

    def _handle(self):
        try:
            h = self.__dict__["_h"]
        except KeyError:
            raise RuntimeError(f"kiln: {type(self).__name__}.__init__ must call super().__init__() first") from None
        if h is None:
            raise RuntimeError("kiln: this module was freed (adding it to a parent failed)")
        return h

    # ---- structure ------------------------------------------------------------------------
    def __setattr__(self, name, value):
        if isinstance(value, Module):
            self.add_module(name, value)
            object.__setattr__(self, name, value)
        elif isinstance(value, Parameter):
            self.register_parameter(name, value.data)
        elif name in self.__dict__.get("_modules", ()):
            raise AttributeError(f"kiln: {name!r} is a child module; it cannot be replaced")
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name):  # only reached when normal lookup fails: parameters and buffers
        if name.startswith("__") or "_h" not in self.__dict__:
            raise AttributeError(name)
        mods = self.__dict__.get("_modules")
        if mods and name in mods:
            return mods[name]
        t = self._tensor(name)
        if t is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return t

    def _tensor(self, name):
        p = _get(self._handle(), name.encode())
        if not p:
            _lib.clear_error()
            return None
        return borrow(p, self)

    def _adopt_child(self, name, child, append):
        h = self._handle()
        ch = child._handle()
        if child._tree.h != ch:
            raise ValueError(f"kiln: cannot add {type(child).__name__} as {name!r}: it already has a parent "
                             "(a module belongs to one tree)")
        if name in self._modules or self._tensor(name) is not None:
            raise KeyError(f"kiln: {type(self).__name__} already has a child, parameter or buffer named {name!r}")
        st = append(h, ch)
        old = child._tree
        old.h = None  # the parent owns it now, or C freed it on failure
        if st != 0:
            for m in child.modules():
                m.__dict__["_h"] = None
            _lib.raise_last("add_module")
        for m in child.modules():
            m.__dict__["_tree"] = self._tree
        self._modules[name] = child

    def add_module(self, name, module):
        """Adds module as child name (torch's add_module); the parent owns it from then on."""
        if not isinstance(module, Module):
            raise TypeError(f"kiln: add_module needs a kiln.nn.Module, not {type(module).__name__}")
        nm = _check_name(name)
        self._adopt_child(name, module, lambda h, ch: _add(h, nm, ch))
        return module

    register_module = add_module

    def _register(self, fn, name, value, what):
        nm = _check_name(name)
        if not isinstance(value, Tensor):
            value = _to_tensor(value)
        with no_grad():
            src = value.detach()
        p = fn(self._handle(), nm, handle(src))
        if not p:
            _lib.raise_last(what)
        return borrow(p, self)

    def register_parameter(self, name, tensor):
        """Registers a copy of tensor as parameter name (it requires grad); returns it."""
        return self._register(_register_parameter, name, tensor, "register_parameter")

    def register_buffer(self, name, tensor):
        """Registers a copy of tensor as buffer name (saved in the state_dict, not trained)."""
        return self._register(_register_buffer, name, tensor, "register_buffer")

    # ---- forward ----------------------------------------------------------------------------
    def forward(self, x):
        raise NotImplementedError(f"kiln: {type(self).__name__} defines no forward()")

    def __call__(self, *args, **kwargs):
        if len(args) == 1 and not kwargs and isinstance(args[0], Tensor):
            return _module_call(self, args[0])
        return self.forward(*args, **kwargs)

    # ---- queries -------------------------------------------------------------------------------
    @property
    def type_name(self):
        return _type(self._handle()).decode()

    def _named(self, count, at, prefix):
        h = self._handle()
        name = c_char_p()
        out = []
        for i in range(count(h)):
            p = at(h, i, ctypes.byref(name))
            if not p:
                _lib.raise_last("named tensors")
            out.append((prefix + name.value.decode(), borrow(p, self)))
        return out

    def named_parameters(self, prefix=""):
        """(name, parameter) pairs in torch's order; the tensors are the module's own."""
        return self._named(_num_parameters, _parameter, prefix + "." if prefix else "")

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def named_buffers(self, prefix=""):
        return self._named(_num_buffers, _buffer, prefix + "." if prefix else "")

    def buffers(self):
        return [b for _, b in self.named_buffers()]

    def state_dict(self):
        """torch's state_dict: parameters and buffers by dotted name, as views of the
        module's tensors cut from the tape (they share memory, as torch's do)."""
        h = self._handle()
        name, is_buf = c_char_p(), c_bool()
        out = collections.OrderedDict()
        for i in range(_num_state(h)):
            p = _state_at(h, i, ctypes.byref(name), ctypes.byref(is_buf))
            if not p:
                _lib.raise_last("state_dict")
            out[name.value.decode()] = borrow(p, self).detach()
        return out

    def load_state_dict(self, state_dict, strict=True):
        """Copies values (kiln tensors, NumPy arrays, torch tensors) into the module's
        parameters and buffers by name; shapes must match. strict: missing or unexpected
        names are an error. Returns (missing_keys, unexpected_keys) as torch."""
        own = self.state_dict()
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        if strict and (missing or unexpected):
            raise KeyError(f"kiln: load_state_dict of {type(self).__name__}: missing keys {missing}, unexpected keys "
                           f"{unexpected}")
        values = {}
        for k, dst in own.items():
            if k not in state_dict:
                continue
            src = state_dict[k]
            if not isinstance(src, Tensor):
                if hasattr(src, "detach") and hasattr(src, "cpu"):  # torch
                    src = src.detach().cpu().numpy()
                src = _to_tensor(src, dtype=dst.dtype)
            if tuple(src.shape) != tuple(dst.shape):
                raise ValueError(f"kiln: load_state_dict: {k!r} has shape {tuple(src.shape)} in the state_dict and "
                                 f"{tuple(dst.shape)} in the module")
            values[k] = src
        with no_grad():
            for k, src in values.items():
                own[k].copy_(src.to(dtype=own[k].dtype))
        return missing, unexpected

    def named_children(self):
        return list(self._modules.items())

    def children(self):
        return list(self._modules.values())

    def named_modules(self, prefix=""):
        out = [(prefix, self)]
        for name, m in self._modules.items():
            out += m.named_modules(prefix + "." + name if prefix else name)
        return out

    def modules(self):
        return [m for _, m in self.named_modules()]

    def num_parameters(self):
        """Total number of parameter elements (torch: sum(p.numel() for p in m.parameters()))."""
        return _parameter_count(self._handle())

    parameter_count = num_parameters

    # ---- modes and gradients --------------------------------------------------------------------
    def train(self, mode=True):
        _train(self._handle(), bool(mode))
        return self

    def eval(self):
        return self.train(False)

    @property
    def training(self):
        return bool(_is_training(self._handle()))

    # ---- devices ------------------------------------------------------------------------------
    def to(self, device):
        """Moves every parameter, gradient and buffer of the tree to device, in place,
        and returns self (torch's module.to(device)); the Parameter objects stay valid.
        Only a root can move (its arenas hold the whole tree). Create optimizers after
        moving the model."""
        _lib.check(_module_to(self._handle(), as_device(device)._c), "Module.to")
        return self

    def cpu(self):
        return self.to("cpu")

    def cuda(self, device=None):
        """to("cuda"), or to("cuda:N") for device N (an int or a kiln.device)."""
        if device is None:
            return self.to("cuda")
        return self.to(device if not isinstance(device, int) else f"cuda:{device}")

    @property
    def device(self):
        """The device of the module's parameters (cpu for a module without any)."""
        ps = self.parameters()
        return ps[0].device if ps else as_device("cpu")

    def zero_grad(self, set_to_none=None):
        """Zeroes every gradient of the module (one fill of the root's gradient arena)."""
        _lib.check(_zero_grad(self._handle()), "zero_grad")

    def finalize(self):
        """Packs the tree's parameters and gradients into their arenas now (the root only);
        the first forward does it otherwise."""
        _lib.check(_finalize(self._handle()), "finalize")
        return self

    def flat_parameters(self):
        """The root's parameter arena as one 1-d tensor (shares memory with every parameter)."""
        return borrow(self._flat(_flat_parameters), self)

    def flat_gradients(self):
        return borrow(self._flat(_flat_gradients), self)

    def _flat(self, fn):
        p = fn(self._handle())
        if not p:
            _lib.raise_last("flat arena")
        return p

    def __repr__(self):
        if not self._modules:
            return f"{self.type_name}({self.extra_repr()})"
        lines = [f"{self.type_name}("]
        for name, m in self._modules.items():
            body = repr(m).replace("\n", "\n  ")
            lines.append(f"  ({name}): {body}")
        return "\n".join(lines) + "\n)"

    def extra_repr(self):
        return ""


# ---- built-in modules --------------------------------------------------------------------------
def _dtype_code(dtype):
    return (float32 if dtype is None else as_dtype(dtype)).code


class _Builtin(Module):
    """A module made by one of the C constructors."""

    _args = ""

    def __init__(self, h, what):
        if not h:
            _lib.raise_last(what)
        self._bind(h)

    def forward(self, x):
        return _module_call(self, x)

    def extra_repr(self):
        return self._args


class Linear(_Builtin):
    def __init__(self, in_features, out_features, bias=True, dtype=None):
        super().__init__(_linear_create(int(in_features), int(out_features), bool(bias), _dtype_code(dtype)), "Linear")
        self.in_features, self.out_features = int(in_features), int(out_features)
        self._args = f"in_features={in_features}, out_features={out_features}, bias={bool(bias)}"


class Conv2d(_Builtin):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1, bias=True,
                 dtype=None):
        kh, kw = pair(kernel_size, "kernel_size")
        p = conv2d_params(stride, padding, dilation, groups)
        super().__init__(_conv2d_create(int(in_channels), int(out_channels), kh, kw, ctypes.byref(p), bool(bias),
                                        _dtype_code(dtype)), "Conv2d")
        self._args = f"{in_channels}, {out_channels}, kernel_size={(kh, kw)}, stride={tuple(p.stride)}"


class ConvTranspose2d(_Builtin):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0, groups=1,
                 bias=True, dilation=1, dtype=None):
        kh, kw = pair(kernel_size, "kernel_size")
        p = conv_transpose2d_params(stride, padding, output_padding, groups, dilation)
        super().__init__(_convt_create(int(in_channels), int(out_channels), kh, kw, ctypes.byref(p), bool(bias),
                                       _dtype_code(dtype)), "ConvTranspose2d")
        self._args = f"{in_channels}, {out_channels}, kernel_size={(kh, kw)}, stride={tuple(p.stride)}"


class BatchNorm2d(_Builtin):
    """momentum=None is torch's cumulative moving average."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True, dtype=None):
        mom = math.nan if momentum is None else float(momentum)
        super().__init__(_bn_create(int(num_features), float(eps), mom, bool(affine), bool(track_running_stats),
                                    _dtype_code(dtype)), "BatchNorm2d")
        self._args = f"{num_features}, eps={eps}, momentum={momentum}"


class BatchNorm1d(_Builtin):
    """Over (N, C) or (N, C, L); the state_dict of torch's BatchNorm1d."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True, dtype=None):
        mom = math.nan if momentum is None else float(momentum)
        super().__init__(_bn1d_create(int(num_features), float(eps), mom, bool(affine), bool(track_running_stats),
                                      _dtype_code(dtype)), "BatchNorm1d")
        self._args = f"{num_features}, eps={eps}, momentum={momentum}"


class MaxPool2d(_Builtin):
    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
        p = pool2d_params(kernel_size, stride, padding, dilation, ceil_mode)
        super().__init__(_max_pool_create(ctypes.byref(p)), "MaxPool2d")
        self._args = f"kernel_size={kernel_size}, stride={stride if stride is not None else kernel_size}"


class AvgPool2d(_Builtin):
    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
        p = pool2d_params(kernel_size, stride, padding, 1, ceil_mode, count_include_pad)
        super().__init__(_avg_pool_create(ctypes.byref(p)), "AvgPool2d")
        self._args = f"kernel_size={kernel_size}, stride={stride if stride is not None else kernel_size}"


class Upsample(_Builtin):
    def __init__(self, size=None, scale_factor=None, mode="nearest", align_corners=None):
        if (size is None) == (scale_factor is None):
            raise ValueError("kiln.nn.Upsample: give exactly one of size and scale_factor")
        if mode not in ("nearest", "bilinear"):
            raise ValueError(f"kiln.nn.Upsample: mode {mode!r}; kiln has 'nearest' and 'bilinear'")
        m = 0 if mode == "nearest" else 1
        ac = bool(align_corners)
        if size is not None:
            oh, ow = pair(size, "size")
            h = _upsample_create(oh, ow, m, ac)
        else:
            s = scale_factor
            sh, sw = (float(s), float(s)) if isinstance(s, numbers.Real) else (float(s[0]), float(s[1]))
            h = _upsample_scale_create(sh, sw, m, ac)
        super().__init__(h, "Upsample")
        self._args = f"size={size}, scale_factor={scale_factor}, mode={mode!r}"


class ReLU(_Builtin):
    def __init__(self):
        super().__init__(_relu_create(), "ReLU")


class LeakyReLU(_Builtin):
    def __init__(self, negative_slope=0.01):
        super().__init__(_leaky_relu_create(float(negative_slope)), "LeakyReLU")


class Sigmoid(_Builtin):
    def __init__(self):
        super().__init__(_sigmoid_create(), "Sigmoid")


class Tanh(_Builtin):
    def __init__(self):
        super().__init__(_tanh_create(), "Tanh")


class Dropout(_Builtin):
    def __init__(self, p=0.5):
        super().__init__(_dropout_create(float(p)), "Dropout")
        self._args = f"p={p}"


class Flatten(_Builtin):
    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__(_flatten_create(int(start_dim), int(end_dim)), "Flatten")


class Sequential(_Builtin):
    """Runs its children in order; children are named "0", "1", ... as torch."""

    def __init__(self, *modules):
        super().__init__(_sequential_create(), "Sequential")
        for m in modules:
            self.append(m)

    def append(self, module):
        if not isinstance(module, Module):
            raise TypeError(f"kiln.nn.Sequential: items are kiln.nn.Module objects, not {type(module).__name__}")
        self._adopt_child(str(len(self._modules)), module, _sequential_append)
        return self

    def __getitem__(self, i):
        if isinstance(i, slice):
            raise TypeError("kiln.nn.Sequential: slicing would move modules to a new tree; index single items")
        return list(self._modules.values())[i]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(list(self._modules.values()))
