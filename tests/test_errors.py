"""One exception base for the package, and the Python API's own words: the path in a PoolError,
the keyword arguments instead of the command line's flags, and no silent reading of an (H, W, 3)
image as (C, H, W)."""

from __future__ import annotations

import errno

import numpy as np
import pytest
from PIL import Image

import poolcli
import poolcli.errors
from poolcli.api import _in_keywords
from poolcli.arrays import ArrayError
from poolcli.batch import PlanError
from poolcli.errors import ExecutorError, GiantImageError, PoolcliError, PoolError, PoolingError, PoolingTypeError
from poolcli.explain.matrix import ExplainInputError, MatrixError
from poolcli.explain.model import ChannelError, ExplainLimit
from poolcli.explain.picture import PictureTooLarge
from poolcli.images import ImageError
from poolcli.inflate import Damaged, StreamError
from poolcli.nodata import NodataError
from poolcli.ome import OmeError
from poolcli.paths import OutputError
from poolcli.pipeline import JobError
from poolcli.storage import StorageError, StorageFault
from poolcli.tiff_io import DamagedTiff
from tests.oracle import avg_pool2d_ref, max_pool2d_ref

# Each error and the standard base it keeps beside PoolcliError (callers catching those still work).
ERRORS = [(PoolError, ValueError), (PoolingError, ValueError), (PoolingTypeError, TypeError),
          (ExecutorError, Exception), (JobError, Exception), (ImageError, Exception), (ArrayError, Exception),
          (StorageError, Exception), (StorageFault, Exception), (GiantImageError, Exception), (DamagedTiff, Exception),
          (PlanError, Exception), (OutputError, OSError), (StreamError, Exception), (Damaged, Exception),
          (NodataError, ValueError), (OmeError, ValueError), (MatrixError, ValueError),
          (ExplainInputError, Exception), (ExplainLimit, ValueError), (ChannelError, ValueError),
          (PictureTooLarge, ValueError)]


@pytest.mark.parametrize(("error", "base"), ERRORS, ids=[e.__name__ for e, _ in ERRORS])
def test_every_error_derives_from_the_one_base_and_keeps_its_own(error, base):
    assert issubclass(error, PoolcliError)
    assert issubclass(error, base)


def test_the_public_errors_are_exported_from_errors_and_the_package():
    for name in ("PoolcliError", "PoolError", "PoolingError", "PoolingTypeError", "ExecutorError"):
        assert getattr(poolcli, name) is getattr(poolcli.errors, name)
        assert name in poolcli.__all__


def test_an_output_error_is_still_an_os_error_with_its_number():
    error = OutputError("cannot write x: the folder y does not exist", "x", errno.ENOENT)
    assert (error.errno, error.filename) == (errno.ENOENT, "x")
    assert str(error) == "cannot write x: the folder y does not exist"


def test_one_except_clause_catches_the_array_and_image_errors(tmp_path):
    caught = []
    for call in (lambda: poolcli.max_pool2d(np.zeros((1, 4, 4)), 5),
                 lambda: poolcli.avg_pool2d(np.zeros((1, 2, 2), dtype=bool), 2),
                 lambda: poolcli.pool_image(tmp_path / "x.png", "max", 2)):
        with pytest.raises(PoolcliError) as info:
            call()
        caught.append(type(info.value))
    assert caught == [PoolingError, PoolingTypeError, PoolError]


def test_a_missing_file_is_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PoolError) as info:
        poolcli.pool_image("x.png", "max", 2)
    assert str(info.value) == "x.png: no such file"
    with pytest.raises(PoolError) as info:
        poolcli.pool_file("x.png", "y.png", "max", 2)
    assert str(info.value) == "x.png: no such file"
    assert not (tmp_path / "y.png").exists()


