"""A small PNG writer and mutator for differential fuzzing, independent of poolcli and of
Pillow's encoder (adapted from the fuzz campaign of issue 19).

:func:`build_png` writes any kind of PNG (every colour type and depth, chosen row filters, Adam7,
IDAT splits including 1-byte and empty IDATs, tRNS/PLTE and other chunks before or after the
image data); :func:`mutate` returns (mutated bytes, description) from 26 chunk-aware and
byte-level mutators (chunk reorder/drop/duplicate, bad CRCs and Adler-32, cut or trailing zlib
data, filter bytes above 4, rows cut or added, header lies, bit flips, truncation).
"""

from __future__ import annotations

import random
import struct
import zlib

import numpy as np

SIG = b"\x89PNG\r\n\x1a\n"


def chunk(kind: bytes, data: bytes, crc: int | None = None) -> bytes:
    c = zlib.crc32(kind + data) if crc is None else crc
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", c & 0xFFFFFFFF)


def parse(data: bytes):
    """[(kind, payload, crc_ok)] or None if not parseable as chunks (stops at a broken one)."""
    if data[:8] != SIG:
        return None
    out, pos = [], 8
    while pos + 12 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if pos + 12 + length > len(data):
            return None
        payload = data[pos + 8:pos + 8 + length]
        crc = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])[0]
        out.append([kind, payload, crc])
        pos += 12 + length
    return out, data[pos:]


def assemble(chunks, tail=b"") -> bytes:
    return SIG + b"".join(struct.pack(">I", len(p)) + k + p + struct.pack(">I", c) for k, p, c in chunks) + tail


def _predict(kind, raw, prior, bpp):
    r = raw.astype(np.int16)
    p = prior.astype(np.int16)
    left = np.zeros_like(r)
    left[bpp:] = r[:-bpp]
    corner = np.zeros_like(r)
    corner[bpp:] = p[:-bpp]
    if kind == 0:
        pred = np.zeros_like(r)
    elif kind == 1:
        pred = left
    elif kind == 2:
        pred = p
    elif kind == 3:
        pred = (left + p) // 2
    else:
        pa, pb, pc = np.abs(p - corner), np.abs(left - corner), np.abs(left + p - 2 * corner)
        pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, p, corner))
    return ((r - pred) & 0xFF).astype(np.uint8)


def raw_rows(arr: np.ndarray, depth: int) -> tuple[list[np.ndarray], int]:
    """arr (H, W, C) of sample values -> list of packed row byte arrays, bytes per pixel."""
    h, _w, c = arr.shape
    if depth == 16:
        rows = [arr[y].astype(">u2").reshape(-1).view(np.uint8) for y in range(h)]
        return rows, 2 * c
    if depth == 8:
        return [arr[y].astype(np.uint8).reshape(-1) for y in range(h)], c
    # sub-byte: c == 1
    per = 8 // depth
    rows = []
    for y in range(h):
        v = arr[y, :, 0].astype(np.uint8)
        pad = (-len(v)) % per
        v = np.concatenate([v, np.zeros(pad, np.uint8)]).reshape(-1, per)
        b = np.zeros(len(v), np.uint8)
        for i in range(per):
            b |= (v[:, i] << (8 - depth * (i + 1))).astype(np.uint8)
        rows.append(b)
    return rows, 1


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def filtered_stream(arr, depth, filters, rng, interlace=False) -> bytes:
    out = bytearray()

    def emit(sub):
        rows, bpp = raw_rows(sub, depth)
        prior = np.zeros_like(rows[0]) if rows else None
        for row in rows:
            f = filters if isinstance(filters, int) else rng.randrange(5)
            out.append(f)
            out.extend(_predict(f, row, prior, bpp).tobytes())
            prior = row

    if not interlace:
        emit(arr)
    else:
        for x0, y0, dx, dy in ADAM7:
            sub = arr[y0::dy, x0::dx]
            if sub.shape[0] and sub.shape[1]:
                emit(sub)
    return bytes(out)


COLOUR = {"L": 0, "RGB": 2, "P": 3, "LA": 4, "RGBA": 6}
CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def build_png(arr, kind, depth, rng, *, filters=None, interlace=False, idat_sizes=None, level=6,
              palette=None, trns=None, pre=(), post=(), zero_idats=0):
    """arr: (H, W, C) sample values for colour type `kind` at `depth`; returns PNG bytes."""
    h, w, _ = arr.shape
    ihdr = struct.pack(">IIBBBBB", w, h, depth, COLOUR[kind], 0, 0, 1 if interlace else 0)
    stream = zlib.compress(filtered_stream(arr, depth, rng.randrange(5) if filters is None else filters, rng,
                                           interlace), level)
    chunks = [chunk(b"IHDR", ihdr)] + list(pre)
    if palette is not None:
        chunks.append(chunk(b"PLTE", palette))
    if trns is not None:
        chunks.append(chunk(b"tRNS", trns))
    parts, pos = [], 0
    sizes = idat_sizes or [len(stream)]
    i = 0
    while pos < len(stream):
        n = sizes[i % len(sizes)]
        parts.append(stream[pos:pos + n])
        pos += n
        i += 1
    for j, p in enumerate(parts):
        chunks.append(chunk(b"IDAT", p))
        if zero_idats and j % 3 == 0:
            chunks.append(chunk(b"IDAT", b""))
    chunks += list(post)
    chunks.append(chunk(b"IEND", b""))
    return SIG + b"".join(chunks)


