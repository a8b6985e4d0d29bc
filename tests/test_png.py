"""poolcli's own PNG writer and the PNG rows read while they are pooled (poolcli/png.py).

The writer is checked against a loop that states the PNG filter rules one row at a time, and its
files against two decoders (Pillow, and libpng through imagecodecs, which checks every CRC and the
zlib checksum).  The streamed reader is checked against Pillow's whole decode, on every file
layout it takes and on the ones it hands back to Pillow.
"""

from __future__ import annotations

import io
import json
import os
import random
import re
import struct
import threading
import zlib
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image, PngImagePlugin

from poolcli import images, inflate, png

from . import pngkit

MODES = {(1, np.uint8): "L", (2, np.uint8): "LA", (3, np.uint8): "RGB", (4, np.uint8): "RGBA",
         (1, np.uint16): "I;16", (2, np.uint16): "LA;16", (3, np.uint16): "RGB;16", (4, np.uint16): "RGBA;16"}


def filter_rows_by_the_rules(pixels: np.ndarray, level: int) -> np.ndarray:
    """PNG filtering as the specification words it, one row and one byte at a time: each row
    takes the filter whose bytes, read as signed, sum to the least absolute value (None, Sub,
    Up, Average; Paeth too from level 6; the first such filter on ties); level 0 filters nothing."""
    height, _, channels = pixels.shape
    rows = np.ascontiguousarray(pixels, dtype=pixels.dtype.newbyteorder(">")).view(np.uint8).reshape(height, -1)
    bpp = channels * pixels.dtype.itemsize
    out, above = [], [0] * rows.shape[1]
    for row in rows.tolist():
        candidates = [[], [], [], [], []]
        for i, x in enumerate(row):
            a = row[i - bpp] if i >= bpp else 0
            b = above[i]
            c = above[i - bpp] if i >= bpp else 0
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            paeth = a if pa <= pb and pa <= pc else b if pb <= pc else c
            for kind, predicted in enumerate((0, a, b, (a + b) // 2, paeth)):
                candidates[kind].append((x - predicted) % 256)
        allowed = candidates[:5 if level >= 6 else 4] if level else candidates[:1]
        costs = [sum(min(v, 256 - v) for v in values) for values in allowed]
        kind = costs.index(min(costs))
        out.append([kind, *allowed[kind]])
        above = row
    return np.array(out, dtype=np.uint8).reshape(height, rows.shape[1] + 1)


def smooth(rng: np.random.Generator, shape: tuple[int, ...], dtype: type) -> np.ndarray:
    """Pixels with runs, gradients and noise, so that every filter wins somewhere."""
    top = np.iinfo(dtype).max
    steps = rng.integers(-3, 4, shape) * (rng.random(shape) < 0.7)
    base = rng.integers(0, top + 1, shape[-1:], dtype=np.int64)
    values = base + np.cumsum(np.cumsum(steps, axis=0), axis=1) * (top // 255)
    return (values % (top + 1)).astype(dtype)


# --------------------------------------------------------------------------- writing


@pytest.mark.parametrize("level", [0, 1, 5, 6, 9])
@pytest.mark.parametrize("channels,dtype", list(MODES))
def test_filters_follow_the_rules(rng, level, channels, dtype, monkeypatch):
    pixels = smooth(rng, (23, 17, channels), dtype)
    expected = filter_rows_by_the_rules(pixels, level)
    assert np.array_equal(png.filtered(pixels, level), expected)
    monkeypatch.setattr(png, "_BAND_BYTES", 1)  # one row per band: the row above crosses every band edge
    assert np.array_equal(png.filtered(pixels, level), expected)


@given(st.integers(1, 9), st.integers(1, 9), st.sampled_from(list(MODES)), st.integers(0, 9), st.integers(0, 2**32 - 1))
def test_files_decode_to_the_pixels(height, width, mode_key, level, seed):
    channels, dtype = mode_key
    pixels = smooth(np.random.default_rng(seed), (height, width, channels), dtype)
    buffer = io.BytesIO()
    png.write(buffer, pixels, level)
    data = buffer.getvalue()
    decoded = imagecodecs.png_decode(data)  # libpng: checks every CRC and the zlib checksum
    assert np.array_equal(decoded.reshape(pixels.shape), pixels) and decoded.dtype == dtype
    if channels in (1, 3, 4):  # Pillow holds 8-bit gray, RGB, RGBA and 16-bit gray
        with Image.open(io.BytesIO(data)) as img:
            array = np.asarray(img)
        if dtype == np.uint16 and channels > 1:
            return  # Pillow reads 16-bit colour as 8-bit
        assert np.array_equal(array.reshape(pixels.shape), pixels)


def test_large_files_use_libdeflate_in_several_idat_chunks(rng, monkeypatch):
    monkeypatch.setattr(png, "_IDAT_BYTES", 1000)
    pixels = rng.integers(0, 256, (300, 700, 3), dtype=np.uint8)  # 630 kB filtered: libdeflate
    monkeypatch.setattr(png, "_LIBDEFLATE_BYTES", 1 << 16)
    buffer = io.BytesIO()
    png.write(buffer, pixels, 1, [png.chunk(b"tEXt", b"Comment\0hello")])
    data = buffer.getvalue()
    kinds = _chunk_kinds(data)
    assert kinds[:2] == [b"IHDR", b"tEXt"] and kinds[-1] == b"IEND" and kinds.count(b"IDAT") > 100
    assert np.array_equal(imagecodecs.png_decode(data), pixels)
    with Image.open(io.BytesIO(data)) as img:
        assert img.text == {"Comment": "hello"}


def test_bad_pixels_are_refused():
    with pytest.raises(ValueError, match="cannot write float32 pixels of 3 channels at level 1 as PNG"):
        png.write(io.BytesIO(), np.zeros((2, 2, 3), np.float32), 1)
    with pytest.raises(ValueError, match="at level 10"):
        png.write(io.BytesIO(), np.zeros((2, 2, 3), np.uint8), 10)


def test_metadata_survives_the_cli(invoke, tmp_path):
    exif = Image.Exif()
    exif[0x010E] = "a description"  # ImageDescription
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", "<x:xmpmeta xmlns:x='adobe:ns:meta/'/>")
    Image.new("RGB", (8, 6), (10, 20, 30)).save(tmp_path / "m.png", dpi=(300, 150), exif=exif, pnginfo=info,
                                                icc_profile=b"\0" * 128)
    assert invoke("max", "m.png", "-k", "2", "-o", "out.png", "-q").exit_code == 0
    with Image.open(tmp_path / "out.png") as out:
        assert out.size == (4, 3) and out.getpixel((0, 0)) == (10, 20, 30)
        assert out.getexif()[0x010E] == "a description" and out.info["icc_profile"] == b"\0" * 128
        assert "adobe:ns:meta" in out.info["XML:com.adobe.xmp"]
        assert [round(v) for v in out.info["dpi"]] == [150, 75]  # halved with the pixels


def _chunk_kinds(data: bytes) -> list[bytes]:
    kinds, at = [], 8
    while at < len(data):
        length, kind = struct.unpack(">I4s", data[at: at + 8])
        kinds.append(kind)
        at += 12 + length
    return kinds


# --------------------------------------------------------------------------- reading while pooling


def _decode_both(source: str | bytes) -> tuple[np.ndarray, np.ndarray, bool]:
    """(streamed pixels, Pillow's whole-decode pixels, whether the stream was used)."""
    picture = images.decode(source, lazy=True)
    try:
        frame = picture.frames[0]
        streamed = getattr(frame, "_stream", None) is not None
        rows = np.concatenate([frame.rows(top, min(top + 7, frame.shape[0])) for top in range(0, frame.shape[0], 7)])
    finally:
        picture.close()
    whole = images.decode(source, lazy=False).frames[0].to_array()
    return rows, whole, streamed


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA", "I;16"])
@pytest.mark.parametrize("level", [0, 1, 9])
def test_streamed_rows_equal_pillows_decode(tmp_path, rng, mode, level):
    bands = len(Image.new(mode, (1, 1)).getbands())
    dtype = np.uint16 if mode == "I;16" else np.uint8
    pixels = smooth(rng, (150, 161, bands), dtype)
    img = Image.fromarray(pixels[..., 0] if bands == 1 else pixels)
    assert img.mode == mode
    img.save(tmp_path / "in.png", compress_level=level)  # Pillow's IDAT chunks: 64 KiB each
    for source in (str(tmp_path / "in.png"), (tmp_path / "in.png").read_bytes()):
        rows, whole, streamed = _decode_both(source)
        assert streamed and np.array_equal(rows, whole) and np.array_equal(whole.reshape(pixels.shape), pixels)


@pytest.mark.parametrize("layout", ["interlaced", "transparency", "exif after the image", "animated", "palette"])
def test_other_layouts_are_decoded_whole_by_pillow(tmp_path, rng, layout):
    pixels = smooth(rng, (40, 30, 3), np.uint8)
    img = Image.fromarray(pixels)
    path = tmp_path / "in.png"
    if layout == "interlaced":
        _write_interlaced(path, pixels)
    elif layout == "transparency":
        img.save(path, transparency=(1, 2, 3))
    elif layout == "exif after the image":
        img.save(path)
        exif = Image.Exif()
        exif[0x0112] = 3  # orientation: rotate 180
        data = path.read_bytes()
        path.write_bytes(data[:-12] + png.chunk(b"eXIf", exif.tobytes()[6:]) + data[-12:])
    elif layout == "animated":
        img.save(path, save_all=True, append_images=[img])
    else:
        img.convert("P").save(path)
    rows, whole, streamed = _decode_both(str(path))
    assert not streamed and np.array_equal(rows, whole)
    if layout == "exif after the image":
        assert np.array_equal(whole, pixels[::-1, ::-1])  # the late orientation is still applied
    elif layout in ("interlaced", "animated"):
        assert np.array_equal(whole, pixels)


# Adam7's passes: (first row, first column, row step, column step).
_ADAM7 = [(0, 0, 8, 8), (0, 4, 8, 8), (4, 0, 8, 4), (0, 2, 4, 4), (2, 0, 4, 2), (0, 1, 2, 2), (1, 0, 2, 1)]


def _write_interlaced(path: Path, pixels: np.ndarray) -> None:
    """An Adam7 PNG of ``pixels``, written by hand: no library here writes interlaced PNG."""
    height, width, _ = pixels.shape
    raw = b""
    for top, left, dy, dx in _ADAM7:
        sub = pixels[top::dy, left::dx]
        if sub.size:
            raw += b"".join(b"\0" + row.tobytes() for row in sub)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 1)
    path.write_bytes(png.SIGNATURE + png.chunk(b"IHDR", header) + png.chunk(b"IDAT", zlib.compress(raw))
                     + png.chunk(b"IEND", b""))


def test_orientation_before_the_image_is_applied(tmp_path, rng):
    pixels = smooth(rng, (20, 30, 3), np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 clockwise to display
    Image.fromarray(pixels).save(tmp_path / "o.png", exif=exif)
    picture = images.decode(str(tmp_path / "o.png"), lazy=True)
    try:
        assert picture.orientation == 6
        assert np.array_equal(picture.frames[0].to_array(), np.rot90(pixels, -1))
    finally:
        picture.close()


def _png_with_idat(pixels: np.ndarray, idat: bytes) -> bytes:
    height, width, _ = pixels.shape
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return png.SIGNATURE + png.chunk(b"IHDR", header) + png.chunk(b"IDAT", idat) + png.chunk(b"IEND", b"")


def test_image_data_cut_short_is_one_clear_line(invoke, tmp_path, rng):
    pixels = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    rows = b"".join(b"\0" + row.tobytes() for row in pixels[:40])  # 40 of 64 rows, a whole zlib stream
    (tmp_path / "short.png").write_bytes(_png_with_idat(pixels, zlib.compress(rows)))
    result = invoke("avg", "short.png", "-k", "2", "-o", "out.png")
    assert result.exit_code == 1
    assert result.stderr == "poolcli: error: short.png: damaged PNG file (the image data ends after 40 of 64 rows)\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["short.png"]


def test_damaged_image_data_is_one_clear_line(invoke, tmp_path, rng):
    pixels = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    compressed = bytearray(zlib.compress(b"".join(b"\0" + row.tobytes() for row in pixels)))
    compressed[2000:2100] = bytes(range(100))  # the stream breaks part-way
    (tmp_path / "bad.png").write_bytes(_png_with_idat(pixels, bytes(compressed)))
    result = invoke("max", "bad.png", "-k", "2", "-o", "out.png")
    assert result.exit_code == 1
    assert result.stderr.startswith(("poolcli: error: bad.png: truncated or damaged PNG data (",
                                     "poolcli: error: bad.png: damaged PNG file ("))
    assert result.stderr.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.png"]


# Damage that the rows a 2x2 window reads never show: a 65-row image whose last row -k 2 skips.
# (name, the zlib stream made from the rows' bytes, the reason after "damaged PNG file (").
_UNSEEN_DAMAGE = [
    ("50 bytes missing mid-stream", lambda raw: zlib.compress(raw[:3000] + raw[3050:]),
     "the image data ends after 64 of 65 rows)"),
    ("stream cut in the last row", lambda raw: zlib.compress(raw, 0)[:-(4 + len(raw) // 65 // 2)],
     "the image data ends after 64 of 65 rows)"),
    ("bad checksum", lambda raw: zlib.compress(raw)[:-1] + bytes([zlib.compress(raw)[-1] ^ 0x55]),
     "the image data does not match its checksum (Adler-32))"),
    ("end of stream missing", lambda raw: zlib.compress(raw)[:-4],
     "the compressed image data is cut short (its end and checksum are missing))"),
    ("bytes after the stream", lambda raw: zlib.compress(raw) + b"\0\1\2",
     "data after the end of the compressed image data)"),
    ("a second stream", lambda raw: zlib.compress(raw) + zlib.compress(b"more"),
     "data after the end of the compressed image data)"),
    ("a row too many", lambda raw: zlib.compress(raw + raw[:len(raw) // 65]),
     "the image data holds more than the 65 rows its header gives)"),
]


def _png_of_rows(width: int, height: int, colour: int, idat: bytes, chunks: bytes = b"", interlace: int = 0
                 ) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, interlace)
    return (png.SIGNATURE + png.chunk(b"IHDR", header) + chunks + png.chunk(b"IDAT", idat[:100])
            + png.chunk(b"IDAT", idat[100:]) + png.chunk(b"IEND", b""))


@pytest.mark.parametrize("layout", ["streamed RGB", "palette (Pillow)", "interlaced gray (Pillow)"])
@pytest.mark.parametrize("damage", _UNSEEN_DAMAGE, ids=[name for name, _, _ in _UNSEEN_DAMAGE])
def test_every_exit_0_read_the_whole_image_data(invoke, tmp_path, rng, layout, damage):
    _, stream, reason = damage
    pixels = rng.integers(0, 4, (65, 64, 3), dtype=np.uint8)
    if layout == "streamed RGB":
        raw, colour, chunks, interlace = b"".join(b"\0" + row.tobytes() for row in pixels), 2, b"", 0
    elif layout == "palette (Pillow)":
        raw, colour, interlace = b"".join(b"\0" + row.tobytes() for row in pixels[..., 0]), 3, 0
        chunks = png.chunk(b"PLTE", bytes(range(12)))
    else:  # Adam7 passes in order; the last pass holds rows 1, 3, ..., 63: 32 rows of 65 bytes
        raw = b"".join(b"\0" + row.tobytes() for top, left, dy, dx in _ADAM7
                       for row in pixels[top::dy, left::dx, 0] if row.size)
        colour, chunks, interlace = 0, b"", 1
    good = _png_of_rows(64, 65, colour, zlib.compress(raw), chunks, interlace)
    (tmp_path / "good.png").write_bytes(good)
    assert invoke("max", "good.png", "-k", "2", "-o", "good-out.png", "-q").exit_code == 0
    (tmp_path / "in.png").write_bytes(_png_of_rows(64, 65, colour, stream(raw), chunks, interlace))
    if interlace:  # Adam7's passes have rows of several sizes: counted in bytes
        reason = reason.replace("the 65 rows", f"the {len(raw)} bytes")
        if "ends after" in reason:
            inflated = len(zlib.decompressobj().decompress(stream(raw)))
            reason = re.sub(r"\d+ of \d+ rows", f"{inflated} of {len(raw)} bytes", reason)
    for output in ("out.png", "-"):
        result = invoke("max", "in.png", "-k", "2", "-o", output, "--format", "png", "-q")
        assert (result.exit_code, result.stderr) == (1, f"poolcli: error: in.png: damaged PNG file ({reason}\n")
        assert result.stdout_bytes == b"" and not (tmp_path / "out.png").exists()
    result = invoke("max", "-", "-k", "2", "-o", "out.png", "-q", input=(tmp_path / "in.png").read_bytes())
    assert (result.exit_code, result.stderr) == (1, f"poolcli: error: -: damaged PNG file ({reason}\n")
    assert not (tmp_path / "out.png").exists()


def test_closing_mid_stream_stops_both_threads(tmp_path, rng):
    pixels = rng.integers(0, 256, (1500, 1500, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "big.png", compress_level=1)
    picture = images.decode(str(tmp_path / "big.png"), lazy=True)
    frame = picture.frames[0]
    assert np.array_equal(frame.rows(0, 3), pixels[:3])  # reading has started
    picture.close()
    assert not [t for t in threading.enumerate() if t.name in ("poolcli-inflate", "poolcli-unfilter")]
    with pytest.raises(images.ImageError, match="reading stopped"):
        frame.rows(1400, 1500)


@pytest.mark.parametrize("kind,depth", [("L", 1), ("L", 2), ("L", 4), ("L", 8), ("L", 16), ("RGB", 8), ("RGB", 16)])
def test_a_transparent_colour_becomes_an_alpha_channel(invoke, tmp_path, kind, depth):
    """tRNS on gray or RGB: the pixels of that one value or colour are transparent, as libpng
    (and Pillow, for 8-bit) expand it; 16-bit stays 16-bit, gray below 8 bits is scaled up."""
    channels, top = len(kind), (1 << depth) - 1
    values = np.random.default_rng(depth).integers(0, top + 1, (9, 11, channels))
    key = [top // 3 + c for c in range(channels)]
    values[:3, :3] = key
    values[4, 4] = [*key[:-1], (key[-1] + 1) % (top + 1)]  # one sample away from it: opaque
    data = pngkit.build_png(values, kind, depth, random.Random(depth),
                            trns=b"".join(v.to_bytes(2, "big") for v in key))
    (tmp_path / "in.png").write_bytes(data)
    result = invoke("max", "in.png", "-k", "1", "-o", "out.png", "--json")
    assert result.exit_code == 0, result.stderr
    out = imagecodecs.png_decode((tmp_path / "out.png").read_bytes())
    wide = np.uint16 if depth == 16 else np.uint8
    scale = 65535 // top if depth == 16 else 255 // top
    alpha = np.where((values == key).all(axis=2, keepdims=True), 0, np.iinfo(wide).max)
    expected = np.concatenate([values * (scale if depth < 8 else 1), alpha], axis=2).astype(wide)
    assert out.dtype == wide and np.array_equal(out, expected)
    assert np.array_equal(out, imagecodecs.png_decode(data))  # libpng's own expansion
    assert out[0, 0, -1] == 0 and out[4, 4, -1] == np.iinfo(wide).max
    if depth == 8:  # Pillow's too
        with Image.open(tmp_path / "in.png") as img:
            assert np.array_equal(out, np.asarray(img.convert(kind + "A")).reshape(out.shape))
    source = {"L": "1" if depth == 1 else "L", "RGB": "RGB"}[kind] if depth < 16 else \
        {"L": "I;16", "RGB": "RGB;16"}[kind]
    pooled = {"L": "LA", "RGB": "RGBA"}[kind] + (";16" if depth == 16 else "")
    assert json.loads(result.stdout)["notes"] == [f"mode {source} pooled as {pooled}"]


# --------------------------------------------------------------------------- inflating before the imports


@pytest.fixture(autouse=True)
def _no_prefetch_left():
    """Each test starts and ends without an inflater waiting to be taken."""
    yield
    while inflate._prefetched:
        inflate._prefetched.popitem()[1][1].close()


def _only_prefetched() -> inflate.Inflater:
    (_, inflater), = inflate._prefetched.values()
    return inflater


def test_prefetched_inflater_is_taken_over_by_the_decoder(tmp_path, rng):
    pixels = smooth(rng, (300, 200, 3), np.uint8)
    Image.fromarray(pixels).save(tmp_path / "p.png")
    path = str(tmp_path / "p.png")
    inflate.prefetch(path, max_pixels=None)
    started = _only_prefetched()
    picture = images.decode(path, lazy=True)
    try:
        assert picture.frames[0]._stream._inflater is started and not inflate._prefetched
        assert np.array_equal(picture.frames[0].to_array(), pixels)
    finally:
        picture.close()


def test_a_file_changed_since_the_prefetch_is_read_again(tmp_path, rng):
    first, second = (smooth(rng, (40, 50, 3), np.uint8) for _ in range(2))
    path = tmp_path / "p.png"
    Image.fromarray(first).save(path)
    inflate.prefetch(str(path), max_pixels=None)
    started = _only_prefetched()
    Image.fromarray(second).save(path, compress_level=9)  # another file under the same name
    picture = images.decode(str(path), lazy=True)
    try:
        assert picture.frames[0]._stream._inflater is not started
        assert np.array_equal(picture.frames[0].to_array(), second)
    finally:
        picture.close()


@pytest.mark.parametrize("kind", ["interlaced", "palette", "16-bit colour", "too many pixels", "not a PNG",
                                  "missing", "fifo"])
def test_prefetch_leaves_other_files_to_the_decoder(tmp_path, rng, kind):
    pixels = smooth(rng, (30, 20, 3), np.uint8)
    path = tmp_path / "f.png"
    if kind == "interlaced":
        _write_interlaced(path, pixels)
    elif kind == "palette":
        Image.fromarray(pixels).convert("P").save(path)
    elif kind == "16-bit colour":
        path.write_bytes(imagecodecs.png_encode(pixels.astype(np.uint16) * 257))
    elif kind in ("too many pixels", "not a PNG"):
        Image.fromarray(pixels).save(path, format="PNG" if kind == "too many pixels" else "BMP")
    elif kind == "fifo":
        os.mkfifo(path)  # opening it would wait for a writer, and reading would take the writer's data
    inflate.prefetch(str(path), max_pixels=599)  # 600 pixels: one too many
    assert not inflate._prefetched


def test_image_data_longer_than_its_rows_is_refused_at_the_first_byte_too_many(tmp_path, rng):
    pixels = rng.integers(0, 256, (10, 10, 3), dtype=np.uint8)
    rows = b"".join(b"\0" + row.tobytes() for row in pixels)
    data = _png_with_idat(pixels, zlib.compress(rows + bytes(10_000_000)))  # 10 MB more than the header's rows
    (tmp_path / "long.png").write_bytes(data)
    inflater = inflate.Inflater(str(tmp_path / "long.png"), inflate.idat_spans(data), len(rows), 31)
    pieces = []
    with pytest.raises(inflate.Damaged, match=r"^the image data holds more than the 10 rows its header gives$"):
        while (piece := inflater.get()) is not None:
            pieces.append(piece)
    assert b"".join(pieces) == rows  # the rows, and not one byte of the rest


def test_damaged_palette_png_is_refused_not_zeros(invoke, tmp_path, rng):
    pixels = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).convert("P").save(tmp_path / "p.png")  # decoded whole by Pillow, not streamed
    data = bytearray((tmp_path / "p.png").read_bytes())
    start = data.index(b"IDAT") + 4
    data[start + 20: start + 60] = bytes(range(40))
    (tmp_path / "p.png").write_bytes(bytes(data))
    result = invoke("max", "p.png", "-k", "2", "-o", "out.png")
    assert result.exit_code == 1
    assert result.stderr.startswith("poolcli: error: p.png: truncated or damaged PNG data (")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.png"]


def test_a_failing_inflate_ends_the_stream_instead_of_hanging(tmp_path, rng, monkeypatch):
    pixels = smooth(rng, (50, 40, 3), np.uint8)
    Image.fromarray(pixels).save(tmp_path / "p.png")

    def fail(self):
        raise MemoryError

    monkeypatch.setattr(inflate.Inflater, "_inflate", fail)
    picture = images.decode(str(tmp_path / "p.png"), lazy=True)
    try:
        with pytest.raises(images.ImageError, match=r"^truncated or damaged PNG data \(not enough memory"):
            picture.frames[0].rows(0, 1)
    finally:
        picture.close()


def test_prefetch_finds_the_file_under_another_spelling_and_sees_a_rewrite(tmp_path, rng, monkeypatch):
    pixels = smooth(rng, (40, 50, 3), np.uint8)
    path = tmp_path / "p.png"
    Image.fromarray(pixels).save(path)
    monkeypatch.chdir(tmp_path)
    inflate.prefetch("./p.png", max_pixels=None)
    started = _only_prefetched()
    picture = images.decode(str(path), lazy=True)  # the same file, spelled differently
    try:
        assert picture.frames[0]._stream._inflater is started and not inflate._prefetched
    finally:
        picture.close()
    inflate.prefetch(str(path), max_pixels=None)
    status = os.stat(path)
    data = path.read_bytes()
    path.write_bytes(data[:-20] + bytes(8) + data[-12:])  # same size, rewritten in place ...
    os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns))  # ... with the old mtime (cp -p)
    picture = images.decode(str(path), lazy=True)
    try:
        assert not inflate._prefetched  # taken, found changed, closed
    finally:
        picture.close()


def test_a_flat_image_inflates_in_bounded_pieces(tmp_path):
    flat = np.zeros((2000, 2000, 4), dtype=np.uint8)
    Image.fromarray(flat).save(tmp_path / "z.png", compress_level=9)  # 16 MB of rows in about 20 kB
    data = (tmp_path / "z.png").read_bytes()
    inflater = inflate.Inflater(str(tmp_path / "z.png"), inflate.idat_spans(data), 2000 * (1 + 8000))
    sizes = []
    while (piece := inflater.get()) is not None:
        sizes.append(len(piece))
    assert sum(sizes) == 2000 * 8001 and max(sizes) <= inflate.Inflater.OUT
