"""16-bit colour PNG, XMP, ICC-aware --linear and --background: nothing lost without a word.

Expected pixels are computed here with NumPy from the stated rules (max exact; averages
rounded half up; premultiplied alpha), not by the engine.
"""

from __future__ import annotations

import io

import imagecodecs
import numpy as np
import pytest
from PIL import Image, ImageCms
from PIL.PngImagePlugin import PngInfo

from poolcli import images
from tests.conftest import json_lines

XMP = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
       b'<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/" dc:creator="poolcli"/></rdf:RDF></x:xmpmeta>')


def blocks(array: np.ndarray) -> np.ndarray:
    """(H, W, C) -> (H/2, W/2, 4, C): the 2x2 windows of a stride-2 pool."""
    h, w, c = array.shape
    return array.reshape(h // 2, 2, w // 2, 2, c).transpose(0, 2, 1, 3, 4).reshape(h // 2, w // 2, 4, c)


def half_up(numerator: np.ndarray, denominator: np.ndarray | int) -> np.ndarray:
    return (2 * numerator + denominator) // (2 * denominator)


def read16(path) -> np.ndarray:
    return imagecodecs.png_decode(path.read_bytes())


@pytest.fixture
def rgba16(rng) -> np.ndarray:
    pixels = rng.integers(0, 65536, (6, 8, 4), dtype=np.uint16)
    pixels[:2, :2, 3] = 0  # a fully transparent window: colour 0
    return pixels


def test_16bit_rgb_png_max_and_avg_stay_16bit(invoke, tmp_path, rgba16):
    rgb = np.ascontiguousarray(rgba16[..., :3])
    (tmp_path / "c.png").write_bytes(imagecodecs.png_encode(rgb))
    result = invoke("max", "c.png", "-k", "2", "-o", "max.png", "-v")
    assert result.exit_code == 0
    assert "16-bit RGB image, uint16" in result.stderr and "16-bit RGB PNG" in result.stderr
    out = read16(tmp_path / "max.png")
    assert out.dtype == np.uint16 and np.array_equal(out, blocks(rgb.astype(np.int64)).max(axis=2))
    assert invoke("avg", "c.png", "-k", "2", "-o", "avg.png", "-q").exit_code == 0
    assert np.array_equal(read16(tmp_path / "avg.png"), half_up(blocks(rgb.astype(np.int64)).sum(axis=2), 4))


def test_16bit_rgba_png_average_is_premultiplied(invoke, tmp_path, rgba16):
    (tmp_path / "c.png").write_bytes(imagecodecs.png_encode(rgba16))
    assert invoke("avg", "c.png", "-k", "2", "-o", "avg.png", "-q").exit_code == 0
    windows = blocks(rgba16.astype(np.int64))
    alpha = windows[..., 3]
    weighted = (windows[..., :3] * alpha[..., None]).sum(axis=2)
    alpha_sum = alpha.sum(axis=2)[..., None]
    colour = np.where(alpha_sum > 0, half_up(weighted, np.maximum(alpha_sum, 1)), 0)
    expected = np.concatenate([colour, half_up(alpha.sum(axis=2), 4)[..., None]], axis=2)
    out = read16(tmp_path / "avg.png")
    assert out.shape == (3, 4, 4) and np.array_equal(out, expected)
    assert np.array_equal(out[0, 0], [0, 0, 0, half_up(rgba16[:2, :2, 3].astype(np.int64).sum(), 4)])


def test_16bit_png_keeps_metadata_and_orientation(rng):
    pixels = rng.integers(0, 65536, (4, 6, 3), dtype=np.uint16)
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    picture = images.Picture(frames=[images.ArrayFrame(pixels)], mode="RGB;16", source_mode="RGB;16",
                             format="PNG", icc_profile=icc, dpi=(300.0, 300.0), exif=exif.tobytes(), xmp=XMP)
    buffer = io.BytesIO()
    images.encode(picture, buffer, "PNG")
    back = images.decode(buffer.getvalue())
    assert back.mode == "RGB;16" and np.array_equal(back.frames[0], np.rot90(pixels, -1))
    assert back.icc_profile == icc and back.xmp == XMP and back.dpi == pytest.approx((300, 300), abs=0.05)
    assert back.exif is None  # the orientation was its only tag, and it was applied


@pytest.mark.parametrize("fmt", ["JPEG", "BMP"])
def test_16bit_colour_into_an_8bit_format_is_refused(fmt):
    with pytest.raises(images.ImageError) as info:
        images.check_format("RGB;16", fmt)
    assert str(info.value) == f"cannot write 16-bit RGB pixels as {fmt}; formats that can: PNG, .npy"


@pytest.mark.parametrize("source, target", [(s, t) for s in ("PNG", "JPEG", "TIFF", "WEBP")
                                            for t in ("PNG", "JPEG", "TIFF", "WEBP")])
def test_xmp_is_kept_where_the_format_holds_it(source, target):
    options = {"PNG": {"pnginfo": PngInfo()}, "TIFF": {"tiffinfo": {700: XMP}}}.get(source, {"xmp": XMP})
    if source == "PNG":
        options["pnginfo"].add_itxt("XML:com.adobe.xmp", XMP)
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), (9, 8, 7)).save(buffer, source, **options)
    picture = images.decode(buffer.getvalue())
    assert picture.xmp == XMP
    out = io.BytesIO()
    images.encode(picture, out, target)
    written = Image.open(io.BytesIO(out.getvalue())).info["xmp"]
    assert (written.encode() if isinstance(written, str) else written) == XMP


