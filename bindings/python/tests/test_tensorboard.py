"""TensorBoard reads the event files kiln writes itself: car_mask (the C program, built
beside libkiln.so) trains a tiny run with --log-dir, and the `tensorboard` pip package's
EventAccumulator loads its scalars, whose values match the run's JSON result line and
OUT/epochs.csv. Skipped when tensorboard is not installed (pip install tensorboard)."""
import csv
import json
import os
import subprocess

import pytest

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from kiln import _lib  # noqa: E402

TINY = ["--device", "cpu", "--size", "16", "--batch", "2", "--train-scenes", "4", "--heldout-scenes", "2"]


def car_mask_binary():
    """The car_mask program next to the libkiln.so the bindings load (KILN_LIBRARY)."""
    lib = os.environ.get("KILN_LIBRARY") or getattr(_lib, "path", None)
    exe = os.path.join(os.path.dirname(os.path.abspath(lib)), "car_mask") if lib else None
    if not exe or not os.access(exe, os.X_OK):
        pytest.skip(f"car_mask is not built next to libkiln.so ({lib!r}); set KILN_LIBRARY")
    return exe


def test_car_mask_events_load_in_tensorboard(tmp_path):
    exe = car_mask_binary()
    r = subprocess.run([exe, *TINY, "--epochs", "2", "--json", "--out", "res", "--log-dir", "tb"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout.strip().splitlines()[-1])
    events = tmp_path / result["events"]
    assert events.parent == tmp_path / "tb" and events.name.startswith("events.out.tfevents.")

    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"scalars": 0})  # 0: keep every event
    acc.Reload()
    assert acc.file_version == 2.0  # brain.Event:2
    tags = set(acc.Tags()["scalars"])
    assert {"train/loss", "train/lr", "train/images_per_s", "epoch/train_loss", "epoch/heldout_loss",
            "epoch/heldout_binary_pixel_accuracy", "epoch/heldout_iou", "epoch/heldout_dice"} <= tags

    steps = acc.Scalars("train/loss")
    assert [e.step for e in steps] == [1, 2, 3, 4]  # 2 steps an epoch, counted over the run
    lr = [e.value for e in acc.Scalars("train/lr")]
    assert lr[0] == pytest.approx(1e-2) and lr[2] == pytest.approx(1e-2 * 0.85)  # decayed each epoch
    assert all(e.value > 0 for e in acc.Scalars("train/images_per_s"))

    # the epoch scalars are the result line's history (stored as float32)
    for tag, key in [("epoch/train_loss", "train_loss"), ("epoch/heldout_loss", "heldout_loss"),
                     ("epoch/heldout_iou", "heldout_iou"), ("epoch/heldout_dice", "heldout_dice")]:
        ev = acc.Scalars(tag)
        assert [e.step for e in ev] == [1, 2]
        assert [e.value for e in ev] == pytest.approx(result[key], rel=1e-6, abs=1e-7)
        assert all(e.wall_time > 1.5e9 for e in ev)

    # and OUT/steps.csv holds the same per-step losses
    with open(tmp_path / "res" / "steps.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(row["step"]) for row in rows] == [1, 2, 3, 4]
    assert [float(row["loss"]) for row in rows] == pytest.approx([e.value for e in steps], rel=1e-6)
