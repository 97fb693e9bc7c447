"""The weights a training example writes load into PyTorch strictly: car_mask (the C
program, built beside libkiln.so) trains a tiny run, and its model.safetensors goes
into the PyTorch U-Net of tests/fixtures/torch_unet.py with load_state_dict(strict=True);
one forward pass in eval mode then gives kiln's own prediction (its mask PNG)."""
import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
st_torch = pytest.importorskip("safetensors.torch")  # pip install safetensors

from kiln import _lib  # noqa: E402

ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "..")
sys.path.insert(0, os.path.join(ROOT, "tests", "fixtures"))
from torch_unet import UNet  # noqa: E402


def car_mask_binary():
    """The car_mask program next to the libkiln.so the bindings load (KILN_LIBRARY)."""
    lib = os.environ.get("KILN_LIBRARY") or getattr(_lib, "path", None)
    exe = os.path.join(os.path.dirname(os.path.abspath(lib)), "car_mask") if lib else None
    if not exe or not os.access(exe, os.X_OK):
        pytest.skip(f"car_mask is not built next to libkiln.so ({lib!r}); set KILN_LIBRARY")
    return exe


def run(exe, cwd, *args):
    r = subprocess.run([exe, "--device", "cpu", *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r


def test_car_mask_weights_load_strictly_into_torch(tmp_path):
    exe = car_mask_binary()
    run(exe, tmp_path, "--size", "16", "--batch", "2", "--train-scenes", "4", "--heldout-scenes", "2",
        "--epochs", "1", "--out", "res", "--json")
    weights = tmp_path / "res" / "model.safetensors"
    sd = st_torch.load_file(str(weights))
    assert not [k for k in sd if k.startswith("optimizer")]
    net = UNet(3, 1, 16)
    net.load_state_dict(sd, strict=True)  # no unexpected or missing key, every shape matches
    for k, v in net.state_dict().items():
        assert torch.equal(v, sd[k]), k

    # --export-weights writes the same state_dict elsewhere
    run(exe, tmp_path, "--size", "16", "--batch", "2", "--train-scenes", "4", "--heldout-scenes", "2",
        "--epochs", "1", "--out", "res2", "--export-weights", "w.safetensors")
    assert (tmp_path / "w.safetensors").exists() and not (tmp_path / "res2" / "model.safetensors").exists()
    again = st_torch.load_file(str(tmp_path / "w.safetensors"))
    assert sorted(again) == sorted(sd) and all(torch.equal(again[k], sd[k]) for k in sd)

    # kiln's prediction on an image against torch's forward with the same weights
    rng = np.random.default_rng(0)
    img = rng.random((3, 16, 24), dtype=np.float32)
    png = (img * 255).round().astype(np.uint8)  # a multiple of 8 on each side: no padding
    x = png.astype(np.float32) / 255.0  # what kiln reads from the PNG
    Image = pytest.importorskip("PIL.Image", reason="the forward comparison writes a PNG with Pillow")
    Image.fromarray(png.transpose(1, 2, 0)).save(tmp_path / "scene.png")
    run(exe, tmp_path, "--predict", "scene.png", "--checkpoint", str(weights), "--out", "pred")
    mask = np.asarray(Image.open(tmp_path / "pred" / "mask.png").convert("L")) > 127
    net.eval()
    with torch.no_grad():
        logits = net(torch.from_numpy(x)[None])[0, 0].numpy()
    agree = (logits > 0) == mask
    # pixels whose logit is within rounding of 0 may fall either way
    assert (agree | (np.abs(logits) < 1e-4)).all(), f"{(~agree).sum()} of {mask.size} pixels differ"
