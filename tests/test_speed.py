"""The fast paths of issue 18 give what the plain paths give: JPEG pixels decoded into poolcli's
own array (RGB kept as Pillow's RGBX), 16-bit PNG decoded once, Pillow's internals behind
``poolcli.pillowcore`` with their public fallback, and a folder run's outputs committed in groups."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
from PIL import Image

from poolcli import images, paths, pillowcore, png
from tests import oracle
from tests.conftest import json_lines


def photo(rng: np.random.Generator, height: int = 37, width: int = 52) -> np.ndarray:
    """Smooth colours with noise: a JPEG of it decodes to varied pixels."""
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 4, y * 6, (x + y) * 2], axis=-1) % 256
    return np.clip(base + rng.integers(-20, 21, base.shape), 0, 255).astype(np.uint8)


@pytest.fixture
def jpeg(tmp_path, rng) -> Path:
    path = tmp_path / "photo.jpg"
    Image.fromarray(photo(rng)).save(path, quality=90)
    return path


def planes_of(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB")).transpose(2, 0, 1)[None]


@pytest.mark.parametrize("op", ["max", "avg"])
def test_jpeg_pooled_from_rgbx_equals_the_oracle(invoke, tmp_path, jpeg, op):
    """RGB JPEG pixels are decoded into an RGBX array and pooled as four channels; the written
    pixels (.npy, exact) equal the reference on the image Pillow decodes."""
    args = ["-k", "3", "-s", "2", "-p", "1", "--ceil-mode"]
    result = invoke(op, str(jpeg), "-o", "out.npy", *args, *(["--return-indices", "idx.npy"] if op == "max" else []))
    assert result.exit_code == 0, result.stderr
    got = np.load(tmp_path / "out.npy")
    x = planes_of(jpeg)
    if op == "max":
        values, indices = oracle.max_pool2d_ref(x, (3, 3), (2, 2), (1, 1), (1, 1), True)
        assert np.array_equal(np.load(tmp_path / "idx.npy"), indices[0])  # three channels, not four
    else:
        values = oracle.avg_pool2d_ref(x, (3, 3), (2, 2), (1, 1), True, True, None, rounded=True)
    assert got.shape == (3, 19, 27)
    assert np.array_equal(got, values[0])


def test_jpeg_written_as_jpeg_equals_the_plain_path(invoke, tmp_path, jpeg, monkeypatch):
    """The padded pixels go back to Pillow's encoder as they are: the same file as the path that
    copies them out of Pillow first (the internals switched off)."""
    assert invoke("avg", str(jpeg), "-o", "fast.jpg", "-k", "2").exit_code == 0
    monkeypatch.setattr(pillowcore, "PRIVATE", False)
    assert invoke("avg", str(jpeg), "-o", "plain.jpg", "-k", "2").exit_code == 0
    assert (tmp_path / "fast.jpg").read_bytes() == (tmp_path / "plain.jpg").read_bytes()


def with_chunk_after_image(data: bytes, kind: bytes, body: bytes) -> bytes:
    """A PNG with one more chunk between its last IDAT and IEND."""
    end = data.rindex(b"IEND") - 4
    return data[:end] + png.chunk(kind, body) + data[end:]


def exif_orientation(value: int) -> bytes:
    """A little-endian TIFF header with one IFD entry: Orientation = value."""
    return b"II*\x00" + struct.pack("<IH", 8, 1) + struct.pack("<HHII", 274, 3, 1, value) + struct.pack("<I", 0)


@pytest.mark.parametrize("where", ["none", "before", "after"])
def test_16_bit_png_orientation_wherever_its_exif_is(tmp_path, rng, where):
    """A 16-bit colour PNG is decoded by imagecodecs only; its EXIF orientation is still found in
    an eXIf chunk before the image data, and after it (where Pillow must read to the end)."""
    pixels = rng.integers(0, 65536, (5, 7, 3), dtype=np.uint16)
    data = imagecodecs.png_encode(pixels)
    if where == "before":
        ihdr_end = 8 + 8 + 13 + 4
        data = data[:ihdr_end] + png.chunk(b"eXIf", exif_orientation(6)) + data[ihdr_end:]
    elif where == "after":
        data = with_chunk_after_image(data, b"eXIf", exif_orientation(6))
    path = tmp_path / "deep.png"
    path.write_bytes(data)
    picture = images.decode(str(path), lazy=True)
    expected = pixels if where == "none" else np.rot90(pixels, -1)
    assert picture.mode == "RGB;16" and picture.orientation == (None if where == "none" else 6)
    assert np.array_equal(picture.frames[0].to_array(), expected)


@pytest.mark.parametrize("kind", ["RGB PNG", "16-bit PNG", "RGB JPEG", "gray JPEG"])
def test_the_public_fallback_gives_the_same_picture(tmp_path, rng, monkeypatch, kind):
    """With Pillow's internals taken away (as a Pillow without them would be), every reader takes
    its public path and gives the same pixels and metadata."""
    path = tmp_path / ("x.jpg" if "JPEG" in kind else "x.png")
    if kind == "RGB PNG":
        Image.fromarray(photo(rng)).save(path, dpi=(300, 300))
    elif kind == "16-bit PNG":
        path.write_bytes(imagecodecs.png_encode(rng.integers(0, 65536, (9, 4, 3), dtype=np.uint16)))
    else:
        Image.fromarray(photo(rng)[..., 0] if kind == "gray JPEG" else photo(rng)).save(path, dpi=(72, 72))

    def read() -> tuple[np.ndarray, object, str]:
        picture = images.decode(str(path), lazy=True)
        try:
            kinds = type(picture.frames[0]).__name__
            return np.array(picture.frames[0].to_array()), (picture.mode, picture.dpi, picture.exif), kinds
        finally:
            picture.close()

    fast, fast_meta, fast_kind = read()
    monkeypatch.setattr(pillowcore, "PRIVATE", False)
    plain, plain_meta, plain_kind = read()
    assert np.array_equal(fast, plain) and fast_meta == plain_meta
    assert plain_kind in ("LazyFrame", "ArrayFrame")
    if kind in ("RGB PNG", "RGB JPEG"):  # the fast path was taken, and is not the fallback
        assert fast_kind == {"RGB PNG": "StreamedFrame", "RGB JPEG": "PaddedFrame"}[kind]


def test_pillowcore_finds_this_pillows_internals():
    """The suite's Pillow has every internal (else the fast paths above were never tested)."""
    assert pillowcore.PRIVATE


