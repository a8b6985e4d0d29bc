"""Decoding and encoding real image files: modes, alpha, frames, orientation, metadata."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageCms

from poolcli import images
from poolcli.images import ImageError, decode, encode


def save(img: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **options)
    return buffer.getvalue()


def roundtrip(picture: images.Picture, fmt: str, **options) -> Image.Image:
    buffer = io.BytesIO()
    encode(picture, buffer, fmt, **options)
    buffer.seek(0)
    return Image.open(buffer)


@pytest.mark.parametrize(
    "mode, expected_mode, dtype, channels",
    [
        ("L", "L", np.uint8, 1),
        ("LA", "LA", np.uint8, 2),
        ("RGB", "RGB", np.uint8, 3),
        ("RGBA", "RGBA", np.uint8, 4),
        ("1", "L", np.uint8, 1),
        ("P", "RGB", np.uint8, 3),
        ("I;16", "I;16", np.uint16, 1),
        ("I", "I", np.int32, 1),
        ("F", "F", np.float32, 1),
        ("CMYK", "CMYK", np.uint8, 4),
    ],
)
def test_modes(mode, expected_mode, dtype, channels, rng):
    source = Image.fromarray(rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)).convert(mode)
    picture = decode(save(source, "TIFF"))
    assert picture.mode == expected_mode
    frame = picture.frames[0]
    assert frame.dtype == dtype and frame.shape == (5, 7, channels)
    if mode not in ("1", "P"):
        assert np.array_equal(frame.reshape(np.asarray(source).shape), np.asarray(source))


def test_palette_with_transparency_becomes_rgba(rng):
    img = Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).convert("P")
    picture = decode(save(img, "PNG", transparency=0))
    assert picture.mode == "RGBA" and picture.has_alpha


def test_sixteen_bit_png_keeps_its_values(rng):
    values = rng.integers(0, 65536, (6, 9), dtype=np.uint16)
    picture = decode(save(Image.fromarray(values), "PNG"))
    assert picture.mode == "I;16" and np.array_equal(picture.frames[0][:, :, 0], values)
    back = roundtrip(picture, "PNG")
    assert back.mode == "I;16" and np.array_equal(np.asarray(back), values)


def test_big_images_are_copied_in_strips(monkeypatch, rng):
    monkeypatch.setattr(images, "_STRIP_BYTES", 64)
    pixels = rng.integers(0, 256, (37, 11, 3), dtype=np.uint8)
    assert np.array_equal(decode(save(Image.fromarray(pixels), "PNG")).frames[0], pixels)


def test_animation_keeps_frames_durations_and_loop(rng):
    frames = [Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)) for i in range(3)]
    data = save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=[100, 200, 300], loop=2)
    picture = decode(data)
    assert len(picture.frames) == 3 and picture.durations == [100, 200, 300] and picture.loop == 2
    out = roundtrip(picture, "PNG")
    assert out.n_frames == 3 and out.info.get("loop") == 2
    durations = []
    for i in range(3):
        out.seek(i)
        durations.append(out.info["duration"])
    assert durations == [100, 200, 300]


def test_multi_page_tiff(rng):
    pages = [Image.fromarray(rng.integers(0, 256, (4, 6), dtype=np.uint8)) for _ in range(2)]
    picture = decode(save(pages[0], "TIFF", save_all=True, append_images=pages[1:]))
    assert len(picture.frames) == 2
    assert np.array_equal(picture.frames[1][:, :, 0], np.asarray(pages[1]))


def test_exif_orientation_is_applied_and_removed(rng):
    pixels = rng.integers(0, 256, (4, 6, 3), dtype=np.uint8)
    img = Image.fromarray(pixels)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    exif[0x010F] = "poolcli camera"
    data = save(img, "PNG", exif=exif)
    picture = decode(data)
    assert picture.frames[0].shape == (6, 4, 3)
    assert np.array_equal(picture.frames[0], np.rot90(pixels, -1))
    out = roundtrip(picture, "PNG")
    assert 0x0112 not in out.getexif() and out.getexif()[0x010F] == "poolcli camera"

    kept = decode(data, auto_orient=False)
    assert kept.frames[0].shape == (4, 6, 3)
    assert roundtrip(kept, "PNG").getexif()[0x0112] == 6  # still true of the stored pixels


def test_icc_profile_and_dpi(rng):
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    img = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    picture = decode(save(img, "PNG", icc_profile=icc, dpi=(300, 150)))
    assert picture.icc_profile == icc and picture.dpi == pytest.approx((300, 150), abs=0.05)
    out = roundtrip(picture, "PNG", dpi_scale=(2, 3))
    assert out.info["icc_profile"] == icc
    assert out.info["dpi"] == pytest.approx((150, 50), abs=0.05)


def test_tiff_layout_tags_are_not_copied(rng):
    img = Image.fromarray(rng.random((40, 60), dtype=np.float32), mode="F")
    picture = decode(save(img, "TIFF"))
    small = picture.with_frames([picture.frames[0][:20, :30]])
    assert roundtrip(small, "TIFF").size == (30, 20)


@pytest.mark.parametrize(
    "mode, fmt, message",
    [
        ("F", "PNG", "cannot write 32-bit float (F) pixels as PNG; formats that can: TIFF, .npy"),
        ("RGBA", "JPEG", "cannot write 8-bit RGBA pixels as JPEG; formats that can: PNG, TIFF, WEBP, GIF, .npy; "
                         "or flatten the alpha onto a colour with --background COLOR"),
        ("I;16", "JPEG", "cannot write 16-bit gray (I;16) pixels as JPEG; formats that can: PNG, TIFF, .npy"),
        ("CMYK", "PNG", "cannot write 8-bit CMYK pixels as PNG; formats that can: JPEG, TIFF, .npy"),
    ],
)
def test_formats_that_cannot_hold_a_mode(mode, fmt, message):
    with pytest.raises(ImageError) as info:
        images.check_format(mode, fmt)
    assert str(info.value) == message


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "not an image file Pillow can read"),
        (b"GIF89a", r"^damaged GIF header \(Pillow cannot read it\)$"),
        (b"plain text", "not an image file Pillow can read"),
    ],
)
def test_unreadable_bytes(data, message):
    with pytest.raises(ImageError, match=message):
        decode(data)


def test_truncated_png():
    data = save(Image.new("RGB", (64, 64), (1, 2, 3)), "PNG", compress_level=0)
    with pytest.raises(ImageError, match=r"^damaged PNG file \(the image data ends after 31 of 64 rows\)$"):
        decode(data[: len(data) // 2])


def test_decompression_bomb():
    with pytest.raises(ImageError, match=r"^image size \(400 pixels\) exceeds the limit of 100 pixels.*--max-pixels"):
        decode(save(Image.new("L", (20, 20)), "PNG"), max_pixels=100)
    assert decode(save(Image.new("L", (20, 20)), "PNG"), max_pixels=0).frames[0].shape == (20, 20, 1)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "TIFF", "GIF", "BMP", "WEBP"])
def test_damaged_files_give_image_errors_and_no_warnings(fmt, rng, recwarn):
    """Seeded random damage (truncation, flipped bytes): a picture or an ImageError, nothing else,
    and none of Pillow's warnings about skipped metadata reach the user."""
    data = save(Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)), fmt)
    damage = np.random.default_rng(7)
    outcomes = set()
    for trial in range(60):
        broken = bytearray(data)
        if trial % 2:
            broken = broken[: int(damage.integers(1, len(broken)))]
        else:
            for position in damage.integers(0, len(broken), 6):
                broken[position] = int(damage.integers(0, 256))
        try:
            decode(bytes(broken))
            outcomes.add("decoded")
        except ImageError:
            outcomes.add("error")
    assert "error" in outcomes
    assert len(recwarn) == 0
