#!/usr/bin/env python3
"""Makes the fuzz harnesses' seed corpora (docs/fuzzing.md) in OUT/<harness>/:
kiln-made files (gen_corpus, kiln's own writers), files crafted here with the
standard library (PNG colour types, bit depths, interlacing and ancillary chunks
kiln's writer never makes; safetensors dtypes kiln has no tensors of; gzip and plain
IDX), and, when the Python `safetensors` package is importable, files it writes.
Nothing here is committed: CTest's fuzz_corpus test and `make fuzz` run this.

    make_corpus.py --gen build/tests/fuzz/kiln_fuzz_gen_corpus --out build/tests/fuzz/corpus
"""
import argparse
import gzip
import json
import os
import shutil
import struct
import subprocess
import sys
import zlib

HARNESSES = ("safetensors", "checkpoint", "png", "idx", "image")


def write(out, harness, name, data):
    path = os.path.join(out, harness, name)
    with open(path, "wb") as f:
        f.write(data)


# ---- safetensors ---------------------------------------------------------------------------

ST_SIZES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8,
            "U32": 4, "U16": 2, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}


def safetensors_bytes(tensors, metadata=None, pad=True, order=None):
    """tensors: [(name, dtype, shape)], data made up; laid out back to back in list order,
    listed in the header in `order` (indices) when given."""
    header, blobs, at = {}, [], 0
    for i, (name, dt, shape) in enumerate(tensors):
        n = ST_SIZES[dt]
        for s in shape:
            n *= s
        blob = bytes((i * 31 + k * 7) & 0xFF for k in range(n))
        header[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [at, at + n]}
        blobs.append(blob)
        at += n
    items = list(header.items())
    if order:
        items = [items[i] for i in order]
    h = dict(items)
    if metadata is not None:
        h = {"__metadata__": metadata, **h}
    text = json.dumps(h, separators=(",", ":")).encode()
    if pad:  # the Python package pads the header with spaces to a multiple of 8
        text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def crafted_safetensors(out):
    w = lambda name, data: write(out, "safetensors", name, data)
    w("other_dtypes.safetensors", safetensors_bytes(
        [("i8", "I8", [3]), ("i16", "I16", [2]), ("u16", "U16", [1, 2]), ("u32", "U32", [2]), ("u64", "U64", [1]),
         ("bool", "BOOL", [4]), ("e4m3", "F8_E4M3", [2]), ("e5m2", "F8_E5M2", [2]), ("f32", "F32", [2])]))
    w("kiln_dtypes_padded.safetensors", safetensors_bytes(
        [("a", "F32", [2, 2]), ("b", "F64", [1]), ("c", "F16", [3]), ("d", "BF16", [1, 1]), ("e", "I32", []),
         ("f", "I64", [2]), ("g", "U8", [5])], metadata={"format": "pt"}))
    w("unpadded.safetensors", safetensors_bytes([("x", "F32", [3])], pad=False))
    w("listed_out_of_order.safetensors", safetensors_bytes(
        [("first", "U8", [2]), ("second", "I32", [1]), ("third", "F32", [2, 1])], order=[2, 0, 1]))
    w("zero_sizes.safetensors", safetensors_bytes(
        [("e0", "F32", [0]), ("e1", "U8", [3, 0, 2]), ("s", "F32", []), ("e2", "I64", [0, 0])]))
    w("only_metadata.safetensors", safetensors_bytes([], metadata={"k": "v", "format": "np"}))
    w("eight_dims.safetensors", safetensors_bytes([("t", "F32", [1, 2, 1, 2, 1, 1, 2, 1])]))


