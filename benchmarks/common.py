"""What every benchmark shares: the test images, child processes measured for wall time and peak
memory, the machine's description, and the dated sections of ``benchmarks/RESULTS.md``.

A benchmark prints its figures; it writes them to RESULTS.md only when run with ``--record``
(:func:`add_record_option`), so that running one leaves the checkout as it was.

Benchmarks run the working tree, not an installed poolcli: :data:`ROOT` goes first on
``sys.path`` here and on ``PYTHONPATH`` for every child (:func:`child_env`).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

SAMPLES = ROOT / "samples"
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
RESULTS_TITLE = "# Benchmark results\n\nAppended by the benchmarks run with --record; newest last.\n"


# --------------------------------------------------------------------------- images


def photo(size: int, seed: int = 0) -> np.ndarray:
    """A photo-like RGB image: smooth colour waves with sensor-like noise (no real photo is that large
    in the repository; noise is what makes photos hard to compress)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    planes = [128 + 100 * np.sin(6 * x + 3 * c) * np.cos(4 * y - c) for c in range(3)]
    pixels = np.stack(planes, axis=-1) + rng.normal(0, 6, (size, size, 3)).astype(np.float32)
    return np.clip(pixels, 0, 255).astype(np.uint8)


def real_photo(width: int, height: int) -> np.ndarray:
    """The bundled photograph (samples/grace_hopper.jpg), mirrored and tiled to ``width`` x ``height``:
    a real photo's local statistics, which is what zlib sees."""
    with Image.open(SAMPLES / "grace_hopper.jpg") as img:
        tile = np.asarray(img.convert("RGB"))
    tile = np.concatenate([tile, tile[:, ::-1]], axis=1)
    tile = np.concatenate([tile, tile[::-1]], axis=0)
    reps = (-(-height // tile.shape[0]), -(-width // tile.shape[1]), 1)
    return np.ascontiguousarray(np.tile(tile, reps)[:height, :width])


def clip_art() -> np.ndarray:
    """The bundled clip art (samples/present.png), as RGBA."""
    with Image.open(SAMPLES / "present.png") as img:
        return np.asarray(img.convert("RGBA"))


def screenshot(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A screenshot-like RGB image: flat window chrome, panels, buttons and lines of small text."""
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", (width, height), (243, 243, 243))
    draw = ImageDraw.Draw(img)
    draw.rectangle((0, 0, width, 28), fill=(52, 57, 66))  # title bar
    for i in range(3):
        draw.ellipse((8 + 20 * i, 8, 20 + 20 * i, 20), fill=[(237, 106, 94), (245, 191, 79), (98, 197, 84)][i])
    sidebar = width // 5
    draw.rectangle((0, 28, sidebar, height), fill=(226, 229, 233))
    for row, top in enumerate(range(40, height - 20, 22)):
        draw.text((12, top), f"Folder {row:03d}", fill=(40, 40, 40))
    top = 40
    while top < height - 30:
        if rng.random() < 0.15:  # a button row
            for left in range(sidebar + 16, width - 120, 140):
                draw.rounded_rectangle((left, top, left + 120, top + 24), 5, fill=(0, 120, 215))
                draw.text((left + 14, top + 6), "Button", fill=(255, 255, 255))
            top += 34
            continue
        vocabulary = ["lorem", "ipsum", "dolor", "sit", "amet", "consectetur"]
        words = " ".join(vocabulary[k] for k in rng.integers(0, 6, 14))
        draw.text((sidebar + 16, top), words, fill=(30, 30, 30))
        top += 16
    return np.asarray(img)


def save_png(array: np.ndarray, path: Path, level: int = 1) -> Path:
    Image.fromarray(array).save(path, compress_level=level)
    return path


def save_jpeg(array: np.ndarray, path: Path, quality: int = 92) -> Path:
    Image.fromarray(array).save(path, quality=quality)
    return path


# --------------------------------------------------------------------------- child processes


def child_env() -> dict[str, str]:
    """The environment of every child: this working tree first on PYTHONPATH, and bytecode caching
    on (PYTHONDONTWRITEBYTECODE would make every run compile poolcli again, as no installed copy does)."""
    env = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}
    old = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + old if old else "")
    return env


def run(command: Sequence[str]) -> tuple[float, int]:
    """Wall time (s) and peak resident memory (KiB) of one child process, which must succeed."""
    started = time.perf_counter()
    process = subprocess.Popen(list(command), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=child_env())
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    errors = process.stderr.read().decode(errors="replace") if process.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(command)}\n{errors}")
    return elapsed, usage.ru_maxrss


def cpu_seconds(command: Sequence[str]) -> float:
    """User + system CPU time of one child process, which must succeed (steadier than wall time
    on a busy machine, for work on one thread)."""
    process = subprocess.Popen(list(command), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=child_env())
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(command)}")
    return usage.ru_utime + usage.ru_stime


def median_runs(commands: dict[str, Sequence[str]], repeats: int) -> dict[str, tuple[float, int]]:
    """Each command ``repeats`` times, interleaved (after one untimed warm-up each): the median
    wall time and the largest peak memory of each."""
    for command in commands.values():
        run(command)
    times: dict[str, list[float]] = {name: [] for name in commands}
    peaks: dict[str, int] = dict.fromkeys(commands, 0)
    for _ in range(repeats):
        for name, command in commands.items():
            seconds, peak = run(command)
            times[name].append(seconds)
            peaks[name] = max(peaks[name], peak)
    return {name: (statistics.median(times[name]), peaks[name]) for name in commands}


def tool(name: str) -> str | None:
    """The path of an external program, or None (the caller says it is absent)."""
    return shutil.which(name)


# --------------------------------------------------------------------------- results


def versions(*extra: tuple[str, str]) -> str:
    from importlib import metadata

    import PIL

    import poolcli

    parts = [f"poolcli {poolcli.__version__}", f"Python {platform.python_version()}", f"NumPy {np.__version__}",
             f"Pillow {PIL.__version__}", f"Click {metadata.version('click')}"]  # click.__version__ is deprecated
    return ", ".join(parts + [f"{name} {version}" for name, version in extra])


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = f", load {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    return f"{platform.system()} {platform.machine()}, {cpu}, {os.cpu_count()} CPUs{load}"


def add_record_option(parser: argparse.ArgumentParser) -> None:
    """``--record [FILE]``: append the run's figures to benchmarks/RESULTS.md, or to FILE.  Without
    it a benchmark only prints (``args.record`` is None)."""
    parser.add_argument("--record", nargs="?", type=Path, const=RESULTS, default=None, metavar="FILE",
                        help="append the figures to benchmarks/RESULTS.md (or FILE); without it nothing is written")


def record(section: str, results: Path = RESULTS) -> None:
    """Append one section (Markdown, starting with a blank line) to ``results``, created with its
    title when missing."""
    new = not results.exists()
    with results.open("a") as handle:
        if new:
            handle.write(RESULTS_TITLE)
        handle.write(section)


def append_result(benchmark: str, figures: str, verdict: str, extra_versions: tuple[tuple[str, str], ...] = (),
                  results: Path = RESULTS) -> None:
    """Add one dated section to ``results`` (:func:`record`): the machine, the versions, the
    figures (``"; "`` between them) and the verdict on each target."""
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")
    lines = [f"\n## {benchmark}.py, {date} UTC\n", f"- machine: {machine()}",
             f"- versions: {versions(*extra_versions)}", *(f"- {part.strip()}" for part in figures.split("; ")),
             f"- targets: {verdict}"]
    record("\n".join(lines) + "\n", results)


def tool_version(command: Sequence[str]) -> str:
    try:
        out = subprocess.run(list(command), capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return "?"
    found = re.search(r"\d+\.\d+[\w.\-]*", out)  # "vips-8.14.1", "Version: ImageMagick 6.9.11-60 Q16"
    return found.group(0) if found else "?"
