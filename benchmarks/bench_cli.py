"""The whole command, end to end: start-up, and halving images beside libvips, ImageMagick and Pillow.

Usage: python benchmarks/bench_cli.py [--repeats 5] [--size 4096] [--before DIR] [--record [FILE]]

1. Start-up: ``poolcli --version`` and ``--help`` (neither imports NumPy, Pillow or Rich) next
   to ``python -c "import click"``: median wall time of fresh processes.
2. Halving (a 2x2 box average) of a SIZE x SIZE photo-like PNG, the same as JPEG (quality 92,
   written at 92 by every tool), as a 16-bit RGB PNG, and a 640x480 PNG: ``poolcli avg -k 2``,
   ``vips shrink IN OUT 2 2``, ImageMagick ``convert IN -scale 50% OUT`` (each when installed;
   the table says when one is not) and Pillow's open/reduce(2)/save at poolcli's PNG level (not
   for 16-bit colour, which Pillow reads as 8-bit).  With ``--before DIR``, also poolcli from
   another checkout (an older commit), side by side.  Median wall time (interleaved runs), peak
   resident memory of the process, output size.

Targets (exit 1 when one is missed; ``--record`` appends the figures to benchmarks/RESULTS.md):
- the SIZE PNG: poolcli at most 1.0x the wall time of ``vips shrink``, output no larger;
- the 640x480 PNG: poolcli within 1.5x of ``python -c "import numpy, PIL.Image"``;
- the SIZE PNG: poolcli within 1.2x Pillow's time and 1.5x its memory;
- the SIZE 16-bit PNG: at most 1.1x the wall time of ``vips shrink``; the SIZE JPEG: at most 1.15x.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
import numpy as np
from PIL import Image

from poolcli import formats

PYTHON = sys.executable
# What the installed ``poolcli`` script runs (``python -m`` would add runpy's imports), on the working tree.
POOLCLI = [PYTHON, "-c", "import sys\nfrom poolcli.cli import main\nsys.argv[0] = 'poolcli'\nmain()"]


def startup(repeats: int) -> dict[str, float]:
    commands = {
        "python -c 'import click'": [PYTHON, "-c", "import click"],
        "poolcli --version": [*POOLCLI, "--version"],
        "poolcli --help": [*POOLCLI, "--help"],
        "poolcli max --help": [*POOLCLI, "max", "--help"],
    }
    timed = common.median_runs(commands, repeats)
    print("start-up (median of fresh processes):")
    for name, (seconds, _) in timed.items():
        print(f"  {name:28s} {seconds * 1000:7.1f} ms")
    check = subprocess.run(
        [PYTHON, "-c", "import sys; sys.argv=['poolcli','--help']\nfrom poolcli import cli\n"
                       "try: cli.cli.main(prog_name='poolcli')\n"  # the group: main() would os._exit first
                       "except SystemExit: pass\nprint(sorted(m for m in ('numpy','PIL','rich') if m in sys.modules))"],
        capture_output=True, text=True, check=True, env=common.child_env())
    print(f"  modules loaded by --help among numpy, PIL, rich: {check.stdout.strip().splitlines()[-1]}")
    return {name: seconds for name, (seconds, _) in timed.items()}


def halving_commands(source: Path, folder: Path, before: Path | None = None) -> dict[str, tuple[list[str], Path]]:
    """Each tool's command to halve ``source``, and where it writes (same format as the input)."""
    suffix = source.suffix
    names = ("poolcli", "before", "vips", "magick", "pillow")
    out = {name: folder / f"{source.stem}.{name}{suffix}" for name in names}
    commands: dict[str, tuple[list[str], Path]] = {
        "poolcli": ([*POOLCLI, "avg", str(source), "-k", "2", "-o", str(out["poolcli"]), "-q", "--max-pixels", "0"],
                    out["poolcli"]),
    }
    if before is not None:  # run inside it: python -c puts the current folder first on the path
        place = str(before.resolve())
        commands["before"] = (["env", "-C", place, f"PYTHONPATH={place}", *commands["poolcli"][0][:-4],
                               str(out["before"]), "-q", "--max-pixels", "0"], out["before"])
    vips = common.tool("vips")
    if vips:
        target = f"{out['vips']}[Q=92]" if suffix == ".jpg" else str(out["vips"])
        commands["vips"] = ([vips, "shrink", str(source), target, "2", "2"], out["vips"])
    magick = common.tool("magick") or common.tool("convert")
    if magick:
        quality = ["-quality", "92"] if suffix == ".jpg" else []
        commands["magick"] = ([magick, str(source), "-scale", "50%", *quality, str(out["magick"])], out["magick"])
    if "16" not in source.stem:  # Pillow reads 16-bit colour as 8-bit: not the same work
        save = f"compress_level={formats.DEFAULT_COMPRESSION}" if suffix == ".png" else "quality=92"
        commands["pillow"] = ([PYTHON, "-c", "import sys\nfrom PIL import Image\nImage.MAX_IMAGE_PIXELS = None\n"
                                             f"Image.open(sys.argv[1]).reduce(2).save(sys.argv[2], {save})",
                               str(source), str(out["pillow"])], out["pillow"])
    return commands


