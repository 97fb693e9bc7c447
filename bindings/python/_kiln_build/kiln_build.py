"""PEP 517 backend for the kiln Python package: builds libkiln.so from the
repository with CMake (unless KILN_LIBRARY names a built one, or KILN_BUILD_DIR a
build folder holding it) and writes a wheel with the library inside kiln/.
It needs nothing beyond the standard library, so installs work offline.

Knobs (environment): KILN_LIBRARY, KILN_BUILD_DIR, KILN_CUDA (AUTO/ON/OFF, passed
to CMake), CMAKE_BUILD_PARALLEL_LEVEL (default 2), KILN_PYTHON_BUILD_DIR (where CMake
builds; default build-python/ of the repository), KILN_BUILD_TTY (0: no progress lines
on the terminal; a path: write them there instead of /dev/tty).

Progress: every step and a line per 10% of the C build go to stderr, which pip shows
with `pip install -v`. Without -v pip hides backend output behind a spinner, so the
milestone lines (start, configure, percentages, where the library lands) also go to
the terminal (/dev/tty) when there is one.
"""
import base64
import hashlib
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent  # bindings/python
REPO = HERE.parent.parent
PKG = HERE / "kiln"


def _meta():
    text = (HERE / "pyproject.toml").read_text()
    try:
        import tomllib

        p = tomllib.loads(text)["project"]
        return p["name"], p["version"], p.get("description", ""), p.get("requires-python", ""), \
            p.get("dependencies", [])
    except ImportError:  # Python < 3.11: the few fields we need
        name = re.search(r'^name = "([^"]+)"', text, re.M).group(1)
        version = re.search(r'^version = "([^"]+)"', text, re.M).group(1)
        return name, version, "", "", re.findall(r'"(numpy[^"]*)"', text)


def _log(msg, tty=False):
    """A progress line on stderr (pip shows backend output with -v). With tty=True
    the line also goes to the terminal when pip runs us without -v (it then hides our
    output behind its spinner), so a plain `pip install` shows the C build's progress."""
    line = f"kiln build: {msg}"
    print(line, file=sys.stderr, flush=True)
    if tty:
        t = _tty()
        if t is not None:
            try:  # the first line ends pip's spinner line; \r writes over a spinner character
                t.write(("\r" if _TTY_USED else "\n") + line + "\n")
                _TTY_USED.append(True)
                t.flush()
            except OSError:
                pass


_TTY = []
_TTY_USED = []