def test_metadata_a_format_cannot_hold_is_a_note(invoke, tmp_path):
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    info = PngInfo()
    info.add_itxt("XML:com.adobe.xmp", XMP)
    Image.new("RGB", (4, 4)).save(tmp_path / "m.png", pnginfo=info, icc_profile=icc)
    result = invoke("max", "m.png", "-k", "2", "-o", "m.bmp", "--json")
    assert result.exit_code == 0
    (record,) = json_lines(result.stdout)
    assert record["notes"] == ["BMP cannot hold the ICC profile and XMP of the input: not written"]


def test_alpha_into_jpeg_names_background(invoke, tmp_path, rng):
    pixels = rng.integers(0, 256, (4, 4, 4), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    refused = invoke("max", "a.png", "-k", "2", "-o", "a.jpg")
    assert refused.exit_code == 1 and "--background COLOR" in refused.stderr
    assert files_of(tmp_path) == ["a.png"]

    result = invoke("avg", "a.png", "-k", "2", "-o", "a.npy", "--background", "#102030", "--json")
    assert result.exit_code == 0
    assert json_lines(result.stdout)[0]["notes"] == ["alpha flattened onto the background #102030"]
    colour, alpha = pixels[..., :3].astype(np.int64), pixels[..., 3:].astype(np.int64)
    flat = half_up(colour * alpha + np.array([16, 32, 48]) * (255 - alpha), 255)
    expected = half_up(blocks(flat).sum(axis=2), 4)
    assert np.array_equal(np.load(tmp_path / "a.npy"), expected.transpose(2, 0, 1))
    assert invoke("max", "a.png", "-k", "2", "-o", "a.jpg", "--background", "white", "-q").exit_code == 0
    assert Image.open(tmp_path / "a.jpg").mode == "RGB"


def test_background_must_be_a_colour(invoke, tmp_path):
    result = invoke("max", "x.png", "-k", "2", "--background", "nocolour")
    assert result.exit_code == 2 and "'--background'" in result.stderr and "is not a colour" in result.stderr


def test_linear_refuses_a_profile_that_is_not_srgb(invoke, tmp_path):
    xyz = ImageCms.ImageCmsProfile(ImageCms.createProfile("XYZ")).tobytes()
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.new("RGB", (4, 4), (200, 100, 50)).save(tmp_path / "xyz.png", icc_profile=xyz)
    Image.new("RGB", (4, 4), (200, 100, 50)).save(tmp_path / "srgb.png", icc_profile=srgb)
    result = invoke("avg", "xyz.png", "-k", "2", "--linear")
    assert result.exit_code == 1
    assert result.stderr.strip() == ("poolcli: error: xyz.png: --linear averages sRGB values, but the image's ICC "
                                     "profile is 'XYZ identity built-in'; convert it to sRGB first, or average "
                                     "without --linear")
    assert invoke("avg", "srgb.png", "-k", "2", "--linear", "-q").exit_code == 0


def files_of(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_16bit_gray_with_alpha_png(invoke, tmp_path, rng):
    pixels = rng.integers(0, 65536, (4, 6, 2), dtype=np.uint16)
    (tmp_path / "la.png").write_bytes(imagecodecs.png_encode(pixels))
    assert invoke("max", "la.png", "-k", "2", "-o", "max.png", "-q").exit_code == 0
    assert np.array_equal(read16(tmp_path / "max.png"), blocks(pixels.astype(np.int64)).max(axis=2))
    assert invoke("max", "la.png", "-k", "2", "-o", "flat.png", "--background", "black", "-q").exit_code == 0
    flat = Image.open(tmp_path / "flat.png")
    gray, alpha = pixels[..., :1].astype(np.int64), pixels[..., 1:].astype(np.int64)
    expected = blocks(half_up(gray * alpha, 65535)).max(axis=2)[..., 0]
    assert flat.mode == "I;16" and np.array_equal(np.asarray(flat), expected)


def test_applied_orientation_leaves_exif_and_xmp(rng):
    pixels = rng.integers(0, 256, (4, 6, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 8
    xmp = XMP.replace(b'dc:creator="poolcli"', b'dc:creator="poolcli" tiff:Orientation="8"')
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", exif=exif, xmp=xmp, quality=100)
    picture = images.decode(buffer.getvalue())
    assert picture.frames[0].shape == (6, 4, 3)  # turned 90 degrees counter-clockwise to display
    assert picture.xmp == XMP and picture.exif is None
    kept = images.decode(buffer.getvalue(), auto_orient=False)
    assert kept.xmp == xmp and kept.frames[0].shape == (4, 6, 3)


@pytest.mark.parametrize("orientation", range(2, 9))
def test_16bit_orientation_matches_pillows_transpose(orientation, rng):
    """16-bit colour is turned with NumPy: the same result as Pillow's transpose of 8-bit pixels."""
    pixels = rng.integers(0, 256, (3, 5, 3), dtype=np.uint16) * 257
    exif = Image.Exif()
    exif[0x0112] = orientation
    picture = images.Picture(frames=[images.ArrayFrame(pixels)], mode="RGB;16", source_mode="RGB;16",
                             format="PNG", exif=exif.tobytes())
    buffer = io.BytesIO()
    images.encode(picture, buffer, "PNG")
    turned = images.decode(buffer.getvalue()).frames[0]
    eight_bit = io.BytesIO()
    Image.fromarray((pixels // 257).astype(np.uint8)).save(eight_bit, "PNG", exif=exif)
    assert np.array_equal(turned // 257, images.decode(eight_bit.getvalue()).frames[0])
