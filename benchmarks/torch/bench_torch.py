"""The PyTorch side of kiln's benchmarks: the cases of benchmarks/bench.c with the
same shapes, the same weights and inputs (fx_value, the formula bench_util.c uses),
the same thread count (OMP_NUM_THREADS) and float32 with TF32 off. Writes the same
JSON document as kiln_bench (side "torch").

    /usr/bin/python3 benchmarks/torch/bench_torch.py [--device cpu|cuda] [--case a,b]
                                                     [--reps N] [--json out.json]
"""
import argparse
import datetime
import gzip
import json
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures"))
from torch_unet import UNet  # noqa: E402  the U-Net of examples/models/unet.c


def fx_hash(n, k):
    j = np.arange(n, dtype=np.uint64)
    return (j * np.uint64(2654435761) + np.uint64((k + 1) * 40503)) % np.uint64(1 << 32)


def fx_values(shape, k, offset=0.0):
    """Element j of tensor k: one of 255 multiples of 1/512 in [-0.248, 0.248]."""
    n = int(np.prod(shape)) if len(shape) else 1
    v = ((fx_hash(n, k) >> np.uint64(7)) % np.uint64(255)).astype(np.int64) - 127
    return torch.from_numpy((v / 512.0 + offset).astype(np.float32).reshape(shape))


def fx_binary(shape, k):
    return (fx_values(shape, k) > 0).float()


def fx_labels(shape, k, classes):
    n = int(np.prod(shape))
    return torch.from_numpy(((fx_hash(n, k) >> np.uint64(7)) % np.uint64(classes)).astype(np.int64).reshape(shape))


def fill_params(model):
    """Parameter k gets tensor k of the formula; batch-norm scales get 1 + fx (as kiln)."""
    with torch.no_grad():
        for k, (name, p) in enumerate(model.named_parameters()):
            off = 1.0 if p.dim() == 1 and name.endswith("weight") else 0.0
            p.copy_(fx_values(tuple(p.shape), k, off))




def fmnist_cnn():
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(32 * 7 * 7, 10))


def read_idx(path):
    op = gzip.open if path.endswith(".gz") else open
    with op(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def find_fmnist(data_dir):
    for d in ([data_dir] if data_dir else []) + ["/usr/share/datasets/fashion-mnist"]:
        for suffix in (".gz", ""):
            img = os.path.join(d, "train-images-idx3-ubyte" + suffix)
            lab = os.path.join(d, "train-labels-idx1-ubyte" + suffix)
            if os.path.exists(img) and os.path.exists(lab):
                return img, lab
    return None


# ---- the cases: each setup returns (step function, per-call flops, per-call bytes) ----

MIB = 1024.0 * 1024.0


def case_gemm(n):
    def setup(dev, args):
        a = fx_values((n, n), 0).to(dev)
        b = fx_values((n, n), 1).to(dev)
        return (lambda: torch.mm(a, b)), 2.0 * n ** 3, 3 * n * n * 4.0
    return setup


def setup_linear(dev, args):
    x = fx_values((256, 784), 0).to(dev).requires_grad_()
    w = fx_values((512, 784), 1).to(dev).requires_grad_()
    b = fx_values((512,), 2).to(dev).requires_grad_()
    g = fx_values((256, 512), 3).to(dev)

    def step():
        F.linear(x, w, b).backward(g)
    return step, 3 * 2.0 * 256 * 784 * 512, 0


def setup_conv(dev, args):
    x = fx_values((16, 64, 64, 64), 0).to(dev).requires_grad_()
    w = fx_values((64, 64, 3, 3), 1).to(dev).requires_grad_()
    b = fx_values((64,), 2).to(dev).requires_grad_()
    g = fx_values((16, 64, 64, 64), 3).to(dev)

    def step():
        F.conv2d(x, w, b, padding=1).backward(g)
    return step, 3 * 2.0 * 16 * 64 * 64 * 64 * 64 * 9, 0


def setup_ce(dev, args):
    x = fx_values((8, 7, 256, 256), 0).to(dev).requires_grad_()
    t = fx_labels((8, 256, 256), 1, 7).to(dev)

    def step():
        F.cross_entropy(x, t).backward()
    return step, 0, 3.0 * 8 * 7 * 65536 * 4 + 2.0 * 8 * 65536 * 8


def setup_bce(dev, args):
    x = fx_values((8, 7, 256, 256), 0).to(dev).requires_grad_()
    y = fx_binary((8, 7, 256, 256), 1).to(dev)

    def step():
        F.binary_cross_entropy_with_logits(x, y).backward()
    return step, 0, 5.0 * 8 * 7 * 65536 * 4


def setup_unet(dev, args):
    n, hw = (32, 256) if dev.type == "cuda" else (4, 128)
    m = UNet(3, 1, 16).to(dev)
    fill_params(m)
    m.train()
    np_ = len(list(m.parameters()))
    x = fx_values((n, 3, hw, hw), np_).to(dev)
    y = fx_binary((n, 1, hw, hw), np_ + 1).to(dev)
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)

    def step():
        opt.zero_grad()
        F.binary_cross_entropy_with_logits(m(x), y).backward()
        opt.step()
    return step, 0, 0


def setup_fmnist(dev, args):
    found = find_fmnist(args.data)
    if not found:
        raise FileNotFoundError("Fashion-MNIST not found (install Debian's dataset-fashion-mnist or pass --data)")
    images = torch.from_numpy(read_idx(found[0]).astype(np.float32) / 255.0).reshape(-1, 1, 28, 28).to(dev)
    labels = torch.from_numpy(read_idx(found[1]).astype(np.int64)).to(dev)
    batch = 64
    nb = images.shape[0] // batch
    m = fmnist_cnn().to(dev)
    fill_params(m)
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    steps = args.fmnist_steps or 937  # one epoch
    state = {"it": 0}

    def step():
        for _ in range(steps):
            b = state["it"] % nb
            state["it"] += 1
            opt.zero_grad()
            F.cross_entropy(m(images[b * batch:(b + 1) * batch]), labels[b * batch:(b + 1) * batch]).backward()
            opt.step()
    step.steps = steps
    return step, 0, 0


