"""PEP 517 backend for the kiln Python package: builds libkiln.so from the
repository with CMake (unless KILN_LIBRARY names a built one, or KILN_BUILD_DIR a
build folder holding it) and writes a wheel with the library inside kiln/.
It needs nothing beyond the standard library, so installs work offline.

Knobs (environment): KILN_LIBRARY, KILN_BUILD_DIR, KILN_CUDA (AUTO/ON/OFF, passed
to CMake), CMAKE_BUILD_PARALLEL_LEVEL (default 2).
"""
import base64
import hashlib
import os
import re
import shutil
import subprocess
import sys
import sysconfig
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


def _log(msg):
    print(f"kiln build: {msg}", file=sys.stderr, flush=True)


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
    build = REPO / "build-python"
    cfg = [cmake, "-S", str(REPO), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release", "-DKILN_BUILD_TESTS=OFF",
           "-DKILN_BUILD_EXAMPLES=OFF"]
    if os.environ.get("KILN_CUDA"):
        cfg.append(f"-DKILN_CUDA={os.environ['KILN_CUDA']}")
    jobs = os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL", "2")
    for cmd in (cfg, [cmake, "--build", str(build), "--target", "kiln_shared", "kiln_examples_shared", "-j", jobs]):
        _log(" ".join(cmd))
        r = subprocess.run(cmd, stdout=sys.stderr, stderr=sys.stderr)
        if r.returncode != 0:
            raise RuntimeError(f"kiln build: `{' '.join(cmd)}` failed (exit {r.returncode})")
    return (build / "libkiln.so").resolve()


def _tag():
    plat = sysconfig.get_platform().replace("-", "_").replace(".", "_")
    return f"py3-none-{plat}"


def _record_line(arcname, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{arcname},sha256={digest},{len(data)}"


def _write_wheel(wheel_directory, files, tag):
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
    files = dict(files)
    files[f"{dist_info}/METADATA"] = body.encode()
    files[f"{dist_info}/WHEEL"] = (f"Wheel-Version: 1.0\nGenerator: kiln_build\nRoot-Is-Purelib: false\n"
                                   f"Tag: {tag}\n").encode()
    files[f"{dist_info}/top_level.txt"] = b"kiln\n"
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


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    files = _package_files()
    lib = _library()
    _log(f"shipping {lib}")
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
    """The package runs from the source tree; the library is found by kiln/_lib.py
    (KILN_LIBRARY, else build-python/ or build/ of the repository)."""
    if not os.environ.get("KILN_LIBRARY"):
        _library()  # make sure build-python/libkiln.so exists
    files = {"__editable__.kiln.pth": (str(HERE) + "\n").encode()}
    return _write_wheel(wheel_directory, files, _tag())
