"""Decompression bombs and damaged headers: refused with one line, quickly, before allocation.

The bombs are written by ``tests/bombs.py`` (a few hundred bytes each).  The command-line cases
run as real subprocesses under an address-space limit far below what the headers claim, so a
bomb that got through would fail with a MemoryError instead of the expected line.
"""

from __future__ import annotations

import io
import json
import os
import resource
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from poolcli import images
from poolcli.images import ImageError, decode
from tests import bombs

ROOT = Path(__file__).resolve().parents[1]
MEMORY_LIMIT = 1536 << 20  # the bombs claim 4 to 16 GiB


def _limited() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


BOMBS = {
    # 940 bytes, 4000x4000, 40 frames: 640 megapixels, 2.5 GB as RGBA
    "screen.gif": bombs.gif((4000, 4000), [(1, 1)] * 40),
    # 66 bytes, a second frame of 65535x65535: 4.3 gigapixels
    "second.gif": bombs.gif((1, 1), [(1, 1), (65535, 65535)]),
    # 258 bytes, a second page of 400 megapixels
    "pages.tif": bombs.tiff([(2, 2), (20000, 20000)]),
    # 230 kB, 10,000 frames
    "long.gif": bombs.gif((8, 8), [(1, 1)] * 10_000),
}


def test_crafted_bombs_are_refused_in_bounded_memory(tmp_path):
    """The real command, under an address-space limit, without a pixel limit (the plausibility
    bound alone holds): one line per bomb, nothing written."""
    for name, data in BOMBS.items():
        (tmp_path / name).write_bytes(data)
    result = subprocess.run(
        [sys.executable, "-m", "poolcli", "max", *BOMBS, "-k", "2", "-j", "1", "-o", "out/", "-q",
         "--max-pixels", "0"],
        cwd=tmp_path, capture_output=True, text=True, preexec_fn=_limited, timeout=60,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 1
    damaged = "damaged GIF file: frame 2 claims 4294836225 pixels, more than a file of 66 bytes can hold"
    assert result.stderr.splitlines() == [
        "poolcli: error: screen.gif: damaged GIF file: frame 1 claims 4000x4000 = 16000000 pixels, more than a "
        "file of 940 bytes can hold",
        f"poolcli: error: second.gif: {damaged}",
        "poolcli: error: pages.tif: damaged TIFF file: frame 2 claims 20000x20000 = 400000000 pixels, more than a "
        "file of 258 bytes can hold",
        "poolcli: error: long.gif: 10000 frames exceed the limit of 1000 frames (decompression bomb protection); "
        "raise it with --max-frames N (0 removes it) if you trust this file",
    ]
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_crafted_bombs_with_the_default_limits():
    reasons = {}
    for name, data in BOMBS.items():
        with pytest.raises(ImageError) as info:
            decode(data)
        reasons[name] = str(info.value)
    assert reasons == {
        "screen.gif": "damaged GIF file: frame 1 claims 4000x4000 = 16000000 pixels, more than a file of 940 bytes "
                      "can hold",
        "second.gif": "damaged GIF file: frame 2 claims 4294836225 pixels, more than a file of 66 bytes can hold",
        "pages.tif": "damaged TIFF file: frame 2 claims 20000x20000 = 400000000 pixels, more than a file of 258 "
                     "bytes can hold",
        "long.gif": "10000 frames exceed the limit of 1000 frames (decompression bomb protection); raise it with "
                    "--max-frames N (0 removes it) if you trust this file",
    }


def test_frames_together_have_a_budget():
    """40 frames of 1000x1000 are each under --max-pixels 10,000,000, together over twice that."""
    with pytest.raises(ImageError) as info:
        decode(bombs.gif((1000, 1000), [(1, 1)] * 40), max_pixels=10_000_000)
    assert str(info.value) == (
        "40 frames of 40000000 pixels together exceed the limit of 20000000 pixels for a whole file "
        "(2 x --max-pixels; decompression bomb protection); raise --max-pixels (0 removes it) if you trust this file")


def test_second_page_over_the_limit_is_refused_before_decoding():
    data = bombs.tiff([(2, 2), (400, 500)])
    with pytest.raises(ImageError) as info:
        decode(data, max_pixels=100_000)
    assert str(info.value) == ("frame 2 size (400x500 = 200000 pixels) exceeds the limit of 100000 pixels "
                               "(decompression bomb protection); raise it with --max-pixels N (0 removes it) "
                               "if you trust this file")


def test_frame_count_is_capped():
    assert decode(bombs.gif((8, 8), [(1, 1)] * 3), max_frames=3).durations == [100, 100, 100]
    with pytest.raises(ImageError, match=r"^3 frames exceed the limit of 2 frames"):
        decode(bombs.gif((8, 8), [(1, 1)] * 3), max_frames=2)


def test_a_frame_that_grows_the_canvas_meets_pillows_guard():
    """Pillow enlarges a GIF's canvas to a larger frame while seeking; its own guard is on."""
    data = bombs.gif((1, 1), [(1, 1), (300, 300)])
    with pytest.raises(ImageError, match=r"^frame 2 size \(90000 pixels\) exceeds the limit of 1000 pixels"):
        decode(data, max_pixels=1000)


def test_pillows_global_limit_is_restored():
    saved = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = 12345
        decode(bombs.gif((8, 8), [(1, 1)]), max_pixels=0)
        with pytest.raises(ImageError):
            decode(bombs.gif((1, 1), [(1, 1), (300, 300)]), max_pixels=1000)
        assert Image.MAX_IMAGE_PIXELS == 12345
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def test_plausible_files_still_decode():
    """A blank 1-bit PNG compresses about 8000 pixels into a byte: under the bound."""
    buffer = io.BytesIO()
    Image.new("1", (4000, 4000)).save(buffer, "PNG", optimize=True)
    assert len(buffer.getvalue()) * images.PLAUSIBLE_PIXELS_PER_BYTE > 4000 * 4000
    assert decode(buffer.getvalue()).frames[0].shape == (4000, 4000, 1)


# --------------------------------------------------------------------------- one clean line


def test_pillow_log_lines_go_into_the_reason(capfd):
    """Pillow logs "More samples per pixel than can be decoded" itself; it belongs in the one line."""
    data = bytearray(bombs.tiff([(8, 8)]))
    entry = data.find(bytes.fromhex("1501 0300 01000000"))  # SamplesPerPixel, SHORT, 1
    data[entry + 8:entry + 10] = (32946).to_bytes(2, "little")
    with pytest.raises(ImageError) as info:
        decode(bytes(data))
    assert str(info.value) == ("damaged TIFF header (Pillow cannot read it; More samples per pixel than can be "
                               "decoded: 32946)")
    assert capfd.readouterr() == ("", "")


def test_libtiff_stderr_goes_into_the_reason(capfd):
    """libtiff prints its errors on file descriptor 2 itself: captured, and named in the one line."""
    with pytest.raises(ImageError) as info:
        decode(bombs.tiff([(64, 64)]))
    assert str(info.value) == ("truncated or damaged TIFF data (decoder error -2; ZIPDecode: Not enough data at "
                               "scanline 0 (short 4080 bytes).)")
    assert capfd.readouterr() == ("", "")


def _png_header(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))


