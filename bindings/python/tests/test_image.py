"""kiln.image_read / image_write / image_read_size (include/kiln/image.h): round
trips through PNG (exact) and JPEG (bounded error), the Pillow-written fixtures of
tests/fixtures/images/ against the values tests/fixtures/gen_images.py printed into
tests/fixtures/images_ref.h, and the errors a user meets."""
import os
import re

import numpy as np
import pytest

import kiln

ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "..")
FIX = os.path.join(ROOT, "tests", "fixtures", "images")


def _refs():
    """name -> (C, H, W) uint8 array, parsed from the generated C header."""
    text = open(os.path.join(ROOT, "tests", "fixtures", "images_ref.h")).read()
    h = int(re.search(r"#define IMG_REF_H (\d+)", text).group(1))
    w = int(re.search(r"#define IMG_REF_W (\d+)", text).group(1))
    out = {}
    for m in re.finditer(r"img_ref_(\w+)_c = (\d+);\s*static const unsigned char img_ref_\1\[\d+\] = \{([^}]*)\}",
                         text):
        vals = [int(v) for v in m.group(3).replace("\n", " ").split(",") if v.strip()]
        out[m.group(1)] = np.array(vals, dtype=np.uint8).reshape(int(m.group(2)), h, w)
    return out


REFS = _refs()


def pattern(c, h, w):
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([((x * 255 // (w - 1) + y * 3 + k * 50 + ((x ^ y) & 3)) % 256) for k in range(c)]).astype(np.uint8)


@pytest.mark.parametrize("c", [1, 3, 4])
def test_png_round_trip_is_exact(tmp_path, c):
    a = pattern(c, 11, 17)
    p = tmp_path / "rt.png"
    kiln.image_write(p, kiln.tensor(a))
    t = kiln.image_read(p)
    assert t.shape == (c, 11, 17) and t.dtype == kiln.uint8
    np.testing.assert_array_equal(t.numpy(), a)
    f = kiln.image_read(str(p), dtype=kiln.float32)
    assert f.dtype == kiln.float32
    np.testing.assert_array_equal(f.numpy(), a.astype(np.float32) / np.float32(255))
    assert kiln.image_read_size(p) == (c, 11, 17)


def test_float_write_clamps_and_rounds(tmp_path):
    v = np.array([[[-1.0, 0.0, 0.25, 0.5, 1.0, 3.0, np.nan]]], dtype=np.float32)
    kiln.image_write(tmp_path / "f.png", kiln.tensor(v))
    np.testing.assert_array_equal(kiln.image_read(tmp_path / "f.png").numpy(), [[[0, 0, 64, 128, 255, 255, 0]]])
    # a NumPy array is taken as it is, (H, W) as gray
    kiln.image_write(tmp_path / "g.png", np.full((3, 4), 7, dtype=np.uint8))
    assert kiln.image_read(tmp_path / "g.png").shape == (1, 3, 4)


@pytest.mark.parametrize("quality,max_err", [(100, 4), (95, 24)])
def test_jpeg_round_trip_within_tolerance(tmp_path, quality, max_err):
    a = pattern(3, 40, 48)
    kiln.image_write(tmp_path / "rt.jpg", kiln.tensor(a), quality=quality)
    b = kiln.image_read(tmp_path / "rt.jpg").numpy()
    err = np.abs(a.astype(int) - b.astype(int))
    assert err.max() <= max_err and err.mean() <= 3.0


@pytest.mark.parametrize("name,ref,tol", [
    ("rgb.png", "rgb_png", 0), ("gray.png", "gray_png", 0), ("rgba.png", "rgba_png", 0),
    ("palette.png", "palette_png", 0), ("palette_trns.png", "palette_trns_png", 0), ("gray16.png", "gray16_png", 0),
    ("rgb16.png", "rgb16_png", 0), ("baseline.jpg", "baseline_jpg", 1), ("progressive.jpg", "progressive_jpg", 1),
    ("gray.jpg", "gray_jpg", 1)])
def test_reads_pillow_fixtures(name, ref, tol):
    t = kiln.image_read(os.path.join(FIX, name))
    want = REFS[ref]
    assert t.shape == want.shape
    assert np.abs(t.numpy().astype(int) - want.astype(int)).max() <= tol


def test_channel_conversions():
    gray = kiln.image_read(os.path.join(FIX, "rgb.png"), channels=1)
    np.testing.assert_array_equal(gray.numpy(), REFS["rgb_to_gray"])
    g4 = kiln.image_read(os.path.join(FIX, "gray.png"), channels=4).numpy()
    np.testing.assert_array_equal(g4[:3], np.repeat(REFS["gray_png"], 3, axis=0))
    assert (g4[3] == 255).all()
    la = kiln.image_read(os.path.join(FIX, "gray_alpha.png"))
    assert la.shape[0] == 4


def test_errors_name_the_file(tmp_path):
    with pytest.raises(kiln.KilnIOError, match="missing.png"):
        kiln.image_read(tmp_path / "missing.png")
    (tmp_path / "x.png").write_bytes(b"not an image at all")
    with pytest.raises(kiln.FormatError, match="x.png' is neither a PNG nor a JPEG"):
        kiln.image_read(tmp_path / "x.png")
    blob = open(os.path.join(FIX, "baseline.jpg"), "rb").read()
    (tmp_path / "cut.jpg").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(kiln.FormatError, match="cut.jpg' is a corrupt or truncated JPEG"):
        kiln.image_read(tmp_path / "cut.jpg")
    with pytest.raises(kiln.InvalidArgumentError, match="channels is 2"):
        kiln.image_read(os.path.join(FIX, "rgb.png"), channels=2)
    with pytest.raises(kiln.InvalidArgumentError, match=r"\.png, \.jpg or \.jpeg"):
        kiln.image_write(tmp_path / "x.tiff", kiln.zeros(3, 2, 2, dtype=kiln.uint8))
    with pytest.raises(kiln.KilnIOError, match="no/dir/y.png"):
        kiln.image_write(tmp_path / "no" / "dir" / "y.png", kiln.zeros(3, 2, 2, dtype=kiln.uint8))
    with pytest.raises(kiln.ShapeError, match="JPEG has no alpha"):
        kiln.image_write(tmp_path / "a.jpg", kiln.zeros(4, 2, 2, dtype=kiln.uint8))
    with pytest.raises(TypeError, match="quality"):
        kiln.image_write(tmp_path / "a.jpg", kiln.zeros(3, 2, 2, dtype=kiln.uint8), quality=9.5)
    assert sorted(os.listdir(tmp_path)) == ["cut.jpg", "x.png"]


def test_pixel_limit(monkeypatch):
    monkeypatch.setenv("KILN_IMAGE_MAX_PIXELS", "34")
    with pytest.raises(kiln.FormatError, match="above the limit of 34 pixels; set KILN_IMAGE_MAX_PIXELS"):
        kiln.image_read(os.path.join(FIX, "rgb.png"))
    with pytest.raises(kiln.FormatError, match="limit"):
        kiln.image_read_size(os.path.join(FIX, "baseline.jpg"))
    monkeypatch.setenv("KILN_IMAGE_MAX_PIXELS", "35")
    assert kiln.image_read_size(os.path.join(FIX, "baseline.jpg")) == (3, 5, 7)
