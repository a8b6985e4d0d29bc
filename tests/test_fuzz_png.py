"""A differential fuzz test of PNG input (issue 19): wrong pixels never exit 0.

Seeded PNGs of every kind (gray 1 to 16 bits, gray with alpha, RGB and RGBA at 8 and 16 bits,
palettes of 1 to 8 bits, with or without a transparent value or colour, Adam7, IDAT chunks
split anywhere, EXIF and text before or after the image data), written by ``tests/pngkit.py``
(neither Pillow nor poolcli), and mutations of them (``pngkit.mutate``: 26 chunk-aware and
byte-level mutators), are pooled by the command, in-process, from a file or standard input, to a
file or standard output.  Each case must end in:

- exit 0, nothing on stderr, and exactly the pixels of the file's decode (Pillow's; libpng's for
  16-bit colour and for gray with a transparent value) pooled by ``tests/oracle.py``; or
- exit 1, one stderr line naming the input, no output and nothing on standard output.

A file Pillow refuses is never pooled, and an unmutated seed is never refused.  300 cases by
default, 4000 under CI=true; the seed is fixed: a failure names its case, which reruns alone
with ``FUZZ_PNG_CASE=N``.
"""

from __future__ import annotations

import io
import os
import random
import struct
import warnings
from pathlib import Path

import imagecodecs
import numpy as np
from PIL import Image

from . import oracle, pngkit
from .conftest import IN_CI

CASES = 4000 if IN_CI else 300
SEED = 19
MAX_PIXELS = "1000000"
KINDS = [("L", 1), ("L", 2), ("L", 4), ("L", 8), ("L", 16), ("LA", 8), ("LA", 16), ("RGB", 8), ("RGB", 16),
         ("RGBA", 8), ("RGBA", 16), ("P", 1), ("P", 2), ("P", 4), ("P", 8)]
# (op, k, s, p): every one tried in turn on an image it fits.
WINDOWS = [("max", 2, 2, 0), ("avg", 2, 2, 0), ("max", 3, 2, 1), ("avg", 2, 1, 0), ("max", 2, 1, 1),
           ("avg", 3, 3, 0), ("avg", 2, 1, 1), ("max", 1, 1, 0)]