def test_a_folder_run_commits_every_output_whole(invoke, tmp_path, rng):
    """A folder run writes its outputs to temporary files and renames them in groups: all end up in
    place, each reported once, in order, and no temporary file is left."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(7):
        Image.fromarray(photo(rng)).save(photos / f"p{i}.jpg")
    result = invoke("avg", "photos", "-o", "out", "-k", "2", "-j", "1", "--json")
    assert result.exit_code == 0, result.stderr
    assert [r["input"] for r in json_lines(result.stdout)] == [f"photos/p{i}.jpg" for i in range(7)]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"p{i}.jpg" for i in range(7)]


def test_a_failed_rename_in_a_group_fails_that_file_only(tmp_path):
    """A group commit whose rename fails (the target became a folder) reports that output's reason;
    the others of the group are in place, and no temporary file is left."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "b.bin").mkdir()
    with paths.FolderRun() as run:
        tokens = {}
        for name in ("a.bin", "b.bin", "c.bin"):
            paths.write_all([(str(out / name), lambda handle, n=name: handle.write(n.encode()))])
            tokens[name] = object()
            run.add(paths.take_staged(), tokens[name])
        assert not (out / "a.bin").exists() and not (out / "c.bin").exists()  # written, not yet in place
        failed = run.commit()
    assert list(failed) == [id(tokens["b.bin"])]
    assert failed[id(tokens["b.bin"])].startswith(f"cannot write {out / 'b.bin'}: ")
    assert (out / "a.bin").read_bytes() == b"a.bin" and (out / "c.bin").read_bytes() == b"c.bin"
    assert [p.name for p in out.iterdir() if p.name.endswith(".part")] == []


