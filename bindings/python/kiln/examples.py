"""The examples' synthetic aerial scenes (examples/support, kx_scene_batch) from
libkiln_examples.so, the examples support library built as a shared library beside
libkiln.so (CMake option KILN_BUILD_EXAMPLES_SHARED). It links libkiln.so, so the
tensors it makes come from the same pools and scopes as the package's; the scenes
are byte for byte those the C examples train on.

Loaded on first use: `import kiln` works without it."""
import ctypes
import os
from ctypes import POINTER, c_int, c_int64, c_uint64, c_void_p
from pathlib import Path

from . import _lib
from ._runtime import call, own_scopes
from ._types import as_device

_SPLITS = {"train": 0, "heldout": 1}
_lib_ex = None


def library_path():
    env = os.environ.get("KILN_EXAMPLES_LIBRARY")
    if env:
        return env
    here = Path(_lib.path).resolve().parent
    for d in (here, Path(_lib.path).parent):
        p = d / "libkiln_examples.so"
        if p.is_file():
            return str(p)
    raise ImportError(f"kiln.examples: libkiln_examples.so is not beside {_lib.path}; build the "
                      "kiln_examples_shared target (CMake option KILN_BUILD_EXAMPLES_SHARED, on by default) or set "
                      "KILN_EXAMPLES_LIBRARY")


def _load():
    global _lib_ex, _batch, _seed
    if _lib_ex is None:
        lib = ctypes.PyDLL(library_path())
        _batch = lib.kx_scene_batch
        _batch.restype = c_int
        _batch.argtypes = [c_int, c_uint64, c_int64, c_int64, c_int, c_int, _lib.CDevice, POINTER(c_void_p),
                           POINTER(c_void_p), POINTER(c_void_p)]
        _seed = lib.kx_scene_seed
        _seed.restype = c_uint64
        _seed.argtypes = [c_int, c_uint64, c_int64]
        _lib_ex = lib
    return _lib_ex


CLASSES = ("ground", "road", "building", "tree", "water", "car", "shadow")


def scene_batch(first, n, size=(64, 64), split="train", base=0, device="cpu", images=True, masks=True,
                labels=False):
    """Renders scenes first .. first+n-1 of a split ("train" or "heldout", whose seeds
    never overlap): a tuple of the requested outputs, images (n,3,H,W) float32 in [0,1],
    masks (n,1,H,W) float32 holding 1 on cars, labels (n,H,W) int64 class indices
    (kiln.examples.CLASSES)."""
    _load()
    if split not in _SPLITS:
        raise ValueError(f"kiln.examples.scene_batch: split {split!r} must be 'train' or 'heldout'")
    H, W = (size, size) if isinstance(size, int) else size
    want = (images, masks, labels)
    if not any(want):
        raise ValueError("kiln.examples.scene_batch: ask for at least one of images, masks, labels")
    outs = [c_void_p() if w else None for w in want]
    with own_scopes():
        return _scene_batch(split, base, first, n, H, W, device, outs)


def _scene_batch(split, base, first, n, H, W, device, outs):
    s = _lib.scope_begin()
    if not s:
        _lib.raise_last("scene_batch")
    try:
        st = _batch(_SPLITS[split], int(base), int(first), int(n), int(H), int(W), as_device(device)._c,
                    *(ctypes.byref(o) if o is not None else None for o in outs))
        if st != 0:
            _lib.raise_last("scene_batch")
        # each result gets its own owner (a copy made inside s); s takes the originals
        res = tuple(call(_lib.tensor_clone, (o.value,)) for o in outs if o is not None)
    finally:
        _lib.scope_end(s)
    return res if len(res) > 1 else res[0]


def scene_seed(split, base, index):
    _load()
    return _seed(_SPLITS[split], int(base), int(index))
