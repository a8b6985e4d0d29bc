"""Crafted decompression bombs: tiny files whose headers claim huge pixel counts.

Written byte by byte (no image library), so that no test ever holds the pixels they claim.
"""

from __future__ import annotations

import struct

# LZW data of a 1x1 GIF frame (minimum code size 2): clear, pixel 0, end, packed LSB first.
_GIF_PIXEL = bytes([2, 2, 0x44, 0x01, 0])


def gif(screen: tuple[int, int], frames: list[tuple[int, int]]) -> bytes:
    """A GIF with a logical screen of ``screen`` (W, H) and one image per ``frames`` entry
    claiming that (W, H), each with the data of a single pixel."""
    out = bytearray(b"GIF89a" + struct.pack("<HH", *screen) + bytes([0x80, 0, 0]) + bytes(6))  # 2-colour palette
    for width, height in frames:
        out += b"\x21\xf9\x04\x00\x0a\x00\x00\x00"  # graphic control: 100 ms
        out += b"\x2c" + struct.pack("<HHHH", 0, 0, width, height) + b"\x00" + _GIF_PIXEL
    return bytes(out + b"\x3b")


def tiff(pages: list[tuple[int, int]]) -> bytes:
    """A little-endian gray TIFF whose pages claim (W, H) each, deflate-compressed, each with a
    strip of a few bytes: the header says the size, the data cannot hold it."""
    import zlib

    strip = zlib.compress(b"\0" * 16)
    out = bytearray(b"II*\0" + struct.pack("<I", 8))
    for number, (width, height) in enumerate(pages):
        ifd_at = len(out)
        entries = [
            (256, 4, width), (257, 4, height), (258, 3, 8), (259, 3, 8), (262, 3, 1),
            (273, 4, 0), (277, 3, 1), (278, 4, height), (279, 4, len(strip)),
        ]
        size = 2 + 12 * len(entries) + 4
        data_at = ifd_at + size
        out += struct.pack("<H", len(entries))
        for tag, kind, value in entries:
            value = data_at if tag == 273 else value
            packed = struct.pack("<HHI", tag, kind, 1) + (struct.pack("<HH", value, 0) if kind == 3
                                                           else struct.pack("<I", value))
            out += packed
        last = number == len(pages) - 1
        out += struct.pack("<I", 0 if last else data_at + len(strip))
        out += strip
    return bytes(out)
