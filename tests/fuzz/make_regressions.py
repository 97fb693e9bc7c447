#!/usr/bin/env python3
"""Writes the crafted regression inputs of tests/fuzz/regressions/ (committed; this
script records how they were made and remakes them byte for byte). Inputs found by
the fuzzer are committed as libFuzzer wrote them and are not made here.

    python3 tests/fuzz/make_regressions.py      # from the repository root
"""
import json
import os
import struct
import zlib

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "regressions")


def write(harness, name, data):
    os.makedirs(os.path.join(ROOT, harness), exist_ok=True)
    with open(os.path.join(ROOT, harness, name), "wb") as f:
        f.write(data)


def st(header_text, data=b""):
    h = header_text.encode()
    return struct.pack("<Q", len(h)) + h + data


def chunk(kind, data, declared=None):
    n = len(data) if declared is None else declared
    return struct.pack(">I", n) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


# ---- safetensors: zero-element tensors whose other dimensions are huge -------------------
# Valid per the format (0 bytes, data_offsets [0, 0]); casting and reducing them must
# not overflow a size: [0, 2^62, 2] summed over axis 0 is [2^62, 2], 2^63 elements.
write("safetensors", "u8_shape_0_2p62_2.safetensors",
      st('{"a":{"dtype":"U8","shape":[0,4611686018427387904,2],"data_offsets":[0,0]}}'))  # 83 bytes
write("safetensors", "u8_shape_2p62_0.safetensors",
      st('{"a":{"dtype":"U8","shape":[4611686018427387904,0],"data_offsets":[0,0]}}'))  # 81 bytes: hung in cast
# an ordinary empty tensor, loaded with kiln_safetensors_load into a tensor of its shape
write("safetensors", "u8_shape_3_0_2_load.safetensors",
      st('{"e":{"dtype":"U8","shape":[3,0,2],"data_offsets":[0,0]}}'))

# ---- PNG: a 1x1 gray image, then a tEXt chunk that declares ~2 GB and ends at once --------
ihdr = chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0))
sig = b"\x89PNG\r\n\x1a\n"
# (the CRC of a truncated chunk is never reached: the file ends inside its data)
write("png", "text_chunk_declares_2gb.png", sig + ihdr + struct.pack(">I", 0x7FFFFFFF) + b"tEXtabc")  # 44 bytes
write("png", "text_chunk_declares_2gib_over_limit.png", sig + ihdr + struct.pack(">I", 0x80000000) + b"tEXtabc")

# ---- IDX: a bare 16-byte header claiming 1e8 images of 4096x4096 --------------------------
write("idx", "images_header_1e8x4096x4096", struct.pack(">BBBBIII", 0, 0, 8, 3, 100000000, 4096, 4096))

# ---- checkpoints of the harness's model (fc Linear(2,2), bn BatchNorm2d(2), Adam) ----------
def checkpoint(meta_overrides):
    meta = {"format": "pt", "kiln.rng_seed": "1", "kiln.rng_offset": "6", "optimizer.optimizer": "adam",
            "optimizer.step": "2", "optimizer.lr": "0.001", "optimizer.betas": "0.9,0.999", "optimizer.eps": "1e-08",
            "optimizer.weight_decay": "0", "optimizer.amsgrad": "false", "optimizer.maximize": "false"}
    meta.update(meta_overrides)
    f32 = lambda *v: struct.pack("<%df" % len(v), *v)
    tensors = [("bn.num_batches_tracked", "I64", [], struct.pack("<q", 2)),
               ("bn.bias", "F32", [2], f32(0.1, -0.1)), ("bn.running_mean", "F32", [2], f32(0.5, -0.5)),
               ("bn.running_var", "F32", [2], f32(1.5, 0.75)), ("bn.weight", "F32", [2], f32(1.0, 0.9)),
               ("fc.bias", "F32", [2], f32(0.25, -0.25)), ("fc.weight", "F32", [2, 2], f32(0.5, -0.5, 0.25, 1.0))]
    shapes = [[2, 2], [2], [2], [2]]  # Adam's state follows the parameters: fc.weight, fc.bias, bn.weight, bn.bias
    for i, s in enumerate(shapes):
        n = s[0] * (s[1] if len(s) > 1 else 1)
        tensors += [("optimizer.state.%d.exp_avg" % i, "F32", s, f32(*[0.01 * (k + 1) for k in range(n)])),
                    ("optimizer.state.%d.exp_avg_sq" % i, "F32", s, f32(*[0.001 * (k + 1) for k in range(n)])),
                    ("optimizer.state.%d.step" % i, "F32", [], f32(2.0))]
    header, at, data = {"__metadata__": meta}, 0, b""
    for name, dt, shape, blob in tensors:
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [at, at + len(blob)]}
        at += len(blob)
        data += blob
    return st(json.dumps(header, separators=(",", ":")), data)


# an infinite learning rate must be refused, and the refused load must change nothing
# (a negative one is valid: OneCycleLR's last step can leave the lr below 0, as torch's)
write("checkpoint", "optimizer_lr_infinite.safetensors", checkpoint({"optimizer.lr": "inf"}))
# "sgd " is not "adam" (nor "sgd"): refused, and nothing changed
write("checkpoint", "optimizer_kind_sgd_space.safetensors", checkpoint({"optimizer.optimizer": "sgd "}))