def test_a_window_too_large_is_told_in_keyword_arguments(tmp_path):
    Image.new("RGB", (6, 4)).save(tmp_path / "small.png")
    expected = ("kernel 5 does not fit the 6x4 image (padding 0): the output would be 1x0; use kernel_size=4 or "
                "less, or ceil_mode=True / padding")
    with pytest.raises(PoolError) as info:
        poolcli.pool_image(tmp_path / "small.png", "max", 5)
    assert str(info.value) == f"{tmp_path / 'small.png'}: {expected}"
    with pytest.raises(PoolError) as info:
        poolcli.pool_image(Image.new("RGB", (6, 4)), "avg", 5)  # an image in memory: no path to name
    assert str(info.value) == expected
    with pytest.raises(PoolError) as info:
        poolcli.pool_file(tmp_path / "small.png", tmp_path / "out.png", "max", 5)
    assert str(info.value) == f"{tmp_path / 'small.png'}: {expected}"
    assert "-k" not in str(info.value) and "--" not in str(info.value)


def test_the_command_line_keeps_its_flags(tmp_path, invoke):
    Image.new("RGB", (6, 4)).save(tmp_path / "small.png")
    result = invoke("max", str(tmp_path / "small.png"), "-k", "5")
    assert result.exit_code == 1
    assert result.stderr.rstrip().endswith("use -k 4 or less, or --ceil-mode / -p")


@pytest.mark.parametrize(("reason", "words"), [
    ("use -k 3,2 or less, or --ceil-mode / -p", "use kernel_size=(3, 2) or less, or ceil_mode=True / padding"),
    ("the most --max-pixels 1000 allows (--max-pixels 0: no limit)",
     "the most max_pixels 1000 allows (max_pixels=0: no limit)"),
    ("--linear needs sRGB pixels", "linear=True needs sRGB pixels"),
    ("unknown output extension '.xyz'; use --format or one of",
     "unknown output extension '.xyz'; use file_format or one of"),
])
def test_flags_become_keyword_arguments(reason, words):
    assert _in_keywords(reason) == words


def test_an_image_shaped_array_is_refused_without_a_layout(rng):
    rgb = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    for pool in (lambda: poolcli.max_pool2d(rgb, 2), lambda: poolcli.avg_pool2d(rgb, 2),
                 lambda: poolcli.max_pool2d(rgb[None], 2, return_indices=True)):
        with pytest.raises(PoolingError, match=r'channels last \(3 of them\).*layout="HWC".*layout="CHW"'):
            pool()
    with pytest.raises(PoolingError, match='layout must be "CHW" or "HWC", not \'NHWC\''):
        poolcli.max_pool2d(rgb, 2, layout="NHWC")  # type: ignore[call-overload]


def test_layout_hwc_pools_each_channel_and_keeps_the_layout(rng):
    rgba = rng.integers(0, 256, (2, 7, 9, 4), dtype=np.uint8)  # (N, H, W, C)
    planes = np.moveaxis(rgba, -1, 1)  # the oracle's (N, C, H, W)
    expected, expected_indices = max_pool2d_ref(planes, (3, 3), (2, 2), (1, 1), (1, 1), True)
    values, indices = poolcli.max_pool2d(rgba, 3, 2, 1, 1, True, return_indices=True, layout="HWC")
    assert values.shape == (2, 4, 5, 4) and values.flags.c_contiguous
    assert np.array_equal(values, np.moveaxis(expected, 1, -1))
    assert np.array_equal(indices, np.moveaxis(expected_indices, 1, -1))
    floats = rng.random((6, 8, 3)).astype(np.float32)
    averaged = poolcli.avg_pool2d(floats, 2, layout="HWC")
    reference = avg_pool2d_ref(np.moveaxis(floats, -1, 0)[None], (2, 2), (2, 2), (0, 0), False, True, None)
    assert averaged.shape == (3, 4, 3)
    assert np.array_equal(averaged, np.moveaxis(reference[0], 0, -1))


def test_layout_chw_is_torch_reading(rng):
    x = rng.random((6, 8, 3))
    expected, _ = max_pool2d_ref(x[None], (2, 2), (2, 2), (0, 0), (1, 1), False)
    assert np.array_equal(poolcli.max_pool2d(x, 2, layout="CHW"), expected[0])
    small = np.arange(16.0).reshape(1, 4, 4)  # a last axis of 4 that is not channels: pooled as torch does
    assert poolcli.max_pool2d(small, 2).tolist() == [[[5.0, 7.0], [13.0, 15.0]]]
