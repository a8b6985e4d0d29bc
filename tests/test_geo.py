"""GeoTIFF georeferencing through pooling (poolcli/geo.py, docs/semantics.md §10.2): GeoTIFFs
written by rasterio (GDAL), tags read by tifffile, pooled, written back by tifffile and read back
by rasterio; the expected geotransform is computed from the windows, independently of the code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from poolcli import engine
from poolcli.geo import GeoReference
from poolcli.params import PoolParams

rasterio = pytest.importorskip("rasterio")
tifffile = pytest.importorskip("tifffile")
from rasterio.control import GroundControlPoint  # noqa: E402
from rasterio.transform import Affine  # noqa: E402

H, W = 21, 30
NORTH_UP = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 4600000.0)  # EPSG:32633, 10 m pixels
ROTATED = Affine(8.0, 6.0, 500000.0, 6.0, -8.0, 4600000.0)
PARAMS = [
    PoolParams("avg", (2, 2)),
    PoolParams("avg", (3, 3), (2, 2), (1, 1)),
    PoolParams("max", (2, 2), (1, 1)),
    PoolParams("avg", (3, 2), (2, 3), (1, 0), ceil_mode=True),
    PoolParams("max", (2, 3), (1, 2), (1, 1), (2, 2), ceil_mode=True),
]


def write_geotiff(path: Path, transform: Affine = NORTH_UP, point: bool = False) -> Path:
    data = np.arange(H * W, dtype=np.float32).reshape(1, H, W)
    data[0, :5, :7] = -9999
    with rasterio.open(path, "w", driver="GTiff", width=W, height=H, count=1, dtype="float32", crs="EPSG:32633",
                       transform=transform, nodata=-9999) as dst:
        dst.write(data)
        dst.update_tags(AREA_OR_POINT="Point" if point else "Area", source="sentinel")
        dst.update_tags(1, STATISTICS_MEAN="315.0", STATISTICS_MAXIMUM="629")
        dst.set_band_description(1, "elevation")
    return path


def pool_file(source: Path, target: Path, params: PoolParams) -> GeoReference:
    """What a GeoTIFF sink would do: tags in, pooled pixels and pooled tags out (tifffile)."""
    with tifffile.TiffFile(source) as tif:
        page = tif.pages[0]
        geo = GeoReference.from_tags({tag.code: tag.value for tag in page.tags})
        planes = page.asarray()[None]
    assert geo is not None
    op = engine.max_pool2d if params.op == "max" else engine.avg_pool2d
    args = params.max_args() if params.op == "max" else params.avg_args()
    pooled = geo.pooled(params)
    tifffile.imwrite(target, op(planes, **args)[0], extratags=pooled.tags(), metadata=None, photometric="minisblack")
    return pooled


def expected_centres(transform: Affine, params: PoolParams, out_h: int, out_w: int) -> np.ndarray:
    """World position of each output pixel's centre: the midpoint of the centres of its window's
    first and last taps (padding included), through the input's own transform."""
    dilation = params.dilation if params.op == "max" else (1, 1)
    centres = np.empty((out_h, out_w, 2))
    for i in range(out_h):
        for j in range(out_w):
            first = [o * s - p for o, s, p in zip((i, j), params.effective_stride, params.padding, strict=True)]
            last = [f + d * (k - 1) for f, d, k in zip(first, dilation, params.kernel, strict=True)]
            row, col = (first[0] + last[0]) / 2 + 0.5, (first[1] + last[1]) / 2 + 0.5
            centres[i, j] = apply(transform, col, row)
    return centres


def actual_centres(transform: Affine, out_h: int, out_w: int) -> np.ndarray:
    return np.array([[apply(transform, j + 0.5, i + 0.5) for j in range(out_w)] for i in range(out_h)])


def apply(transform: Affine, col: float, row: float) -> tuple[float, float]:
    """(x, y) of raster position (col, row), spelled out (affine's operators changed over versions)."""
    a, b, c, d, e, f = tuple(transform)[:6]
    return a * col + b * row + c, d * col + e * row + f


@pytest.mark.parametrize("params", PARAMS, ids=lambda p: p.slug())
@pytest.mark.parametrize("kind", ["north-up", "pixel-is-point", "rotated"])
def test_rasterio_reads_the_pooled_georeferencing(tmp_path, params, kind):
    source = write_geotiff(tmp_path / "in.tif", ROTATED if kind == "rotated" else NORTH_UP, kind == "pixel-is-point")
    pool_file(source, tmp_path / "out.tif", params)
    with rasterio.open(source) as src, rasterio.open(tmp_path / "out.tif") as out:
        assert out.crs.to_epsg() == 32633
        assert out.nodata == -9999
        expected = expected_centres(src.transform, params, out.height, out.width)
        np.testing.assert_allclose(actual_centres(out.transform, out.height, out.width), expected, rtol=0, atol=1e-6)
        sy, sx = params.effective_stride
        np.testing.assert_allclose(out.res, (src.res[0] * sx, src.res[1] * sy))
        assert out.tags()["source"] == "sentinel"
        assert out.tags().get("AREA_OR_POINT") == ("Point" if kind == "pixel-is-point" else "Area")
        assert out.tags(1) == {}  # the input's statistics no longer describe the pixels
        assert out.descriptions == ("elevation",)


