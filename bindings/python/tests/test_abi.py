"""The ctypes mirrors of kiln's public structs against the library's own layout
(kiln_abi_sizeof / kiln_abi_offsetof, include/kiln/abi.h): every mirror is checked,
and a wrong one stops the import with a message naming the struct, both sizes and
the header."""
import ctypes
import os
import shutil
import subprocess
import sys
import types
from ctypes import c_bool, c_int, c_int32, c_int64
from pathlib import Path

import pytest

import kiln
from kiln import _runtime

SIZE_MAX = ctypes.c_size_t(-1).value
ROOT = Path(__file__).resolve().parents[3]  # bindings/python/tests -> the repository


def _kiln_modules():
    return [m for n, m in sorted(sys.modules.items()) if (n == "kiln" or n.startswith("kiln."))
            and isinstance(m, types.ModuleType)]


def test_every_struct_mirror_is_checked():
    found = {}
    for mod in _kiln_modules():
        for v in vars(mod).values():
            if isinstance(v, type) and issubclass(v, ctypes.Structure) and v.__module__ == mod.__name__:
                found[f"{mod.__name__}.{v.__qualname__}"] = v
    checked = {cls for cls, _ in _runtime.mirrored.values()}
    unchecked = sorted(n for n, cls in found.items() if cls not in checked and not n.startswith("kiln._dlpack."))
    assert not unchecked, f"ctypes structs without @mirrors (kiln/_runtime.py): {unchecked}"
    assert set(_runtime.mirrored) >= {"kiln_device", "kiln_pool_stats", "kiln_conv2d_params",
                                      "kiln_conv_transpose2d_params", "kiln_pool2d_params",
                                      "kiln_cross_entropy_options", "kiln_binary_counts", "kiln_sgd_options",
                                      "kiln_adam_options", "kiln_schedule", "kiln_named_tensor",
                                      "kiln_metadata_entry", "kiln_safetensors_entry"}


def test_the_mirrors_match_the_library():
    _runtime.check_structs()
    for c_name, (cls, header) in _runtime.mirrored.items():
        assert _runtime.abi_sizeof(c_name.encode()) == ctypes.sizeof(cls), c_name
        assert (ROOT / header).is_file(), f"{c_name}: {header} is not a header of this tree"


def test_the_library_answers_for_unknown_names():
    assert _runtime.abi_sizeof(b"kiln_no_such_struct") == 0
    assert _runtime.abi_sizeof(None) == 0
    assert _runtime.abi_offsetof(b"kiln_device", b"no_such_field") == SIZE_MAX
    assert _runtime.abi_offsetof(b"kiln_no_such_struct", b"type") == SIZE_MAX
    assert _runtime.abi_offsetof(None, None) == SIZE_MAX
    # a struct no Python module mirrors is known too: 9 int64 counters
    assert _runtime.abi_sizeof(b"kiln_cuda_conv_stats") == 72
    assert _runtime.abi_offsetof(b"kiln_cuda_conv_stats", b"workspace_bytes") == 64
    assert _runtime.abi_offsetof(b"kiln_schedule", b"kind") == 0


class _ShortConv2dParams(ctypes.Structure):  # kiln_conv2d_params with a 32-bit groups
    _fields_ = [("stride", c_int64 * 2), ("padding", c_int64 * 2), ("dilation", c_int64 * 2), ("groups", c_int32),
                ("padding_same", c_bool)]


def test_a_struct_of_the_wrong_size_is_an_import_error(monkeypatch):
    real = ctypes.sizeof(kiln.layers.CConv2dParams)
    monkeypatch.setitem(_runtime.mirrored, "kiln_conv2d_params", (_ShortConv2dParams, "include/kiln/layers.h"))
    with pytest.raises(ImportError) as e:
        _runtime.check_structs()
    msg = str(e.value)
    assert "kiln_conv2d_params" in msg and "_ShortConv2dParams" in msg and "include/kiln/layers.h" in msg
    assert f"is {real} bytes" in msg and f"is {ctypes.sizeof(_ShortConv2dParams)} bytes" in msg


def test_a_field_at_the_wrong_offset_is_an_import_error():
    class Swapped(ctypes.Structure):  # the size is right, the order is not
        _fields_ = [("index", c_int), ("type", c_int)]

    with pytest.raises(ImportError, match=r"field 'index' of struct kiln_device is at offset 4 in .* but at 0 in "
                                          r"its mirror .*Swapped; .*include/kiln/core.h"):
        _runtime.check_struct(Swapped, "kiln_device", "include/kiln/core.h")


def test_a_field_c_does_not_have_is_an_import_error():
    class Renamed(ctypes.Structure):
        _fields_ = [("type", c_int), ("idx", c_int)]

    with pytest.raises(ImportError, match=r"has a field 'idx' that struct kiln_device .* does not have"):
        _runtime.check_struct(Renamed, "kiln_device", "include/kiln/core.h")


def test_a_struct_c_does_not_know_is_an_import_error():
    class Unknown(ctypes.Structure):
        _fields_ = [("x", c_int)]

    with pytest.raises(ImportError, match=r"knows no struct kiln_unknown_params .*core/abi.c"):
        _runtime.check_struct(Unknown, "kiln_unknown_params", "include/kiln/layers.h")


def test_a_stale_mirror_stops_import_kiln(tmp_path):
    # a copy of the package whose kiln_conv2d_params mirror has a 32-bit groups field
    pkg = tmp_path / "kiln"
    shutil.copytree(Path(kiln.__file__).parent, pkg, ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    layers = pkg / "layers.py"
    src = layers.read_text()
    stale = src.replace('("groups", c_int64), ("padding_same", c_bool)', '("groups", ctypes.c_int32), '
                        '("padding_same", c_bool)')
    assert stale != src
    layers.write_text(stale)
    env = dict(os.environ, KILN_LIBRARY=kiln.library_path)
    r = subprocess.run([sys.executable, "-c", "import kiln"], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode != 0
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: kiln: struct kiln_conv2d_params is 64 bytes in "), last
    assert "kiln.layers.CConv2dParams is 56 bytes" in last and "include/kiln/layers.h" in last