def test_commits_started_behind_the_work_finish_in_order(tmp_path):
    """start_commit puts a group into place on a thread while the caller goes on; the outcomes
    come back in the order the commits were started, a failed rename as that token's reason,
    and the run's end waits for every commit."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "b.bin").mkdir()
    outcomes = []
    with paths.FolderRun() as run:
        tokens = {}
        for name in ("a.bin", "b.bin", "c.bin", "d.bin"):
            paths.write_all([(str(out / name), lambda handle, n=name: handle.write(n.encode()))])
            tokens[name] = object()
            run.add(paths.take_staged(), tokens[name])
            run.start_commit(name)
        outcomes += run.finished_commits(wait=True)
        run.start_commit("nothing waiting")
    assert [payload for payload, _ in outcomes] == ["a.bin", "b.bin", "c.bin", "d.bin"]
    assert [list(failed) for _, failed in outcomes] == [[], [id(tokens["b.bin"])], [], []]
    assert [(out / name).read_bytes() for name in ("a.bin", "c.bin", "d.bin")] == [b"a.bin", b"c.bin", b"d.bin"]
    assert [p.name for p in out.iterdir() if p.name.endswith(".part")] == []


def test_outputs_written_outside_a_folder_run_are_in_place_at_once(tmp_path):
    paths.write_all([(str(tmp_path / "one.bin"), lambda handle: handle.write(b"1"))])
    assert (tmp_path / "one.bin").read_bytes() == b"1" and paths.take_staged() == []


def test_a_png_stream_is_still_checked_whole(tmp_path, rng):
    """The streamed PNG reader, now through pillowcore, still refuses a damaged zlib checksum."""
    pixels = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    spans = png.idat_spans(bytes(data))
    assert spans is not None
    start, length = spans[-1]
    data[start + length - 1] ^= 0xFF  # the Adler-32 checksum's last byte
    crc = zlib.crc32(b"IDAT" + bytes(data[start:start + length]))
    data[start + length: start + length + 4] = struct.pack(">I", crc)
    path = tmp_path / "bad.png"
    path.write_bytes(bytes(data))
    picture = images.decode(str(path), lazy=True)
    try:
        with pytest.raises(images.ImageError, match="PNG"):
            picture.verify()
    finally:
        picture.close()


@pytest.mark.parametrize("op, args", [
    ("max", ["-k", "3", "-s", "1", "-p", "1"]),
    ("avg", ["-k", "5", "-s", "3", "-p", "2", "--ceil-mode"]),
    ("max", ["-k", "3", "-s", "2", "-d", "3"]),
])
def test_a_tall_png_gives_its_rows_back_and_pools_exactly(invoke, tmp_path, rng, op, args):
    """A streamed PNG written as PNG releases input rows as the output bands are pooled (their
    pages go back to the system, and a released row would read as zeros): overlapping windows,
    padding, ceil mode and dilation still see every row they need."""
    pixels = rng.integers(0, 256, (1500, 333, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "tall.png", compress_level=1)
    result = invoke(op, "tall.png", "-o", "out.png", *args)
    assert result.exit_code == 0, result.stderr
    k, s, p = int(args[1]), int(args[3]), int(args[5]) if args[4] == "-p" else 0
    d = int(args[5]) if args[4] == "-d" else 1
    x = pixels.transpose(2, 0, 1)[None]
    if op == "max":
        expected, _ = oracle.max_pool2d_ref(x, (k, k), (s, s), (p, p), (d, d), "--ceil-mode" in args)
    else:
        expected = oracle.avg_pool2d_ref(x, (k, k), (s, s), (p, p), "--ceil-mode" in args, True, None, rounded=True)
    with Image.open(tmp_path / "out.png") as out:
        assert np.array_equal(np.asarray(out).transpose(2, 0, 1), expected[0])