def package_safetensors(out):
    """Files written by the Python safetensors package, when it is importable."""
    try:
        import safetensors
    except ImportError:
        return "not importable: skipped its seeds"
    tensors = {
        "weight": {"dtype": "float32", "shape": [2, 3], "data": struct.pack("<6f", *range(6))},
        "bias": {"dtype": "float64", "shape": [3], "data": struct.pack("<3d", 0.5, -1.0, 2.0)},
        "half": {"dtype": "float16", "shape": [2], "data": struct.pack("<2e", 1.0, -2.0)},
        "bf": {"dtype": "bfloat16", "shape": [1], "data": b"\x80\x3f"},
        "idx": {"dtype": "int64", "shape": [2], "data": struct.pack("<2q", 7, -3)},
        "i32": {"dtype": "int32", "shape": [], "data": struct.pack("<i", 42)},
        "mask": {"dtype": "uint8", "shape": [2, 2], "data": bytes([0, 1, 255, 3])},
        "flag": {"dtype": "bool", "shape": [2], "data": bytes([0, 1])},
        "i8": {"dtype": "int8", "shape": [1], "data": bytes([0x80])},
        "empty": {"dtype": "float32", "shape": [0, 4], "data": b""},
    }
    if hasattr(safetensors, "TensorSpec"):  # 0.8 and later: specs point at the bytes
        import ctypes
        keep = []

        def spec(t):
            buf = ctypes.create_string_buffer(t["data"], max(1, len(t["data"])))
            keep.append(buf)
            return safetensors.TensorSpec(dtype=t["dtype"], shape=t["shape"], data_ptr=ctypes.addressof(buf),
                                          data_len=len(t["data"]))
        specs = {k: spec(v) for k, v in tensors.items()}
        serialize = lambda d, meta: safetensors.serialize({k: specs[k] for k in d}, metadata=meta)
    else:  # earlier: dicts holding the bytes
        serialize = lambda d, meta: safetensors.serialize({k: tensors[k] for k in d}, metadata=meta)
    write(out, "safetensors", "package_dtypes.safetensors", bytes(serialize(list(tensors), {"format": "pt"})))
    write(out, "safetensors", "package_one.safetensors", bytes(serialize(["weight"], None)))
    return "safetensors %s: 2 seeds" % getattr(safetensors, "__version__", "?")


# ---- PNG -------------------------------------------------------------------------------------

def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else b if pb <= pc else c


