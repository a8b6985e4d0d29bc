"""Time poolcli's engine against torch and OpenCV on the CPU and report the peak extra memory.

Usage: python benchmarks/bench_engine.py [--repeats N] [--size S] [--threads T] [--settle SECONDS]

Same process, same inputs, interleaved repeats (poolcli, torch, OpenCV, poolcli, ...), medians.
Each timed call directly follows one untimed call of the same function: torch's OpenMP threads
keep spinning on the cores for a while after each call, which would otherwise be charged to
whichever call comes next, and the untimed call puts every library in the same warm state
(caches, clock speed, thread pools).  --settle adds a pause before the untimed call; on this
project's VMs any pause makes the next ~50 ms of work up to 2x slower for all, so the default is
none.

Two tables:

* torch, at poolcli's thread count (``--threads``, default: the CPUs available): one row per case
  with the ratio poolcli / torch (below 1.0: poolcli is faster).  torch has no uint8 average
  pooling, so for that case torch times ``avg_pool2d`` on the tensor converted to float32
  (conversion included): what a torch user would have to run.  float32 rows also time OpenCV
  where it has the same operation (``resize(INTER_AREA)`` for k2 s2 averages, ``blur`` with a zero
  border for stride-1 averages, ``dilate`` for stride-1 maxima), plane by plane.
* 8-bit pixels on one thread against OpenCV (a 3-channel (H, W, C) image, as images arrive):
  poolcli as the pixel pipeline calls it (rounded averages, interleaved pixels back) and as the
  public functions return planes.  Everything runs on the calling thread, so these rows are
  timed in its CPU time (``time.thread_time``), which other work on a shared machine disturbs far
  less than wall time.  The ratio and target are for the pixels column.

Targets: a geometric mean of the torch ratios at most 1.0; no float32 case slower than torch;
8-bit pixels at most 2.0x ``cv2.resize(INTER_AREA)`` (avg k2 s2), 2.5x ``cv2.blur`` (avg k3 s1 p1,
k7 s1 p3) and 2.0x ``cv2.dilate`` (max k3 s1 p1).  The exit code is 1 when a target is missed.
Without torch or OpenCV (an optional benchmark dependency, never a run-time one) their columns
and targets are left out.  ``--record`` appends the figures to benchmarks/RESULTS.md.
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
try:
    import cv2
except ImportError:  # pragma: no cover - depends on the machine
    cv2 = None

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


def time_calls(calls: list, repeats: int, settle: float, clock=time.perf_counter) -> list[float | None]:
    """Median milliseconds of each call (None stays None), timed interleaved on ``clock``."""
    for call in calls:
        if call is not None:
            call()  # warm-up: thread pools, page faults, lazy initialisation
    samples: list[list[float]] = [[] for _ in calls]
    for _ in range(repeats):
        for call, times in zip(calls, samples, strict=True):
            if call is None:
                continue
            time.sleep(settle)
            call()  # untimed: caches, clock speed and thread pools are warm for the timed call
            t0 = clock()
            call()
            times.append(clock() - t0)
    return [median_ms(times) if times else None for times in samples]


def opencv_call(op: str, config: dict, x: np.ndarray):
    """OpenCV's same operation on (C, H, W) planes, plane by plane, or None when it has none."""
    if cv2 is None or config.get("dilation", 1) != 1 or config.get("ceil_mode"):
        return None
    k, stride, pad = config["kernel_size"], config.get("stride", config["kernel_size"]), config.get("padding", 0)
    planes = [np.ascontiguousarray(plane) for plane in x]
    if op == "avg" and k == stride and pad == 0 and x.shape[1] % k == 0 and x.shape[2] % k == 0:
        size = (x.shape[2] // k, x.shape[1] // k)
        return lambda: [cv2.resize(p, size, interpolation=cv2.INTER_AREA) for p in planes]
    if stride == 1 and pad == k // 2 and k % 2:
        if op == "avg":
            return lambda: [cv2.blur(p, (k, k), borderType=cv2.BORDER_CONSTANT) for p in planes]
        kernel = np.ones((k, k), np.uint8)
        return lambda: [cv2.dilate(p, kernel) for p in planes]
    return None


# 8-bit pixels on one thread: (label, pooling arguments, OpenCV's operation on (H, W, C), target ratio).
PIXEL_CASES = [
    ("avg k2 s2", "avg", dict(kernel_size=2), lambda hwc: cv2.resize(
        hwc, (hwc.shape[1] // 2, hwc.shape[0] // 2), interpolation=cv2.INTER_AREA), "resize(INTER_AREA)", 2.0),
    ("avg k3 s1 p1", "avg", dict(kernel_size=3, stride=1, padding=1),
     lambda hwc: cv2.blur(hwc, (3, 3), borderType=cv2.BORDER_CONSTANT), "blur, zero border", 2.5),
    ("avg k7 s1 p3", "avg", dict(kernel_size=7, stride=1, padding=3),
     lambda hwc: cv2.blur(hwc, (7, 7), borderType=cv2.BORDER_CONSTANT), "blur, zero border", 2.5),
    ("max k3 s1 p1", "max", dict(kernel_size=3, stride=1, padding=1),
     lambda hwc: cv2.dilate(hwc, np.ones((3, 3), np.uint8)), "dilate", 2.0),
]


def pixel_table(size: int, repeats: int, settle: float) -> list[tuple[str, float, float]]:
    """8-bit (H, W, 3) pixels on one thread against OpenCV; returns (case, ratio, target) rows."""
    rng = np.random.default_rng(2)
    hwc = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    planes = hwc.transpose(2, 0, 1)
    threads = engine.get_num_threads()
    engine.set_num_threads(1)
    if cv2 is not None:
        cv2_threads = cv2.getNumThreads()
        cv2.setNumThreads(1)
    print(f"\n8-bit pixels {size}x{size}x3, 1 thread: poolcli as pixels (rounded averages, pixels back "
          "interleaved) and as the public functions (planes), against OpenCV")
    print(f"{'case':14s} {'pixels ms':>9s} {'planes ms':>9s} {'OpenCV ms':>9s} {'ratio':>6s} {'target':>7s}  OpenCV op")
    rows = []
    try:
        for label, op, config, theirs, cv_name, target in PIXEL_CASES:
            kind = "max" if op == "max" else "avg_rounded"
            public = engine.max_pool2d if op == "max" else engine.avg_pool2d_rounded
            calls = [lambda kind=kind, config=config: engine.pool_rows(kind, planes, channels_last=True, **config),
                     lambda public=public, config=config: public(planes, **config),
                     (lambda theirs=theirs: theirs(hwc)) if cv2 is not None else None]
            ours, ours_planes, cv_ms = time_calls(calls, repeats, settle, clock=time.thread_time)
            assert ours is not None and ours_planes is not None
            if cv_ms is None:
                print(f"{label:14s} {ours:9.2f} {ours_planes:9.2f}")
                continue
            ratio = ours / cv_ms
            rows.append((label, ratio, target))
            verdict = "" if ratio <= target else "  MISSED"
            print(f"{label:14s} {ours:9.2f} {ours_planes:9.2f} {cv_ms:9.2f} {ratio:6.2f} {target:6.1f}x  "
                  f"{cv_name}{verdict}")
    finally:
        engine.set_num_threads(threads)
        if cv2 is not None:
            cv2.setNumThreads(cv2_threads)
    return rows


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
    parser.add_argument("--threads", type=int, default=engine.get_num_threads(),
                        help="threads for poolcli, torch and OpenCV in the torch table")
    parser.add_argument("--settle", type=float, default=0.0, help="seconds of quiet before each untimed call")
    common.add_record_option(parser)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    size = args.size
    inputs = {
        "f32 CHW": rng.random((3, size, size), dtype=np.float32),
        "u8 HWC view": rng.integers(0, 256, (size, size, 3), dtype=np.uint8).transpose(2, 0, 1),
    }
    engine.set_num_threads(args.threads)
    if torch is not None:
        torch.set_num_threads(args.threads)
    if cv2 is not None:
        cv2.setNumThreads(args.threads)
    peers = [f"torch {torch.__version__}" if torch is not None else "torch not installed",
             f"OpenCV {cv2.__version__}" if cv2 is not None else "OpenCV not installed"]
    print(f"{args.threads} threads each; {', '.join(peers)}")
    print(f"{'case':34s} {'poolcli ms':>10s} {'torch ms':>9s} {'ratio':>6s} {'OpenCV ms':>9s}")
    ratios, float_ratios = [], []
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
                opencv = opencv_call(op, config, x) if x.dtype == np.float32 else None
                ours_ms, theirs_ms, cv_ms = time_calls(
                    [lambda x=x, config=config, fn=ours_fn: fn(x, **config), theirs, opencv], args.repeats, args.settle)
                assert ours_ms is not None
                case = f"{op} {label} {name}"
                cv_text = f" {cv_ms:9.1f}" if cv_ms is not None else ""
                if theirs_ms is None:
                    print(f"{case:34s} {ours_ms:10.1f} {'':9s} {'':6s}{cv_text}")
                    continue
                ratio = ours_ms / theirs_ms
                ratios.append(ratio)
                if x.dtype == np.float32:
                    float_ratios.append(ratio)
                print(f"{case:34s} {ours_ms:10.1f} {theirs_ms:9.1f} {ratio:6.2f}{cv_text}")
    geomean = math.exp(sum(math.log(r) for r in ratios) / len(ratios)) if ratios else None
    if geomean is not None:
        print(f"max ratio {max(ratios):.2f}, geometric mean {geomean:.2f} over {len(ratios)} cases; "
              f"float32 at most {max(float_ratios):.2f}x torch")
    pixel_rows = pixel_table(size, args.repeats, args.settle)
    print()
    memory = peak_extra_memory(args.memory_size)
    missed = [f"{label} {ratio:.2f}x OpenCV > {target}x" for label, ratio, target in pixel_rows if ratio > target]
    if geomean is not None and geomean > 1.0:
        missed.append(f"geometric mean {geomean:.2f} > 1.0")
    missed += [f"a float32 case {max(float_ratios):.2f}x torch"] if float_ratios and max(float_ratios) > 1.0 else []
    ok = not missed
    print("targets: " + ("met" if ok else "MISSED: " + "; ".join(missed)))
    if args.record:
        pixels = ", ".join(f"{label} {ratio:.2f}x" for label, ratio, _ in pixel_rows)
        figures = (f"{size}x{size}: " + (f"poolcli/torch geometric mean {geomean:.2f}, max {max(ratios):.2f}, "
                                         f"float32 max {max(float_ratios):.2f}; "
                                         if geomean is not None else "torch not installed; ")
                   + (f"8-bit pixels, 1 thread, poolcli/OpenCV: {pixels}; " if pixel_rows else "")
                   + "; ".join(memory))
        verdict = "met" if ok else "MISSED: " + "; ".join(missed)
        extra = tuple((name, module.__version__) for name, module in (("torch", torch), ("OpenCV", cv2))
                      if module is not None)
        common.append_result("bench_engine", figures, verdict, extra, results=args.record)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
