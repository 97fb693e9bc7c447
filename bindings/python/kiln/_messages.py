"""kiln's C messages in Python's spelling.

The C library writes messages for C programs: they name C functions and C constants
("cast it with kiln_tensor_cast(t, KILN_F32)", "use kiln_bce_with_logits",
"set KILN_REDUCTION_MEAN"). `translate` rewrites them for Python users
("cast it with t.to(kiln.float32)", "use kiln.bce_with_logits", 'set reduction="mean"'),
keeping the rest of the message; the exception keeps the original as .c_message.

The table of C function -> Python name is built, on the first error, from what the
package exposes: every public function of kiln and its submodules, every Tensor
method and property, and the methods of the public classes (nn.Module, the
optimizers, the metrics, nn.init, ...) are inspected for the C functions their code
calls (ctypes functions declared with kiln._runtime.declare, found through the names the
code uses), and C functions whose stem is a public Python name map to it. Each C
name then takes its closest Python name (same stem first; functions at kiln's top
level before Tensor methods before the rest). A few C calls whose Python form is a
different idiom are set by hand (_OVERRIDES). C names the package does not wrap stay
as they are. The constants (dtypes, reductions, devices, score kinds, fan modes,
nonlinearities, upsampling modes) come from the package's own tables.
"""
import ctypes
import inspect
import re
import sys
import types

from . import _runtime

_CFUNC = ctypes._CFuncPtr


class _Entry:
    """One Python spelling of a C function: kind is 'function' (kiln.X, kiln.nn.X),
    'method' (a Tensor method: the call form puts its first argument in front),
    'property' (a Tensor property), 'class' (a constructor) or 'member' (a method of
    another class, e.g. Module.add_module)."""

    __slots__ = ("name", "kind", "target", "empty")

    def __init__(self, name, kind, target=None, empty=None):
        self.name, self.kind, self.target, self.empty = name, kind, target, empty

    def bare(self):
        return "Tensor." + self.name if self.kind in ("method", "property") else self.name

    def __repr__(self):
        return f"_Entry({self.bare()!r}, {self.kind!r})"


# C calls whose Python form is another idiom: C name -> (Python name, kind, rendering of an empty call)
_OVERRIDES = {
    "kiln_tensor_cast": ("to", "method", "t.to(dtype)"),
    "kiln_tensor_to": ("to", "method", "t.to(device)"),
    "kiln_tensor_set_requires_grad": ("requires_grad_", "method", None),
    "kiln_tensor_to_host": ("numpy", "method", None),
    "kiln_tensor_from_host": ("kiln.tensor", "function", None),
    "kiln_tensor_copy_": ("copy_", "method", None),
    "kiln_tensor_fill": ("fill_", "method", None),
    "kiln_tensor_item": ("item", "method", None),
    "kiln_tensor_detach": ("detach", "method", None),
    "kiln_tensor_zero_grad": ("zero_grad", "method", None),
    "kiln_backward": ("backward", "method", None),
    "kiln_backward_ex": ("backward", "method", None),
    "kiln_sum_all": ("sum", "method", None),
    "kiln_mean_all": ("mean", "method", None),
    "kiln_module_add": ("Module.add_module", "member", None),
    "kiln_module_to": ("Module.to", "member", None),
    "kiln_module_forward": ("Module.forward", "member", None),
    "kiln_scope_keep": ("scope.keep", "member", None),
    "kiln_scope_begin": ("kiln.scope", "class", None),
    "kiln_scope_end": ("kiln.scope", "class", None),
}

_PREFIXES = ("tensor_", "module_", "optimizer_", "optim_", "init_", "safetensors_", "cuda_", "memory_")
_SUFFIXES = ("_create_ex", "_create")
# C functions that are the bindings' own plumbing (errors, scopes under each call): never named to users
_INTERNAL = {"kiln_clear_error", "kiln_last_status", "kiln_last_error", "kiln_status_name", "kiln_scope_detach",
             "kiln_scope_free"}


def _stem(c_name):
    s = c_name[len("kiln_"):]
    for p in _PREFIXES:
        if s.startswith(p) and len(s) > len(p):
            s = s[len(p):]
            break
    for x in _SUFFIXES:
        if s.endswith(x):
            s = s[: -len(x)]
    return s


def _norm(s):
    return s.lower().replace("_", "")


