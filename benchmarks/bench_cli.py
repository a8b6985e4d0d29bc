"""Start-up time, and the whole command against Pillow's own downscale, in time and peak memory.

Usage: python benchmarks/bench_cli.py [--size 4096] [--repeats 5]

1. ``poolcli --version`` and ``poolcli --help`` (neither imports NumPy or Pillow) next to
   ``python -c "import click"``: median wall time of fresh processes.
2. On a generated SIZE x SIZE RGB PNG (a photo-like gradient with noise), ``poolcli avg -k 2``
   against a Python process doing Pillow's open -> reduce(2) -> save with the same PNG settings
   (Pillow's defaults, as poolcli uses): median wall time and peak resident memory (ru_maxrss of
   each child), and the ratios poolcli / Pillow.  Targets: time within 1.2x, memory within 1.5x.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def run(command: list[str]) -> tuple[float, int]:
    """Wall time (s) and peak RSS (KiB) of one child process."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(command)}")
    return elapsed, usage.ru_maxrss


def median_run(command: list[str], repeats: int) -> tuple[float, int]:
    runs = [run(command) for _ in range(repeats)]
    return statistics.median(t for t, _ in runs), max(m for _, m in runs)


def make_photo(path: Path, size: int) -> None:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    planes = [128 + 100 * np.sin(6 * x + 3 * c) * np.cos(4 * y - c) for c in range(3)]
    pixels = np.stack(planes, axis=-1) + rng.normal(0, 6, (size, size, 3))
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--make-photo", metavar="PATH", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.make_photo:
        make_photo(Path(args.make_photo), args.size)
        return
    python = sys.executable
    poolcli = [python, "-m", "poolcli"]

    print("start-up (median of fresh processes):")
    for label, command in (
        ("python -c 'import click'", [python, "-c", "import click"]),
        ("poolcli --version", [*poolcli, "--version"]),
        ("poolcli --help", [*poolcli, "--help"]),
        ("poolcli max --help", [*poolcli, "max", "--help"]),
    ):
        seconds, _ = median_run(command, max(args.repeats, 7))
        print(f"  {label:28s} {seconds * 1000:7.1f} ms")
    check = subprocess.run(
        [python, "-c", "import sys; sys.argv=['poolcli','--help']\nfrom poolcli import cli\ntry: cli.main()\n"
                       "except SystemExit: pass\nprint(sorted(m for m in ('numpy','PIL','rich') if m in sys.modules))"],
        capture_output=True, text=True, check=True)
    print(f"  modules loaded by --help among numpy, PIL, rich: {check.stdout.strip().splitlines()[-1]}")

    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "photo.png"
        # In a child: a child's peak RSS counts from the memory of the process that forked it.
        subprocess.run([python, __file__, "--make-photo", str(source), "--size", str(args.size)], check=True)
        ours_out, theirs_out = Path(folder) / "ours.png", Path(folder) / "theirs.png"
        pillow = [python, "-c", "import sys\nfrom PIL import Image\nImage.MAX_IMAGE_PIXELS = None\n"
                                "Image.open(sys.argv[1]).reduce(2).save(sys.argv[2])", str(source), str(theirs_out)]
        ours = [*poolcli, "avg", str(source), "-k", "2", "-o", str(ours_out), "-q", "--max-pixels", "0"]
        run(ours)  # warm the page cache and .pyc files
        run(pillow)
        times_ours, times_theirs, mem_ours, mem_theirs = [], [], [], []
        for _ in range(args.repeats):  # interleaved
            t, m = run(ours)
            times_ours.append(t)
            mem_ours.append(m)
            t, m = run(pillow)
            times_theirs.append(t)
            mem_theirs.append(m)
        same = np.array_equal(np.asarray(Image.open(ours_out)), np.asarray(Image.open(theirs_out)))
        t_ours, t_theirs = statistics.median(times_ours), statistics.median(times_theirs)
        m_ours, m_theirs = max(mem_ours), max(mem_theirs)
        print(f"\n{args.size}x{args.size} RGB PNG, avg -k 2 (median of {args.repeats}, interleaved):")
        print(f"  {'':28s} {'wall s':>8s} {'peak MiB':>9s}")
        print(f"  {'poolcli avg -k 2':28s} {t_ours:8.3f} {m_ours / 1024:9.1f}")
        print(f"  {'Pillow open/reduce(2)/save':28s} {t_theirs:8.3f} {m_theirs / 1024:9.1f}")
        print(f"  ratio poolcli / Pillow: time {t_ours / t_theirs:.2f} (target <= 1.2), "
              f"memory {m_ours / m_theirs:.2f} (target <= 1.5); identical pixels: {same}")


if __name__ == "__main__":
    main()