def _pip_hides_output():
    """True when our parent is pip run without -v: pip then logs our output only at its
    verbose level, behind a spinner."""
    try:
        args = Path(f"/proc/{os.getppid()}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    args = [a.decode("utf-8", "replace") for a in args if a]
    if not any(Path(a).name.startswith("pip") or a == "pip" for a in args):
        return False
    for a in args:  # -v shows our output already; -q asks for silence
        if a in ("--verbose", "--quiet") or re.fullmatch(r"-[a-zA-Z]*[vq][a-zA-Z]*", a):
            return False
    return True


def _tty():
    """The stream for terminal progress lines, or None: /dev/tty (KILN_BUILD_TTY=<path>:
    that file instead, for tests; KILN_BUILD_TTY=0: none) when pip hides our stderr and
    the terminal can be opened."""
    if not _TTY:
        want = os.environ.get("KILN_BUILD_TTY", "")
        stream = None
        if want != "0" and not sys.stderr.isatty() and _pip_hides_output():
            try:
                stream = open(want or "/dev/tty", "a")
            except OSError:
                stream = None
        _TTY.append(stream)
    return _TTY[0]


_PERCENT = re.compile(r"^\[\s*(\d+)%\]")  # Makefiles: "[ 42%] Building C object ..."
_NINJA = re.compile(r"^\[(\d+)/(\d+)\]")  # Ninja: "[12/80] Building C object ..."


def _run(cmd, what, progress=False):
    """Runs one CMake step, its output on stderr, with a line per 10% of the build."""
    _log(" ".join(cmd))
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
    shown, tail = -1, []
    for line in p.stdout:
        sys.stderr.write(line)
        tail = (tail + [line])[-40:]
        if progress:
            m, n = _PERCENT.match(line), _NINJA.match(line)
            pct = int(m.group(1)) if m else (100 * int(n.group(1)) // max(1, int(n.group(2))) if n else None)
            if pct is not None and pct // 10 > shown // 10:
                shown = pct
                _log(f"building the C library: {pct}% ({time.monotonic() - t0:.0f} s)", tty=True)
    rc = p.wait()
    if rc != 0:
        _log(f"{what} failed (exit {rc}); its last lines:\n" + "".join(tail), tty=True)
        raise RuntimeError(f"kiln build: `{' '.join(cmd)}` failed (exit {rc})")
    _log(f"{what} done in {time.monotonic() - t0:.0f} s", tty=True)


def _library():
    """Path of the libkiln.so to ship."""
    env = os.environ.get("KILN_LIBRARY")
    if env:
        if not os.path.isfile(env):
            raise RuntimeError(f"KILN_LIBRARY={env!r} is not a file")
        return Path(env).resolve()
    bdir = os.environ.get("KILN_BUILD_DIR")
    if bdir:
        # relative to where pip was run, or to the repository root (pip runs us in bindings/python)
        lib = next((d / "libkiln.so" for d in (Path(bdir), REPO / bdir) if (d / "libkiln.so").is_file()),
                   Path(bdir) / "libkiln.so")
        if not lib.is_file():
            raise RuntimeError(f"KILN_BUILD_DIR={bdir!r} holds no libkiln.so; build the kiln_shared target there")
        return lib.resolve()
    if not (REPO / "CMakeLists.txt").is_file() or not (REPO / "include" / "kiln" / "core.h").is_file():
        raise RuntimeError(f"the kiln sources are not at {REPO} (was the package copied out of the repository?); "
                           "install from the repository with `pip install ./bindings/python`, or set "
                           "KILN_LIBRARY=/path/to/libkiln.so")
    cmake = shutil.which("cmake")
    if not cmake:
        raise RuntimeError("cmake is not on PATH: run scripts/setup.sh (or apt-get install cmake), or set "
                           "KILN_LIBRARY to a built libkiln.so")
    build = Path(os.environ.get("KILN_PYTHON_BUILD_DIR") or REPO / "build-python")
    if not build.is_absolute():
        build = REPO / build
    _log("building the C library (libkiln.so) with CMake: about 1-2 minutes; `pip install -v` shows every "
         f"step (build folder {build})", tty=True)
    cfg = [cmake, "-S", str(REPO), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release", "-DKILN_BUILD_TESTS=OFF",
           "-DKILN_BUILD_EXAMPLES=OFF"]
    if os.environ.get("KILN_CUDA"):
        cfg.append(f"-DKILN_CUDA={os.environ['KILN_CUDA']}")
    jobs = os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL", "2")
    _log("configuring (cmake)", tty=True)
    _run(cfg, "configure")
    _run([cmake, "--build", str(build), "--target", "kiln_shared", "kiln_examples_shared", "-j", jobs], "build",
         progress=True)
    lib = (build / "libkiln.so").resolve()
    if not lib.is_file():
        raise RuntimeError(f"kiln build: the CMake build finished but wrote no {lib}")
    _log(f"built {build / 'libkiln.so'}", tty=True)
    return lib


def _tag():
    plat = sysconfig.get_platform().replace("-", "_").replace(".", "_")
    return f"py3-none-{plat}"


def _record_line(arcname, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{arcname},sha256={digest},{len(data)}"


def _dist_info(tag):
    """The .dist-info folder's name and files (but RECORD)."""
    name, version, summary, requires_python, deps = _meta()
    dist_info = f"{name}-{version}.dist-info"
    metadata = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}", f"Summary: {summary}"]
    if requires_python:
        metadata.append(f"Requires-Python: {requires_python}")
    metadata += [f"Requires-Dist: {d}" for d in deps]
    readme = HERE / "README.md"
    body = "\n".join(metadata) + "\n"
    if readme.is_file():
        body += "Description-Content-Type: text/markdown\n\n" + readme.read_text()
    return dist_info, {
        "METADATA": body.encode(),
        "WHEEL": f"Wheel-Version: 1.0\nGenerator: kiln_build\nRoot-Is-Purelib: false\nTag: {tag}\n".encode(),
        "top_level.txt": b"kiln\n",
    }


def _write_wheel(wheel_directory, files, tag):
    name, version = _meta()[:2]
    dist_info, meta = _dist_info(tag)
    files = dict(files)
    files.update({f"{dist_info}/{k}": v for k, v in meta.items()})
    record = [_record_line(a, d) for a, d in files.items()] + [f"{dist_info}/RECORD,,"]
    files[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()
    wheel_name = f"{name}-{version}-{tag}.whl"
    out = Path(wheel_directory) / wheel_name
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for arcname, data in files.items():
            info = zipfile.ZipInfo(arcname, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = (0o755 if arcname.endswith(".so") else 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data)
    _log(f"wrote {out}")
    return wheel_name


def _package_files():
    files = {}
    for p in sorted(PKG.rglob("*.py")):
        if "__pycache__" in p.parts:
            continue
        files["kiln/" + p.relative_to(PKG).as_posix()] = p.read_bytes()
    return files


# ---- PEP 517 / 660 hooks ------------------------------------------------------------
def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_editable(config_settings=None):
    return []


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    """The metadata without building the C library, so that pip's "Preparing metadata"
    step is instant and the build (and its progress) comes under "Building wheel"."""
    dist_info, meta = _dist_info(_tag())
    d = Path(metadata_directory) / dist_info
    d.mkdir(parents=True, exist_ok=True)
    for k, v in meta.items():
        (d / k).write_bytes(v)
    return dist_info


prepare_metadata_for_build_editable = prepare_metadata_for_build_wheel


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    files = _package_files()
    lib = _library()
    _log(f"shipping {lib}", tty=True)
    files["kiln/libkiln.so"] = lib.read_bytes()
    # kiln.examples (the C examples' scene generator) needs libkiln_examples.so; ship it when built
    for d in (lib.parent, Path(os.environ.get("KILN_LIBRARY", lib)).parent):
        ex = d / "libkiln_examples.so"
        if ex.is_file():
            _log(f"shipping {ex}")
            files["kiln/libkiln_examples.so"] = ex.resolve().read_bytes()
            break
    return _write_wheel(wheel_directory, files, _tag())


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    """The package runs from the source tree; the library is found by kiln/_runtime.py
    (KILN_LIBRARY, else build-python/ or build/ of the repository)."""
    if not os.environ.get("KILN_LIBRARY"):
        _library()  # make sure build-python/libkiln.so exists
    files = {"__editable__.kiln.pth": (str(HERE) + "\n").encode()}
    return _write_wheel(wheel_directory, files, _tag())
