"""examples/python/car_mask.py in its tiny configuration: it trains, the loss goes
down, the held-out metrics are numbers in [0, 1], and it is deterministic."""
import io
import os
import sys

import pytest

import kiln

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", "examples", "python"))
import car_mask  # noqa: E402


def test_tiny_car_mask_trains(tmp_path):
    out = io.StringIO()
    ckpt = tmp_path / "car_mask.safetensors"
    hist = car_mask.main(["--tiny", "--epochs", "3", "--checkpoint", str(ckpt)], out=out)
    text = out.getvalue()
    assert "held-out pixel accuracy" in text and "IoU" in text and "Dice" in text
    assert len(hist) == 3 and hist[-1]["loss"] < hist[0]["loss"]
    for row in hist:
        assert 0.0 <= row["pixel_accuracy"] <= 1.0
        for k in ("iou", "dice"):
            assert row[k] != row[k] or 0.0 <= row[k] <= 1.0  # NaN only if nothing is predicted or present
    assert kiln.checkpoint.read_metadata(ckpt)["epoch"] == "3"
    again = car_mask.main(["--tiny", "--epochs", "1"], out=io.StringIO())
    assert again[0]["loss"] == pytest.approx(hist[0]["loss"], rel=0, abs=0)  # same seed, same numbers
