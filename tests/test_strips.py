"""Strips: any cut of the output rows gives exactly the whole result (engine, pixel rules, oracle),
and streaming keeps memory bounded."""

from __future__ import annotations

import os

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from poolcli import engine, pixels, strips
from poolcli.frames import ArrayFrame
from poolcli.params import PoolParams
from tests.oracle import avg_pool2d_ref, is_valid, max_pool2d_ref

EXAMPLES = 200 if os.environ.get("CI") == "true" else 40
DTYPES = [np.uint8, np.uint16, np.int16, np.int32, np.int64, np.float16, np.float32, np.float64]
pairs = st.tuples(st.integers(1, 4), st.integers(1, 4))


def bits(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a).tobytes()


@st.composite
def cases(draw):  # type: ignore[no-untyped-def]
    """A (C, H, W) array and valid pooling parameters of either op."""
    op = draw(st.sampled_from(["max", "avg"]))
    k, s = draw(pairs), draw(pairs)
    p = draw(st.tuples(st.integers(0, 2), st.integers(0, 2)))
    d = draw(pairs) if op == "max" else (1, 1)
    ceil = draw(st.booleans())
    c, h, w = draw(st.integers(1, 3)), draw(st.integers(1, 24)), draw(st.integers(1, 12))
    assume(is_valid(h, w, k, s, p, d, ceil))
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    if dtype.kind == "f":
        x = rng.normal(0, 50, (c, h, w)).astype(dtype)
        x[rng.random(x.shape) < 0.05] = np.nan
    else:
        info = np.iinfo(dtype)
        x = rng.integers(max(info.min, -1000), min(info.max, 1000) + 1, (c, h, w), dtype=dtype)
    params = PoolParams(op, k, s, p, d, ceil, count_include_pad=draw(st.booleans()),
                        divisor_override=draw(st.sampled_from([None, 1, 3, -2])) if op == "avg" else None)
    return x, params


def cut(out_h: int, sizes: list[int]) -> list[tuple[int, int]]:
    bounds, o0 = [], 0
    for size in sizes * (out_h + 1):
        if o0 >= out_h:
            break
        bounds.append((o0, min(out_h, o0 + size)))
        o0 = bounds[-1][1]
    return bounds


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(case=cases(), sizes=st.lists(st.integers(1, 5), min_size=1, max_size=4))
def test_strips_concatenate_to_the_whole_call_and_the_oracle(case, sizes):
    x, params = case
    rule = strips.Rule(params)
    whole = rule.pool(x)
    reader = strips.ArrayReader(x)
    parts = [strips.pool_output_rows(reader, rule, o0, o1) for o0, o1 in cut(whole.shape[1], sizes)]
    assert bits(np.concatenate(parts, axis=1)) == bits(whole)
    x4 = x[None]
    if params.op == "max":
        expected = max_pool2d_ref(x4, params.kernel, params.effective_stride, params.padding, params.dilation,
                                  params.ceil_mode)[0][0]
        assert np.array_equal(whole, expected, equal_nan=True)
    elif x.dtype.kind != "f":  # float sums: the engine's own tests compare bits; here, exactness of the cut
        expected = avg_pool2d_ref(x4.astype(np.int64), params.kernel, params.effective_stride, params.padding,
                                  params.ceil_mode, params.count_include_pad, params.divisor_override)[0]
        assert np.array_equal(whole.astype(np.int64), expected.astype(x.dtype).astype(np.int64))


@settings(max_examples=EXAMPLES, deadline=None)
@given(case=cases(), memory=st.integers(1, 4000))
def test_tiny_memory_limits_make_many_strips_with_the_same_result(case, memory):
    x, params = case
    rule = strips.Rule(params)
    old = strips._RESERVE
    strips._RESERVE = 0  # so that a few hundred bytes mean a few rows
    try:
        pieces = list(strips.iter_strips(strips.ArrayReader(x), rule, memory_limit=memory))
    finally:
        strips._RESERVE = old
    assert [p[0] for p in pieces] == sorted(p[0] for p in pieces)
    assert bits(np.concatenate([p[2] for p in pieces], axis=1)) == bits(rule.pool(x))


@settings(max_examples=EXAMPLES, deadline=None)
@given(k=pairs, s=pairs, p=st.tuples(st.integers(0, 1), st.integers(0, 1)), ceil=st.booleans(),
       h=st.integers(2, 20), w=st.integers(2, 10), depth=st.sampled_from([np.uint8, np.uint16]),
       alpha=st.booleans(), premultiply=st.booleans(), linear=st.booleans(),
       divisor=st.sampled_from([None, 2, 7]), step=st.integers(1, 4), seed=st.integers(0, 999))
def test_pixel_rules_are_exact_across_strips(k, s, p, ceil, h, w, depth, alpha, premultiply, linear, divisor,
                                             step, seed):
    assume(is_valid(h, w, k, s, p, (1, 1), ceil))
    rng = np.random.default_rng(seed)
    top = np.iinfo(depth).max
    planes = rng.integers(0, top + 1, (4 if alpha else 3, h, w), dtype=depth)
    if alpha:
        planes[3][rng.random((h, w)) < 0.3] = 0
    params = PoolParams("avg", k, s, p, ceil_mode=ceil, divisor_override=None if linear else divisor)
    rule = strips.Rule(params, pixels=True, has_alpha=alpha, premultiply=premultiply, linear=linear)
    whole = pixels.pool_pixel_planes(planes, params, has_alpha=alpha, premultiply=premultiply, linear=linear)
    reader = strips.ArrayReader(planes)
    parts = [strips.pool_output_rows(reader, rule, o0, o1) for o0, o1 in cut(whole.shape[1], [step])]
    assert bits(np.concatenate(parts, axis=1)) == bits(whole)
    # and the (H, W, C) frame path of Pillow images is the same function
    frame, _ = pixels.pool_pixels(ArrayFrame(planes.transpose(1, 2, 0)), params, has_alpha=alpha,
                                  premultiply=premultiply, linear=linear)
    assert bits(frame.transpose(2, 0, 1)) == bits(whole)


def test_output_rows_outside_the_output_are_refused():
    x = np.zeros((1, 4, 4), np.uint8)
    try:
        engine.pool_rows("max", x, (1, 3), kernel_size=2)
    except ValueError as error:
        assert "outside the 2 output rows" in str(error)
    else:
        raise AssertionError("no error")


def test_strip_height_follows_the_memory_limit():
    shape, dtype, params = (3, 40000, 40000), np.dtype(np.uint8), PoolParams("max", (2, 2))
    per_row = strips.row_bytes(shape, dtype, params)
    assert per_row == 2 * 3 * (2 * 40000 + 20000)
    assert strips.strip_height(shape, dtype, params, strips._RESERVE + 300 * per_row, align=256) == 256
    assert strips.strip_height(shape, dtype, params, strips._RESERVE + 100 * per_row + 3 * 40000, align=256) == 100
    assert strips.strip_height(shape, dtype, params, 1, align=256) == 1
    assert strips.input_rows(params, 40000, 10, 20) == (20, 40)
    assert strips.input_rows(PoolParams("max", (3, 3), (1, 1), (1, 1), (2, 2)), 10, 0, 10) == (0, 10)
