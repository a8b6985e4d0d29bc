"""Bad Zarr chunks and TIFFs the issue-19 fuzz campaign found reported as bugs, and TIFF outputs
that kept stale tags: each bad input is one line in the user's terms, exit 1, no output; each
TIFF output carries only tags that describe its own pixels."""

from __future__ import annotations

import logging
import struct
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from PIL import Image

from poolcli import zarr_io

ZARR_FORMATS = [2, 3] if zarr_io.zarr_major() >= 3 else [2]


def set_tag(path: Path, code: int, value: int) -> None:
    """Overwrite the value of a one-value SHORT or LONG tag of a classic TIFF's first page."""
    with tifffile.TiffFile(path) as tif:
        tag = tif.pages[0].tags[code]
        offset, short = tag.offset, tag.dtype == 3
    data = bytearray(path.read_bytes())
    struct.pack_into("<H" if short else "<I", data, offset + 8, value)
    path.write_bytes(bytes(data))


def zarr_input(folder: Path, zarr_format: int, compress: bool = True) -> tuple[Path, Path]:
    """A 64x64 float32 Zarr array in 32x32 chunks, and the file of its first chunk."""
    path = folder / "in.zarr"
    if compress:
        array = zarr_io.create_array(None, None, (64, 64), np.dtype("<f4"), (32, 32), zarr_format, path=path)
    elif zarr_io.zarr_major() >= 3:
        array = zarr.create_array(str(path), shape=(64, 64), chunks=(32, 32), dtype="<f4", compressors=None,
                                  zarr_format=zarr_format)
    else:
        array = zarr.open_array(str(path), mode="w", shape=(64, 64), chunks=(32, 32), dtype="<f4", compressor=None)
    array[...] = np.arange(64 * 64, dtype=np.float32).reshape(64, 64)
    return path, path / ("0.0" if zarr_format == 2 else "c/0/0")


