"""A slow, obviously-correct reference for nodata-aware pooling, written straight from
docs/semantics.md §10.1 (with the window rules of §3 and §4): one Python loop per output element
over the window's cells, skipping the nodata ones.  It never calls the engine.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from tests.oracle import out_size


def _is_nodata(value: np.generic, nodata: np.generic) -> bool:
    if np.isnan(nodata):
        return bool(np.isnan(value))
    return bool(value == nodata)


def max_ref(x: np.ndarray, nodata: np.generic, k, s, p, d, ceil: bool) -> np.ndarray:
    """(C, H, W) -> (C, OH, OW): the maximum of each window's valid taps (torch's comparison:
    strict ``>``, a NaN wins), or ``nodata`` when there is none."""
    c, h, w = x.shape
    oh, ow = out_size(h, k[0], s[0], p[0], d[0], ceil), out_size(w, k[1], s[1], p[1], d[1], ceil)
    out = np.empty((c, oh, ow), dtype=x.dtype)
    for ch in range(c):
        for i in range(oh):
            for j in range(ow):
                best = None
                for a in range(k[0]):
                    for b in range(k[1]):
                        r, q = i * s[0] - p[0] + a * d[0], j * s[1] - p[1] + b * d[1]
                        if not (0 <= r < h and 0 <= q < w) or _is_nodata(x[ch, r, q], nodata):
                            continue
                        v = x[ch, r, q]
                        if best is None or v > best or np.isnan(v):
                            best = v
                out[ch, i, j] = nodata if best is None else best
    return out


def avg_ref(x: np.ndarray, nodata: np.generic, k, s, p, ceil: bool, count_include_pad: bool,
            divisor_override: int | None) -> np.ndarray:
    """(C, H, W) -> (C, OH, OW): the sum of each window's valid pixels over the override, or over
    the valid pixels plus (with count_include_pad) the padding cells inside [-p, L+p); floats sum
    in torch's accumulator and order, integers (int64 sums) round the exact quotient half up and saturate."""
    c, h, w = x.shape
    oh, ow = out_size(h, k[0], s[0], p[0], 1, ceil), out_size(w, k[1], s[1], p[1], 1, ceil)
    out = np.empty((c, oh, ow), dtype=x.dtype)
    is_float = x.dtype.kind == "f"
    acc_type = (np.float64 if x.dtype == np.float64 else np.float32) if is_float else None
    for ch in range(c):
        for i in range(oh):
            for j in range(ow):
                h0, w0 = i * s[0] - p[0], j * s[1] - p[1]
                h1, w1 = min(h0 + k[0], h + p[0]), min(w0 + k[1], w + p[1])  # ceil overhang never counts
                total = acc_type(0.0) if acc_type is not None else 0
                count, valid = 0, 0
                for r in range(h0, h1):
                    for q in range(w0, w1):
                        if not (0 <= r < h and 0 <= q < w):
                            count += bool(count_include_pad)
                            continue
                        v = x[ch, r, q]
                        if _is_nodata(v, nodata):
                            continue
                        valid += 1
                        count += 1
                        if acc_type is not None:
                            with np.errstate(all="ignore"):
                                total = acc_type(total + acc_type(v))
                        else:
                            total += int(v)
                divisor = divisor_override if divisor_override is not None else count
                if not valid:
                    out[ch, i, j] = nodata
                elif acc_type is not None:
                    with np.errstate(all="ignore"):
                        out[ch, i, j] = x.dtype.type(acc_type(total / acc_type(divisor))) + x.dtype.type(0)
                else:
                    info = np.iinfo(x.dtype)
                    total = (total + 2**63) % 2**64 - 2**63  # int64 accumulation wraps, as torch's
                    rounded = math.floor(Fraction(total, divisor) + Fraction(1, 2))
                    out[ch, i, j] = min(max(rounded, int(info.min)), int(info.max))
    return out
