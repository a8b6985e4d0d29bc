"""Folder throughput: poolcli's batch machinery against what a user would pick instead.

Usage: python benchmarks/bench_batch.py [--format jpeg|png] [--count 120] [--size 1024] [--repeats 3]
                                        [--before DIR] [--record [FILE]]

A folder of COUNT generated photos, SIZE wide and 3/4 SIZE high (the bundled photograph, tiled and
shifted: each as costly to code, different bytes), pooled with ``avg -k 2`` into a fresh output
folder by:

- ``poolcli -j 1`` and ``poolcli -j 2``, and with ``--before DIR`` the same from another
  checkout of poolcli (an older commit: before and after, measured in one run);
- a plain Pillow loop in one process (open, ``reduce(2)``, save at the same JPEG quality or PNG
  level): the same pixels as ``avg -k 2`` on 8-bit images;
- a shell loop of ``vips shrink 2 2`` (one process per image, as a user's loop would be), and
  ImageMagick's ``mogrify -scale 50%`` (one process for the folder); each skipped when not
  installed.

Whole processes are timed (start-up included); each figure is the median of REPEATS interleaved
runs, wall time and CPU time (user + system of the process and its children).  Targets (issue
18, JPEG): ``-j 1`` at most 1.2x the Pillow loop's wall time and 1.25x its CPU time; ``-j 2`` at
least 1.7x faster than ``-j 1``.  Each run prints its figures side by side (``--record``: also
appends them to benchmarks/RESULTS.md); the exit code is 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
import numpy as np

from poolcli import formats

PILLOW_LOOP = """
import sys
from pathlib import Path
from PIL import Image
source, target, setting = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
target.mkdir()
for path in sorted(source.iterdir()):
    with Image.open(path) as img:
        options = {"quality": setting} if img.format == "JPEG" else {"compress_level": setting}
        img.reduce(2).save(target / path.name, **options)