def seed_png(rng: random.Random) -> bytes:
    """One valid PNG of a random kind, size and layout."""
    kind, depth = rng.choice(KINDS)
    height, width = rng.choice([1, 2, 3, 5, 8, 9, 16, 17, 24, 31]), rng.choice([1, 2, 3, 4, 7, 8, 15, 16, 33])
    top = (1 << depth) - 1
    values = np.random.default_rng(rng.randrange(1 << 30)).integers(
        0, top + 1, (height, width, 1 if kind == "P" else len(kind)))
    if rng.random() < 0.3:  # runs and flat areas, where filters and ties matter
        values[:, : width // 2] = values[0, 0]
    options: dict = {}
    if kind == "P":
        colours = rng.randint(int(values.max()) + 1, 1 << depth)
        options["palette"] = bytes(rng.randrange(256) for _ in range(3 * colours))
        if rng.random() < 0.4:
            options["trns"] = bytes(rng.randrange(256) for _ in range(rng.randint(1, colours)))
    elif kind in ("L", "RGB") and rng.random() < 0.3:  # one value or colour is transparent
        key = values[rng.randrange(height), rng.randrange(width)] if rng.random() < 0.8 else [top] * len(kind)
        options["trns"] = b"".join(int(v).to_bytes(2, "big") for v in key)
    options["interlace"] = rng.random() < 0.25
    split = rng.random()
    if split < 0.15:
        options["idat_sizes"] = [1]
    elif split < 0.45:
        options["idat_sizes"] = [rng.randint(1, 97), rng.randint(1, 400)]
    options["zero_idats"] = int(rng.random() < 0.1)
    pre, post = [], []
    if rng.random() < 0.15:
        exif = pngkit.chunk(b"eXIf", pngkit.exif_blob(rng.choice([1, 2, 3, 6, 8])))
        (pre if rng.random() < 0.7 else post).append(exif)
    if rng.random() < 0.2:
        pre.append(pngkit.chunk(b"tEXt", b"Comment\0hello"))
    if rng.random() < 0.1:
        post.append(pngkit.chunk(b"tEXt", b"After\0idat"))
    return pngkit.build_png(values, kind, depth, rng, filters=rng.choice([None, 0, 1, 2, 3, 4]),
                            level=rng.choice([0, 1, 6, 9]), pre=pre, post=post, **options)


def decoded(data: bytes) -> tuple[np.ndarray | None, int | None] | None:
    """(the (H, W, C) pixels poolcli pools, the EXIF orientation) by Pillow's decode, converted
    as poolcli documents (palette to RGB or RGBA, 1-bit to L, a transparent value to alpha; libpng
    for 16-bit colour and gray with a transparent value: Pillow reads the one as 8-bit and does
    not scale the other's value below 8 bits); None if Pillow refuses the file, pixels None if
    libpng refuses what Pillow reads."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as img:
                img.load()
                try:
                    orientation = img.getexif().get(0x0112)
                except Exception:  # a damaged EXIF block: poolcli keeps the pixels as stored
                    orientation = None
                depth, colour = (data[24], data[25]) if data[12:16] == b"IHDR" else (8, None)
                keyed = "transparency" in img.info and colour in (0, 2)
                if (depth == 16 and colour in (2, 4, 6)) or (keyed and colour == 0):
                    try:
                        pixels = imagecodecs.png_decode(data)
                    except Exception:  # libpng refuses what Pillow read: no reference
                        return None, orientation
                    return (pixels[..., None] if pixels.ndim == 2 else pixels), orientation
                if img.mode == "P":
                    img = img.convert("RGBA" if "transparency" in img.info else "RGB")
                elif img.mode == "1":
                    img = img.convert("L")
                elif keyed:
                    img = img.convert("RGBA")
                pixels = np.asarray(img)
                if img.mode.startswith("I;16"):
                    pixels = pixels.astype(np.uint16)
                return (pixels[..., None] if pixels.ndim == 2 else pixels), orientation
    except Exception:
        return None


# EXIF orientation -> how the stored pixels turn to be displayed (as the EXIF standard says).
TURNS = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
         5: lambda a: a.transpose(1, 0, 2), 6: lambda a: np.rot90(a, -1), 7: lambda a: np.rot90(a, -1)[::-1],
         8: lambda a: np.rot90(a, 1)}


def pooled(pixels: np.ndarray, op: str, k: int, s: int, p: int) -> np.ndarray:
    """The oracle's pooling of (H, W, C) pixels: torch's max, or the rounded average (alpha not
    premultiplied: the cases pass --no-premultiply)."""
    planes = pixels.transpose(2, 0, 1)[None]
    if op == "max":
        out = oracle.max_pool2d_ref(planes, (k, k), (s, s), (p, p), (1, 1), False)[0]
    else:
        out = oracle.avg_pool2d_ref(planes, (k, k), (s, s), (p, p), False, True, None, rounded=True)
    return out[0].transpose(1, 2, 0)


def run_case(invoke, folder: Path, case: int, originals: list[bytes]) -> list[str]:
    """One case; the problems found (none: it passed)."""
    rng = random.Random(f"{SEED}:{case}")
    source = originals[rng.randrange(len(originals))]
    mutated = rng.random() < 0.75
    data, mutation = pngkit.mutate(source, rng) if mutated else (source, "none")
    reference = decoded(data)
    height, width = (reference[0].shape[:2] if reference and reference[0] is not None else (3, 3))
    fitting = [w for w in WINDOWS if oracle.is_valid(height, width, (w[1],) * 2, (w[2],) * 2, (w[3],) * 2, (1, 1),
                                                      False)]
    op, k, s, p = rng.choice(fitting or WINDOWS)
    route = rng.choice(["file", "file", "stdout", "stdin"])
    name = f"{case:05d}.png"
    (folder / name).write_bytes(data)
    args = [op, "-" if route == "stdin" else name, "-k", str(k), "-s", str(s), "-p", str(p), "--max-pixels",
            MAX_PIXELS, "-q", *(["--no-premultiply"] if op == "avg" else [])]
    args += ["-o", "-", "--format", "png"] if route == "stdout" else ["-o", "out.png"]
    result = invoke(*args, input=data if route == "stdin" else None)
    where = f"case {case} ({mutation}; poolcli {' '.join(args)})"
    lines = result.stderr.splitlines()
    output = folder / "out.png"
    written = result.stdout_bytes if route == "stdout" else (output.read_bytes() if output.exists() else b"")
    leftovers = [p.name for p in folder.iterdir() if p.name.endswith(".part")]
    problems = [f"{where}: temporary files left: {leftovers}"] if leftovers else []
    for path in [output, folder / name, *(folder / n for n in leftovers)]:
        path.unlink(missing_ok=True)
    if result.exit_code == 1:
        shown = "-" if route == "stdin" else name
        if len(lines) != 1 or not lines[0].startswith(f"poolcli: error: {shown}: "):
            problems.append(f"{where}: exit 1 with stderr {lines!r}")
        if written:
            problems.append(f"{where}: exit 1 but {len(written)} bytes of output")
        if not mutated and reference is not None and fitting:
            problems.append(f"{where}: a valid file refused: {lines!r}")
        return problems
    if result.exit_code != 0:
        return [*problems, f"{where}: exit {result.exit_code}, stderr {lines!r}"]
    if lines or not written:
        problems.append(f"{where}: exit 0 with stderr {lines!r} and {len(written)} bytes of output")
    if reference is None:
        return [*problems, f"{where}: exit 0 for a file Pillow refuses"]
    if reference[0] is None or not written:
        return problems
    got = imagecodecs.png_decode(written)
    got = got[..., None] if got.ndim == 2 else got
    for pixels, orientation in [reference, *_other_readings(data)]:
        turns = [orientation] if orientation in TURNS else [None]
        if data.count(b"eXIf") > 1:  # which of two EXIF blocks counts is the decoder's choice
            turns = [None, *TURNS]
        for turn in turns:
            expected = pooled(np.ascontiguousarray(TURNS[turn](pixels)) if turn else pixels, op, k, s, p)
            if expected.shape == got.shape and expected.dtype == got.dtype and np.array_equal(expected, got):
                return problems
    return [*problems, f"{where}: exit 0 with other pixels than the reference: {got.shape} {got.dtype}, "
                       f"expected {expected.shape} {expected.dtype} (orientation {reference[1]})"]


def _other_readings(data: bytes) -> list[tuple[np.ndarray, int | None]]:
    """A tRNS chunk after the image data, or two of them, break the PNG rules: libpng takes the
    first before the image data, Pillow the last it reads; any one of them (or none) is a right
    reading, and refusing the file too."""
    parsed = pngkit.parse(data)
    if parsed is None:
        return []
    chunks, tail = parsed
    kinds = [kind for kind, _, _ in chunks]
    if b"IDAT" not in kinds or kinds.count(b"tRNS") == 0 or (
            kinds.count(b"tRNS") == 1 and kinds.index(b"tRNS") < kinds.index(b"IDAT")):
        return []
    others = [c for c in chunks if c[0] != b"tRNS"]
    first = [c[0] for c in others].index(b"IDAT")
    variants = [others] + [[*others[:first], c, *others[first:]] for c in chunks if c[0] == b"tRNS"]
    readings = [decoded(pngkit.assemble(variant, tail)) for variant in variants]
    return [reading for reading in readings if reading is not None and reading[0] is not None]


def test_png_pixels_are_the_references_or_refused(invoke, tmp_path):
    rng = random.Random(SEED)
    originals = [seed_png(rng) for _ in range(60)]
    only = os.environ.get("FUZZ_PNG_CASE")
    cases = [int(only)] if only else range(CASES)
    problems = [problem for case in cases for problem in run_case(invoke, tmp_path, case, originals)]
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems[:20])


def test_every_seed_kind_pools_to_the_reference(invoke, tmp_path):
    """The seeds themselves (every kind, unmutated) are read, and exactly: the fuzz test's base."""
    rng = random.Random(SEED)
    kinds = set()
    for index in range(60):
        data = seed_png(rng)
        kinds.add((data[24], data[25], b"tRNS" in data, data[28]))
        assert decoded(data) is not None
        (tmp_path / "in.png").write_bytes(data)
        result = invoke("max", "in.png", "-k", "1", "-o", "out.png", "-q", "--max-pixels", MAX_PIXELS)
        assert result.exit_code == 0, (index, result.stderr)
        pixels, orientation = decoded(data)
        got = imagecodecs.png_decode((tmp_path / "out.png").read_bytes())
        expected = TURNS[orientation](pixels) if orientation in TURNS else pixels
        assert np.array_equal(got.reshape(expected.shape), expected), index
    assert len({(depth, colour) for depth, colour, _, _ in kinds}) >= 12  # most kinds, by seed 19
    assert any(trns for _, colour, trns, _ in kinds if colour in (0, 2)) and any(il for *_, il in kinds)


def test_header_layout_is_what_pngkit_wrote():
    """pngkit's IHDR: the fields the reference reads (depth at byte 24, colour type at 25)."""
    data = pngkit.build_png(np.zeros((2, 3, 3), np.int64), "RGB", 16, random.Random(0))
    assert struct.unpack(">IIBBBBB", data[16:29]) == (3, 2, 16, 2, 0, 0, 0)
