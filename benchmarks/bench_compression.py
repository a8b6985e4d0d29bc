"""PNG compression levels: encoding time and size of poolcli's PNG writer (poolcli/png.py:
NumPy filters, libdeflate) on a real photograph, a photo-like image, a screenshot and clip art,
against Pillow's encoder at its default level (6) and at level 2 (poolcli's writer before), and
libvips's ``pngsave``.

Usage: python benchmarks/bench_compression.py [--repeats 3] [--record [FILE]]

Chooses poolcli's default ``--compression``: the fastest level whose files are at most 10%
larger than Pillow's default level on the photographs and at most 35% larger on the screenshot
and clip art (flat images are small either way).  Exits 1 when poolcli's default
(``formats.DEFAULT_COMPRESSION``) is not that level.
"""

from __future__ import annotations

import argparse
import io
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
import numpy as np
from PIL import Image

from poolcli import formats, png

LEVELS = range(10)
PILLOW_DEFAULT = 6
PHOTO_SLACK, FLAT_SLACK = 1.10, 1.35


def encode_seconds(array: np.ndarray, level: int, repeats: int, pillow: bool = False) -> tuple[float, int]:
    """(median CPU seconds, bytes) of writing ``array`` as PNG at ``level``: poolcli's writer, or Pillow's."""
    img = Image.fromarray(array) if pillow else None
    pixels = array if array.ndim == 3 else array[..., None]
    times, size = [], 0
    for _ in range(repeats):
        buffer = io.BytesIO()
        started = time.process_time()  # CPU time: encoding is one thread, and this shared machine is busy
        if img is not None:
            img.save(buffer, "PNG", compress_level=level)
        else:
            png.write(buffer, pixels, level)
        times.append(time.process_time() - started)
        size = buffer.tell()
    return statistics.median(times), size


def vips_pngsave(array: np.ndarray, folder: Path, repeats: int) -> tuple[float, int] | None:
    """libvips's own default PNG writer, from its native format (loading a .v is a memory map)."""
    vips = common.tool("vips")
    if vips is None:
        return None
    raw, native, out = folder / "in.png", folder / "in.v", folder / "vips.png"
    common.save_png(array, raw, level=0)
    subprocess.run([vips, "copy", str(raw), str(native)], check=True)
    baseline = [common.cpu_seconds([vips, "copy", str(native), str(folder / "copy.v")]) for _ in range(repeats)]
    times = [common.cpu_seconds([vips, "pngsave", str(native), str(out)]) for _ in range(repeats)]
    # The start-up and load of vips itself (a copy to .v) is not encoding.
    return max(statistics.median(times) - statistics.median(baseline), 0.0), out.stat().st_size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    common.add_record_option(parser)
    args = parser.parse_args()
    subjects = {
        "photograph 2048x2048": (common.real_photo(2048, 2048), True),
        "photo-like 2048x2048": (common.photo(2048), True),
        "screenshot 1920x1080": (common.screenshot(1920, 1080), False),
        "clip art (present.png)": (common.clip_art(), False),
    }
    table: dict[str, dict[int | str, tuple[float, int]]] = {}
    with tempfile.TemporaryDirectory() as folder:
        for name, (array, _) in subjects.items():
            table[name] = {level: encode_seconds(array, level, args.repeats) for level in LEVELS}
            table[name]["Pillow 6"] = encode_seconds(array, PILLOW_DEFAULT, args.repeats, pillow=True)
            table[name]["Pillow 2"] = encode_seconds(array, 2, args.repeats, pillow=True)
            found = vips_pngsave(array, Path(folder), args.repeats)
            if found:
                table[name]["vips"] = found

    print(f"PNG encoding, median of {args.repeats} (CPU seconds / size in KiB; poolcli's writer at levels 0-9, "
          "Pillow's at its default 6 and at 2):")
    print(f"  {'level':>6s} " + " ".join(f"{name:>26s}" for name in subjects))
    for level in [*LEVELS, "Pillow 6", "Pillow 2", "vips"]:
        cells = []
        for name in subjects:
            if level in table[name]:
                seconds, size = table[name][level]
                cells.append(f"{seconds:8.3f} s {size / 1024:9.0f} KiB")
            else:
                cells.append(f"{'(vips not installed)':>26s}")
        print(f"  {level!s:>6s} " + " ".join(f"{cell:>26s}" for cell in cells))

    def acceptable(level: int) -> bool:
        return all(table[name][level][1] <= table[name]["Pillow 6"][1] * (PHOTO_SLACK if is_photo else FLAT_SLACK)
                   for name, (_, is_photo) in subjects.items())

    def total_time(level: int) -> float:
        return sum(table[name][level][0] for name in subjects)

    chosen = min((level for level in LEVELS if level > 0 and acceptable(level)), key=total_time)
    def pillow_time(level: str) -> float:
        return sum(table[name][level][0] for name in subjects)

    speedup = pillow_time("Pillow 6") / total_time(chosen)
    growth = max(table[name][chosen][1] / table[name]["Pillow 6"][1] for name in subjects)
    print(f"\nchosen level {chosen}: {speedup:.1f}x faster than Pillow's level 6 in total "
          f"({pillow_time('Pillow 2') / total_time(chosen):.1f}x faster than Pillow's level 2), files at most "
          f"{(growth - 1) * 100:.0f}% larger; poolcli's default: {formats.DEFAULT_COMPRESSION}")
    ok = chosen == formats.DEFAULT_COMPRESSION
    if args.record:
        figures = "; ".join(
            f"{name}: L{chosen} {table[name][chosen][0]:.3f} s {table[name][chosen][1] // 1024} KiB, "
            f"Pillow L6 {table[name]['Pillow 6'][0]:.3f} s {table[name]['Pillow 6'][1] // 1024} KiB"
            + (f", vips {table[name]['vips'][0]:.3f} s {table[name]['vips'][1] // 1024} KiB" if "vips" in table[name]
               else "")
            for name in subjects)
        verdict = f"default level {formats.DEFAULT_COMPRESSION} is the measured choice ({chosen}): " + (
            "met" if ok else "MISSED")
        common.append_result("bench_compression", figures, verdict,
                             (("libvips", common.tool_version(["vips", "--version"])),) if common.tool("vips") else (),
                             results=args.record)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
