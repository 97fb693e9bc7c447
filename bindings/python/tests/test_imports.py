"""The package's module layout: no import cycles among the modules of kiln/, and no
module reaching for another's private names. Checked statically (the graph of the
imports that run when a module is imported) and by importing each module first, on
its own, in a fresh interpreter."""
import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

import kiln

PKG = Path(kiln.__file__).resolve().parent
MODULES = sorted(p.stem for p in PKG.glob("*.py") if p.stem != "__init__")


def _import_time_nodes(tree):
    """The statements that run when the module is imported: everything outside
    function bodies (class bodies run at import too)."""
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def _imports(name):
    """(imported kiln module, names taken from it) for each import kiln.<name> runs
    at import time; "kiln" is the package itself."""
    src = (PKG / ("__init__.py" if name == "kiln" else name + ".py")).read_text()
    out = []
    for node in _import_time_nodes(ast.parse(src)):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name == "kiln" or a.name.startswith("kiln."):
                    out.append((a.name, ()))
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module and (node.module == "kiln" or node.module.startswith("kiln.")):
                base = node.module
            elif node.level == 1:
                base = "kiln" + ("." + node.module if node.module else "")
            else:
                continue
            if base == "kiln":  # `from . import x`: a submodule, or a name of the package itself
                for a in node.names:
                    out.append(("kiln." + a.name, ()) if a.name in MODULES else ("kiln", (a.name,)))
            else:
                out.append((base, tuple(a.name for a in node.names)))
    return out


def _graph():
    nodes = ["kiln"] + ["kiln." + m for m in MODULES]
    return {n: sorted({dst for dst, _ in _imports(n if n == "kiln" else n[5:])}) for n in nodes}


def _cycle(graph):
    """One import cycle as a list of modules, or None."""
    state = {}  # 1: on the current path, 2: done
    path = []

    def visit(n):
        state[n] = 1
        path.append(n)
        for m in graph.get(n, ()):
            if state.get(m) == 1:
                return path[path.index(m):] + [m]
            if m not in state:
                found = visit(m)
                if found:
                    return found
        path.pop()
        state[n] = 2
        return None

    for n in graph:
        if n not in state:
            found = visit(n)
            if found:
                return found
    return None


def test_the_import_graph_is_acyclic():
    graph = _graph()
    assert graph["kiln.tensor"], "the parser found no imports in kiln/tensor.py"
    cycle = _cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_cycles():
    assert _cycle({"a": ["b"], "b": ["c"], "c": ["a"]}) == ["a", "b", "c", "a"]
    assert _cycle({"a": ["b", "c"], "b": ["c"], "c": []}) is None


def test_the_runtime_sits_below_the_tensor_class():
    graph = _graph()
    assert graph["kiln._runtime"] == ["kiln._errors"]
    for low in ("kiln._runtime", "kiln._lib", "kiln._types", "kiln._convert", "kiln.ops", "kiln._dlpack"):
        assert "kiln.tensor" not in graph[low], f"{low} imports kiln.tensor"


def test_no_module_imports_private_names_of_another():
    bad = []
    for m in MODULES + ["kiln"]:
        for src, names in _imports(m):
            bad += [f"{m}: from {src} import {n}" for n in names if n.startswith("_")]
    assert not bad, "private names imported across modules:\n" + "\n".join(bad)


# Each module imported first, before the package's __init__ has imported anything else
# (kiln is a bare package object), so an import that only works because another module
# happened to be loaded earlier fails here.
_ALONE = """
import importlib, sys, types
pkg = types.ModuleType("kiln")
pkg.__path__ = [sys.argv[1]]
sys.modules["kiln"] = pkg
importlib.import_module("kiln." + sys.argv[2])
"""


@pytest.mark.parametrize("module", MODULES)
def test_each_module_imports_first_in_a_fresh_interpreter(module):
    env = dict(os.environ, KILN_LIBRARY=kiln.library_path)
    for code, args in ((_ALONE, [str(PKG), module]), (f"import kiln.{module}", [])):
        r = subprocess.run([sys.executable, "-c", code, *args], cwd=PKG.parent, env=env, capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 0, f"importing kiln.{module} first failed:\n{r.stderr}"