def exif_blob(orientation: int) -> bytes:
    # little-endian TIFF with one IFD entry: Orientation
    entry = struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0)
    return b"II*\x00\x08\x00\x00\x00\x01\x00" + entry + b"\x00\x00\x00\x00"


def icc_chunk() -> bytes:
    from PIL import ImageCms
    prof = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    return chunk(b"iCCP", b"srgb\x00\x00" + zlib.compress(prof))


# ------------------------------------------------------------------ mutations

def _idat_stream(chunks):
    return b"".join(p for k, p, c in chunks if k == b"IDAT")


def _replace_idat(chunks, stream, rng, sizes=None):
    first = next((i for i, ch in enumerate(chunks) if ch[0] == b"IDAT"), None)
    if first is None:
        return chunks
    rest = [ch for ch in chunks[first:] if ch[0] != b"IDAT"]
    head = chunks[:first]
    parts, pos = [], 0
    while pos < len(stream):
        n = rng.choice(sizes) if sizes else len(stream)
        parts.append(stream[pos:pos + n])
        pos += n
    if not parts:
        parts = [b""]
    new = [[b"IDAT", p, zlib.crc32(b"IDAT" + p)] for p in parts]
    return head + new + rest


def _fix(ch):
    ch[2] = zlib.crc32(ch[0] + ch[1]) & 0xFFFFFFFF
    return ch


def _raw_from(chunks):
    try:
        return zlib.decompress(_idat_stream(chunks))
    except zlib.error:
        return None