def _similarity(c_name, py_name):
    a, b = _norm(_stem(c_name)), _norm(py_name.rsplit(".", 1)[-1])
    if a == b:
        return 0
    if a and b and (a in b or b in a):
        return 1
    return 2


def _codes(fn):
    """All code objects of a function (nested ones included)."""
    out = [fn.__code__]
    for c in fn.__code__.co_consts:
        if isinstance(c, types.CodeType):
            stack = [c]
            while stack:
                x = stack.pop()
                out.append(x)
                stack.extend(y for y in x.co_consts if isinstance(y, types.CodeType))
    return out


def _is_cfunc(obj):
    return isinstance(obj, _CFUNC) and getattr(obj, "__name__", None) in _runtime.declared


def _refs(fn, owner=None, depth=0):
    """(C name, direct) pairs for the declared C functions fn's code names: globals,
    attributes of kiln modules and of owner (the class), and, one level down, those of
    the private helpers it calls."""
    fn = inspect.unwrap(fn)
    if not isinstance(fn, types.FunctionType):
        return set()
    g = fn.__globals__
    names = set()
    for code in _codes(fn):
        names.update(code.co_names)
    mods = [v for v in g.values() if isinstance(v, types.ModuleType) and v.__name__.startswith("kiln")]
    out = set()
    for n in names:
        cands = [g.get(n)] + [getattr(m, n, None) for m in mods]
        if owner is not None:
            cands.append(getattr(owner, n, None))
        for obj in cands:
            if _is_cfunc(obj):
                out.add((obj.__name__, depth == 0))
            elif depth == 0 and n.startswith("_") and isinstance(obj, types.FunctionType) \
                    and obj.__module__.startswith("kiln") and n not in _PLUMBING:
                out.update((c, False) for c, _ in _refs(obj, owner, depth + 1))
    return out


# private helpers every wrapper goes through: what they call names no Python call (the
# runtime's call, handle, borrow, ... and _convert's operand are public names of private
# modules, so they are never followed anyway)
_PLUMBING = {"_finish", "_release", "_opt", "_handle", "_pair"}


def _surface():
    """(Python name, kind, object, owner) for the package's public callables."""
    import kiln

    out = []
    subs = [("kiln", kiln)] + [(f"kiln.{n}", getattr(kiln, n)) for n in
                               ("nn", "losses", "layers", "optim", "metrics", "checkpoint", "cuda", "memory",
                                "examples") if hasattr(kiln, n)]
    classes = []
    for prefix, mod in subs:
        for n, v in vars(mod).items():
            if n.startswith("_"):
                continue
            if isinstance(v, types.FunctionType) and v.__module__.startswith("kiln"):
                out.append((f"{prefix}.{n}", "function", v, None))
            elif isinstance(v, type) and v.__module__.startswith("kiln") and not issubclass(v, BaseException) \
                    and not issubclass(v, ctypes.Structure):
                classes.append((f"{prefix}.{n}", v))
    init = getattr(kiln.nn, "init", None)
    if init is not None:
        for n in dir(type(init)):
            if not n.startswith("_"):
                out.append((f"kiln.nn.init.{n}", "function", getattr(type(init), n), type(init)))
    seen = set()
    for full, cls in classes:
        if cls in seen:
            continue
        seen.add(cls)
        if cls is kiln.Tensor:
            for n, v in vars(cls).items():
                if n.startswith("_") and n not in ("__getitem__", "__setitem__"):
                    continue
                if isinstance(v, property):
                    out.append((n, "property", v.fget, cls))
                elif isinstance(v, types.FunctionType):
                    out.append((n, "method", v, cls))
            continue
        out.append((full, "class", cls.__init__, cls))
        short = full.rsplit(".", 1)[-1]
        for n, v in vars(cls).items():
            if n.startswith("_"):
                continue
            f = v.fget if isinstance(v, property) else v
            if isinstance(f, (staticmethod, classmethod)):
                f = f.__func__
            if isinstance(f, types.FunctionType):
                out.append((f"{short}.{n}", "member", f, cls))
    return out


_KIND_RANK = {"function": 0, "method": 1, "property": 1, "class": 2, "member": 3}


