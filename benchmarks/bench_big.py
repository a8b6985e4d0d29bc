"""Giant TIFFs in bounded memory: poolcli max/avg/pyramid against libvips, time and peak memory.

Usage: python benchmarks/bench_big.py [--scale 1.0] [--workdir DIR] [--keep] [--no-pyramid]
       [--pyramid-only] [--size N ...] [--record [FILE]]

1. Generates, tile by tile (never whole), a 32768x32768x3 uint8 tiled TIFF (3 GiB) and a
   20000x20000 uint16 single-channel one (800 MB), uncompressed, in a temporary folder
   (``--scale`` shrinks both sides for a quick try).
2. Reads each file once untimed (page cache), then runs ``poolcli max -k 2`` and ``poolcli avg
   -k 2`` on it as fresh processes, ``vips shrink IN OUT[tile,bigtiff] 2 2`` (a 2x2 box average)
   when ``vips`` is on PATH, and ``poolcli pyramid max -k 2 --levels 4`` of the large image: wall
   time, peak RSS (ru_maxrss of each child, from wait4) and output size.
3. Pyramids (issue 17), for each ``--size`` N (default 16384 and 32768): an N x N RGB uint8
   tiled TIFF and an (N/2) x (N/2) 4-channel uint16 OME-TIFF, each made into a pyramid by
   ``poolcli pyramid max`` (pyramidal OME-TIFF, the same with ``--compression 6``, OME-Zarr) and
   by ``vips tiffsave --tile --pyramid`` (uncompressed and deflate) and ``vips dzsave``, all with
   256x256 tiles and max shrinking (``--region-shrink max``): wall, CPU (user + system), peak
   RSS and output size of each; also vips's time plus an fsync of its output, since poolcli
   flushes every output to disk before its commit and vips leaves it in the page cache.
4. Prints the tables (``--record``: also appends them to benchmarks/RESULTS.md), and exits 1 when
   a target is missed: peak RSS <= 400 MiB for the large images, max/avg within 1.5x of vips
   shrink, a pyramidal TIFF within 1.5x of ``vips tiffsave --pyramid``, an OME-Zarr within 2x.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

TILE = 256
RSS_TARGET_MIB = 400
TIME_RATIO_TARGET = 1.5
PYRAMID_TIFF_TARGET = 1.5  # x vips tiffsave --tile --pyramid (uncompressed), wall time
PYRAMID_ZARR_TARGET = 2.0


def tiles(height: int, width: int, channels: int, dtype: np.dtype) -> Iterator[np.ndarray]:
    """Photo-like tiles (smooth waves plus noise), row of tiles after row of tiles."""
    rng = np.random.default_rng(0)
    top = np.iinfo(dtype).max
    ys = np.arange(TILE, dtype=np.float32)[:, None, None]
    xs = np.arange(TILE, dtype=np.float32)[None, :, None]
    phase = np.arange(channels, dtype=np.float32)[None, None, :]
    for ty in range(0, height, TILE):
        for tx in range(0, width, TILE):
            wave = np.sin((xs + tx) / 700 + phase) * np.cos((ys + ty) / 900 - phase)
            noise = rng.integers(0, top // 16 + 1, (TILE, TILE, channels), dtype=dtype)
            yield ((wave * 0.4 + 0.5) * (top - top // 16)).astype(dtype) + noise


def make_tiff(path: Path, height: int, width: int, channels: int, dtype: np.dtype, ome: bool = False) -> None:
    import tifffile

    shape = (height, width, channels) if channels > 1 else (height, width)
    extra: dict = {"metadata": {"axes": "YXS"}} if ome else {}
    tifffile.imwrite(path, tiles(height, width, channels, np.dtype(dtype)), shape=shape, dtype=dtype,
                     tile=(TILE, TILE), bigtiff=True, photometric="rgb" if channels == 3 else "minisblack",
                     planarconfig="contig" if channels > 1 else None, ome=ome, **extra)


def warm(path: Path) -> None:
    """Read a file once, untimed, so that no command pays for the first read from disk."""
    with open(path, "rb") as handle:
        while handle.read(64 << 20):
            pass


def measure(command: list[str]) -> tuple[float, float, float]:
    """Wall time (s), CPU time (user + system, s) and peak RSS (MiB) of one child process."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=common.child_env())
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed ({os.waitstatus_to_exitcode(status)}): {' '.join(command)}\n{stderr}")
    return elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def run(command: list[str]) -> tuple[float, float]:
    """Wall time (s) and peak RSS (MiB) of one child process."""
    seconds, _, rss = measure(command)
    return seconds, rss


