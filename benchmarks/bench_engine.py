"""Time poolcli's engine against torch on the CPU and report the peak extra memory.

Usage: python benchmarks/bench_engine.py [--repeats N] [--size S] [--settle SECONDS]

Same process, same inputs, interleaved repeats (poolcli, torch, poolcli, ...), medians; torch at
its default thread count.  Each timed call directly follows one untimed call of the same
function: torch's OpenMP threads keep spinning on the cores for a while after each call, which
would otherwise be charged to whichever call comes next, and the untimed call puts both libraries
in the same warm state (caches, clock speed, thread pools).  --settle adds a pause before the
untimed call; on this project's VMs any pause makes the next ~50 ms of work up to 2x slower for
both libraries, so the default is none.

One row per case with the ratio poolcli / torch (below 1.0: poolcli is faster).  torch has no
uint8 average pooling, so for that case torch times ``avg_pool2d`` on the tensor converted to
float32 (conversion included): what a torch user would have to run.  Without torch installed,
only poolcli's times are printed.  Target: a geometric mean of the ratios at most 1.0 (the
README's "faster than torch"); ``--record`` appends a row to benchmarks/RESULTS.md; the exit code
is 1 when the target is missed.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

from poolcli import engine

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # pragma: no cover - depends on the machine
    torch = None

CONFIGS = [
    ("k2 s2", dict(kernel_size=2, stride=2)),
    ("k3 s2 p1", dict(kernel_size=3, stride=2, padding=1)),
    ("k3 s1 p1", dict(kernel_size=3, stride=1, padding=1)),
    ("k2 s1", dict(kernel_size=2, stride=1)),
    ("k7 s1 p3", dict(kernel_size=7, stride=1, padding=3)),
    ("k3 s2 ceil", dict(kernel_size=3, stride=2, ceil_mode=True)),
    ("k3 s1 p1 d2", dict(kernel_size=3, stride=1, padding=1, dilation=2)),
]


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1e3


def time_pair(ours, theirs, repeats: int, settle: float) -> tuple[float, float | None]:
    ours()  # warm-up: thread pool, page faults, torch's lazy init
    if theirs is not None:
        theirs()
    a, b = [], []
    for _ in range(repeats):
        for call, samples in ((ours, a), (theirs, b)):
            if call is None:
                continue
            time.sleep(settle)
            call()  # untimed: caches, clock speed and thread pools are warm for the timed call
            t0 = time.perf_counter()
            call()
            samples.append(time.perf_counter() - t0)
    return median_ms(a), (median_ms(b) if b else None)


def peak_extra_memory(size: int) -> list[str]:
    rng = np.random.default_rng(1)
    hwc = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    chw = hwc.transpose(2, 0, 1)
    lines = []
    for op, call in (
        ("max k2 s2", lambda: engine.max_pool2d(chw, 2)),
        ("avg k2 s2", lambda: engine.avg_pool2d(chw, 2)),
        ("max k3 s1 p1", lambda: engine.max_pool2d(chw, 3, 1, 1)),
        ("avg k7 s1 p3", lambda: engine.avg_pool2d(chw, 7, 1, 3)),
    ):
        call()
        tracemalloc.start()
        out = call()
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        extra = peak - out.nbytes
        print(
            f"memory {size}x{size}x3 uint8 {op:13s}: peak {peak / 2**20:7.1f} MiB = output "
            f"{out.nbytes / 2**20:6.1f} MiB + {extra / 2**20:5.1f} MiB scratch "
            f"({extra / hwc.nbytes:.3f} x input)"
        )
        lines.append(f"{op} scratch {extra / hwc.nbytes:.3f}x input")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--memory-size", type=int, default=4096)
    parser.add_argument("--settle", type=float, default=0.0, help="seconds of quiet before each untimed call")
    common.add_record_option(parser)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    size = args.size
    inputs = {
        "f32 CHW": rng.random((3, size, size), dtype=np.float32),
        "u8 HWC view": rng.integers(0, 256, (size, size, 3), dtype=np.uint8).transpose(2, 0, 1),
    }
    if torch is not None:
        threads = f"torch {torch.__version__}, {torch.get_num_threads()} threads"
        print(f"{threads}; poolcli {engine.get_num_threads()} threads")
    else:
        print("torch is not installed: poolcli times only")
    print(f"{'case':34s} {'poolcli ms':>10s} {'torch ms':>9s} {'ratio':>6s}")
    ratios = []
    for op in ("max", "avg"):
        for label, config in CONFIGS:
            if op == "avg" and "dilation" in config:
                continue
            for name, x in inputs.items():
                ours_fn = engine.max_pool2d if op == "max" else engine.avg_pool2d
                theirs = None
                if torch is not None:
                    t = torch.from_numpy(x)
                    if op == "max":
                        def theirs(t=t, config=config):
                            return F.max_pool2d(t, **config)
                    elif x.dtype == np.uint8:
                        def theirs(t=t, config=config):
                            return F.avg_pool2d(t.float(), **config)
                    else:
                        def theirs(t=t, config=config):
                            return F.avg_pool2d(t, **config)
                ours_ms, theirs_ms = time_pair(
                    lambda x=x, config=config, fn=ours_fn: fn(x, **config), theirs, args.repeats, args.settle
                )
                case = f"{op} {label} {name}"
                if theirs_ms is None:
                    print(f"{case:34s} {ours_ms:10.1f}")
                    continue
                ratio = ours_ms / theirs_ms
                ratios.append(ratio)
                print(f"{case:34s} {ours_ms:10.1f} {theirs_ms:9.1f} {ratio:6.2f}")
    geomean = math.exp(sum(math.log(r) for r in ratios) / len(ratios)) if ratios else None
    if geomean is not None:
        print(f"max ratio {max(ratios):.2f}, geometric mean {geomean:.2f} over {len(ratios)} cases")
    memory = peak_extra_memory(args.memory_size)
    ok = geomean is None or geomean <= 1.0
    if args.record:
        figures = (f"{size}x{size}: " + (f"poolcli/torch geometric mean {geomean:.2f}, max {max(ratios):.2f}; "
                                         if geomean is not None else "torch not installed; ") + "; ".join(memory))
        verdict = "n/a (no torch)" if geomean is None else f"{'met' if ok else 'MISSED'}: geometric mean <= 1.0"
        common.append_result("bench_engine", figures, verdict,
                             (("torch", torch.__version__),) if torch is not None else (), results=args.record)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