@pytest.mark.parametrize("zarr_format", ZARR_FORMATS)
@pytest.mark.parametrize("damage", ["empty", "cut"])
def test_a_damaged_zarr_chunk_is_named(invoke, tmp_path, zarr_format, damage):
    _, chunk = zarr_input(tmp_path, zarr_format)
    data = chunk.read_bytes()
    chunk.write_bytes(b"" if damage == "empty" else data[: len(data) // 2])
    result = invoke("max", "in.zarr", "-k", "2", "-o", "out.npy", "-q")
    key = "0.0" if zarr_format == 2 else "c/0/0"
    assert result.exit_code == 1
    assert result.stderr.startswith(f"poolcli: error: in.zarr: damaged Zarr chunk {key} (")
    assert result.stderr.count("\n") == 1 and "internal error" not in result.stderr
    assert not (tmp_path / "out.npy").exists()


@pytest.mark.parametrize("zarr_format", ZARR_FORMATS)
def test_zarr_metadata_that_does_not_match_its_data(invoke, tmp_path, zarr_format):
    path, _ = zarr_input(tmp_path, zarr_format, compress=False)
    metadata = path / (".zarray" if zarr_format == 2 else "zarr.json")
    text = metadata.read_text()
    metadata.write_text(text.replace('"<f4"', '"<f8"') if zarr_format == 2 else text.replace('"float32"',
                                                                                           '"float64"'))
    assert metadata.read_text() != text
    result = invoke("max", "in.zarr", "-k", "2", "-o", "out.npy", "-q")
    key = "0.0" if zarr_format == 2 else "c/0/0"
    assert result.exit_code == 1
    assert result.stderr.startswith(f"poolcli: error: in.zarr: Zarr metadata does not match its data (chunk {key}: ")
    assert result.stderr.count("\n") == 1
    assert not (tmp_path / "out.npy").exists()


def test_an_unknown_photometric_is_not_written_to_a_tiff(invoke, tmp_path):
    tifffile.imwrite(tmp_path / "in.tif", np.arange(64 * 64, dtype=np.uint16).reshape(64, 64), tile=(16, 16),
                     photometric="minisblack")
    set_tag(tmp_path / "in.tif", 262, 32946)  # PhotometricInterpretation: a compression's number
    result = invoke("max", "in.tif", "-k", "2", "-o", "out.tif", "-q")
    assert result.exit_code == 1
    assert result.stderr == ("poolcli: error: in.tif: unsupported TIFF photometric 32946: a TIFF output cannot say "
                             "what its pixels are; write .npy or .zarr\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif"]
    assert invoke("max", "in.tif", "-k", "2", "-o", "out.npy", "-q").exit_code == 0  # the numbers are fine


def jpeg_tiff(path: Path) -> np.ndarray:
    pixels = np.random.default_rng(7).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    tifffile.imwrite(path, pixels, compression="jpeg", photometric="rgb")  # YCbCr, subsampled 2x2
    return pixels


def test_a_jpeg_tiff_whose_samples_per_pixel_lie(invoke, tmp_path):
    jpeg_tiff(tmp_path / "in.tif")
    set_tag(tmp_path / "in.tif", 277, 7)  # SamplesPerPixel 7: the strips hold 3
    for output in ("out.tif", "out.npy"):
        result = invoke("max", "in.tif", "-k", "2", "-o", output, "-q")
        assert result.exit_code == 1
        assert result.stderr.startswith("poolcli: error: in.tif: damaged TIFF data (")
        assert result.stderr.count("\n") == 1 and "internal error" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif"]


@pytest.fixture
def tifffile_log(caplog):
    """What tifffile logs (it warns there, e.g. about a shape description that does not match)."""
    caplog.set_level(logging.WARNING, logger="tifffile")
    return caplog


@pytest.mark.parametrize("source", ["JPEG TIFF", "tifffile's own TIFF"])
def test_tiff_outputs_carry_only_tags_of_their_own_pixels(invoke, tmp_path, tifffile_log, source):
    if source == "JPEG TIFF":
        jpeg_tiff(tmp_path / "in.tif")
    else:
        tifffile.imwrite(tmp_path / "in.tif", np.arange(64 * 64, dtype=np.uint8).reshape(64, 64))
    with tifffile.TiffFile(tmp_path / "in.tif") as tif:
        assert tif.pages[0].tags[270].value.startswith('{"shape": [64, 64')  # tifffile's description
    result = invoke("max", "in.tif", "-k", "2", "-o", "out.tif", "-q")
    assert result.exit_code == 0, result.stderr
    tifffile_log.clear()
    with tifffile.TiffFile(tmp_path / "out.tif") as tif:
        pixels = tif.asarray()
        codes = set(tif.pages[0].tags.keys())
    assert pixels.shape[:2] == (32, 32) and not tifffile_log.records
    assert not codes & {270, 347, 529, 530, 531, 532}  # no description, JPEG tables, YCbCr, ReferenceBlackWhite
    with Image.open(tmp_path / "in.tif") as img:
        expected = np.asarray(img.convert("RGB" if source == "JPEG TIFF" else "L"))
    reshaped = expected.reshape(32, 2, 32, 2, -1).max(axis=(1, 3))
    assert np.array_equal(pixels.reshape(reshaped.shape), reshaped)


def test_a_damaged_lzw_tiff_names_no_file_of_libtiff(invoke, tmp_path):
    pixels = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "in.tif", compression="tiff_lzw")
    data = bytearray((tmp_path / "in.tif").read_bytes())
    data[200:400] = bytes(b ^ 0x5A for b in data[200:400])
    (tmp_path / "in.tif").write_bytes(bytes(data))
    result = invoke("max", "in.tif", "-k", "2", "-o", "out.png", "-q")
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("poolcli: error: in.tif: truncated or damaged TIFF data (")
    assert "tempfile.tif" not in result.stderr and "Using code not yet in table" in result.stderr

