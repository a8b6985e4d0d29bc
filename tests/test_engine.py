"""The engine against the tables of docs/semantics.md, a slow loop oracle (hypothesis) and torch's golden values."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from poolcli import engine
from poolcli.engine import avg_pool2d, avg_pool2d_rounded, axis_arithmetic, max_pool2d, output_size
from tests.oracle import avg_pool2d_ref, is_valid, max_pool2d_ref, out_size

NAN = np.nan
INF = np.inf


def bits(a: np.ndarray) -> bytes:
    """Byte image of an array: equal bits, so -0.0 != +0.0 and NaN payloads count."""
    return np.ascontiguousarray(a).tobytes()


def assert_bit_equal(actual: np.ndarray, expected: np.ndarray, any_nan: bool = False) -> None:
    """Equal dtype, shape and bits.  ``any_nan``: a NaN made by arithmetic (inf - inf) may carry
    either sign, which the CPU, not the rules, decides; only its place must match."""
    assert actual.dtype == expected.dtype
    assert actual.shape == expected.shape
    if any_nan and actual.dtype.kind == "f":
        assert np.array_equal(np.isnan(actual), np.isnan(expected))
        actual, expected = np.nan_to_num(actual, nan=0.5), np.nan_to_num(expected, nan=0.5)
    assert bits(actual) == bits(expected), f"\n{actual}\n!=\n{expected}"


@pytest.fixture(params=["one block", "tiny blocks on threads"])
def blocking(request, monkeypatch):
    """Run a test with the default blocking, and with blocks of a few rows spread over threads:
    block edges are where a tiled implementation goes wrong."""
    if request.param != "one block":
        monkeypatch.setattr(engine, "_SLAB_BYTES", 48)
        monkeypatch.setattr(engine, "_PARALLEL_MIN_ELEMENTS", 0)
        engine.set_num_threads(2)
    yield
    engine.set_num_threads(None)


x9 = np.arange(9.0, dtype=np.float32).reshape(1, 1, 3, 3)
x16 = np.arange(16.0, dtype=np.float32).reshape(1, 1, 4, 4)
x16b = np.arange(1.0, 17.0, dtype=np.float32).reshape(1, 1, 4, 4)
x25 = np.arange(25.0, dtype=np.float32).reshape(1, 1, 5, 5)
x49 = np.arange(49.0, dtype=np.float32).reshape(1, 1, 7, 7)


def f32(rows) -> np.ndarray:
    return np.array(rows, dtype=np.float32).reshape((1, 1) + np.array(rows).shape)


# --------------------------------------------------------------------------- docs/semantics.md §9 table


@pytest.mark.parametrize(
    "case, call, values, indices",
    [
        ("T1", lambda: max_pool2d(x9, 2, stride=1, return_indices=True), [[4, 5], [7, 8]], [[4, 5], [7, 8]]),
        ("T2", lambda: avg_pool2d(x9, 2, stride=1), [[2, 3], [5, 6]], None),
        ("T3", lambda: max_pool2d(x9, 2, stride=2, ceil_mode=True, return_indices=True), [[4, 5], [7, 8]],
         [[4, 5], [7, 8]]),
        ("T4", lambda: avg_pool2d(x9, 2, stride=2, ceil_mode=True), [[2, 3.5], [6.5, 8]], None),
        ("T5", lambda: avg_pool2d(x9, 2, stride=2, ceil_mode=False), [[2]], None),
        ("T6", lambda: avg_pool2d(x49, 2, stride=3, ceil_mode=True),
         [[4, 7, 9.5], [25, 28, 30.5], [42.5, 45.5, 48]], None),
        ("T7", lambda: max_pool2d(x25, 2, stride=2, padding=1, ceil_mode=True),
         [[0, 2, 4], [10, 12, 14], [20, 22, 24]], None),
        ("T8", lambda: max_pool2d(np.zeros((1, 1, 6, 7), np.float32), 1, stride=2, ceil_mode=True),
         np.zeros((3, 4)).tolist(), None),
        ("T9", lambda: avg_pool2d(x16b, 3, stride=2, padding=1, ceil_mode=True, count_include_pad=True),
         [[1.55555558, 3.33333325, 2], [6.33333349, 11, 6], [4.5, 7.5, 4]], None),
        ("T10", lambda: avg_pool2d(x16b, 3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
         [[3.5, 5, 6], [9.5, 11, 12], [13.5, 15, 16]], None),
        ("T11", lambda: avg_pool2d(x16b, 3, stride=2, padding=1, ceil_mode=True, divisor_override=2),
         [[7, 15, 6], [28.5, 49.5, 18], [13.5, 22.5, 8]], None),
        ("T12", lambda: avg_pool2d(x9, 3, stride=1, padding=1, count_include_pad=True),
         [[0.888888896, 1.66666663, 1.33333337], [2.33333325, 4, 3], [2.22222233, 3.66666675, 2.66666675]], None),
        ("T13", lambda: avg_pool2d(x9, 3, stride=1, padding=1, count_include_pad=False),
         [[2, 2.5, 3], [3.5, 4, 4.5], [5, 5.5, 6]], None),
        ("T14", lambda: avg_pool2d(x9, 2, stride=1, padding=1, divisor_override=3),
         [[0, 0.333333343, 1, 0.666666687], [1, 2.66666675, 4, 2.33333325], [3, 6.66666651, 8, 4.33333349],
          [2, 4.33333349, 5, 2.66666675]], None),
        ("T15", lambda: avg_pool2d(x16, 2, divisor_override=-2), [[-5, -9], [-21, -25]], None),
        ("T16", lambda: max_pool2d(x16, 2, stride=1, padding=1, dilation=2, return_indices=True),
         [[5, 6, 7, 6], [9, 10, 11, 10], [13, 14, 15, 14], [9, 10, 11, 10]],
         [[5, 6, 7, 6], [9, 10, 11, 10], [13, 14, 15, 14], [9, 10, 11, 10]]),
        ("T17", lambda: max_pool2d(x25, 3, stride=2, padding=1, dilation=2, ceil_mode=True, return_indices=True),
         [[18, 18], [18, 18]], [[18, 18], [18, 18]]),
        ("T18", lambda: max_pool2d(np.ones((1, 1, 1, 1), np.float32), 2, stride=1, padding=1, dilation=2,
                                   return_indices=True), [[-INF]], [[2]]),
        ("T20", lambda: max_pool2d(np.ones((1, 1, 3, 3), np.float32), 2, stride=1, return_indices=True),
         [[1, 1], [1, 1]], [[0, 1], [3, 4]]),
        ("T21", lambda: max_pool2d(np.zeros((1, 1, 3, 3), np.float32), 2, stride=1, padding=1, return_indices=True),
         np.zeros((4, 4)).tolist(), [[0, 0, 1, 2], [0, 0, 1, 2], [3, 3, 4, 5], [6, 6, 7, 8]]),
        ("T22", lambda: max_pool2d(f32([[1, NAN], [NAN, 0]]), 2, return_indices=True), [[NAN]], [[2]]),
        ("T23", lambda: max_pool2d(f32([[NAN, 5], [1, 2]]), 2, return_indices=True), [[NAN]], [[0]]),
        ("T24", lambda: max_pool2d(f32([[-INF, -INF], [-INF, -INF]]), 2, return_indices=True), [[-INF]], [[0]]),
        ("T25", lambda: avg_pool2d(f32([[1, NAN], [2, 0]]), 2), [[NAN]], None),
        ("T33", lambda: avg_pool2d(f32([[1e8, 1], [-1e8, 1]]), 2), [[0.25]], None),
    ],
)
def test_spec_table_float32(case, call, values, indices, blocking):
    result = call()
    got, got_idx = result if isinstance(result, tuple) else (result, None)
    expected = np.array(values, dtype=np.float32)[None, None]
    assert got.dtype == np.float32
    assert got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)  # exact: every value is the float32 torch printed
    if indices is not None:
        assert got_idx.dtype == np.int64
        np.testing.assert_array_equal(got_idx, np.array(indices)[None, None])


def test_t19_int32_window_without_input_gives_int_min():
    values, indices = max_pool2d(np.ones((1, 1, 1, 1), np.int32), 2, stride=1, padding=1, dilation=2,
                                 return_indices=True)
    assert values.dtype == np.int32
    assert values.tolist() == [[[[-2147483648]]]]
    assert indices.tolist() == [[[[2]]]]


def test_t26_signed_zero_first_maximum_wins(blocking):
    a = max_pool2d(f32([[-0.0, 0.0], [0.0, 0.0]]), 2)
    b = max_pool2d(f32([[0.0, -0.0], [-0.0, -0.0]]), 2)
    assert np.signbit(a).tolist() == [[[[True]]]]
    assert np.signbit(b).tolist() == [[[[False]]]]


def test_t27_average_of_negative_zeros_is_positive_zero():
    out = avg_pool2d(np.full((1, 1, 2, 2), -0.0, np.float32), 2)
    assert out.tolist() == [[[[0.0]]]] and not np.signbit(out).any()


def test_t28_uint8_with_padding():
    x = np.array([[[[0, 255, 3], [7, 8, 200], [1, 2, 9]]]], dtype=np.uint8)
    values, indices = max_pool2d(x, 2, stride=1, padding=1, return_indices=True)
    assert values.dtype == np.uint8
    assert values[0, 0].tolist() == [[0, 255, 255, 3], [7, 255, 255, 200], [7, 8, 200, 200], [1, 2, 9, 9]]
    assert indices[0, 0].tolist() == [[0, 1, 1, 2], [3, 1, 1, 5], [3, 4, 5, 5], [6, 7, 8, 8]]


def test_t29_uint8_average_is_an_extension_through_int64():
    # torch refuses uint8 averages; poolcli documents them as int64 pooling converted back.
    x = np.array([[[[1, 2], [3, 5]]]], dtype=np.uint8)
    out = avg_pool2d(x, 2)
    assert out.dtype == np.uint8 and out.tolist() == [[[[2]]]]


def test_t30_t31_int64_truncates_toward_zero():
    assert avg_pool2d(np.array([[[[-3, 0, 3, 0]]]], np.int64), (1, 2)).tolist() == [[[[-1, 1]]]]
    assert avg_pool2d(np.array([[[[-3, 0]]]], np.int64), (1, 2), divisor_override=-2).tolist() == [[[[1]]]]


def test_t32_float16_sums_in_float32():
    out = avg_pool2d(np.array([[[[2048, 1], [1, 0]]]], np.float16), 2)
    assert out.dtype == np.float16 and out.tolist() == [[[[512.5]]]]


def test_t34_float64_sums_in_float64():
    assert avg_pool2d(np.array([[[[1e8, 1], [-1e8, 1]]]]), 2).tolist() == [[[[0.5]]]]


def test_t50_three_dimensional_input():
    out = max_pool2d(x16[0], 2)
    assert out.shape == (1, 2, 2) and out.tolist() == [[[5, 7], [13, 15]]]


def test_t51_empty_batch():
    out = max_pool2d(np.zeros((0, 1, 4, 4), np.float32), 2)
    assert out.shape == (0, 1, 2, 2) and out.dtype == np.float32
    assert avg_pool2d(np.zeros((0, 1, 4, 4), np.float32), 2).shape == (0, 1, 2, 2)


def test_two_dimensional_input_is_one_channel():
    assert max_pool2d(np.arange(9).reshape(3, 3), 2, 1).tolist() == [[4, 5], [7, 8]]
    assert avg_pool2d(np.arange(9.0).reshape(3, 3), 2, 1).tolist() == [[2, 3], [5, 6]]
    with pytest.raises(ValueError, match=r"Given input size: \(1x2x2\)\. Calculated output size: \(1x0x0\)"):
        max_pool2d(np.zeros((2, 2)), 3, padding=1, dilation=2)


# --------------------------------------------------------------------------- error table

X = x16


@pytest.mark.parametrize(
    "call, exc, message",
    [
        (lambda: max_pool2d(X, 0), ValueError, "stride should not be zero"),
        (lambda: avg_pool2d(X, 0), ValueError, "stride should not be zero"),
        (lambda: max_pool2d(X, 0, 1), ValueError, "kernel size should be greater than zero, but got kH: 0 kW: 0"),
        (lambda: avg_pool2d(X, 0, 1), ValueError, "kernel size should be greater than zero, but got kH: 0 kW: 0"),
        (lambda: max_pool2d(X, -1), ValueError, "kernel size should be greater than zero, but got kH: -1 kW: -1"),
        (lambda: max_pool2d(X, 2, (1, 0)), ValueError, "stride should not be zero"),
        (lambda: max_pool2d(X, 2, -1), ValueError, "stride should be greater than zero, but got dH: -1 dW: -1"),
        (lambda: max_pool2d(X, 2, 1, -1), ValueError, "pad must be non-negative, but got pad: -1"),
        (lambda: max_pool2d(X, 3, 1, 2), ValueError,
         "pad should be at most half of effective kernel size, but got pad=2, kernel_size=3 and dilation=1"),
        (lambda: avg_pool2d(X, 3, 1, 2), ValueError,
         "pad should be at most half of effective kernel size, but got pad=2, kernel_size=3 and dilation=1"),
        (lambda: max_pool2d(X, 3, 1, 2, dilation=2), ValueError,
         "pad should be smaller than or equal to half of kernel size, but got padW = 2, padH = 2, kW = 3, kH = 3"),
        (lambda: max_pool2d(X, 2, 1, 0, dilation=0), ValueError,
         "dilation should be greater than zero, but got dilationH: 0 dilationW: 0"),
        (lambda: max_pool2d(X, 2, 1, 1, dilation=0), ValueError,
         "pad should be at most half of effective kernel size, but got pad=1, kernel_size=2 and dilation=0"),
        (lambda: max_pool2d(X, 5), ValueError,
         "Given input size: (1x4x4). Calculated output size: (1x0x0). Output size is too small"),
        (lambda: max_pool2d(X, (2, 5)), ValueError,
         "Given input size: (1x4x4). Calculated output size: (1x2x0). Output size is too small"),
        (lambda: max_pool2d(X, (3, 2), 1, (2, 2)), ValueError,
         "pad should be at most half of effective kernel size, but got pad=2, kernel_size=3 and dilation=1"),
        (lambda: avg_pool2d(X, 2, divisor_override=0), ValueError, "divisor must be not zero"),
        (lambda: avg_pool2d(X, 2, 0, divisor_override=0), ValueError, "divisor must be not zero"),
        (lambda: max_pool2d(X[0, 0, 0], 2), ValueError, "non-empty 3D or 4D (batch mode) tensor expected for input"),
        (lambda: max_pool2d(X[None], 2), ValueError, "non-empty 3D or 4D (batch mode) tensor expected for input"),
        (lambda: avg_pool2d(X[0, 0, 0], 2), ValueError,
         "Dimension out of range (expected to be in range of [-1, 0], but got -3)"),
        (lambda: avg_pool2d(X[None], 2), ValueError,
         "Expected 3D or 4D (batch mode) tensor with optional 0 dim batch size for input, but got:[1, 1, 1, 4, 4]"),
        (lambda: avg_pool2d(X[None], 2, 0), ValueError, "stride should not be zero"),
        (lambda: max_pool2d(np.zeros((1, 0, 4, 4)), 2), ValueError,
         "Expected 3D or 4D (batch mode) tensor with optional 0 dim batch size for input, but got:[1, 0, 4, 4]"),
        (lambda: max_pool2d(np.zeros((0, 4, 4)), 2), ValueError,
         "Expected 3D or 4D (batch mode) tensor with optional 0 dim batch size for input, but got:[0, 4, 4]"),
        (lambda: max_pool2d(X, (2, 2, 2)), ValueError,
         "max_pool2d: kernel_size must either be a single int, or a tuple of two ints"),
        (lambda: avg_pool2d(X, 2, (1, 1, 1)), ValueError,
         "avg_pool2d: stride must either be omitted, a single int, or a tuple of two ints"),
        (lambda: max_pool2d(X, 2, 2, (0, 0, 0)), ValueError,
         "max_pool2d: padding must either be a single int, or a tuple of two ints"),
        (lambda: max_pool2d(X, 2, 2, 0, (1, 1, 1)), ValueError,
         "max_pool2d: dilation must be either a single int, or a tuple of two ints"),
        (lambda: max_pool2d(X, 2**31), ValueError, "value cannot be converted to type int without overflow"),
        (lambda: max_pool2d(X, 2.0), TypeError,
         "max_pool2d(): argument 'kernel_size' (position 2) must be tuple of ints, not float"),
        (lambda: avg_pool2d(X, 2, 2.0), TypeError,
         "avg_pool2d(): argument 'stride' (position 3) must be tuple of ints, not float"),
        (lambda: max_pool2d(X, True), TypeError,
         "max_pool2d(): argument 'kernel_size' (position 2) must be tuple of ints, not bool"),
        (lambda: max_pool2d(X, 2, ceil_mode=1), TypeError,
         "max_pool2d(): argument 'ceil_mode' (position 6) must be bool, not int"),
        (lambda: avg_pool2d(X, 2, divisor_override=2.0), TypeError,
         "avg_pool2d(): argument 'divisor_override' must be int, not float"),
        (lambda: max_pool2d(X.astype(bool), 2), TypeError, "\"max_pool2d\" not implemented for 'Bool'"),
        (lambda: avg_pool2d(X.astype(np.complex64), 2), TypeError,
         "\"avg_pool2d\" not implemented for 'ComplexFloat'"),
    ],
)
def test_error_table(call, exc, message):
    with pytest.raises(exc) as info:
        call()
    assert str(info.value) == message
    # The engine's own classes (docs/semantics.md §10), so callers can tell bad input from a bug.
    assert type(info.value) is {ValueError: engine.PoolingError, TypeError: engine.PoolingTypeError}[exc]


@pytest.mark.parametrize(
    "call, exc, message",
    [
        (lambda: engine.axis_arithmetic(4, 2, 0), engine.PoolingError, "stride should not be zero"),
        (lambda: avg_pool2d(np.float32(1), 1), engine.PoolingError,
         "Dimension specified as -3 but tensor has no dimensions"),
        (lambda: avg_pool2d(X, 2, count_include_pad=1), engine.PoolingTypeError,
         "avg_pool2d(): argument 'count_include_pad' must be bool, not int"),
        (lambda: max_pool2d(X, [2, 2.5]), engine.PoolingTypeError,
         "max_pool2d(): argument 'kernel_size' failed to unpack the object at pos 2 with error "
         '"type must be tuple of ints,but got float"'),
        (lambda: max_pool2d(X.astype(np.complex128), 2), engine.PoolingTypeError,
         "\"max_pool2d\" not implemented for 'ComplexDouble'"),
        (lambda: max_pool2d(X.astype(np.longdouble), 2), engine.PoolingTypeError,
         "\"max_pool2d\" not implemented for 'float128'" if np.dtype(np.longdouble).itemsize > 8
         else None),  # where long double is float64, it is simply accepted
    ],
)
def test_every_refusal_is_a_pooling_error(call, exc, message):
    if message is None:
        call()
        return
    with pytest.raises(exc) as info:
        call()
    assert str(info.value) == message
    assert isinstance(info.value, ValueError if exc is engine.PoolingError else TypeError)


def test_error_classes_are_exported():
    import poolcli

    assert poolcli.PoolingError is engine.PoolingError and issubclass(engine.PoolingError, ValueError)
    assert poolcli.PoolingTypeError is engine.PoolingTypeError and issubclass(engine.PoolingTypeError, TypeError)


def test_accepted_where_torch_accepts():
    assert max_pool2d(X, 2, 1, 1, dilation=2).shape == (1, 1, 4, 4)
    assert max_pool2d(X, [2], ()).shape == (1, 1, 2, 2)  # length-1 kernel, empty stride
    assert max_pool2d(X, np.int64(2)).shape == (1, 1, 2, 2)
    assert avg_pool2d(X, 2, divisor_override=np.int64(2**31)).shape == (1, 1, 2, 2)


def test_input_is_never_modified_and_may_be_read_only():
    x = np.random.default_rng(3).standard_normal((2, 3, 9, 9)).astype(np.float32)
    x[0, 0, 0, 0] = np.nan
    x.setflags(write=False)
    before = x.copy()
    max_pool2d(x, 3, 1, 1, return_indices=True)
    avg_pool2d(x, 3, 2, 1, ceil_mode=True)
    assert bits(x) == bits(before)


# --------------------------------------------------------------------------- output size


@pytest.mark.parametrize(
    "args, expected",
    [((5, 2, 2, 1, 1, True), 3), ((3, 2, 2, 0, 1, True), 2), ((3, 2, 2, 0, 1, False), 1),
     ((7, 1, 2, 0, 1, True), 4), ((6, 1, 2, 0, 1, True), 3), ((32, 1, 2, 0, 1, True), 16),
     ((224, 3, 2, 1, 1, True), 113), ((112, 3, 2, 0, 1, True), 56), ((10, 3, 2, 1, 2, True), 5),
     ((10, 3, 2, 1, 2, False), 4)],
)
def test_output_size_worked_results(args, expected):
    assert output_size(*args) == expected
    assert out_size(*args) == expected


def test_output_size_pairs_and_default_stride():
    assert output_size((6, 7), 1, 2, ceil_mode=True) == (3, 4)
    assert output_size((4, 4), (2, 5)) == (2, 0)
    assert output_size(3, 2) == 1


def test_axis_arithmetic_shows_the_ceil_correction():
    a = axis_arithmetic(5, 2, 2, padding=1, ceil_mode=True)
    assert (a.effective_kernel, a.numerator, a.uncorrected, a.corrected, a.output) == (2, 6, 4, True, 3)
    assert not axis_arithmetic(3, 2, 1).corrected


# --------------------------------------------------------------------------- property tests vs the oracle

FLOAT_TYPES = [np.float16, np.float32, np.float64]
INT_TYPES = [np.uint8, np.int8, np.int16, np.uint16, np.int32, np.int64]


@st.composite
def arrays(draw, dtypes):
    dtype = np.dtype(draw(st.sampled_from(dtypes)))
    n = draw(st.integers(0, 2))
    c = draw(st.integers(1, 3))
    h = draw(st.integers(1, 8))
    w = draw(st.integers(1, 8))
    shape = (n, c, h, w)
    size = int(np.prod(shape))
    if dtype.kind == "f":
        # few distinct values: ties are common; NaN, infinities and both zeros included
        pool = [0.0, -0.0, 1.0, -1.0, 2.5, -3.25, 1e4, np.inf, -np.inf, np.nan]
        values = draw(st.lists(st.sampled_from(pool) | st.floats(-1e4, 1e4, width=16), min_size=size,
                               max_size=size))
        x = np.array(values, dtype=np.float64).astype(dtype).reshape(shape)
    else:
        info = np.iinfo(dtype)
        edge = [int(info.min), int(info.max), 0, 1]
        values = draw(st.lists(st.sampled_from(edge) | st.integers(-3, 3).map(lambda v: max(v, int(info.min))),
                               min_size=size, max_size=size))
        x = np.array(values, dtype=np.int64).astype(dtype).reshape(shape)
    layout = draw(st.sampled_from(["c", "channels_last", "reversed", "sliced"]))
    if layout == "channels_last":
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    elif layout == "reversed":
        x = np.ascontiguousarray(x[..., ::-1])[..., ::-1]
    elif layout == "sliced":
        wide = np.zeros(shape[:-1] + (2 * w,), dtype=dtype)
        wide[..., ::2] = x
        x = wide[..., ::2]
    return x


pairs = st.tuples(st.integers(1, 4), st.integers(1, 4))


@given(x=arrays(FLOAT_TYPES + INT_TYPES), k=pairs, s=pairs, p=st.tuples(st.integers(0, 2), st.integers(0, 2)),
       d=st.tuples(st.integers(1, 3), st.integers(1, 3)), ceil=st.booleans(), default_stride=st.booleans())
def test_max_pool_matches_oracle(x, k, s, p, d, ceil, default_stride, blocking):
    stride = s if not default_stride else k
    assume(is_valid(x.shape[2], x.shape[3], k, stride, p, d, ceil))
    expected, expected_idx = max_pool2d_ref(x, k, stride, p, d, ceil)
    values, indices = max_pool2d(x, k, None if default_stride else s, p, d, ceil, return_indices=True)
    assert_bit_equal(values, expected)
    assert_bit_equal(indices, expected_idx)
    assert_bit_equal(max_pool2d(x, k, None if default_stride else s, p, d, ceil), expected)


@given(x=arrays(FLOAT_TYPES + INT_TYPES), k=pairs, s=pairs, p=st.tuples(st.integers(0, 2), st.integers(0, 2)),
       ceil=st.booleans(), cip=st.booleans(), dov=st.sampled_from([None, 1, 3, -2, 7]))
def test_avg_pool_matches_oracle(x, k, s, p, ceil, cip, dov, blocking):
    assume(is_valid(x.shape[2], x.shape[3], k, s, p, (1, 1), ceil))
    expected = avg_pool2d_ref(x, k, s, p, ceil, cip, dov)
    assert_bit_equal(avg_pool2d(x, k, s, p, ceil, cip, dov), expected, any_nan=True)
    if x.dtype.kind != "f":
        assert_bit_equal(avg_pool2d_rounded(x, k, s, p, ceil, cip, dov),
                         avg_pool2d_ref(x, k, s, p, ceil, cip, dov, rounded=True))


@settings(max_examples=settings.default.max_examples // 3)  # larger arrays
@given(k=st.integers(1, 12), s=st.integers(1, 3), h=st.integers(12, 40), w=st.integers(12, 40),
       d=st.integers(1, 2), seed=st.integers(0, 2**31))
def test_large_windows_match_oracle(k, s, h, w, d, seed, blocking):
    """Long windows take the doubling / binary-decomposition paths."""
    assume(is_valid(h, w, (k, k), (s, s), (0, 0), (d, d), False))
    rng = np.random.default_rng(seed)
    xi = rng.integers(0, 256, (1, 2, h, w)).astype(np.uint8)
    xf = rng.standard_normal((1, 2, h, w)).astype(np.float32)
    assert_bit_equal(max_pool2d(xf, k, s, dilation=d), max_pool2d_ref(xf, (k, k), (s, s), (0, 0), (d, d), False)[0])
    assert_bit_equal(max_pool2d(xi, k, s, dilation=d), max_pool2d_ref(xi, (k, k), (s, s), (0, 0), (d, d), False)[0])
    assert_bit_equal(avg_pool2d(xi, k, s), avg_pool2d_ref(xi, (k, k), (s, s), (0, 0), False, True, None))
    assert_bit_equal(avg_pool2d(xf, k, s), avg_pool2d_ref(xf, (k, k), (s, s), (0, 0), False, True, None))


def test_results_do_not_depend_on_thread_count(monkeypatch):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 3, 67, 45)).astype(np.float32)
    monkeypatch.setattr(engine, "_SLAB_BYTES", 4096)
    monkeypatch.setattr(engine, "_PARALLEL_MIN_ELEMENTS", 0)
    results = []
    for threads in (1, 2, 3):
        engine.set_num_threads(threads)
        results.append((bits(max_pool2d(x, 3, 1, 1)), bits(avg_pool2d(x, 7, 1, 3))))
    engine.set_num_threads(None)
    assert results[0] == results[1] == results[2]


def test_set_num_threads_rejects_nonsense():
    with pytest.raises(ValueError, match="positive integer"):
        engine.set_num_threads(0)


def test_rounded_average_rounds_halves_up():
    x = np.array([[[[1, 2], [2, 1]], [[0, 0], [1, 1]]]], dtype=np.uint8)  # sums 6 and 2 over 4
    assert avg_pool2d_rounded(x, 2).ravel().tolist() == [2, 1]
    assert avg_pool2d(x, 2).ravel().tolist() == [1, 0]


# --------------------------------------------------------------------------- golden values from torch

GOLDEN = Path(__file__).parent / "data" / "torch_golden.npz"


def golden_cases():
    with np.load(GOLDEN) as data:
        meta = json.loads(str(data["meta"]))
        for i, case in enumerate(meta):
            arrays_ = {key: data[f"{i}_{key}"] for key in ("x", "values", "indices") if f"{i}_{key}" in data}
            yield pytest.param(case, arrays_, id=f"{i}-{case['op']}-{case['dtype']}")


@pytest.mark.parametrize("case, data", list(golden_cases()))
def test_torch_golden_values(case, data):
    """Outputs recorded from torch 2.13 by tests/data/make_torch_golden.py."""
    x = data["x"]
    if case["op"] == "max":
        values, indices = max_pool2d(x, case["k"], case["s"], case["p"], case["d"], case["ceil"], return_indices=True)
        assert_bit_equal(indices, data["indices"])
    else:
        values = avg_pool2d(x, case["k"], case["s"], case["p"], case["ceil"], case["cip"], case["dov"])
    assert_bit_equal(values, data["values"], any_nan=case["op"] == "avg")


# --------------------------------------------------------------------------- live torch, when installed


def test_random_cases_against_installed_torch():
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional
    rng = np.random.default_rng(11)
    for _ in range(settings.default.max_examples):  # the hypothesis profile's count: 300 in CI
        dtype = [np.float32, np.float64, np.float16, np.int64, np.uint8, np.int32][rng.integers(6)]
        shape = (int(rng.integers(0, 3)), int(rng.integers(1, 4)), int(rng.integers(1, 10)), int(rng.integers(1, 10)))
        if np.dtype(dtype).kind == "f":
            x = rng.standard_normal(shape).astype(dtype)
            x[rng.random(shape) < 0.05] = np.nan
        else:
            x = rng.integers(-100 if dtype != np.uint8 else 0, 100, shape).astype(dtype)
        k = tuple(int(v) for v in rng.integers(1, 5, 2))
        s = tuple(int(v) for v in rng.integers(1, 4, 2))
        p = tuple(int(v) for v in rng.integers(0, 3, 2))
        d = tuple(int(v) for v in rng.integers(1, 3, 2))
        ceil = bool(rng.random() < 0.5)
        t = torch.from_numpy(x)
        try:
            tv, ti = functional.max_pool2d(t, k, s, p, d, ceil, return_indices=True)
        except RuntimeError as error:
            with pytest.raises(ValueError) as info:
                max_pool2d(x, k, s, p, d, ceil)
            assert str(info.value) == str(error).splitlines()[0]
            continue
        values, indices = max_pool2d(x, k, s, p, d, ceil, return_indices=True)
        assert_bit_equal(values, tv.numpy())
        assert_bit_equal(indices, ti.numpy())
        if dtype in (np.float32, np.float64, np.float16, np.int64):
            cip = bool(rng.random() < 0.5)
            dov = [None, 2, -3][rng.integers(3)]
            try:
                expected = functional.avg_pool2d(t, k, s, p, ceil, cip, dov).numpy()
            except RuntimeError:
                continue
            assert_bit_equal(avg_pool2d(x, k, s, p, ceil, cip, dov), expected, any_nan=True)


@settings(max_examples=settings.default.max_examples // 5)  # many planes
@given(c=st.integers(8, 12), h=st.integers(1, 9), w=st.integers(1, 9), k=pairs, s=pairs,
       p=st.tuples(st.integers(0, 2), st.integers(0, 2)), ceil=st.booleans(),
       dtype=st.sampled_from([np.float32, np.float16, np.uint8, np.int64]), seed=st.integers(0, 2**31))
def test_many_small_planes_match_oracle(c, h, w, k, s, p, ceil, dtype, seed, blocking):
    """Feature-map shapes take the channels-innermost slab layout."""
    assume(is_valid(h, w, k, s, p, (1, 1), ceil))
    rng = np.random.default_rng(seed)
    x = rng.integers(-4, 5, (2, c, h, w)).astype(dtype) if np.dtype(dtype).kind != "u" else \
        rng.integers(0, 9, (2, c, h, w)).astype(dtype)
    if np.dtype(dtype).kind == "f":
        x[rng.random(x.shape) < 0.05] = np.nan
        x[rng.random(x.shape) < 0.1] = -0.0
    values, indices = max_pool2d(x, k, s, p, 1, ceil, return_indices=True)
    expected, expected_idx = max_pool2d_ref(x, k, s, p, (1, 1), ceil)
    assert_bit_equal(values, expected)
    assert_bit_equal(indices, expected_idx)
    assert_bit_equal(max_pool2d(x, k, s, p, 1, ceil), expected)
    assert_bit_equal(avg_pool2d(x, k, s, p, ceil), avg_pool2d_ref(x, k, s, p, ceil, True, None), any_nan=True)


def test_outputs_are_c_contiguous_whatever_the_input_layout():
    hwc = np.arange(6 * 8 * 3, dtype=np.uint8).reshape(6, 8, 3)
    for result in (max_pool2d(hwc.transpose(2, 0, 1), 2), avg_pool2d(hwc.transpose(2, 0, 1), 2),
                   max_pool2d(hwc.transpose(2, 0, 1), 2, return_indices=True)[1]):
        assert result.flags.c_contiguous
        assert result.view(np.uint8).size == result.nbytes  # bit views work, as on torch's numpy()


@pytest.mark.parametrize("shift", range(16))
def test_power_of_two_divisors_are_exact_for_every_8bit_window_sum(shift):
    """8-bit averages by 2**m take a shift; it must equal the exact formulas for every sum."""
    divisor = 2**shift
    every_sum = np.arange(2**16, dtype=np.int64)
    rounded, truncated = np.empty(2**16, np.int64), np.empty(2**16, np.int64)
    engine._finish_rounded(every_sum.astype(np.uint16), np.asarray(divisor), rounded)
    engine._finish_truncated(every_sum.astype(np.uint16), np.asarray(divisor), truncated)
    assert np.array_equal(rounded, (2 * every_sum + divisor) // (2 * divisor))
    assert np.array_equal(truncated, every_sum // divisor)


# --------------------------------------------------------------------------- interleaved integer pixels

INTERLEAVED_TYPES = [np.uint8, np.uint16, np.int8, np.int16, np.int32, np.int64, np.uint32]


@st.composite
def interleaved(draw):
    """Integer (N, C, H, W) views of channels-last (N, H, W, C) memory, as Pillow's pixels arrive:
    full-range values (sums near the accumulator's limit) or a few small ones (ties)."""
    dtype = np.dtype(draw(st.sampled_from(INTERLEAVED_TYPES)))
    n, c = draw(st.integers(1, 2)), draw(st.integers(2, 5))
    h, w = draw(st.integers(1, 13)), draw(st.integers(1, 13))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    info = np.iinfo(dtype)
    if draw(st.booleans()):
        values = rng.integers(int(info.min), int(info.max), (n, h, w, c), dtype=dtype, endpoint=True)
    else:
        values = rng.choice(np.array([info.min, info.max, 0, 1, info.max - 1], dtype=dtype), (n, h, w, c))
    if draw(st.booleans()):  # a cropped view: pixels and rows further apart than C and W*C
        wide = np.zeros((n, h + 1, w + 2, c), dtype=dtype)
        wide[:, 1:, 2:] = values
        values = wide[:, 1:, 2:]
    return values.transpose(0, 3, 1, 2)


@given(x=interleaved(), k=pairs, s=pairs, p=st.tuples(st.integers(0, 2), st.integers(0, 2)), ceil=st.booleans(),
       cip=st.booleans(), dov=st.sampled_from([None, 1, 3, 4, -2, 7, 1000]), channels_last=st.booleans())
def test_interleaved_averages_match_oracle(x, k, s, p, ceil, cip, dov, channels_last, blocking):
    """Integer channels-last input takes the interleaved path: truncated (torch) and rounded
    (pixels) averages equal the oracle, in either output layout."""
    assume(is_valid(x.shape[2], x.shape[3], k, s, p, (1, 1), ceil))
    args = dict(kernel_size=k, stride=s, padding=p, ceil_mode=ceil, count_include_pad=cip, divisor_override=dov)
    for op, rounded in (("avg", False), ("avg_rounded", True)):
        result = engine.pool_rows(op, x, channels_last=channels_last, **args)
        assert_bit_equal(result, avg_pool2d_ref(x, k, s, p, ceil, cip, dov, rounded=rounded))
        assert (result.transpose(0, 2, 3, 1) if channels_last else result).flags.c_contiguous


@given(x=interleaved(), k=pairs, s=pairs, p=st.tuples(st.integers(0, 2), st.integers(0, 2)),
       d=st.tuples(st.integers(1, 3), st.integers(1, 3)), ceil=st.booleans(), channels_last=st.booleans())
def test_interleaved_maxima_match_oracle(x, k, s, p, d, ceil, channels_last, blocking):
    assume(is_valid(x.shape[2], x.shape[3], k, s, p, d, ceil))
    args = dict(kernel_size=k, stride=s, padding=p, dilation=d, ceil_mode=ceil)
    assert_bit_equal(engine.pool_rows("max", x, channels_last=channels_last, **args),
                     max_pool2d_ref(x, k, s, p, d, ceil)[0])


@settings(max_examples=settings.default.max_examples // 3)  # larger arrays
@given(k=st.integers(1, 9), s=st.integers(1, 3), h=st.integers(9, 40), w=st.integers(9, 40), c=st.integers(2, 4),
       dtype=st.sampled_from([np.uint8, np.uint16]), seed=st.integers(0, 2**31), rows=st.booleans())
def test_interleaved_pixels_match_oracle(k, s, h, w, c, dtype, seed, rows, blocking):
    """Image-sized windows (doubling passes, k up to 9 with padding), as arrays and as a RowSource
    read in strips (the streamed decoders' form)."""
    p = k // 2
    assume(is_valid(h, w, (k, k), (s, s), (p, p), (1, 1), False))
    rng = np.random.default_rng(seed)
    hwc = rng.integers(0, np.iinfo(dtype).max, (h, w, c), dtype=dtype, endpoint=True)
    planes = hwc.transpose(2, 0, 1)
    source = engine.RowSource(planes.shape, dtype, lambda top, bottom: planes[:, top:bottom]) if rows else planes
    x4 = planes[None]
    assert_bit_equal(engine.pool_rows("avg_rounded", source, channels_last=True, kernel_size=k, stride=s, padding=p),
                     avg_pool2d_ref(x4, (k, k), (s, s), (p, p), False, True, None, rounded=True)[0])
    assert_bit_equal(engine.pool_rows("avg", source, kernel_size=k, stride=s, padding=p, count_include_pad=False),
                     avg_pool2d_ref(x4, (k, k), (s, s), (p, p), False, False, None)[0])
    assert_bit_equal(engine.pool_rows("max", source, channels_last=True, kernel_size=k, stride=s, padding=p),
                     max_pool2d_ref(x4, (k, k), (s, s), (p, p), (1, 1), False)[0][0])


@pytest.mark.parametrize("c", [1, 2, 3, 4])
@pytest.mark.parametrize(("k", "s"), [((2, 2), (2, 2)), ((3, 3), (2, 2)), ((2, 2), (3, 3)), ((1, 5), (1, 4)),
                                      ((1, 257), (1, 2))])
@pytest.mark.parametrize("fill", ["max", "random"])
def test_strided_columns_of_pixels_match_oracle(c, k, s, fill):
    """Strided column windows of 8-bit pixels, by every column method: whole pixels added as one
    integer (RGBX, gray+alpha) never carry from one channel into the next, even at the largest
    sum the accumulator holds (255 * 257 = 65535); windows at every column then picked; channel
    by channel."""
    rng = np.random.default_rng(c)
    width = 2 * k[1] + 5
    hwc = np.full((9, width, c), 255, np.uint8) if fill == "max" else rng.integers(0, 256, (9, width, c), np.uint8)
    x = hwc.transpose(2, 0, 1)
    x4 = x[None]
    for op, rounded in (("avg", False), ("avg_rounded", True)):
        for channels_last in (False, True):
            assert_bit_equal(engine.pool_rows(op, x, channels_last=channels_last, kernel_size=k, stride=s),
                             avg_pool2d_ref(x4, k, s, (0, 0), False, True, None, rounded=rounded)[0])
    assert_bit_equal(engine.pool_rows("max", x, channels_last=True, kernel_size=k, stride=s),
                     max_pool2d_ref(x4, k, s, (0, 0), (1, 1), False)[0][0])


@pytest.mark.parametrize("divisor", [1, 3, 5, 6, 7, 9, 12, 25, 49, 255, 257, 1000, 65535])
def test_integer_division_is_exact_for_every_8bit_window_sum(divisor):
    """Unsigned sums divided by NumPy's integer division by a scalar equal the exact formulas
    (truncated and rounded halves up) for every uint16 sum; without room to add half the
    divisor, the rounding finisher takes another exact way."""
    for high in (2**16 - 1, 2**16 - 1 - divisor // 2):  # no room for the half; just enough room
        every_sum = np.arange(high + 1, dtype=np.int64)
        rounded, truncated = np.empty_like(every_sum), np.empty_like(every_sum)
        engine._finish_rounded(every_sum.astype(np.uint16), np.asarray(divisor), rounded, (0, high))
        engine._finish_truncated(every_sum.astype(np.uint16), np.asarray(divisor), truncated, (0, high))
        assert np.array_equal(rounded, (2 * every_sum + divisor) // (2 * divisor))
        assert np.array_equal(truncated, every_sum // divisor)
    every_sum = np.arange(2**16, dtype=np.int64)
    narrow = np.empty(2**16, np.uint8)  # quotients past the output's range wrap, as through int64
    engine._finish_truncated(every_sum.astype(np.uint16), np.asarray(divisor), narrow, (0, 2**16 - 1))
    assert np.array_equal(narrow, (every_sum // divisor).astype(np.uint8))


def test_pixels_come_back_interleaved():
    """pool_rows(channels_last=True): (C, OH, OW) values over (OH, OW, C) memory, the same values."""
    hwc = np.arange(6 * 8 * 3, dtype=np.uint8).reshape(6, 8, 3)
    for op, args in (("max", dict(kernel_size=3, stride=1, padding=1)), ("avg_rounded", dict(kernel_size=2))):
        pixels = engine.pool_rows(op, hwc.transpose(2, 0, 1), channels_last=True, **args)
        planes = engine.pool_rows(op, hwc.transpose(2, 0, 1), **args)
        assert pixels.transpose(1, 2, 0).flags.c_contiguous and planes.flags.c_contiguous
        assert_bit_equal(pixels, planes)
