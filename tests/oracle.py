"""A slow, obviously-correct reference for torch's 2-D pooling, written straight from the spec
(``docs/semantics.md``, sections 1, 3 and 4): one Python loop per output
element, in torch's scan order.  Tests compare the fast engine against it; it never calls the engine.
"""

from __future__ import annotations

import math

import numpy as np


def out_size(length: int, k: int, s: int, p: int, d: int, ceil: bool) -> int:
    """Spec §1, literally."""
    eff = d * (k - 1) + 1
    num = length + 2 * p - eff
    if ceil:
        num += s - 1
    out = math.floor(num / s) + 1 if num >= 0 else -((-num + s - 1) // s) + 1
    if ceil and (out - 1) * s >= length + p:
        out -= 1
    return out


def is_valid(h: int, w: int, k, s, p, d, ceil: bool) -> bool:
    """Positive parameters only: the pad limits (effective and plain kernel) and output >= 1."""
    for length, kk, ss, pp, dd in ((h, k[0], s[0], p[0], d[0]), (w, k[1], s[1], p[1], d[1])):
        if pp > (dd * (kk - 1) + 1) // 2 or pp > kk // 2:
            return False
        if out_size(length, kk, ss, pp, dd, ceil) < 1:
            return False
    return True


def _lowest(dtype: np.dtype):
    return -np.inf if dtype.kind == "f" else np.iinfo(dtype).min


def max_pool2d_ref(x: np.ndarray, k, s, p, d, ceil: bool) -> tuple[np.ndarray, np.ndarray]:
    """Spec §4 for a 4-D (N, C, H, W) array: values and int64 indices."""
    n, c, h, w = x.shape
    oh, ow = out_size(h, k[0], s[0], p[0], d[0], ceil), out_size(w, k[1], s[1], p[1], d[1], ceil)
    values = np.empty((n, c, oh, ow), dtype=x.dtype)
    indices = np.empty((n, c, oh, ow), dtype=np.int64)
    is_float = x.dtype.kind == "f"
    for b in range(n):
        for ch in range(c):
            plane = x[b, ch]
            for i in range(oh):
                for j in range(ow):
                    h0 = i * s[0] - p[0]
                    w0 = j * s[1] - p[1]
                    h1 = min(h0 + (k[0] - 1) * d[0] + 1, h)
                    w1 = min(w0 + (k[1] - 1) * d[1] + 1, w)
                    while h0 < 0:
                        h0 += d[0]
                    while w0 < 0:
                        w0 += d[1]
                    best = x.dtype.type(_lowest(x.dtype))
                    best_idx = h0 * w + w0
                    for ih in range(h0, h1, d[0]):
                        for iw in range(w0, w1, d[1]):
                            v = plane[ih, iw]
                            if v > best or (is_float and np.isnan(v)):
                                best = v
                                best_idx = ih * w + iw
                    values[b, ch, i, j] = best
                    indices[b, ch, i, j] = best_idx
    return values, indices


def avg_pool2d_ref(x: np.ndarray, k, s, p, ceil: bool, count_include_pad: bool, divisor_override, rounded=False):
    """Spec §3 for a 4-D array.  Integer dtypes other than int64 go through int64 (the engine's
    documented extension); ``rounded`` rounds the integer average half up instead of truncating."""
    n, c, h, w = x.shape
    oh, ow = out_size(h, k[0], s[0], p[0], 1, ceil), out_size(w, k[1], s[1], p[1], 1, ceil)
    out = np.empty((n, c, oh, ow), dtype=x.dtype)
    if x.dtype.kind == "f":
        acc_type = np.float64 if x.dtype == np.float64 else np.float32
    else:
        acc_type = None  # Python ints, wrapped to int64 at the end
    for b in range(n):
        for ch in range(c):
            plane = x[b, ch]
            for i in range(oh):
                for j in range(ow):
                    h0 = i * s[0] - p[0]
                    w0 = j * s[1] - p[1]
                    h1 = min(h0 + k[0], h + p[0])
                    w1 = min(w0 + k[1], w + p[1])
                    pool_size = (h1 - h0) * (w1 - w0)
                    h0, w0 = max(h0, 0), max(w0, 0)
                    h1, w1 = min(h1, h), min(w1, w)
                    if divisor_override is not None:
                        divisor = divisor_override
                    elif count_include_pad:
                        divisor = pool_size
                    else:
                        divisor = (h1 - h0) * (w1 - w0)
                    if acc_type is not None:
                        acc = acc_type(0.0)
                        with np.errstate(all="ignore"):
                            for ih in range(h0, h1):
                                for iw in range(w0, w1):
                                    acc = acc_type(acc + acc_type(plane[ih, iw]))
                            q = acc_type(acc / acc_type(divisor))
                        out[b, ch, i, j] = x.dtype.type(q) + x.dtype.type(0)
                    else:
                        total = sum(int(np.int64(plane[ih, iw])) for ih in range(h0, h1) for iw in range(w0, w1))
                        total = (total + 2**63) % 2**64 - 2**63  # int64 accumulation wraps
                        if rounded:
                            q = (2 * total + divisor) // (2 * divisor)
                        else:
                            q = abs(total) // abs(divisor) * (1 if (total >= 0) == (divisor > 0) else -1)
                        wrapped = (q + 2**63) % 2**64 - 2**63
                        out[b, ch, i, j] = np.int64(wrapped).astype(x.dtype)
    return out
