"""Nodata-aware pooling (docs/semantics.md §10.1) against the loop reference of nodata_oracle.py."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from poolcli import engine, nodata
from poolcli.params import PoolParams
from tests.nodata_oracle import avg_ref, max_ref
from tests.oracle import avg_pool2d_ref, is_valid
from tests.test_engine import assert_bit_equal, blocking  # noqa: F401  (blocking: a fixture)

FLOATS = [np.float16, np.float32, np.float64]
INTS = [np.uint8, np.int16, np.int32, np.int64]


@st.composite
def rasters(draw):
    """(C, H, W) data with a declared nodata value that many of its pixels hold."""
    dtype = np.dtype(draw(st.sampled_from(FLOATS + INTS)))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 7)), draw(st.integers(1, 7)))
    size = int(np.prod(shape))
    if dtype.kind == "f":
        value = draw(st.sampled_from([-9999.0, float("nan"), 0.0]))
        pool = [0.0, -0.0, 1.0, -1.0, 2.5, -3.25, 1e4, np.inf, -np.inf, np.nan, value, value]
        values = draw(st.lists(st.sampled_from(pool) | st.floats(-1e4, 1e4, width=16), min_size=size, max_size=size))
    else:
        info = np.iinfo(dtype)
        value = draw(st.sampled_from([0, int(info.min), int(info.max), 7] + ([-9999] if info.min < -9999 else [])))
        pool = [int(info.min), int(info.max), 0, 1, 7, value, value, value]
        values = draw(st.lists(st.sampled_from(pool) | st.integers(0, 9), min_size=size, max_size=size))
    x = np.array(values, dtype=np.float64 if dtype.kind == "f" else np.int64).astype(dtype).reshape(shape)
    return x, value


pairs = st.tuples(st.integers(1, 4), st.integers(1, 4))
pads = st.tuples(st.integers(0, 2), st.integers(0, 2))


def _in_strips(pool, x, params, value, cut: int) -> np.ndarray:
    """The whole output, and the same from two strips cut at output row ``cut``: they must agree."""
    whole = pool(x, params, value)
    cut = min(cut, whole.shape[1])
    strips = np.concatenate([pool(x, params, value, (0, cut)), pool(x, params, value, (cut, whole.shape[1]))], axis=1)
    assert_bit_equal(strips, whole, any_nan=True)
    return whole


@given(data=rasters(), k=pairs, s=pairs, p=pads, d=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       ceil=st.booleans(), cut=st.integers(0, 8))
def test_max_matches_the_reference(data, k, s, p, d, ceil, cut, blocking):  # noqa: F811
    x, value = data
    assume(is_valid(x.shape[1], x.shape[2], k, s, p, d, ceil))
    params = PoolParams("max", k, s, p, d, ceil)
    got = _in_strips(nodata.max_pool, x, params, value, cut)
    assert_bit_equal(got, max_ref(x, nodata.nodata_value(value, x.dtype), k, s, p, d, ceil))


@given(data=rasters(), k=pairs, s=pairs, p=pads, ceil=st.booleans(), cip=st.booleans(),
       dov=st.sampled_from([None, None, 1, 3, -2]), cut=st.integers(0, 8))
def test_avg_matches_the_reference(data, k, s, p, ceil, cip, dov, cut, blocking):  # noqa: F811
    x, value = data
    assume(is_valid(x.shape[1], x.shape[2], k, s, p, (1, 1), ceil))
    params = PoolParams("avg", k, s, p, (1, 1), ceil, cip, dov)
    got = _in_strips(nodata.avg_pool, x, params, value, cut)
    assert_bit_equal(got, avg_ref(x, nodata.nodata_value(value, x.dtype), k, s, p, ceil, cip, dov), any_nan=True)


@given(k=pairs, s=pairs, p=pads, ceil=st.booleans(), cip=st.booleans(), seed=st.integers(0, 2**16))
def test_without_nodata_pixels_averages_are_the_pixel_rule(k, s, p, ceil, cip, seed):
    """A window without nodata gives what it gives without --nodata: torch for floats, the
    rounded average for integers (tests/oracle.py, not the engine)."""
    rng = np.random.default_rng(seed)
    assume(is_valid(6, 5, k, s, p, (1, 1), ceil))
    ints = rng.integers(0, 200, (2, 6, 5)).astype(np.uint8)
    floats = rng.standard_normal((2, 6, 5)).astype(np.float32)
    params = PoolParams("avg", k, s, p, (1, 1), ceil, cip)
    assert_bit_equal(nodata.avg_pool(ints, params, 255),
                     avg_pool2d_ref(ints[None], k, s, p, ceil, cip, None, rounded=True)[0])
    assert_bit_equal(nodata.avg_pool(floats, params, -9999), avg_pool2d_ref(floats[None], k, s, p, ceil, cip, None)[0])


def test_a_row_source_gives_the_array_result():
    rng = np.random.default_rng(5)
    x = rng.integers(-3, 4, (2, 9, 7)).astype(np.int16)
    source = engine.RowSource(x.shape, x.dtype, lambda top, bottom: x[:, top:bottom])
    for params in (PoolParams("avg", (3, 3), (2, 2), (1, 1)), PoolParams("max", (2, 2), (1, 1), dilation=(2, 2))):
        pool = nodata.avg_pool if params.op == "avg" else nodata.max_pool
        assert_bit_equal(pool(source, params, 0), pool(x, params, 0))


def test_gdal_like_mean_of_valid_pixels():
    """-9999 never mixes into the values: the k2 average of a swath edge is the mean of its data."""
    x = np.array([[[10.0, -9999.0, 20.0, 21.0], [30.0, -9999.0, 22.0, 23.0],
                   [-9999.0, -9999.0, -9999.0, 5.0], [-9999.0, -9999.0, 7.0, 8.0]]], dtype=np.float32)
    params = PoolParams("avg", (2, 2))
    assert nodata.avg_pool(x, params, -9999).tolist() == [[[20.0, 21.5], [-9999.0, 6.666666507720947]]]
    assert nodata.max_pool(x, PoolParams("max", (2, 2)), -9999).tolist() == [[[30.0, 23.0], [-9999.0, 8.0]]]


def test_nan_nodata_skips_every_nan():
    x = np.array([[[np.nan, 1.0], [3.0, np.nan]]], dtype=np.float64)
    assert nodata.avg_pool(x, PoolParams("avg", (2, 2)), float("nan")).tolist() == [[[2.0]]]
    assert nodata.max_pool(x, PoolParams("max", (2, 2)), float("nan")).tolist() == [[[3.0]]]
    # with another nodata value, NaN is a value: torch's rules
    assert np.isnan(nodata.max_pool(x, PoolParams("max", (2, 2)), -9999)).all()


def test_windows_without_a_valid_pixel_give_nodata():
    """Only nodata and padding; and (max, dilation) no tap inside the input at all."""
    x = np.array([[[-1, 5], [-1, 6]]], dtype=np.int32)
    params = PoolParams("avg", (2, 2), (2, 2), (1, 1))
    assert nodata.avg_pool(x, params, -1).tolist() == [[[-1, 1], [-1, 2]]]  # 5/4, 6/4: padding counts as 0
    no_pad = PoolParams("avg", (2, 2), (2, 2), (1, 1), count_include_pad=False)
    assert nodata.avg_pool(x, no_pad, -1).tolist() == [[[-1, 5], [-1, 6]]]
    one = np.array([[[3]]], dtype=np.uint8)
    assert nodata.max_pool(one, PoolParams("max", (2, 2), (1, 1), (1, 1), (2, 2)), 9).tolist() == [[[9]]]


def test_divisor_override_divides_the_sum_of_valid_pixels():
    x = np.array([[[4, 200], [6, 200]]], dtype=np.uint8)
    assert nodata.avg_pool(x, PoolParams("avg", (2, 2), divisor_override=3), 200).tolist() == [[[3]]]
    assert nodata.avg_pool(x, PoolParams("avg", (2, 2), divisor_override=-1), 200).tolist() == [[[0]]]  # saturates


@pytest.mark.parametrize(("value", "dtype", "message"), [
    (-9999, np.uint8, "nodata -9999 is outside the range of uint8 data (0 to 255)"),
    (2.5, np.int16, "nodata 2.5 is not an integer, so no int16 pixel can be nodata"),
    (float("nan"), np.int32, "nodata nan is not an integer, so no int32 pixel can be nodata"),
    (1e39, np.float32, "nodata 1e+39 is outside the range of float32 data"),
    (0, np.bool_, "nodata does not apply to bool data"),
])
def test_values_the_dtype_cannot_hold_are_refused(value, dtype, message):
    with pytest.raises(nodata.NodataError) as info:
        nodata.nodata_value(value, dtype)
    assert str(info.value) == message


def test_values_are_parsed_as_gdal_writes_them():
    assert nodata.parse_nodata("-9999\x00") == -9999
    assert nodata.parse_nodata("-3.4028234663852886e+38") == -3.4028234663852886e+38
    assert nodata.parse_nodata("None") is None
    assert nodata.parse_nodata("-inf") == float("-inf")
    with pytest.raises(nodata.NodataError, match=r"^nodata 'abc' is not a number \(give a number, nan or none\)$"):
        nodata.parse_nodata("abc")
    big = 2**62 + 1  # int64 nodata stays exact
    assert nodata.nodata_value(nodata.parse_nodata(str(big)), np.int64) == big


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
@pytest.mark.parametrize("op", ["max", "avg"])
def test_photos_follow_the_nodata_rule_channel_by_channel(tmp_path, runner, suffix, op):
    """--nodata on a decoded picture (a PNG, and a JPEG pooled as RGBX): every channel leaves
    out its nodata values, as the reference does on the decoded pixels."""
    from PIL import Image

    from poolcli.cli import cli

    rng = np.random.default_rng(5)
    pixels = rng.integers(0, 6, (9, 7, 3)).astype(np.uint8) * 40  # many zeros, whole windows of them too
    pixels[:2, :2] = 0
    Image.fromarray(pixels).save(tmp_path / f"in{suffix}", **({"quality": 95} if suffix == ".jpg" else {}))
    with Image.open(tmp_path / f"in{suffix}") as image:
        decoded = np.asarray(image.convert("RGB")).transpose(2, 0, 1)
    result = runner.invoke(cli, [op, str(tmp_path / f"in{suffix}"), "-k", "2", "-s", "2", "-p", "1", "--nodata", "0",
                                 "-o", str(tmp_path / "out.npy"), "-q"])
    assert result.exit_code == 0, result.output
    zero = np.uint8(0)
    expected = (max_ref(decoded, zero, (2, 2), (2, 2), (1, 1), (1, 1), False) if op == "max" else
                avg_ref(decoded, zero, (2, 2), (2, 2), (1, 1), False, True, None))
    assert_bit_equal(np.load(tmp_path / "out.npy"), expected)  # (C, OH, OW), as arrays are