@pytest.mark.parametrize("data, reason", [
    (_png_header(1 << 31, 1 << 31) + bytes(20), "damaged PNG header (Pillow cannot read it)"),
    (_png_header(4, 4), "damaged PNG header (Pillow cannot read it)"),
    (b"\x89PNG\r\n\x1a\n" + bytes.fromhex("0000000d49484452"), "truncated or damaged PNG data (Truncated File Read)"),
    (b"II*\x00" + (2**32 - 1).to_bytes(4, "little"), "damaged TIFF header (Pillow cannot read it)"),
    (bombs.gif((4, 4), [(4, 4)])[:40], "truncated or damaged GIF data (image file is truncated (2 bytes not "
                                       "processed))"),
    (b"hello", "not an image file Pillow can read"),
])
def test_python_exception_texts_become_reasons(data, reason):
    with pytest.raises(ImageError) as info:
        decode(data)
    assert str(info.value).startswith(reason)


def test_damaged_files_never_escape_as_other_exceptions(rng):
    """Seeded random damage to every format: a picture or an ImageError, nothing else."""
    damage = np.random.default_rng(11)
    sources = [bombs.gif((6, 5), [(6, 5)] * 2), bombs.tiff([(4, 4)])]
    for fmt in ("PNG", "JPEG", "TIFF", "GIF", "BMP", "WEBP"):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (9, 11, 3), dtype=np.uint8)).save(buffer, fmt)
        sources.append(buffer.getvalue())
    for data in sources:
        for _ in range(40):
            broken = bytearray(data)
            for position in damage.integers(0, len(broken), 4):
                broken[position] = int(damage.integers(0, 256))
            try:
                decode(bytes(broken))
            except ImageError as error:
                assert "\n" not in str(error) and not str(error).startswith("unexpected")


def test_fuzzed_files_end_in_one_line_each(tmp_path):
    """Seeded mutations of small files of every format through the real command: exit 0 or 1,
    exactly one stderr line per failed file and nothing else, no bare exception text, no output
    or temporary file for a failed input."""
    per_format = 60 if os.environ.get("CI") == "true" else 15
    damage = np.random.default_rng(2026)
    picture = Image.fromarray(damage.integers(0, 256, (12, 16, 3), dtype=np.uint8))
    (tmp_path / "in").mkdir()
    for fmt, extension in (("PNG", "png"), ("JPEG", "jpg"), ("TIFF", "tif"), ("GIF", "gif"), ("BMP", "bmp"),
                           ("WEBP", "webp")):
        buffer = io.BytesIO()
        picture.save(buffer, fmt)
        for number in range(per_format):
            data = bytearray(buffer.getvalue())
            if number % 3 == 0:
                data = data[:int(damage.integers(1, len(data)))]
            for position in damage.integers(0, len(data), 3):
                data[position] = int(damage.integers(0, 256))
            (tmp_path / "in" / f"{fmt}{number:02d}.{extension}").write_bytes(bytes(data))
    result = subprocess.run(
        [sys.executable, "-m", "poolcli", "max", "in", "-o", "out", "-k", "2", "-j", "1", "--json", "--no-progress"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, preexec_fn=_limited,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert result.returncode in (0, 1)
    records = [json.loads(line) for line in result.stdout.splitlines()]
    failed = [r for r in records if r["status"] == "error"]
    assert len(records) == 6 * per_format and failed
    assert result.stderr.splitlines() == [f"poolcli: error: {r['input']}: {r['error']}" for r in failed]
    assert not any(r["error"].startswith("unexpected") for r in failed)
    written = sorted(p.name for p in (tmp_path / "out").iterdir()) if (tmp_path / "out").exists() else []
    assert written == sorted(Path(r["output"]).name for r in records if r["status"] == "ok")
