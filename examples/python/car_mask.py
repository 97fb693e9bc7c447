"""The car-mask U-Net trained from Python: U-Net-16 (examples/python/unet.py) on the
synthetic aerial scenes of the C examples (kiln.examples.scene_batch), one logit per
pixel, sigmoid + binary cross-entropy (bce_with_logits), Adam. After each epoch it
prints the held-out binary pixel accuracy, IoU and Dice of the car class.

    KILN_LIBRARY=build/libkiln.so PYTHONPATH=bindings/python python3 examples/python/car_mask.py
    ... car_mask.py --tiny      # a seconds-long configuration (used by the tests)
"""
import argparse
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import kiln  # noqa: E402
from unet import UNet  # noqa: E402

TINY = dict(epochs=2, train_scenes=16, heldout_scenes=8, size=32, batch=8, base_width=4, lr=1e-2)


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--epochs", type=int, default=16)
    p.add_argument("--train-scenes", type=int, default=192)
    p.add_argument("--heldout-scenes", type=int, default=16)
    p.add_argument("--size", type=int, default=64, help="scene side in pixels (a multiple of 8)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--base-width", type=int, default=16, help="16: U-Net-16")
    p.add_argument("--lr", type=float, default=1e-2, help="Adam learning rate of the first epoch")
    p.add_argument("--lr-decay", type=float, default=0.85, help="learning-rate factor per epoch")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint", default=None, help="save model + optimizer here after each epoch")
    p.add_argument("--tiny", action="store_true", help="a tiny configuration: " + str(TINY))
    a = p.parse_args(argv)
    if a.tiny:  # the tiny values become the defaults; options given explicitly still win
        p.set_defaults(**TINY)
        a = p.parse_args(argv)
    if a.size % 8:
        p.error(f"--size {a.size} must be a multiple of 8 (three 2x2 poolings)")
    return a


def evaluate(model, images, masks, batch):
    """Held-out metrics of the car class at probability 0.5 (logits in, sigmoid inside)."""
    metrics = kiln.BinaryMetrics(threshold=0.5, from_logits=True)
    model.eval()
    with kiln.no_grad():
        for i in range(0, images.shape[0], batch):
            with kiln.scope():
                metrics.update(model(images[i:i + batch]), masks[i:i + batch])
    model.train()
    return metrics


def main(argv=None, out=sys.stdout):
    a = parse(argv)
    dev = kiln.device("cpu")  # modules are created on the CPU (module.h has no .to(device) yet)
    kiln.manual_seed(a.seed)
    images, masks = kiln.examples.scene_batch(0, a.train_scenes, size=a.size, split="train", base=a.seed,
                                              device=dev)
    val_images, val_masks = kiln.examples.scene_batch(0, a.heldout_scenes, size=a.size, split="heldout",
                                                      base=a.seed, device=dev)
    model = UNet(3, 1, a.base_width)
    # Cars cover a few percent of the pixels: starting the output bias at the prior's
    # logit log(p / (1 - p)) saves the many steps a network otherwise spends learning
    # "mostly not a car" (the C example does the same).
    p = min(max(masks.mean().item(), 1e-4), 1 - 1e-4)
    kiln.nn.init.constant_(model.head.bias, math.log(p / (1 - p)))
    opt = kiln.optim.Adam(model.parameters(), lr=a.lr)
    print(f"U-Net-{a.base_width}: {model.num_parameters():,} parameters; {a.train_scenes} training and "
          f"{a.heldout_scenes} held-out scenes of {a.size}x{a.size}, car pixels "
          f"{masks.mean().item():.1%}; device {dev}", file=out)
    history = []
    n = images.shape[0]
    for epoch in range(1, a.epochs + 1):
        opt.lr = a.lr * a.lr_decay ** (epoch - 1)
        t0, total, steps = time.perf_counter(), 0.0, 0
        for i in range(0, n - a.batch + 1, a.batch):
            with kiln.scope():  # the step's intermediates are released here
                logits = model(images[i:i + a.batch])
                loss = kiln.bce_with_logits(logits, masks[i:i + a.batch])
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += loss.item()
                steps += 1
        m = evaluate(model, val_images, val_masks, a.batch)
        row = dict(epoch=epoch, loss=total / max(steps, 1), pixel_accuracy=m.pixel_accuracy(), iou=m.iou(),
                   dice=m.dice(), seconds=time.perf_counter() - t0)
        history.append(row)
        print(f"epoch {epoch:2d}  train loss {row['loss']:.4f}  held-out pixel accuracy {row['pixel_accuracy']:.4f}  "
              f"IoU {row['iou']:.4f}  Dice {row['dice']:.4f}  ({row['seconds']:.1f} s)", file=out, flush=True)
        if a.checkpoint:
            kiln.save_checkpoint(a.checkpoint, model, opt, extra={"epoch": epoch})
    return history


if __name__ == "__main__":
    main()
