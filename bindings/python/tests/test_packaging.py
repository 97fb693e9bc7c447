"""The package installs: the in-tree PEP 517 backend writes a wheel that ships
libkiln.so, and `pip install ./bindings/python` works in a fresh virtual
environment. Both reuse the library under test (KILN_LIBRARY) instead of running
CMake again."""
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import kiln

PKG_ROOT = Path(__file__).resolve().parent.parent
CHECK = "import kiln; print(kiln.library_path); print((kiln.ones(3) * 2).sum().item())"


def env_with(**kw):
    env = {k: v for k, v in os.environ.items() if k not in ("KILN_LIBRARY", "PYTHONPATH")}
    env.update(kw)
    return env


def test_backend_wheel_ships_the_library(tmp_path):
    out = tmp_path / "dist"
    out.mkdir()
    code = ("import sys; sys.path.insert(0, '_kiln_build'); import kiln_build; "
            f"print(kiln_build.build_wheel({str(out)!r}))")
    r = subprocess.run([sys.executable, "-c", code], cwd=PKG_ROOT, env=env_with(KILN_LIBRARY=kiln.library_path),
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    wheel = out / r.stdout.strip().splitlines()[-1]
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        assert {"kiln/__init__.py", "kiln/_lib.py", "kiln/libkiln.so", "kiln-0.1.0.dist-info/RECORD",
                "kiln-0.1.0.dist-info/WHEEL", "kiln-0.1.0.dist-info/METADATA"} <= names
        assert not any(n.startswith("tests/") for n in names)
        if (Path(kiln.library_path).parent / "libkiln_examples.so").is_file():
            assert "kiln/libkiln_examples.so" in names
        assert "Root-Is-Purelib: false" in z.read("kiln-0.1.0.dist-info/WHEEL").decode()
        z.extractall(tmp_path / "site")
    r = subprocess.run([sys.executable, "-c", CHECK], cwd=tmp_path, env=env_with(PYTHONPATH=str(tmp_path / "site")),
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    lib, value = r.stdout.split()
    assert lib == str(tmp_path / "site" / "kiln" / "libkiln.so") and float(value) == 6.0
    if "kiln/libkiln_examples.so" in names:  # the shipped examples library binds to the shipped libkiln.so
        code = "import kiln; print(kiln.examples.library_path()); print(kiln.examples.scene_batch(0, 2, size=16)[0].shape)"
        r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path,
                           env=env_with(PYTHONPATH=str(tmp_path / "site")), capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert r.stdout.split("\n")[:2] == [str(tmp_path / "site" / "kiln" / "libkiln_examples.so"), "(2, 3, 16, 16)"]


@pytest.mark.skipif(shutil.which("cmake") is None and not os.environ.get("KILN_LIBRARY"), reason="no library")
def test_pip_install_into_a_fresh_venv(tmp_path):
    venv = tmp_path / "venv"
    r = subprocess.run(["/usr/bin/python3", "-m", "venv", "--system-site-packages", str(venv)], capture_output=True,
                       text=True)
    if r.returncode != 0:
        pytest.skip(f"python3 -m venv is unavailable: {r.stderr.strip()[-200:]}")
    py = venv / "bin" / "python"
    r = subprocess.run([str(py), "-m", "pip", "install", "--no-index", "--quiet", str(PKG_ROOT)], cwd=tmp_path,
                       env=env_with(KILN_LIBRARY=kiln.library_path), capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run([str(py), "-c", CHECK], cwd=tmp_path, env=env_with(), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    lib, value = r.stdout.split()
    assert lib.startswith(str(venv)) and float(value) == 6.0