TINY_CALLS = 1000


def setup_tiny(dev, args):
    a = fx_values((1,), 0).to(dev)
    b = fx_values((1,), 1).to(dev)

    def step():
        for _ in range(TINY_CALLS):
            torch.add(a, b)
    return step, 0, 0


# name: (setup, warmup, reps cpu, reps cuda, calls per rep, host clock, on cpu by default)
CASES = {
    "gemm_1024": (case_gemm(1024), 3, 20, 50, 1, False, True),
    "gemm_4096": (case_gemm(4096), 2, 3, 20, 1, False, False),
    "linear": (setup_linear, 3, 30, 50, 1, False, True),
    "conv3x3": (setup_conv, 1, 5, 30, 1, False, True),
    "softmax_ce": (setup_ce, 3, 20, 50, 1, False, True),
    "bce_logits": (setup_bce, 3, 20, 50, 1, False, True),
    "unet16_step": (setup_unet, 2, 5, 20, 1, False, True),
    "fmnist_cnn": (setup_fmnist, 1, 3, 3, 1, False, True),
    "tiny_op": (setup_tiny, 3, 30, 30, TINY_CALLS, True, True),
}


def stats(v):
    a = np.sort(np.array(v))
    return {"median_s": float(np.median(a)), "q1_s": float(np.percentile(a, 25)), "q3_s": float(np.percentile(a, 75)),
            "min_s": float(a[0]), "max_s": float(a[-1]), "reps": len(a)}


def run_case(name, dev, args):
    setup, warmup, reps_cpu, reps_cuda, calls, host_clock, _ = CASES[name]
    cuda = dev.type == "cuda"
    reps = args.reps or (reps_cuda if cuda else reps_cpu)
    r = {"case": name, "device": str(dev), "side": "torch", "threads": torch.get_num_threads()}
    try:
        t0 = time.perf_counter()
        step, flops, nbytes = setup(dev, args)
        r["setup_s"] = time.perf_counter() - t0
        for _ in range(warmup):
            step()
        if cuda:
            torch.cuda.synchronize()
        v = []
        for _ in range(reps):
            if cuda and not host_clock:
                e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                e0.record()
                step()
                e1.record()
                e1.synchronize()
                v.append(e0.elapsed_time(e1) * 1e-3 / calls)
            else:
                t = time.perf_counter()
                step()
                if cuda:
                    torch.cuda.synchronize()
                v.append((time.perf_counter() - t) / calls)
        s = stats(v)
        r.update({"status": "ok", **s, "warmup": warmup,
                  "clock": "cuda events" if cuda and not host_clock else "host"})
        if flops:
            r["tflops"] = flops / s["median_s"] * 1e-12
        if nbytes:
            r["gbps"] = nbytes / s["median_s"] * 1e-9
        if hasattr(step, "steps"):
            r["steps"] = step.steps
        print("bench_torch: %-16s median %10.4g s  [%.4g, %.4g]  reps %d" % (name, s["median_s"], s["min_s"],
                                                                          s["max_s"], s["reps"]), file=sys.stderr)
    except (FileNotFoundError, RuntimeError) as e:
        r.update({"status": "unavailable" if isinstance(e, FileNotFoundError) else "error", "error": str(e)})
        print("bench_torch: %-16s %s: %s" % (name, r["status"], e), file=sys.stderr)
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--case", default=None, help="comma-separated case names")
    ap.add_argument("--reps", type=int, default=0)
    ap.add_argument("--fmnist-steps", type=int, default=0)
    ap.add_argument("--data", default=None, help="Fashion-MNIST directory")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    threads = int(os.environ.get("OMP_NUM_THREADS", "0") or 0) or os.cpu_count()
    torch.set_num_threads(threads)
    dev = torch.device(args.device)
    if dev.type == "cuda":
        # float32 means float32, as kiln's default (kiln_set_tf32 off)
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    names = args.case.split(",") if args.case else [n for n, c in CASES.items() if dev.type == "cuda" or c[6]]
    for n in names:
        if n not in CASES:
            ap.error("unknown case %s (the torch side has: %s)" % (n, ", ".join(CASES)))
    meta = {"tool": "bench_torch", "date": datetime.datetime.utcnow().strftime("%Y-%m-%dT%H:%M:%SZ"),
            "device": args.device, "threads": torch.get_num_threads(), "torch": torch.__version__,
            "numpy": np.__version__, "tf32": False}
    if dev.type == "cuda" and not torch.cuda.is_available():
        msg = "this torch (%s) sees no CUDA device" % torch.__version__
        print("bench_torch: " + msg, file=sys.stderr)
        cases = [{"case": n, "device": args.device, "side": "torch", "status": "unavailable", "error": msg}
                 for n in names]
    else:
        if dev.type == "cuda":
            meta["device_name"] = torch.cuda.get_device_name(dev)
            meta["cudnn"] = torch.backends.cudnn.version()
        cases = [run_case(n, dev, args) for n in names]
    doc = {"meta": meta, "cases": cases}
    text = json.dumps(doc, indent=1)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    else:
        print(text)
    return 1 if any(c["status"] == "error" for c in doc["cases"]) else 0


if __name__ == "__main__":
    sys.exit(main())
