"""safetensors files and training checkpoints from Python: round trips, a kiln
state_dict read by PyTorch (through the safetensors package, or parsed here with
struct + json when it is absent), a PyTorch state_dict read by kiln, and a resumed
run that reproduces the uninterrupted one."""
import json
import struct

import numpy as np
import pytest

import kiln
from kiln import nn

try:
    import torch
except ImportError:
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed")

_NP = {"F32": np.float32, "F64": np.float64, "F16": np.float16, "I32": np.int32, "I64": np.int64, "U8": np.uint8}


def parse_safetensors(path):
    """The format by hand: u64 header length, JSON header, raw little-endian data."""
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    meta = header.pop("__metadata__", {})
    data = blob[8 + n:]
    out = {}
    for name, e in header.items():
        b, end = e["data_offsets"]
        out[name] = np.frombuffer(data[b:end], dtype=np.dtype(_NP[e["dtype"]]).newbyteorder("<")).reshape(e["shape"])
    return out, meta


def write_safetensors(path, arrays):
    """A safetensors file as another producer (e.g. torch + safetensors) would write it."""
    rev = {v: k for k, v in _NP.items()}
    header, chunks, off = {}, [], 0
    for name, a in arrays.items():
        a = np.array(a, order="C")  # (ascontiguousarray would make 0-d arrays 1-d)
        header[name] = {"dtype": rev[a.dtype.type], "shape": list(a.shape), "data_offsets": [off, off + a.nbytes]}
        chunks.append(a.tobytes())
        off += a.nbytes
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(chunks))


def test_save_file_load_file_round_trip(tmp_path):
    p = tmp_path / "t.safetensors"
    tensors = {"a": kiln.arange(6.0).reshape(2, 3)[:, ::2], "b": kiln.tensor(np.arange(4, dtype=np.int64)),
               "c": np.ones((2, 2), np.float64)}
    kiln.save_file(tensors, p, metadata={"epoch": 3})
    back = kiln.load_file(p)
    assert sorted(back) == ["a", "b", "c"]  # in data order (the writer groups by alignment)
    np.testing.assert_array_equal(back["a"].numpy(), [[0.0, 2.0], [3.0, 5.0]])
    assert back["b"].dtype == kiln.int64 and back["c"].dtype == kiln.float64
    assert kiln.checkpoint.read_metadata(p) == {"epoch": "3"}
    parsed, meta = parse_safetensors(p)
    np.testing.assert_array_equal(parsed["a"], back["a"].numpy())
    into = {"a": kiln.zeros(2, 2), "b": kiln.zeros(4, dtype="int64"), "c": kiln.zeros(2, 2, dtype="float64")}
    kiln.checkpoint.load_into(p, into)
    np.testing.assert_array_equal(into["a"].numpy(), parsed["a"])


def small_model():
    return nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(),
                         nn.Linear(3 * 4 * 4, 2))


@needs_torch
def test_kiln_state_dict_loads_into_torch(tmp_path):
    kiln.manual_seed(1)
    km = small_model()
    x = np.random.default_rng(0).standard_normal((2, 2, 4, 4)).astype(np.float32)
    km(kiln.tensor(x))  # moves the running statistics
    p = tmp_path / "m.safetensors"
    kiln.save_file(km.state_dict(), p)
    try:
        from safetensors.torch import load_file
        sd = load_file(str(p))
    except ImportError:
        sd = {k: torch.from_numpy(v.copy()) for k, v in parse_safetensors(p)[0].items()}
    tm = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3, padding=1), torch.nn.BatchNorm2d(3), torch.nn.ReLU(),
                             torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 2))
    tm.load_state_dict(sd)  # strict: every name and shape matches
    km.eval()
    tm.eval()
    np.testing.assert_allclose(km(kiln.tensor(x)).numpy(), tm(torch.from_numpy(x)).detach().numpy(), rtol=1e-5,
                               atol=1e-6)


@needs_torch
def test_torch_state_dict_loads_into_kiln(tmp_path):
    torch.manual_seed(2)
    tm = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3, padding=1), torch.nn.BatchNorm2d(3), torch.nn.ReLU(),
                             torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 2))
    p = tmp_path / "t.safetensors"
    write_safetensors(p, {k: v.numpy() for k, v in tm.state_dict().items()})
    km = small_model()
    kiln.load_checkpoint(p, km)
    for (k, a), (_, b) in zip(km.state_dict().items(), tm.state_dict().items()):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=k)


def test_checkpoint_resume_reproduces_the_run(tmp_path):
    x = np.random.default_rng(3).standard_normal((4, 2, 4, 4)).astype(np.float32)
    y = np.array([0, 1, 1, 0])

    def run(model, opt, steps):
        out = []
        for _ in range(steps):
            with kiln.scope():
                opt.zero_grad()
                loss = kiln.cross_entropy(kiln.dropout(model(kiln.tensor(x)), 0.2), kiln.tensor(y))
                loss.backward()
                opt.step()
                out.append(loss.item())
        return out

    kiln.manual_seed(5)
    m = small_model()
    o = kiln.optim.Adam(m, lr=1e-2)
    full = run(m, o, 6)
    kiln.manual_seed(5)
    m = small_model()
    o = kiln.optim.Adam(m, lr=1e-2)
    first = run(m, o, 3)
    p = tmp_path / "ckpt.safetensors"
    kiln.save_checkpoint(p, m, o, extra={"epoch": 3})
    kiln.manual_seed(99)  # the checkpoint restores the generator too
    m2 = small_model()
    o2 = kiln.optim.Adam(m2, lr=0.5)
    meta = kiln.load_checkpoint(p, m2, o2)
    assert meta["epoch"] == "3" and o2.lr == pytest.approx(1e-2) and o2.step_count == 3
    assert first + run(m2, o2, 3) == full  # bit for bit
    parsed, _ = parse_safetensors(p)
    assert "optimizer.state.0.exp_avg" in parsed and "0.weight" in parsed


def test_optimizer_state_dict_round_trip():
    w = kiln.ones(3, requires_grad=True)
    o = kiln.optim.SGD([w], lr=0.1, momentum=0.9)
    (w * kiln.tensor([1.0, 2.0, 3.0])).sum().backward()
    o.step()
    sd = o.state_dict()
    assert sd["state.0.momentum_buffer"].tolist() == [1.0, 2.0, 3.0]
    assert sd["param_groups"]["optimizer"] == "sgd"
    o2 = kiln.optim.SGD([kiln.ones(3, requires_grad=True)], lr=0.1, momentum=0.9)
    o2.step()  # no gradient: nothing moves, no state
    o2.load_state_dict({k: v for k, v in sd.items() if k != "param_groups"})
