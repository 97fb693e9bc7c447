#!/usr/bin/env python3
"""kiln's thread defaults under shared cores: a car_mask training step and a (reduced)
Fashion-MNIST epoch at --threads 1, --threads 2 and with no setting, on the machine as it
is ("idle": nothing started by this script) and with a busy process pinned to CPU 0.

Builds nothing: give --build the directory holding car_mask and fashion_mnist. Every run
gets an environment without OMP_NUM_THREADS, KILN_NUM_THREADS, OMP_WAIT_POLICY and
GOMP_SPINCOUNT, so "unset" is kiln's own default. Settings run interleaved, round by round;
each cell is the median over the rounds. Exits 1 when, in some condition, the unset time is
above --limit (1.3) times the best setting's.

    python3 benchmarks/threads.py --build build [--rounds 3] [--steps 10] [--fmnist-images 6400]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

SETTINGS = [("1", ["--threads", "1"]), ("2", ["--threads", "2"]), ("unset", [])]
CLEAN = ("OMP_NUM_THREADS", "KILN_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_DYNAMIC")


def run_json(cmd, env):
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        sys.exit(f"threads.py: {' '.join(cmd)} failed ({out.returncode}):\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def car_mask(build, extra, env, steps, tmp):
    j = run_json([os.path.join(build, "car_mask"), "--bench-steps", str(steps), "--json"] + extra, env)
    return j["median_step_s"], j["threads"]


def fmnist(build, extra, env, images, tmp):
    j = run_json([os.path.join(build, "fashion_mnist"), "--epochs", "1", "--limit", str(images), "--json",
                  "--out", tmp] + extra, env)
    return j["steps"] / j["train_steps_per_s"], j["threads"]


def start_hog():
    # A busy loop pinned to CPU 0: one core taken by someone else's work.
    return subprocess.Popen(["taskset", "-c", "0", sys.executable, "-c", "while True: pass"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default="build", help="directory with car_mask and fashion_mnist")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10, help="car_mask --bench-steps (median step time)")
    ap.add_argument("--fmnist-images", type=int, default=6400,
                    help="fashion_mnist --limit: images in the timed epoch (6400 = 100 steps of 64; 0 = all 60000)")
    ap.add_argument("--conditions", default="idle,loaded", help="idle, loaded or both")
    ap.add_argument("--limit", type=float, default=1.3, help="largest allowed unset / best ratio")
    ap.add_argument("--json", help="write the raw times here")
    a = ap.parse_args()

    env = {k: v for k, v in os.environ.items() if k not in CLEAN}
    tmp = tempfile.mkdtemp(prefix="kiln-threads-")
    cases = [("car_mask step", lambda x: car_mask(a.build, x, env, a.steps, tmp)),
             (f"fmnist epoch ({a.fmnist_images or 60000} img)", lambda x: fmnist(a.build, x, env, a.fmnist_images, tmp))]
    results, threads_unset, loads = {}, {}, {}
    for cond in a.conditions.split(","):
        hog = start_hog() if cond == "loaded" else None
        try:
            if hog: time.sleep(1.0)
            loads[cond] = [os.getloadavg()]
            for r in range(a.rounds):
                for case, fn in cases:
                    order = SETTINGS if r % 2 == 0 else SETTINGS[::-1]
                    for name, extra in order:
                        t, n = fn(extra)
                        results.setdefault((cond, case, name), []).append(t)
                        if name == "unset": threads_unset[cond] = n
            loads[cond].append(os.getloadavg())
        finally:
            if hog:
                hog.kill()
                hog.wait()

    print(f"{'condition':8} {'case':24} {'1 thread':>10} {'2 threads':>10} {'unset':>10} {'unset/best':>10}")
    worst = 0.0
    for cond in a.conditions.split(","):
        for case, _ in cases:
            med = {name: statistics.median(results[(cond, case, name)]) for name, _ in SETTINGS}
            ratio = med["unset"] / min(med["1"], med["2"])
            worst = max(worst, ratio)
            print(f"{cond:8} {case:24} {med['1']:9.3f}s {med['2']:9.3f}s {med['unset']:9.3f}s {ratio:9.2f}x")
    for cond in a.conditions.split(","):
        (b1, _, _), (e1, _, _) = loads[cond]
        print(f"{cond}: unset ran {threads_unset[cond]} threads; load average (1 min) {b1:.2f} before, {e1:.2f} after")
    print(f"{a.rounds} rounds, medians; car_mask: median of {a.steps} steps; cores {os.cpu_count()}, "
          f"allowed {len(os.sched_getaffinity(0))}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"results": {"|".join(k): v for k, v in results.items()}, "loads": loads}, f, indent=1)
    if worst > a.limit:
        print(f"FAIL: unset is {worst:.2f}x its best setting (limit {a.limit}x)")
        return 1
    print(f"ok: unset within {worst:.2f}x of the best setting (limit {a.limit}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