def size_of(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def pyramid_cases(work: Path, sizes: list[int], vips: str | None, poolcli: list[str],
                  failures: list[str]) -> list[tuple[str, str, float, float, float, int]]:
    """Pyramids of an RGB TIFF and a 4-channel uint16 OME-TIFF per size, poolcli against libvips:
    rows of (image, command, wall s, CPU s, peak RSS MiB, output bytes); missed targets go to
    ``failures``."""
    rows = []
    for n in sizes:
        cases = (("rgb8", n, 3, np.uint8, False), ("ome16x4", n // 2, 4, np.uint16, True))
        for name, side, channels, dtype, ome in cases:
            side = max(TILE, side // 16 * 16)
            source = work / f"{name}-{side}.{'ome.tif' if ome else 'tif'}"
            if not source.exists():
                started = time.perf_counter()
                make_tiff(source, side, side, channels, np.dtype(dtype), ome=ome)
                print(f"generated {source.name}: {size_of(source) / 2**30:.2f} GiB in "
                      f"{time.perf_counter() - started:.1f} s", file=sys.stderr)
            warm(source)
            label = f"{name} {side}x{side}x{channels}"
            out = work / f"{name}-{side}.pyramid"
            commands = [
                ("poolcli pyramid max (OME-TIFF)", [*poolcli, "pyramid", "max", str(source), "-q", "-o", f"{out}.tif"]),
                ("poolcli pyramid max --compression 6", [*poolcli, "pyramid", "max", str(source), "-q",
                                                         "--compression", "6", "-o", f"{out}.deflate.tif"]),
                ("poolcli pyramid max (OME-Zarr)", [*poolcli, "pyramid", "max", str(source), "-q", "-o",
                                                    f"{out}.ome.zarr"]),
            ]
            if vips:
                tiles = ["--tile-width", str(TILE), "--tile-height", str(TILE), "--region-shrink", "max"]
                commands += [
                    ("vips tiffsave --tile --pyramid", [vips, "tiffsave", str(source), f"{out}.vips.tif", "--tile",
                                                        "--pyramid", "--bigtiff", *tiles]),
                    ("vips tiffsave --pyramid deflate", [vips, "tiffsave", str(source), f"{out}.vipsz.tif", "--tile",
                                                         "--pyramid", "--bigtiff", "--compression", "deflate", *tiles]),
                    ("vips dzsave", [vips, "dzsave", str(source), f"{out}.dz", "--tile-size", str(TILE),
                                     "--overlap", "0", "--region-shrink", "max"]),
                ]
            wall: dict[str, float] = {}
            for what, command in commands:
                seconds, cpu, rss = measure(command)
                outputs = [p for p in work.iterdir() if p.name.startswith(out.name)]
                written = sum(size_of(p) for p in outputs)
                rows.append((label, what, seconds, cpu, rss, written))
                wall[what] = seconds
                if what == "vips tiffsave --tile --pyramid":  # poolcli fsyncs every output before its commit
                    started = time.perf_counter()
                    descriptor = os.open(outputs[0], os.O_RDONLY)
                    os.fsync(descriptor)
                    os.close(descriptor)
                    seconds += time.perf_counter() - started
                    rows.append((label, f"{what}, then fsync", seconds, cpu, rss, written))
                    wall[f"{what}, then fsync"] = seconds
                print(f"{label:24} {what:40} {seconds:7.2f} s {cpu:7.2f} s CPU {rss:8.0f} MiB "
                      f"{written / 2**20:8.0f} MiB", file=sys.stderr)
                if what.startswith("poolcli") and rss > RSS_TARGET_MIB:
                    failures.append(f"{label} {what}: peak RSS {rss:.0f} MiB > {RSS_TARGET_MIB} MiB")
                for p in outputs:
                    p.unlink() if p.is_file() else shutil.rmtree(p, ignore_errors=True)
            if vips:
                base = wall["vips tiffsave --tile --pyramid"]
                for what, target in (("poolcli pyramid max (OME-TIFF)", PYRAMID_TIFF_TARGET),
                                     ("poolcli pyramid max (OME-Zarr)", PYRAMID_ZARR_TARGET)):
                    if wall[what] / base > target:
                        synced = wall[what] / wall["vips tiffsave --tile --pyramid, then fsync"]
                        failures.append(f"{label} {what}: {wall[what] / base:.2f}x vips tiffsave's time > {target}x "
                                        f"({synced:.2f}x with its fsync)")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="shrink both image sides (quick tries)")
    parser.add_argument("--workdir", help="where to generate (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    parser.add_argument("--no-pyramid", action="store_true", help="no pyramid cases")
    parser.add_argument("--pyramid-only", action="store_true", help="only the pyramid cases")
    parser.add_argument("--size", type=int, nargs="+", default=[16384, 32768], metavar="N",
                        help="sides of the pyramid cases' RGB images (the OME-TIFF's are half) [16384 32768]")
    common.add_record_option(parser)
    args = parser.parse_args()

    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_big."))
    work.mkdir(parents=True, exist_ok=True)
    side = lambda n: max(TILE, int(n * args.scale) // 16 * 16)
    images = [] if args.pyramid_only else [("rgb8", side(32768), 3, np.uint8), ("gray16", side(20000), 1, np.uint16)]
    poolcli = [sys.executable, "-m", "poolcli"]
    vips = shutil.which("vips")
    if vips is None:
        print("vips is not on PATH (apt-get install libvips-tools): no libvips comparison", file=sys.stderr)
    rows: list[tuple[str, str, float, float, int]] = []
    failures: list[str] = []
    try:
        for name, n, channels, dtype in images:
            source = work / f"{name}.tif"
            if not source.exists():
                started = time.perf_counter()
                make_tiff(source, n, n, channels, np.dtype(dtype))
                print(f"generated {source.name}: {n}x{n}x{channels} {np.dtype(dtype).name}, "
                      f"{size_of(source) / 2**30:.2f} GiB in {time.perf_counter() - started:.1f} s", file=sys.stderr)
            warm(source)  # every command then starts from the same (cached) file
            label = f"{name} {n}x{n}x{channels}"
            commands = [(f"poolcli {op} -k 2", [*poolcli, op, str(source), "-k", "2", "-q", "-o",
                                                str(work / f"{name}.{op}.tif")]) for op in ("max", "avg")]
            if vips:
                commands.append(("vips shrink 2 2", [vips, "shrink", str(source),
                                                     f"{work / (name + '.vips.tif')}[tile,bigtiff]", "2", "2"]))
            timings: dict[str, float] = {}
            for what, command in commands:
                seconds, rss = run(command)
                output = Path(command[3].split("[")[0]) if what.startswith("vips") else Path(command[-1])
                rows.append((label, what, seconds, rss, size_of(output)))
                timings[what] = seconds
                print(f"{label:24} {what:32} {seconds:7.2f} s {rss:8.0f} MiB", file=sys.stderr)
                if what.startswith("poolcli") and name == "rgb8" and rss > RSS_TARGET_MIB:
                    failures.append(f"{label} {what}: peak RSS {rss:.0f} MiB > {RSS_TARGET_MIB} MiB")
                output.unlink() if output.is_file() else shutil.rmtree(output, ignore_errors=True)
            if vips:
                for op in ("max", "avg"):
                    ratio = timings[f"poolcli {op} -k 2"] / timings["vips shrink 2 2"]
                    if ratio > TIME_RATIO_TARGET:
                        failures.append(f"{label} poolcli {op}: {ratio:.2f}x libvips's time > {TIME_RATIO_TARGET}x")
        pyramid_rows = [] if args.no_pyramid else pyramid_cases(work, args.size, vips, poolcli, failures)
    finally:
        if not args.keep and not args.workdir:
            shutil.rmtree(work, ignore_errors=True)

    header = "| image | command | wall s | peak RSS MiB | output MiB |\n|---|---|---:|---:|---:|"
    table = "\n".join(f"| {label} | `{what}` | {seconds:.2f} | {rss:.0f} | {size / 2**20:.0f} |"
                      for label, what, seconds, rss, size in rows)
    if rows:
        print(header)
        print(table)
    if pyramid_rows:
        pyramid_table = ("| image | command | wall s | CPU s | peak RSS MiB | output MiB |\n"
                         "|---|---|---:|---:|---:|---:|\n"
                         + "\n".join(f"| {label} | `{what}` | {seconds:.2f} | {cpu:.2f} | {rss:.0f} | "
                                     f"{size / 2**20:.1f} |" for label, what, seconds, cpu, rss, size in pyramid_rows))
        print(pyramid_table)
        table = (f"{header}\n{table}\n\n" if rows else "") + pyramid_table
        header = ""
    verdict = "all targets met" if not failures else "; ".join(failures)
    print(verdict)
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    scale = "" if args.scale == 1.0 else f", --scale {args.scale}"
    if args.record:
        common.record(f"\n## bench_big.py, {when} ({machine}{scale}; vips: {vips or 'not installed'})\n\n"
                      f"{header}\n{table}\n\n{verdict}\n".replace("\n\n\n", "\n"), args.record)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