def halving(name: str, source: Path, folder: Path, repeats: int,
            before: Path | None = None) -> dict[str, tuple[float, int, int]]:
    """(median wall s, peak KiB, output bytes) of each tool on one image."""
    commands = halving_commands(source, folder, before)
    timed = common.median_runs({tool: command for tool, (command, _) in commands.items()}, repeats)
    figures = {tool: (*timed[tool], commands[tool][1].stat().st_size) for tool in commands}
    print(f"\n{name} -> half size (median of {repeats}, interleaved):")
    print(f"  {'':34s} {'wall s':>8s} {'peak MiB':>9s} {'output KiB':>11s}")
    labels = {"poolcli": "poolcli avg -k 2", "before": "poolcli avg -k 2 (--before)", "vips": "vips shrink 2 2",
              "magick": "ImageMagick -scale 50%", "pillow": "Pillow open/reduce(2)/save"}
    for tool, (seconds, peak, size) in figures.items():
        print(f"  {labels[tool]:34s} {seconds:8.3f} {peak / 1024:9.1f} {size / 1024:11.0f}")
    for tool in ("vips", "magick"):
        if tool not in figures:
            package = "libvips-tools" if tool == "vips" else "imagemagick"
            print(f"  {labels[tool]:34s} (not installed: apt-get install {package})")
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--before", type=Path, metavar="DIR", help="another poolcli checkout, run side by side")
    common.add_record_option(parser)
    parser.add_argument("--make-images", metavar="DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.make_images:
        folder = Path(args.make_images)
        big = common.photo(args.size)
        common.save_png(big, folder / "big.png")
        common.save_jpeg(big, folder / "big.jpg")
        common.save_png(common.real_photo(640, 480), folder / "small.png")
        import imagecodecs  # Pillow cannot write 16-bit colour

        rng = np.random.default_rng(1)  # 16 bits of which the low 8 are noise, as a raw photo's
        deep = big.astype(np.uint16) * 257 + rng.integers(0, 256, big.shape, dtype=np.uint16) // 2
        (folder / "big16.png").write_bytes(imagecodecs.png_encode(deep, level=formats.DEFAULT_COMPRESSION))
        return 0

    starts = startup(max(args.repeats, 7))
    results: dict[str, dict[str, tuple[float, int, int]]] = {}
    same: dict[str, bool] = {}
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        # In a child: a child's peak memory counts the resident memory of the process that forked it.
        subprocess.run([PYTHON, __file__, "--make-images", name, "--size", str(args.size)], check=True)
        subjects = {f"{args.size}x{args.size} PNG": folder / "big.png",
                    f"{args.size}x{args.size} JPEG": folder / "big.jpg", "640x480 PNG": folder / "small.png",
                    f"{args.size}x{args.size} 16-bit RGB PNG": folder / "big16.png"}
        for label, source in subjects.items():
            results[label] = halving(label, source, folder, args.repeats, args.before)
        baseline = common.median_runs({"import": [PYTHON, "-c", "import numpy, PIL.Image"]}, args.repeats)
        import_seconds = baseline["import"][0]
        for label, source in subjects.items():  # after the timing: the images would swell this process
            if source.suffix == ".png" and "pillow" in results[label]:
                ours, theirs = (folder / f"{source.stem}.{tool}.png" for tool in ("poolcli", "pillow"))
                same[label] = np.array_equal(np.asarray(Image.open(ours)), np.asarray(Image.open(theirs)))
    print(f"\npython -c 'import numpy, PIL.Image': {import_seconds:.3f} s")
    for label, equal in same.items():
        print(f"{label}: poolcli's pixels equal Pillow's reduce(2): {equal}")

    big_png = results[f"{args.size}x{args.size} PNG"]
    small = results["640x480 PNG"]
    checks: list[tuple[str, bool | None]] = []
    if "vips" in big_png:
        time_ratio = big_png["poolcli"][0] / big_png["vips"][0]
        checks.append((f"{args.size} PNG time / vips shrink {time_ratio:.2f} (<= 1.0)", time_ratio <= 1.0))
        checks.append((f"{args.size} PNG output {big_png['poolcli'][2] / 1024:.0f} KiB vs vips "
                       f"{big_png['vips'][2] / 1024:.0f} KiB (no larger)", big_png["poolcli"][2] <= big_png["vips"][2]))
    else:
        checks.append(("vips shrink not installed: the vips targets were not measured", None))
    small_ratio = small["poolcli"][0] / import_seconds
    checks.append((f"640x480 PNG time / import numpy, PIL.Image {small_ratio:.2f} (<= 1.5)", small_ratio <= 1.5))
    pillow_time = big_png["poolcli"][0] / big_png["pillow"][0]
    pillow_memory = big_png["poolcli"][1] / big_png["pillow"][1]
    checks.append((f"{args.size} PNG time / Pillow {pillow_time:.2f} (<= 1.2)", pillow_time <= 1.2))
    checks.append(("poolcli's PNG pixels equal Pillow's reduce(2)", all(same.values())))
    checks.append((f"{args.size} PNG memory / Pillow {pillow_memory:.2f} (<= 1.5)", pillow_memory <= 1.5))

    for label, limit in ((f"{args.size}x{args.size} 16-bit RGB PNG", 1.1), (f"{args.size}x{args.size} JPEG", 1.15)):
        if "vips" in results[label]:
            ratio = results[label]["poolcli"][0] / results[label]["vips"][0]
            checks.append((f"{label} time / vips shrink {ratio:.2f} (<= {limit})", ratio <= limit))
    if args.before:
        for label, figures_of in results.items():
            print(f"{label}: poolcli time / --before {figures_of['poolcli'][0] / figures_of['before'][0]:.2f}, "
                  f"memory / --before {figures_of['poolcli'][1] / figures_of['before'][1]:.2f}")

    print("\ntargets:")
    for text, ok in checks:
        print(f"  {'met   ' if ok else 'MISSED' if ok is False else 'n/a   '} {text}")
    missed = any(ok is False for _, ok in checks)

    if args.record:
        figures = [", ".join(f"{name} {seconds * 1000:.0f} ms" for name, seconds in starts.items())]
        for label, figures_of in results.items():
            figures.append(f"{label}: " + ", ".join(f"{tool} {s:.2f} s {p / 1024:.0f} MiB {b / 1024:.0f} KiB"
                                                    for tool, (s, p, b) in figures_of.items()))
        figures.append(f"import numpy, PIL.Image {import_seconds:.3f} s")
        extra = []
        if common.tool("vips"):
            extra.append(("libvips", common.tool_version(["vips", "--version"])))
        magick = common.tool("magick") or common.tool("convert")
        if magick:
            extra.append(("ImageMagick", common.tool_version([magick, "-version"])))
        common.append_result("bench_cli", "; ".join(figures),
                             "; ".join(f"{'met' if ok else 'MISSED' if ok is False else 'n/a'}: {text}"
                                       for text, ok in checks), tuple(extra), results=args.record)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
