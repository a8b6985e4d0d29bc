"""Pixel rules: rounded averages, premultiplied alpha, linear light, saturation."""

from __future__ import annotations

import numpy as np
from PIL import Image

from poolcli.frames import ArrayFrame
from poolcli.params import PoolParams
from poolcli.pixels import pool_pixels

AVG2 = PoolParams("avg", (2, 2))


def test_rounded_average_equals_pillow_reduce(rng):
    for channels in (1, 3):
        frame = rng.integers(0, 256, (12, 18, channels), dtype=np.uint8)
        ours, _ = pool_pixels(ArrayFrame(frame), AVG2)
        img = Image.fromarray(frame[:, :, 0] if channels == 1 else frame)
        theirs = np.asarray(img.reduce(2)).reshape(ours.shape)
        assert np.array_equal(ours, theirs)


def test_halves_round_up():
    frame = np.array([[1, 2], [2, 2]], dtype=np.uint8)[:, :, None]  # 7 / 4 = 1.75 -> 2
    assert pool_pixels(ArrayFrame(frame), AVG2)[0].ravel().tolist() == [2]
    frame = np.array([[1, 2], [1, 2]], dtype=np.uint8)[:, :, None]  # 6 / 4 = 1.5 -> 2
    assert pool_pixels(ArrayFrame(frame), AVG2)[0].ravel().tolist() == [2]


def test_sixteen_bit_average_is_exact():
    frame = np.array([[65535, 65535], [65535, 65534]], dtype=np.uint16)[:, :, None]  # 65534.75
    out, _ = pool_pixels(ArrayFrame(frame), AVG2)
    assert out.dtype == np.uint16 and out.ravel().tolist() == [65535]


def test_premultiplied_alpha_ignores_transparent_colour():
    # one opaque red pixel, three transparent green ones: the colour stays red
    frame = np.array([[[255, 0, 0, 255], [0, 255, 0, 0]], [[0, 255, 0, 0], [0, 255, 0, 0]]], dtype=np.uint8)
    out, _ = pool_pixels(ArrayFrame(frame), AVG2, has_alpha=True)
    assert out.ravel().tolist() == [255, 0, 0, 64]
    independent, _ = pool_pixels(ArrayFrame(frame), AVG2, has_alpha=True, premultiply=False)
    assert independent.ravel().tolist() == [64, 191, 0, 64]


def test_fully_transparent_window_gets_colour_zero():
    frame = np.zeros((2, 2, 4), dtype=np.uint8)
    frame[..., :3] = 200
    assert pool_pixels(ArrayFrame(frame), AVG2, has_alpha=True)[0].ravel().tolist() == [0, 0, 0, 0]


def test_premultiplied_weights_by_alpha():
    frame = np.array([[[100, 50], [200, 150]], [[0, 0], [0, 0]]], dtype=np.uint8)  # LA, 2x2
    frame = frame.transpose(1, 0, 2)  # rows: (100,a50) (0,a0) / (200,a150) (0,a0)
    params = PoolParams("avg", (2, 2))
    out, _ = pool_pixels(ArrayFrame(frame), params, has_alpha=True)
    # colour = (100*50 + 200*150) / 200 = 175; alpha = 200 / 4 = 50
    assert out.ravel().tolist() == [175, 50]


def test_linear_light_average_of_black_and_white_is_lighter_than_128():
    frame = np.array([[0, 255], [0, 255]], dtype=np.uint8)[:, :, None]
    plain, _ = pool_pixels(ArrayFrame(frame), AVG2)
    linear, _ = pool_pixels(ArrayFrame(frame), AVG2, linear=True)
    assert plain.ravel().tolist() == [128]
    assert linear.ravel().tolist() == [188]  # sRGB encoding of linear 0.5


def test_linear_of_a_flat_area_is_unchanged(rng):
    value = int(rng.integers(0, 256))
    frame = np.full((4, 4, 3), value, dtype=np.uint8)
    assert (pool_pixels(ArrayFrame(frame), AVG2, linear=True)[0] == value).all()


def test_divisor_override_saturates_pixels():
    frame = np.full((2, 2, 1), 200, dtype=np.uint8)
    out, _ = pool_pixels(ArrayFrame(frame), PoolParams("avg", (2, 2), divisor_override=1))
    assert out.ravel().tolist() == [255]
    out, _ = pool_pixels(ArrayFrame(frame), PoolParams("avg", (2, 2), divisor_override=-1))
    assert out.ravel().tolist() == [0]


def test_max_is_per_channel_with_torch_indices(rng):
    frame = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
    out, indices = pool_pixels(ArrayFrame(frame), PoolParams("max", (3, 3)), want_indices=True)
    assert out.shape == (2, 2, 3) and indices.shape == (3, 2, 2)
    for c in range(3):
        plane = frame[:, :, c]
        assert out[0, 0, c] == plane[:3, :3].max()
        assert plane.ravel()[indices[c, 1, 1]] == plane[3:, 3:].max()


def test_float_pixels_average_like_torch():
    frame = np.array([[1e8, 1], [-1e8, 1]], dtype=np.float32)[:, :, None]
    assert pool_pixels(ArrayFrame(frame), AVG2)[0].ravel().tolist() == [0.25]