def mutate(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    parsed = parse(data)
    ops = ["bitflip", "truncate", "bytes", "trail_after_iend"]
    if parsed:
        ops += ["reorder", "split_idat", "split_idat1", "bad_crc", "bad_adler", "zlib_trunc", "zlib_trailing",
                "bad_filter", "ihdr_lie", "ihdr_lie", "chunk_after_idat", "drop_chunk", "dup_chunk",
                "zero_idat", "zlib_level0", "raw_trunc", "raw_extra", "fdict", "idat_bitflip", "drop_iend",
                "bad_zhdr", "ancillary_bad_crc", "stream_after_end"]
    op = rng.choice(ops)
    d = bytearray(data)
    if op == "bitflip":
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(8, len(d))
            d[i] ^= 1 << rng.randrange(8)
        return bytes(d), op
    if op == "truncate":
        n = rng.randrange(8, len(d))
        return bytes(d[:n]), f"{op}:{n}"
    if op == "bytes":
        i = rng.randrange(8, len(d))
        d[i:i + rng.randint(1, 4)] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
        return bytes(d), op
    if op == "trail_after_iend":
        return data + bytes(rng.randrange(256) for _ in range(rng.randint(1, 300))), op
    chunks, tail = parsed
    chunks = [list(c) for c in chunks]
    if op == "reorder":
        i, j = rng.randrange(len(chunks)), rng.randrange(len(chunks))
        chunks[i], chunks[j] = chunks[j], chunks[i]
    elif op in ("split_idat", "split_idat1"):
        sizes = [1] if op == "split_idat1" else [rng.randint(1, 5000), rng.randint(1, 70), 0, rng.randint(1, 3)]
        chunks = _replace_idat(chunks, _idat_stream(chunks), rng, sizes)
    elif op == "bad_crc":
        i = rng.randrange(len(chunks))
        chunks[i][2] ^= 1 << rng.randrange(32)
        op += f":{chunks[i][0].decode('latin1')}"
    elif op == "ancillary_bad_crc":
        anc = [c for c in chunks if c[0][:1].islower()]
        if anc:
            rng.choice(anc)[2] ^= 0x10
    elif op == "bad_adler":
        s = bytearray(_idat_stream(chunks))
        if len(s) >= 4:
            s[-1 - rng.randrange(4)] ^= 1 << rng.randrange(8)
        chunks = _replace_idat(chunks, bytes(s), rng)
    elif op == "zlib_trunc":
        s = _idat_stream(chunks)
        chunks = _replace_idat(chunks, s[:rng.randrange(max(1, len(s)))], rng)
    elif op == "zlib_trailing":
        s = _idat_stream(chunks) + bytes(rng.randrange(256) for _ in range(rng.randint(1, 100)))
        chunks = _replace_idat(chunks, s, rng)
    elif op == "stream_after_end":  # a second zlib stream after the first
        s = _idat_stream(chunks)
        chunks = _replace_idat(chunks, s + zlib.compress(bytes(rng.randint(1, 5000))), rng)
    elif op in ("bad_filter", "raw_trunc", "raw_extra", "zlib_level0", "fdict"):
        raw = _raw_from(chunks)
        if raw is None:
            return bytes(d), op + ":noop"
        raw = bytearray(raw)
        if op == "bad_filter":
            ih = next(c for c in chunks if c[0] == b"IHDR")[1]
            w, h, depth, ct = struct.unpack(">IIBB", ih[:10])
            rowb = 1 + (w * CHANNELS.get(ct, 1) * depth + 7) // 8
            if ih[12] == 0 and rowb:
                r = rng.randrange(max(1, len(raw) // rowb))
                if r * rowb < len(raw):
                    raw[r * rowb] = rng.choice([5, 6, 7, 128, 255])
        elif op == "raw_trunc":
            raw = raw[:rng.randrange(max(1, len(raw)))]
        elif op == "raw_extra":
            raw += bytes(rng.randint(1, 1000))
        stream = zlib.compress(bytes(raw), 0 if op == "zlib_level0" else 6)
        if op == "fdict":
            stream = bytes([stream[0], stream[1] | 0x20]) + stream[2:]
            cmf, flg = stream[0], stream[1] & ~0x1F
            flg |= 31 - ((cmf * 256 + flg) % 31)
            stream = bytes([cmf, flg]) + b"\0\0\0\1" + stream[2:]
        chunks = _replace_idat(chunks, stream, rng, [rng.randint(1, 9000)])
    elif op == "bad_zhdr":
        s = bytearray(_idat_stream(chunks))
        if s:
            s[rng.randrange(min(2, len(s)))] ^= 1 << rng.randrange(8)
        chunks = _replace_idat(chunks, bytes(s), rng)
    elif op == "idat_bitflip":
        s = bytearray(_idat_stream(chunks))
        if s:
            for _ in range(rng.randint(1, 3)):
                s[rng.randrange(len(s))] ^= 1 << rng.randrange(8)
        chunks = _replace_idat(chunks, bytes(s), rng)
    elif op == "ihdr_lie":
        ih = bytearray(chunks[0][1]) if chunks[0][0] == b"IHDR" else None
        if ih is not None and len(ih) == 13:
            field = rng.choice(["w", "h", "depth", "ct", "il", "wh"])
            w, h = struct.unpack(">II", ih[:8])
            if field == "w":
                ih[0:4] = struct.pack(">I", max(0, w + rng.choice([-1, 1, 2, -w, 1000, 2**31 - 1, 2**31])) & 0xFFFFFFFF)
            elif field == "h":
                ih[4:8] = struct.pack(">I", max(0, h + rng.choice([-1, 1, 7, -h, 1000, 2**31 - 1])) & 0xFFFFFFFF)
            elif field == "wh":
                ih[0:8] = struct.pack(">II", h, w)
            elif field == "depth":
                ih[8] = rng.choice([1, 2, 4, 8, 16, 3, 0, 32])
            elif field == "ct":
                ih[9] = rng.choice([0, 2, 3, 4, 6, 1, 7])
            else:
                ih[12] = rng.choice([0, 1, 2])
            chunks[0][1] = bytes(ih)
            _fix(chunks[0])
            op += ":" + field
    elif op == "chunk_after_idat":
        kind = rng.choice([b"tEXt", b"zTXt", b"eXIf", b"IDAT", b"PLTE", b"tRNS", b"iCCP", b"abcd", b"IHDR"])
        payload = {b"tEXt": b"k\x00v", b"zTXt": b"k\x00\x00" + zlib.compress(b"v"), b"eXIf": exif_blob(6),
                   b"PLTE": bytes(range(12)), b"tRNS": b"\x00\x01", b"iCCP": b"x\x00\x00" + zlib.compress(b"junk"),
                   b"IHDR": chunks[0][1]}.get(kind, bytes(rng.randint(0, 9)))
        last_idat = max((i for i, c in enumerate(chunks) if c[0] == b"IDAT"), default=len(chunks) - 2)
        chunks.insert(last_idat + 1, _fix([kind, payload, 0]))
        op += ":" + kind.decode()
    elif op == "drop_chunk":
        if len(chunks) > 1:
            i = rng.randrange(len(chunks))
            op += ":" + chunks[i][0].decode("latin1")
            del chunks[i]
    elif op == "dup_chunk":
        i = rng.randrange(len(chunks))
        chunks.insert(i, list(chunks[i]))
        op += ":" + chunks[i][0].decode("latin1")
    elif op == "zero_idat":
        idx = [i for i, c in enumerate(chunks) if c[0] == b"IDAT"]
        if idx:
            chunks.insert(rng.choice(idx) + rng.randint(0, 1), _fix([b"IDAT", b"", 0]))
    elif op == "drop_iend":
        chunks = [c for c in chunks if c[0] != b"IEND"]
    return assemble(chunks, tail), op
