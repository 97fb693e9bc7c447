"""Per-op overhead of calling kiln from Python: the median wall time of one tiny
op (add of two 1-element float32 tensors) through the package, next to the same
C call made bare through ctypes, a module call (C built-in and Python forward), and
torch's eager add for scale when installed.

    KILN_LIBRARY=build/libkiln.so python3 bindings/python/bench_overhead.py
"""
import os
import json
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kiln  # noqa: E402
from kiln import _lib  # noqa: E402


def median_ns(fn, calls=20000, repeats=15):
    """Median over repeats of the mean time per call of a batch of calls."""
    per_call = []
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        for _ in range(calls // repeats):
            fn()
        per_call.append((time.perf_counter_ns() - t0) / (calls // repeats))
    return statistics.median(per_call)


def main():
    a, b = kiln.ones(1), kiln.ones(1)
    for _ in range(2000):  # warm the pool and the caches
        a + b
    results = {"kiln: a + b (Tensor operator)": median_ns(lambda: a + b),
               "kiln: kiln.add(a, b)": median_ns(lambda: kiln.add(a, b))}
    ha, hb = a._h, b._h
    scope = _lib.scope_begin()  # the bare C call, results freed in bulk

    def bare():
        _lib.binary["add"](ha, hb)

    results["ctypes: kiln_add alone (no wrapper, no ownership)"] = median_ns(bare, calls=5000)
    _lib.scope_end(scope)
    w = kiln.ones(1, requires_grad=True)
    results["kiln: w + b with w.requires_grad (records a node)"] = median_ns(lambda: w + b)
    relu = kiln.nn.ReLU()

    class PyReLU(kiln.nn.Module):
        def forward(self, x):
            return kiln.relu(x)

    pyrelu = PyReLU()
    results["kiln: nn.ReLU()(a) (a C module call)"] = median_ns(lambda: relu(a))
    results["kiln: Python nn.Module whose forward is relu (C -> Python callback)"] = median_ns(lambda: pyrelu(a))
    try:
        import torch

        ta, tb = torch.ones(1), torch.ones(1)
        results["torch: a + b (eager, for scale)"] = median_ns(lambda: ta + tb)
    except ImportError:
        pass
    width = max(len(k) for k in results)
    for name, ns in results.items():
        print(f"{name:<{width}}  {ns / 1000:6.2f} us/op")
    if "--json" in sys.argv[1:]:  # the last line, for benchmarks/run.py's table
        row = {"median_s": results["kiln: a + b (Tensor operator)"] * 1e-9}
        if "torch: a + b (eager, for scale)" in results:
            row["torch_median_s"] = results["torch: a + b (eager, for scale)"] * 1e-9
        print(json.dumps(row))


if __name__ == "__main__":
    main()