def _rank(c, cand):
    """Sort key of one Python candidate for C function c: same stem first, then a class
    that owns the C name's prefix (kiln_module_* -> Module.*, kiln_tensor_* -> Tensor.*),
    code that calls it directly, constructors for kiln_*_create, kiln.X before Tensor.X
    before kiln.nn.X and class members, the shorter name."""
    name, kind, _, direct = cand
    if kind in ("method", "property"):
        owner = "tensor"
    elif kind == "member":
        owner = name.split(".")[0]
    else:
        owner = ""
    rest = _norm(c[len("kiln_"):])
    affinity = (0 if rest.startswith(_norm(owner)) else 2) if owner else 1
    create = c.endswith(("_create", "_create_ex"))
    kind_rank = -1 if create and kind == "class" else _KIND_RANK[kind]
    depth = name.count(".") if kind == "function" else 0  # kiln.X before kiln.nn.X
    return (_similarity(c, name), affinity, not direct, kind_rank, depth, len(name), name)


def build_table():
    """C function name -> _Entry, for the C functions the package declares."""
    import kiln

    cands = {}
    for name, kind, obj, owner in _surface():
        for c, direct in _refs(obj, owner):
            cands.setdefault(c, []).append((name, kind, obj, direct))
    # C functions named like a public Python function or Tensor method (ops reached through tables)
    for c in _runtime.declared:
        if c.startswith(("kiln_module_", "kiln_optimizer_", "kiln_optim_")) or c.endswith("_create"):
            continue
        stem = _stem(c)
        f = getattr(kiln, stem, None)
        if isinstance(f, types.FunctionType):
            cands.setdefault(c, []).append((f"kiln.{stem}", "function", f, True))
        m = vars(kiln.Tensor).get(stem)
        if isinstance(m, types.FunctionType):
            cands.setdefault(c, []).append((stem, "method", m, True))
    table = {}
    for c, lst in cands.items():
        lst = [x for x in lst if x[3] or _similarity(c, x[0]) < 2]
        if not lst or c in _INTERNAL:
            continue
        name, kind, obj, _ = min(lst, key=lambda x: _rank(c, x))
        table[c] = _Entry(name, kind, obj)
    # a C function that is both kiln.X and Tensor.X: keep the function, but let calls use the method
    for c, e in table.items():
        if e.kind == "function" and e.name.startswith("kiln.") and e.name.count(".") == 1:
            m = vars(kiln.Tensor).get(e.name[5:])
            if isinstance(m, types.FunctionType):
                e.target = ("method-too", m)
    for c, (name, kind, empty) in _OVERRIDES.items():
        if c in _runtime.declared:
            tgt = vars(kiln.Tensor).get(name) if kind == "method" else None
            table[c] = _Entry(name, kind, tgt, empty)
    return table


def build_constants():
    """C constant -> Python spelling, from the package's own tables."""
    import kiln
    from . import _types

    out = {}
    for alias, d in _types._BY_NAME.items():
        if re.fullmatch(r"(bf|f|i|u)\d+", alias):
            out["KILN_" + alias.upper()] = "kiln." + d.name
    try:
        for r in kiln.losses._REDUCTIONS:
            if isinstance(r, str):
                out["KILN_REDUCTION_" + r.upper()] = f'reduction="{r}"'
    except AttributeError:
        pass
    for nl in getattr(type(getattr(kiln.nn, "init", None)), "_NL", {}):
        out["KILN_NONLINEARITY_" + nl.upper()] = f'nonlinearity="{nl}"'
    out.update({
        "KILN_FAN_IN": 'mode="fan_in"', "KILN_FAN_OUT": 'mode="fan_out"',
        "KILN_UPSAMPLE_NEAREST": 'mode="nearest"', "KILN_UPSAMPLE_BILINEAR": 'mode="bilinear"',
        "KILN_SCORES_LOGITS": "from_logits=True", "KILN_SCORES_PROBABILITIES": "from_logits=False",
        "KILN_CPU": '"cpu"', "KILN_DEVICE_CPU": '"cpu"', "KILN_DEVICE_CUDA": '"cuda"',
        "NULL": "None", "true": "True", "false": "False",
    })
    return out


_table = None
_consts = None
_BY_SHORT = {"f32": "float32", "f64": "float64", "f16": "float16", "bf16": "bfloat16", "i32": "int32",
             "i64": "int64", "u8": "uint8"}