"""

VIPS_LOOP = 'mkdir "$2" && for f in "$1"/*; do vips shrink "$f" "$2/$(basename "$f")$3" 2 2 || exit 1; done'


def make_folder(folder: Path, count: int, width: int, height: int, kind: str) -> None:
    base = common.real_photo(width, height)
    for i in range(count):  # shifted: as costly to code, different bytes
        shifted = np.roll(base, 7 * i, axis=1)
        if kind == "jpeg":
            common.save_jpeg(shifted, folder / f"img{i:03d}.jpg", quality=formats.DEFAULT_QUALITY["JPEG"])
        else:
            common.save_png(shifted, folder / f"img{i:03d}.png")


def load_average() -> str:
    """The 1, 5 and 15 minute load averages: on a shared machine, how many cores were not free."""
    return " ".join(f"{value:.1f}" for value in os.getloadavg())


def timed(command: Sequence[str], output: Path) -> tuple[float, float]:
    """Wall and CPU seconds (user + system, children included) of one run into a fresh ``output``."""
    shutil.rmtree(output, ignore_errors=True)
    before = os.times()
    started = time.perf_counter()
    common.run(command)
    wall = time.perf_counter() - started
    after = os.times()
    return wall, (after.children_user - before.children_user) + (after.children_system - before.children_system)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--format", choices=("jpeg", "png"), default="jpeg")
    parser.add_argument("--count", type=int, default=120)
    parser.add_argument("--size", type=int, default=1024, help="width; the height is 3/4 of it")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--before", type=Path, metavar="DIR", help="another poolcli checkout, run side by side")
    common.add_record_option(parser)
    args = parser.parse_args()
    width, height = args.size, args.size * 3 // 4
    setting = formats.DEFAULT_QUALITY["JPEG"] if args.format == "jpeg" else formats.DEFAULT_COMPRESSION
    described = f"{args.count} RGB {args.format.upper()}s of {width}x{height}"
    print(f"{os.cpu_count()} CPUs; {described}; avg -k 2"
          + (f" at quality {setting}" if args.format == "jpeg" else f" at PNG level {setting}")
          + f"; load average {load_average()}")
    python = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        source, out = Path(tmp) / "photos", Path(tmp) / "out"
        source.mkdir()
        make_folder(source, args.count, width, height, args.format)
        poolcli = [python, "-m", "poolcli", "avg", str(source), "-o", str(out), "-k", "2", "-q"]
        commands: dict[str, list[str]] = {
            "poolcli -j 1": [*poolcli, "-j", "1"],
            "poolcli -j 2": [*poolcli, "-j", "2"],
            "Pillow loop": [python, "-c", PILLOW_LOOP, str(source), str(out), str(setting)],
        }
        if args.before:  # run inside it: python -m puts the current folder first on the path
            place = str(args.before.resolve())
            before = ["env", "-C", place, f"PYTHONPATH={place}", *poolcli]
            commands.update({"before -j 1": [*before, "-j", "1"], "before -j 2": [*before, "-j", "2"]})
        suffix = f"[Q={setting}]" if args.format == "jpeg" else f"[compression={setting}]"
        if common.tool("vips"):
            commands["vips loop"] = ["sh", "-c", VIPS_LOOP, "sh", str(source), str(out), suffix]
        if common.tool("mogrify"):
            options = ["-quality", str(setting)] if args.format == "jpeg" \
                else ["-define", f"png:compression-level={setting}"]
            commands["mogrify"] = ["sh", "-c", 'mkdir "$1" && shift && exec mogrify "$@"', "sh", str(out),
                                   "-path", str(out), "-scale", "50%", *options, str(source / "*")]
        skipped = [name for name in ("vips", "mogrify") if not common.tool(name)]
        for command in commands.values():  # warm the page cache and the bytecode
            timed(command, out)
        walls: dict[str, list[float]] = {name: [] for name in commands}
        cpus: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.repeats):
            for name, command in commands.items():
                wall, cpu = timed(command, out)
                walls[name].append(wall)
                cpus[name].append(cpu)
    wall = {name: statistics.median(values) for name, values in walls.items()}
    cpu = {name: statistics.median(values) for name, values in cpus.items()}
    base = "Pillow loop"
    print(f"  {'':14s} {'wall s':>7s} {'CPU s':>7s} {'images/s':>9s} {'wall/Pillow':>12s} {'CPU/Pillow':>11s}")
    for name in commands:
        print(f"  {name:14s} {wall[name]:7.2f} {cpu[name]:7.2f} {args.count / wall[name]:9.1f} "
              f"{wall[name] / wall[base]:12.2f} {cpu[name] / cpu[base]:11.2f}")
    if skipped:
        print(f"  not installed, skipped: {', '.join(skipped)}")
    print(f"  load average at the end {load_average()}"
          + ("" if os.getloadavg()[0] < (os.cpu_count() or 1) - 1 else
             ": no core was free, so the -j 2 speed-up is not what two free cores give"))
    speedup = wall["poolcli -j 1"] / wall["poolcli -j 2"]
    wall_ratio = wall["poolcli -j 1"] / wall[base]
    cpu_ratio = cpu["poolcli -j 1"] / cpu[base]
    checks = [(f"-j 1 wall / Pillow loop {wall_ratio:.2f} (<= 1.2)", wall_ratio <= 1.2),
              (f"-j 1 CPU / Pillow loop {cpu_ratio:.2f} (<= 1.25)", cpu_ratio <= 1.25),
              (f"-j 2 speed-up over -j 1 {speedup:.2f}x (>= 1.7)", speedup >= 1.7)]
    for text, ok in checks:
        print(f"  {'met' if ok else 'MISSED'}: {text}")
    if args.record:
        figures = f"{described}, avg -k 2: " + ", ".join(
            f"{name} {wall[name]:.2f} s wall {cpu[name]:.2f} s CPU" for name in commands)
        common.append_result("bench_batch", figures,
                             "; ".join(f"{'met' if ok else 'MISSED'}: {text}" for text, ok in checks),
                             extra_versions=tuple((name, common.tool_version([name, "--version"]))
                                                  for name in ("vips", "mogrify") if common.tool(name)),
                             results=args.record)
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