def filtered(rows, bpp, first_filter):
    """rows of raw bytes, each filtered with type (first_filter + y) % 5."""
    out, prev = bytearray(), None
    for y, row in enumerate(rows):
        ft = (first_filter + y) % 5
        up = prev if prev is not None else bytes(len(row))
        res = bytearray()
        for i, x in enumerate(row):
            a = row[i - bpp] if i >= bpp else 0
            b, c = up[i], (up[i - bpp] if i >= bpp else 0)
            pred = [0, a, b, (a + b) // 2, paeth(a, b, c)][ft]
            res.append((x - pred) & 0xFF)
        out += bytes([ft]) + res
        prev = row
    return bytes(out)


def pack_row(samples, depth):
    if depth == 16:
        return b"".join(struct.pack(">H", s) for s in samples)
    if depth == 8:
        return bytes(samples)
    per = 8 // depth
    out = bytearray()
    for i in range(0, len(samples), per):
        v = 0
        group = samples[i:i + per]
        for s in group:
            v = v << depth | s
        out.append(v << depth * (per - len(group)))
    return bytes(out)


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def png_bytes(w, h, ctype, depth, interlace=False, extra=(), idat_split=1, first_filter=0):
    ch = CHANNELS[ctype]
    top = (1 << depth) - 1
    sample = lambda x, y, c: ((x * 7 + y * 13 + c * 5) * (257 if depth == 16 else 1)) % (top + 1) if ctype != 3 \
        else (x + 2 * y) % min(top + 1, 5)
    bpp = max(1, ch * depth // 8)
    passes = ADAM7 if interlace else [(0, 0, 1, 1)]
    raw = b""
    for (x0, y0, dx, dy) in passes:
        xs, ys = range(x0, w, dx), range(y0, h, dy)
        if not xs or not ys:
            continue
        rows = [pack_row([sample(x, y, c) for x in xs for c in range(ch)], depth) for y in ys]
        raw += filtered(rows, bpp, first_filter)
    z = zlib.compress(raw, 9)
    parts = [z[i * len(z) // idat_split:(i + 1) * len(z) // idat_split] for i in range(idat_split)]
    body = chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, 1 if interlace else 0))
    if ctype == 3:
        body += chunk(b"PLTE", bytes([10, 20, 30, 200, 100, 0, 0, 255, 0, 255, 255, 255, 7, 7, 7]))
    for e in extra:
        body += e
    body += b"".join(chunk(b"IDAT", p) for p in parts)
    return b"\x89PNG\r\n\x1a\n" + body + chunk(b"IEND", b"")


def crafted_png(out):
    w = lambda name, data: write(out, "png", name, data)
    for ctype, depths in ((0, (1, 2, 4, 8, 16)), (2, (8, 16)), (3, (1, 2, 4, 8)), (4, (8, 16)), (6, (8, 16))):
        for d in depths:
            w("c%d_d%d_5x3.png" % (ctype, d), png_bytes(5, 3, ctype, d, first_filter=d % 5))
    w("c2_d8_interlaced_9x7.png", png_bytes(9, 7, 2, 8, interlace=True))
    w("c0_d1_interlaced_3x5.png", png_bytes(3, 5, 0, 1, interlace=True))
    w("c6_d16_interlaced_4x4.png", png_bytes(4, 4, 6, 16, interlace=True, first_filter=3))
    w("c3_trns.png", png_bytes(4, 2, 3, 8, extra=[chunk(b"tRNS", bytes([0, 128]))]))
    w("c2_ancillary.png", png_bytes(3, 3, 2, 8, idat_split=3, extra=[
        chunk(b"gAMA", struct.pack(">I", 45455)),
        chunk(b"cHRM", struct.pack(">8I", 31270, 32900, 64000, 33000, 30000, 60000, 15000, 6000)),
        chunk(b"sRGB", b"\x00"),
        chunk(b"pHYs", struct.pack(">IIB", 2835, 2835, 1)),
        chunk(b"bKGD", struct.pack(">HHH", 1, 2, 3)),
        chunk(b"sBIT", bytes([5, 6, 5])),
        chunk(b"tEXt", b"Comment\x00made for kiln's fuzz corpus"),
        chunk(b"zTXt", b"Title\x00\x00" + zlib.compress(b"a compressed text chunk")),
        chunk(b"iTXt", b"Author\x00\x00\x00en\x00Autor\x00kiln"),
        chunk(b"tIME", struct.pack(">HBBBBB", 2024, 5, 6, 7, 8, 9)),
        chunk(b"prVt", b"private ancillary chunk"),
    ]))
    w("c4_d8_1x1.png", png_bytes(1, 1, 4, 8))
    w("c0_d8_64x1.png", png_bytes(64, 1, 0, 8, first_filter=1))


# ---- IDX -------------------------------------------------------------------------------------

def crafted_idx(out):
    w = lambda name, data: write(out, "idx", name, data)
    img = struct.pack(">BBBBIII", 0, 0, 8, 3, 2, 28, 28) + bytes((i * 13) & 0xFF for i in range(2 * 28 * 28))
    lab = struct.pack(">BBBBI", 0, 0, 8, 1, 10) + bytes(range(10))
    w("images_2x28x28", img)
    w("images_2x28x28.gz", gzip.compress(img, 6, mtime=0))
    w("labels_10", lab)
    w("labels_10.gz", gzip.compress(lab, 1, mtime=0))
    w("images_1x1x7", struct.pack(">BBBBIII", 0, 0, 8, 3, 1, 1, 7) + bytes(range(7)))
    w("labels_1.gz", gzip.compress(struct.pack(">BBBBI", 0, 0, 8, 1, 1) + b"\x05", 9, mtime=0))


# ---- images (kiln_image_read: PNG and JPEG) ------------------------------------------------

def image_seeds(out):
    """Every PNG seed above, and the committed Pillow fixtures (tests/fixtures/gen_images.py):
    baseline, progressive and gray JPEGs, palette, 16-bit and alpha PNGs."""
    for name in os.listdir(os.path.join(out, "png")):
        shutil.copy(os.path.join(out, "png", name), os.path.join(out, "image", "png_" + name))
    fixtures = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "images")
    if os.path.isdir(fixtures):
        for name in sorted(os.listdir(fixtures)):
            shutil.copy(os.path.join(fixtures, name), os.path.join(out, "image", "fixture_" + name))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gen", required=True, help="the kiln_fuzz_gen_corpus program")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    for h in HARNESSES:
        shutil.rmtree(os.path.join(a.out, h), ignore_errors=True)
        os.makedirs(os.path.join(a.out, h))
    subprocess.run([a.gen, a.out], check=True)
    crafted_safetensors(a.out)
    crafted_png(a.out)
    crafted_idx(a.out)
    image_seeds(a.out)
    pkg = package_safetensors(a.out)
    # always one seed written by the package: the committed PyTorch fixture
    # (tests/fixtures/gen_checkpoint.py, safetensors.torch.save_file)
    fixture = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "torch_small.safetensors")
    if os.path.exists(fixture):
        shutil.copy(fixture, os.path.join(a.out, "safetensors", "package_torch_small.safetensors"))
    counts = ", ".join("%s %d" % (h, len(os.listdir(os.path.join(a.out, h)))) for h in HARNESSES)
    print("make_corpus: %s (Python safetensors package: %s) in %s" % (counts, pkg, a.out))


if __name__ == "__main__":
    sys.exit(main())