_CALL = re.compile(r"\bkiln_([a-z0-9_]+)\(([^()]*)\)")
_NAME = re.compile(r"\bkiln_[a-z0-9_]+\b(?!\.)")
_CONST = re.compile(r"\b(?:KILN_[A-Z0-9_]+|NULL|true|false)\b(?![=(])")
_CUDA = re.compile(r"\bKILN_CUDA\((\w+)\)")
_REDUCTION_LIST = re.compile(r'\bKILN_REDUCTION_([A-Z]+)((?:, _[A-Z]+)*)(?:,? or _([A-Z]+))')
_DTYPE_WORD = re.compile(r"(?<![\w.])(bf16|f16|f32|f64|i32|i64|u8)(?![\w])")


def _tables():
    global _table, _consts
    if _table is None:
        if not hasattr(sys.modules.get("kiln"), "__version__"):  # kiln is still importing: no table yet
            raise RuntimeError("kiln is not imported yet")
        _consts = build_constants()
        _table = build_table()
    return _table, _consts


def _const(text, consts):
    text = _CUDA.sub(lambda m: f'"cuda:{m.group(1)}"', text)
    text = _REDUCTION_LIST.sub(
        lambda m: 'reduction="' + m.group(1).lower() + '"'
        + "".join(f', "{x.strip()[1:].lower()}"' for x in m.group(2).split(",") if x.strip())
        + (f' or "{m.group(3).lower()}"' if m.group(3) else ""), text)
    return _CONST.sub(lambda m: consts.get(m.group(0), m.group(0)), text)


def _split_args(s):
    s = s.strip()
    return [a.strip() for a in s.split(",")] if s else []


def _params(fn):
    try:
        ps = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return None
    return [p for p in ps if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


def _render_args(args, params):
    """Positional arguments, the None ones a Python default covers left out (those after
    them then go by keyword)."""
    if params is None or len(args) > len(params):
        return ", ".join(args)
    out, by_kw = [], False
    for a, p in zip(args, params):
        if a == "None" and p.default is None:
            by_kw = True
            continue
        out.append(f"{p.name}={a}" if by_kw and a != "..." else a)
    while out and out[-1] == "None":
        out.pop()
    return ", ".join(out)


def _call(m, table, consts):
    c = "kiln_" + m.group(1)
    e = table.get(c)
    if e is None:
        return m.group(0)
    args = [_const(a, consts) for a in _split_args(m.group(2))]
    recv_ok = args and re.fullmatch(r"[A-Za-z_][\w.\[\]]*", args[0]) and args[0] not in ("None", "...")
    method = e.target[1] if isinstance(e.target, tuple) else (e.target if e.kind == "method" else None)
    if e.kind in ("method", "property") or method is not None:
        if not args:
            return e.empty or (f"t.{e.name}" if e.kind == "property" else
                               f"t.{method.__name__ if method else e.name}()")
        if recv_ok:
            if e.kind == "property":
                return f"{args[0]}.{e.name}"
            name = e.name if e.kind == "method" else e.name[5:]
            params = _params(method)
            return f"{args[0]}.{name}({_render_args(args[1:], params[1:] if params else None)})"
    if e.kind == "function" or (e.kind == "method" and not recv_ok):
        fn = e.target[1] if isinstance(e.target, tuple) else e.target
        name = e.bare() if e.kind != "method" else "kiln." + e.name
        return f"{name}({_render_args(args, _params(fn) if callable(fn) else None)})"
    return f"{e.bare()}({', '.join(args)})"


def translate(message):
    """The message with the C names the package wraps spelled as in Python."""
    if not message or ("kiln_" not in message and "KILN_" not in message and not _DTYPE_WORD.search(message)):
        return message
    try:
        table, consts = _tables()
    except Exception:  # never let the translation hide the error itself
        return message
    text = _CALL.sub(lambda m: _call(m, table, consts), message)
    text = _NAME.sub(lambda m: table[m.group(0)].bare() if m.group(0) in table else m.group(0), text)
    text = _const(text, {k: v for k, v in consts.items() if k.startswith("KILN_")})
    text = _DTYPE_WORD.sub(lambda m: _BY_SHORT[m.group(1)], text)
    return text


def table():
    """The C -> Python table (for tests and curious users): {C name: Python name}."""
    t, _ = _tables()
    return {c: e.bare() for c, e in sorted(t.items())}


if __name__ == "__main__":  # python -m kiln._messages: print the table
    for c, p in table().items():
        print(f"{c:40s} {p}")
    sys.exit(0)