def test_the_tiff_tags_written(tmp_path):
    """k3 s2 p1 on 10 m pixels: 20 m pixels, one tie point at pixel (0, 0), 5 m up and left."""
    pooled = pool_file(write_geotiff(tmp_path / "in.tif"), tmp_path / "out.tif", PARAMS[1])
    assert pooled.pixel_scale == (20.0, 20.0, 0.0)
    assert pooled.tiepoints == (0.0, 0.0, 0.0, 499995.0, 4600005.0, 0.0)
    with tifffile.TiffFile(tmp_path / "out.tif") as tif:
        tags = tif.pages[0].tags
        assert tags["ModelPixelScaleTag"].value == (20.0, 20.0, 0.0)
        assert tags["GDAL_NODATA"].value == "-9999"
        assert "STATISTICS" not in tags["GDAL_METADATA"].value
        assert "ImageDescription" not in tags


def test_pyramid_levels_are_each_pooled_from_the_level_above(tmp_path):
    params = PARAMS[1]
    source = write_geotiff(tmp_path / "in.tif")
    with tifffile.TiffFile(source) as tif:
        geo = GeoReference.from_tags({tag.code: tag.value for tag in tif.pages[0].tags})
    assert geo is not None
    levels = geo.levels(params, 3)
    pool_file(source, tmp_path / "1.tif", params)
    pool_file(tmp_path / "1.tif", tmp_path / "2.tif", params)
    with rasterio.open(tmp_path / "1.tif") as one, rasterio.open(tmp_path / "2.tif") as two:
        assert levels[1].geotransform() == pytest.approx(one.transform.to_gdal())
        assert levels[2].geotransform() == pytest.approx(two.transform.to_gdal())
        expected = expected_centres(one.transform, params, two.height, two.width)
        np.testing.assert_allclose(actual_centres(two.transform, two.height, two.width), expected, atol=1e-6)


def test_control_points_move_with_the_pixels(tmp_path):
    path = tmp_path / "gcps.tif"
    gcps = [GroundControlPoint(row=4.0, col=6.0, x=500060.0, y=4599960.0),
            GroundControlPoint(row=20.0, col=0.0, x=500000.0, y=4599800.0)]
    with rasterio.open(path, "w", driver="GTiff", width=W, height=H, count=1, dtype="uint8",
                       gcps=gcps, crs="EPSG:32633") as dst:
        dst.write(np.zeros((1, H, W), dtype=np.uint8))
    pool_file(path, tmp_path / "out.tif", PoolParams("max", (2, 2)))
    with rasterio.open(tmp_path / "out.tif") as out:
        points, crs = out.gcps
        assert crs.to_epsg() == 32633
        assert [(p.row, p.col, p.x, p.y) for p in points] == [(2.0, 3.0, 500060.0, 4599960.0),
                                                              (10.0, 0.0, 500000.0, 4599800.0)]


def test_gdal_reads_reduced_resolution_pages_as_overviews(tmp_path):
    """The layout a GeoTIFF pyramid can use: geo tags on the full image, levels as reduced-resolution
    pages (GDAL places overviews by their size ratio, exact here: k = s, sizes divide)."""
    params = PoolParams("avg", (2, 2))
    source = write_geotiff(tmp_path / "in.tif")
    with tifffile.TiffFile(source) as tif:
        geo = GeoReference.from_tags({tag.code: tag.value for tag in tif.pages[0].tags})
        full = tif.pages[0].asarray()[:20, :28]
    assert geo is not None
    levels = [full, engine.avg_pool2d(full[None], 2)[0]]
    levels.append(engine.avg_pool2d(levels[1][None], 2)[0])
    with tifffile.TiffWriter(tmp_path / "pyramid.tif") as tif:
        tif.write(levels[0], extratags=geo.tags(), metadata=None, tile=(16, 16))
        for level in levels[1:]:
            tif.write(level, subfiletype=1, metadata=None, tile=(16, 16))
    with rasterio.open(tmp_path / "pyramid.tif") as src:
        assert src.overviews(1) == [2, 4]
        assert src.crs.to_epsg() == 32633
        overview = src.read(1, out_shape=(5, 7))
        np.testing.assert_array_equal(overview, levels[2])
        pooled = geo.levels(params, 3)[2].geotransform()
        assert pooled is not None
        x0, a, b, y0, c, d = src.transform.to_gdal()
        assert (x0, 4 * a, 4 * b, y0, 4 * c, 4 * d) == pytest.approx(pooled)
