"""The package installs: the in-tree PEP 517 backend writes a wheel that ships
libkiln.so, and `pip install ./bindings/python` works in a fresh virtual
environment. Both reuse the library under test (KILN_LIBRARY) instead of running
CMake again."""
import os
import re
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


FAKE_CMAKE = r"""#!/bin/sh
# a stand-in for cmake: prints what a Makefile build prints and copies the library under test
if [ "$1" = "--build" ]; then
    for p in 10 25 40 55 70 85 97; do echo "[ $p%] Building C object CMakeFiles/kiln.dir/core/x$p.c.o"; done
    echo "[100%] Linking C shared library libkiln.so"
    cp "$FAKE_KILN_LIBRARY" "$2/libkiln.so"
    [ -f "$(dirname "$FAKE_KILN_LIBRARY")/libkiln_examples.so" ] && \
        cp "$(dirname "$FAKE_KILN_LIBRARY")/libkiln_examples.so" "$2/"
    exit 0
fi
while [ $# -gt 0 ]; do [ "$1" = "-B" ] && mkdir -p "$2"; shift; done
echo "-- Configuring done"
echo "-- Generating done"
"""

PROGRESS = ["kiln build: building the C library (libkiln.so) with CMake: about 1-2 minutes; `pip install -v` shows",
            "kiln build: configuring (cmake)", "kiln build: configure done in", "kiln build: building the C library: 10%",
            "kiln build: building the C library: 55%", "kiln build: building the C library: 100%",
            "kiln build: build done in"]


def fake_cmake_env(tmp_path, **kw):
    bindir = tmp_path / "fakebin"
    bindir.mkdir()
    (bindir / "cmake").write_text(FAKE_CMAKE)
    (bindir / "cmake").chmod(0o755)
    build = tmp_path / "cmake-build"
    env = env_with(PATH=f"{bindir}:{os.environ.get('PATH', '')}", FAKE_KILN_LIBRARY=kiln.library_path,
                   KILN_PYTHON_BUILD_DIR=str(build), **kw)
    return env, build


def assert_progress(log, build):
    for line in PROGRESS + [f"kiln build: built {build / 'libkiln.so'}"]:
        assert line in log, f"{line!r} is not in the build log:\n{log}"
    # ascending percentages, one line per 10% step at most
    pcts = [int(x) for x in re.findall(r"building the C library: (\d+)%", log)]
    assert pcts == sorted(pcts) and len(pcts) == len(set(p // 10 for p in pcts))


def test_backend_prints_build_progress(tmp_path):
    """The CMake build reports its steps on stderr: the first line says how long it takes
    and how to see details, then configure, a line per 10% and where the library lands."""
    out = tmp_path / "dist"
    out.mkdir()
    env, build = fake_cmake_env(tmp_path)
    code = ("import sys; sys.path.insert(0, '_kiln_build'); import kiln_build; "
            f"print(kiln_build.build_wheel({str(out)!r}))")
    r = subprocess.run([sys.executable, "-c", code], cwd=PKG_ROOT, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert_progress(r.stderr, build)
    assert r.stderr.index("about 1-2 minutes") < r.stderr.index("configuring") < r.stderr.index("10%")
    assert "[ 55%] Building C object" in r.stderr  # the build's own lines too
    with zipfile.ZipFile(out / r.stdout.strip().splitlines()[-1]) as z:
        assert z.read("kiln/libkiln.so") == Path(kiln.library_path).read_bytes()


def test_backend_reports_a_failed_build(tmp_path):
    env, _ = fake_cmake_env(tmp_path)
    (tmp_path / "fakebin" / "cmake").write_text("#!/bin/sh\necho 'error: no compiler'\nexit 3\n")
    code = "import sys; sys.path.insert(0, '_kiln_build'); import kiln_build; kiln_build.build_wheel('.')"
    r = subprocess.run([sys.executable, "-c", code], cwd=PKG_ROOT, env=env, capture_output=True, text=True)
    assert r.returncode != 0
    assert "configure failed (exit 3)" in r.stderr and "error: no compiler" in r.stderr


def _venv(tmp_path):
    venv = tmp_path / "venv"
    r = subprocess.run(["/usr/bin/python3", "-m", "venv", "--system-site-packages", str(venv)], capture_output=True,
                       text=True)
    if r.returncode != 0:
        pytest.skip(f"python3 -m venv is unavailable: {r.stderr.strip()[-200:]}")
    return venv / "bin" / "python"


def test_pip_install_shows_build_progress(tmp_path):
    """pip hides a backend's output unless -v: with -v the progress lines are in pip's
    log; without it they go to the terminal (here a file standing for /dev/tty)."""
    py = _venv(tmp_path)
    tty = tmp_path / "tty.log"
    env, build = fake_cmake_env(tmp_path, KILN_BUILD_TTY=str(tty))
    pip = [str(py), "-m", "pip", "install", "--no-index", "--no-deps", "--force-reinstall"]
    r = subprocess.run(pip + ["-v", str(PKG_ROOT)], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert_progress(r.stdout + r.stderr, build)
    assert not tty.exists() or "kiln build" not in tty.read_text()  # -v shows them already: not twice
    r = subprocess.run(pip + [str(PKG_ROOT)], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "kiln build: building the C library: 55%" not in r.stdout + r.stderr  # what pip shows by default ...
    assert_progress(tty.read_text(), build)  # ... so the lines went to the terminal
    tty.unlink()
    r = subprocess.run(pip + ["--quiet", str(PKG_ROOT)], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert not tty.exists()  # --quiet asks for silence
    r = subprocess.run([str(py), "-c", CHECK], cwd=tmp_path, env=env_with(), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[0].startswith(str(py.parent.parent))
