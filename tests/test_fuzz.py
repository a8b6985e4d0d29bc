"""A seeded fuzz smoke test: mutated files of every format through ``max`` and ``avg``.

Each case must end in exit 0 (a whole output that re-opens, nothing on stderr) or exit 1 (exactly
one stderr line naming the input and saying what is wrong, no output); never a traceback, never a
temporary file left, and the input is never changed.  In-process through Click's runner, so a few hundred cases take
seconds; CI=true runs more.  The seed is fixed: a failure is reproducible.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CASES = 3000 if os.environ.get("CI") == "true" else 300
SEED = 20261202
# Small limit: a header mutated to claim a huge image is refused fast instead of allocated.
MAX_PIXELS = "1000000"
PARAMETERS = [
    ("max", "-k", "2"),
    ("max", "-k", "3", "-s", "1", "-p", "1", "--ceil-mode"),
    ("max", "-k", "2", "-d", "2"),
    ("avg", "-k", "2"),
    ("avg", "-k", "3", "-s", "2", "-p", "1", "--no-count-include-pad"),
    ("avg", "-k", "2", "--divisor-override", "3"),
]


def seeds() -> dict[str, bytes]:
    """One small valid file per format and a few modes: what the mutations start from."""
    rng = np.random.default_rng(SEED)
    rgb = rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)
    rgba = rng.integers(0, 256, (10, 12, 4), dtype=np.uint8)
    files: dict[str, bytes] = {}

    def save(name: str, image: Image.Image, **options) -> None:
        buffer = io.BytesIO()
        image.save(buffer, format=options.pop("format"), **options)
        files[name] = buffer.getvalue()

    save("rgb.png", Image.fromarray(rgb), format="PNG")
    save("rgba.png", Image.fromarray(rgba), format="PNG")
    save("gray16.png", Image.fromarray(rng.integers(0, 65536, (10, 12), dtype=np.uint16)), format="PNG")
    save("palette.png", Image.fromarray(rgb).convert("P"), format="PNG")
    save("photo.jpg", Image.fromarray(rgb), format="JPEG", quality=90)
    frames = [Image.fromarray(rgb).convert("P"), Image.fromarray(rgb[::-1]).convert("P")]
    save("anim.gif", frames[0], format="GIF", save_all=True, append_images=frames[1:], duration=[50, 70], loop=0)
    save("rgb.tif", Image.fromarray(rgb), format="TIFF")
    save("float.tif", Image.fromarray(rng.random((10, 12), dtype=np.float32)), format="TIFF")
    save("rgb.bmp", Image.fromarray(rgb), format="BMP")
    save("rgba.webp", Image.fromarray(rgba), format="WEBP", lossless=True)
    for name, array in (("f32.npy", rng.random((2, 10, 12), dtype=np.float32)),
                        ("u8.npy", rng.integers(0, 256, (10, 12), dtype=np.uint8)),
                        ("i64.npy", rng.integers(-99, 99, (1, 2, 6, 7), dtype=np.int64))):
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        files[name] = buffer.getvalue()
    return files


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """A truncation, some bit flips, or a changed header field."""
    kind = rng.integers(3)
    if kind == 0:
        return data[:rng.integers(1, len(data))]
    buffer = bytearray(data)
    if kind == 1:
        for _ in range(rng.integers(1, 9)):
            position = rng.integers(len(buffer))
            buffer[position] ^= 1 << int(rng.integers(8))
        return bytes(buffer)
    header = min(len(buffer), 128)  # sizes, counts, offsets, dtypes: where parsers trust the file
    start = int(rng.integers(header))
    width = int(rng.integers(1, 5))
    value = rng.choice([b"\xff" * width, b"\x00" * width, b"\x7f" + b"\xff" * (width - 1),
                        bytes(rng.integers(0, 256, width, dtype=np.uint8))])
    buffer[start:start + width] = value
    return bytes(buffer)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def reopen(path: Path) -> None:
    if path.suffix == ".npy":
        np.load(path, allow_pickle=False)
    else:
        with Image.open(path) as image:
            image.load()


def test_mutated_files_exit_cleanly(invoke, tmp_path):
    rng = np.random.default_rng(SEED)
    originals = list(seeds().items())
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    out.mkdir()
    problems = []
    for case in range(CASES):
        name, data = originals[case % len(originals)]
        source = inputs / f"{case:04d}-{name}"
        source.write_bytes(mutate(data, rng))
        before = digest(source)
        target = out / source.name
        operation, *options = PARAMETERS[int(rng.integers(len(PARAMETERS)))]
        result = invoke(operation, f"in/{source.name}", *options, "-o", f"out/{source.name}", "-q",
                        "--max-pixels", MAX_PIXELS)
        lines = result.stderr.splitlines()
        where = f"case {case} ({name}, {operation} {' '.join(options)})"
        if result.exit_code == 0:
            if lines or not target.exists():
                problems.append(f"{where}: exit 0 but stderr {lines!r}, output exists: {target.exists()}")
            else:
                try:
                    reopen(target)
                except Exception as error:
                    problems.append(f"{where}: exit 0 but the output does not re-open: {error!r}")
        elif result.exit_code == 1:
            prefix = f"poolcli: error: in/{source.name}: "
            if len(lines) != 1 or not lines[0].startswith(prefix):
                problems.append(f"{where}: exit 1 with stderr {lines!r}")
            elif lines[0][len(prefix):].startswith("unexpected"):  # a bare exception text, not a reason
                problems.append(f"{where}: {lines[0]}")
            if target.exists():
                problems.append(f"{where}: exit 1 but an output was left")
        else:
            problems.append(f"{where}: exit {result.exit_code}, stderr {lines!r}")
        if digest(source) != before:
            problems.append(f"{where}: the input was changed")
        leftovers = [p.name for p in out.iterdir() if p.name.endswith(".part")]
        if leftovers:
            problems.append(f"{where}: temporary files left: {leftovers}")
        if target.exists():
            target.unlink()  # keep the folder small
    assert not problems, "\n".join(problems[:20])


@pytest.mark.parametrize("name", sorted(seeds()))
def test_unmutated_seeds_pool(invoke, tmp_path, name):
    """The starting files themselves are fine: the fuzz test mutates working files."""
    (tmp_path / name).write_bytes(seeds()[name])
    result = invoke("max", name, "-k", "2", "-o", f"out-{name}", "-q")
    assert result.exit_code == 0, result.stderr
    reopen(tmp_path / f"out-{name}")
