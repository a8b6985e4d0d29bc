"""Folder throughput: poolcli's batch machinery against a plain Pillow/NumPy loop.

Usage: python benchmarks/bench_batch.py [--count 100] [--size 1024] [--repeats 3] [--record [FILE]]

A folder of COUNT generated SIZE x SIZE RGB PNGs (photo-like: gradients and noise), pooled with
``max -k 2`` into a fresh output folder by ``poolcli -j 1`` and ``-j 2``, and by a plain loop in one
process (Pillow open -> NumPy 2x2 max -> Pillow save, same PNG settings).  Whole processes are
timed (start-up included), medians of REPEATS interleaved runs.  Targets: ``-j 2`` at least 1.8x
the images/s of ``-j 1`` on 2 cores; ``-j 1`` within 1.1x of the plain loop's time.  Each run
prints its figures (``--record``: also appends them to benchmarks/RESULTS.md); the exit code is 1
when a target is missed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
import numpy as np

from poolcli import formats

PLAIN_LOOP = """
import sys
from pathlib import Path
import numpy as np
from PIL import Image
source, target = Path(sys.argv[1]), Path(sys.argv[2])
target.mkdir()
for path in sorted(source.iterdir()):
    pixels = np.asarray(Image.open(path))
    h, w = pixels.shape[0] // 2 * 2, pixels.shape[1] // 2 * 2
    pooled = pixels[:h, :w].reshape(h // 2, 2, w // 2, 2, -1).max(axis=(1, 3))
    Image.fromarray(np.ascontiguousarray(pooled)).save(target / path.name, compress_level=int(sys.argv[3]))
"""


def make_folder(folder: Path, count: int, size: int) -> None:
    base = common.photo(size)
    for i in range(count):  # the same photo, shifted: as costly to encode, different bytes
        common.save_png(np.roll(base, 7 * i, axis=1), folder / f"img{i:03d}.png")


def timed(command: list[str], output: Path) -> float:
    shutil.rmtree(output, ignore_errors=True)
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=common.child_env())
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    common.add_record_option(parser)
    args = parser.parse_args()
    python = sys.executable
    print(f"{os.cpu_count()} CPUs; {args.count} RGB PNGs of {args.size}x{args.size}; max -k 2")
    with tempfile.TemporaryDirectory() as tmp:
        source, out = Path(tmp) / "photos", Path(tmp) / "out"
        source.mkdir()
        make_folder(source, args.count, args.size)
        commands = {
            "poolcli -j 1": [python, "-m", "poolcli", "max", str(source), "-o", str(out), "-k", "2", "-j", "1", "-q"],
            "poolcli -j 2": [python, "-m", "poolcli", "max", str(source), "-o", str(out), "-k", "2", "-j", "2", "-q"],
            "plain loop": [python, "-c", PLAIN_LOOP, str(source), str(out), str(formats.DEFAULT_COMPRESSION)],
        }
        for command in commands.values():  # warm the page cache
            timed(command, out)
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.repeats):
            for name, command in commands.items():
                times[name].append(timed(command, out))
        medians = {name: statistics.median(values) for name, values in times.items()}
        for name, seconds in medians.items():
            print(f"  {name:14s} {seconds:7.2f} s  {args.count / seconds:6.1f} images/s")
        speedup = medians["poolcli -j 1"] / medians["poolcli -j 2"]
        overhead = medians["poolcli -j 1"] / medians["plain loop"]
        print(f"  -j 2 / -j 1 speed-up: {speedup:.2f}x (target >= 1.8)")
        print(f"  -j 1 time / plain loop time: {overhead:.2f} (target <= 1.1)")
    checks = [(f"-j 2 / -j 1 speed-up {speedup:.2f}x (>= 1.8)", speedup >= 1.8),
              (f"-j 1 / plain loop {overhead:.2f} (<= 1.1)", overhead <= 1.1)]
    if args.record:
        figures = f"{args.count} PNGs {args.size}x{args.size}: " + ", ".join(
            f"{name} {seconds:.2f} s ({args.count / seconds:.1f} images/s)" for name, seconds in medians.items())
        common.append_result("bench_batch", figures,
                             "; ".join(f"{'met' if ok else 'MISSED'}: {text}" for text, ok in checks),
                             results=args.record)
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
