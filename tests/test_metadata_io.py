"""Metadata through the real commands (issue 17): OME-TIFF and OME-Zarr in and out, GeoTIFFs and
their pyramids, nodata pooling; read back with the field's own readers (tifffile without
warnings, libvips through pyvips, rasterio/GDAL, ome-zarr-models), pixels against the oracles."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

from poolcli import zarr_io
from tests.conftest import json_lines
from tests.nodata_oracle import avg_ref, max_ref
from tests.oracle import avg_pool2d_ref, max_pool2d_ref

NAMES = ["DAPI", "GFP", "RFP"]
COLORS = [65535, -16711681, -16776961]
HEX = ["0000FF", "FF00FF", "FF0000"]
V3 = zarr_io.zarr_major() >= 3


def write_ome(path: Path, data: np.ndarray, tile: tuple[int, int] = (16, 16)) -> Path:
    """An OME-TIFF of (C, Y, X) channels with names, colours and a 0.325 µm pixel."""
    tifffile.imwrite(path, data, ome=True, photometric="minisblack", tile=tile,
                     metadata={"axes": "CYX", "Name": "cells", "PhysicalSizeX": 0.325, "PhysicalSizeXUnit": "µm",
                               "PhysicalSizeY": 0.325, "PhysicalSizeYUnit": "µm",
                               "Channel": {"Name": NAMES, "Color": COLORS}})
    return path


def read_quietly(path: Path) -> tuple[tifffile.TiffFile, list]:
    """A TIFF opened by tifffile with every warning an error (and its log captured)."""
    import logging

    records: list = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logging.getLogger("tifffile").addHandler(handler)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            tif = tifffile.TiffFile(path)
            tif.series[0].asarray()
    finally:
        logging.getLogger("tifffile").removeHandler(handler)
    return tif, records


def max2(planes: np.ndarray) -> np.ndarray:
    return max_pool2d_ref(planes[None], (2, 2), (2, 2), (0, 0), (1, 1), False)[0][0]


# --------------------------------------------------------------------------- OME-TIFF


def test_an_ome_tiff_gives_an_ome_tiff_one_page_per_channel(invoke, tmp_path, rng):
    pyvips = pytest.importorskip("pyvips")
    data = rng.integers(0, 65536, (3, 50, 36), dtype=np.uint16)
    write_ome(tmp_path / "cells.ome.tif", data)
    result = invoke("max", "cells.ome.tif", "-k", "2", "-o", "out.ome.tif", "-v")
    assert result.exit_code == 0, result.stderr
    assert "written as a tiled OME-TIFF" in result.stdout + result.stderr
    tif, records = read_quietly(tmp_path / "out.ome.tif")
    with tif:
        assert records == [] and tif.is_ome and len(tif.pages) == 3
        assert tif.pages[0].samplesperpixel == 1 and tif.pages[0].is_tiled
        series = tif.series[0]
        assert series.axes == "CYX" and np.array_equal(series.asarray(), max2(data))
        xml = tif.ome_metadata
    from poolcli.ome import OmeImage

    image = OmeImage.from_xml(xml)
    assert [c.name for c in image.channels] == NAMES and [c.hex_color() for c in image.channels] == HEX
    assert (image.physical["X"].value, image.physical["X"].unit) == (0.65, "µm")
    assert (image.sizes["X"], image.sizes["Y"], image.sizes["C"]) == (18, 25, 3)
    for c in range(3):
        assert np.array_equal(pyvips.Image.new_from_file(str(tmp_path / "out.ome.tif"), page=c).numpy(),
                              max2(data)[c])


@pytest.mark.parametrize("axes", ["ZCYX", "CZYX", "TCYX"])
def test_ome_planes_of_z_and_t_are_pooled_page_by_page_in_their_order(invoke, tmp_path, rng, axes):
    pyvips = pytest.importorskip("pyvips")
    shape = {"C": 3, "Z": 2, "T": 2}
    data = rng.integers(0, 65536, (shape[axes[0]], shape[axes[1]], 36, 28), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "stack.ome.tif", data, ome=True, photometric="minisblack", tile=(16, 16),
                     metadata={"axes": axes, "PhysicalSizeX": 0.5, "PhysicalSizeZ": 2.0, "Channel": {"Name": NAMES}})
    result = invoke("max", "stack.ome.tif", "-k", "2", "-o", "out.ome.tif", "-q")
    assert result.exit_code == 0, result.stderr
    expected = max2(data.reshape(-1, 36, 28)).reshape(*data.shape[:2], 18, 14)
    tif, records = read_quietly(tmp_path / "out.ome.tif")
    with tif:
        assert records == [] and tif.is_ome and len(tif.pages) == 6
        assert tif.series[0].axes == axes and np.array_equal(tif.series[0].asarray(), expected)
        from poolcli.ome import OmeImage

        image = OmeImage.from_xml(tif.ome_metadata)
        assert [c.name for c in image.channels] == NAMES
        assert image.physical["X"].value == 1.0 and image.physical["Z"].value == 2.0
    for n, plane in enumerate(expected.reshape(-1, 18, 14)):
        assert np.array_equal(pyvips.Image.new_from_file(str(tmp_path / "out.ome.tif"), page=n).numpy(), plane)
    pyramid = invoke("pyramid", "max", "stack.ome.tif", "--levels", "1", "-o", "p.ome.tif", "-q")
    assert pyramid.exit_code == 0, pyramid.stderr
    with tifffile.TiffFile(tmp_path / "p.ome.tif") as tif:
        assert tif.series[0].axes == axes and len(tif.pages[5].subifds) == 1
        assert np.array_equal(tif.series[0].levels[1].asarray(), expected)


def test_an_ome_tiff_pyramid_keeps_levels_in_subifds_and_its_ome_xml(invoke, tmp_path, rng):
    pyvips = pytest.importorskip("pyvips")
    data = rng.integers(0, 65536, (3, 64, 40), dtype=np.uint16)
    write_ome(tmp_path / "cells.ome.tif", data)
    result = invoke("pyramid", "max", "cells.ome.tif", "-o", "p.ome.tif", "--levels", "2", "-q")
    assert result.exit_code == 0, result.stderr
    tif, records = read_quietly(tmp_path / "p.ome.tif")
    levels = [data, max2(data), max2(max2(data))]
    with tif:
        assert records == [] and tif.is_ome and len(tif.pages) == 3
        assert all(len(page.subifds) == 2 for page in tif.pages)
        from poolcli.ome import OmeImage

        image = OmeImage.from_xml(tif.ome_metadata)
        assert [c.name for c in image.channels] == NAMES and image.physical["X"].value == 0.325
        for n, level in enumerate(tif.series[0].levels):
            assert np.array_equal(level.asarray(), levels[n])
    for c in range(3):
        for n in (0, 1):
            read = pyvips.Image.new_from_file(str(tmp_path / "p.ome.tif"), page=c, subifd=n).numpy()
            assert np.array_equal(read, levels[n + 1][c])


def test_rgb_stays_interleaved_and_multichannel_planar_becomes_pages(invoke, tmp_path, rng):
    pyvips = pytest.importorskip("pyvips")
    rgb = rng.integers(0, 256, (3, 40, 34), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb", planarconfig="separate", tile=(16, 16))
    bands = rng.integers(0, 256, (5, 40, 34), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "bands.tif", bands, photometric="minisblack", planarconfig="separate",
                     tile=(16, 16))
    for name, data in (("rgb", rgb), ("bands", bands)):
        for command in (["max", f"{name}.tif", "-k", "2", "-o", f"{name}.out.tif"],
                        ["pyramid", "max", f"{name}.tif", "--levels", "1", "-o", f"{name}.p.tif"]):
            result = invoke(*command, "-q")
            assert result.exit_code == 0, result.stderr
            out = tmp_path / command[-1]
            tif, records = read_quietly(out)
            with tif:
                assert records == []
                page = tif.pages[0]
                assert page.planarconfig == 1
                assert (len(tif.pages), page.samplesperpixel) == ((1, 3) if name == "rgb" else (5, 1))
                assert np.array_equal(tif.series[0].levels[-1].asarray().reshape(-1) if name == "bands"
                                      else tif.series[0].levels[-1].asarray().transpose(2, 0, 1).reshape(-1),
                                      max2(data).reshape(-1))
            first = pyvips.Image.new_from_file(str(out))
            if name == "rgb":
                assert np.array_equal(first.numpy().transpose(2, 0, 1), data if command[0] == "pyramid"
                                      else max2(data))
            else:
                assert np.array_equal(first.numpy(), data[0] if command[0] == "pyramid" else max2(data)[0])


# --------------------------------------------------------------------------- OME-Zarr


NGFF = ["0.4", pytest.param("0.5", marks=pytest.mark.skipif(not V3, reason="NGFF 0.5 is Zarr v3 (zarr>=3)"))]


def ngff_metadata(path: Path, version: str) -> dict:
    """An OME-Zarr image's NGFF metadata (``multiscales``, ``omero``), once ome-zarr-models
    has validated the group."""
    models = pytest.importorskip(f"ome_zarr_models.v0{version[-1]}.image")
    group = zarr.open_group(str(path), mode="r")
    models.Image.from_zarr(group)
    attrs = group.attrs.asdict()
    return attrs["ome"] if version == "0.5" else attrs


@pytest.mark.parametrize("ngff", NGFF)
def test_an_ome_tiff_pyramid_as_ome_zarr_has_units_scale_and_omero(invoke, tmp_path, rng, ngff):
    data = rng.integers(0, 65536, (3, 48, 40), dtype=np.uint16)
    write_ome(tmp_path / "cells.ome.tif", data)
    result = invoke("pyramid", "avg", "cells.ome.tif", "-o", "cells.ome.zarr", "--levels", "2", "--ngff", ngff,
                    "-k", "3", "-s", "2", "-p", "1", "-q")
    assert result.exit_code == 0, result.stderr
    out = tmp_path / "cells.ome.zarr"
    ome = ngff_metadata(out, ngff)
    image = ome["multiscales"][0]
    assert [(a["name"], a.get("unit")) for a in image["axes"]] == [("c", None), ("y", "micrometer"),
                                                                    ("x", "micrometer")]
    transforms = [d["coordinateTransformations"] for d in image["datasets"]]
    assert transforms[0] == [{"type": "scale", "scale": [1.0, 0.325, 0.325]}]
    # level 1: 0.65 µm pixels; its first pixel's window (rows -1..1) is centred on input pixel 0
    assert transforms[1] == [{"type": "scale", "scale": [1.0, 0.65, 0.65]}]
    # level 2: its first window (level-1 pixels -1..1) is centred on level-1 pixel 0 too
    assert transforms[2] == [{"type": "scale", "scale": [1.0, 1.3, 1.3]}]
    omero = ome["omero"]
    assert [(c["label"], c["color"]) for c in omero["channels"]] == list(zip(NAMES, HEX, strict=True))
    if ngff == "0.4":
        assert json.loads((out / "1" / ".zarray").read_text())["dimension_separator"] == "/"
    else:
        assert json.loads((out / "1" / "zarr.json").read_text())["dimension_names"] == ["c", "y", "x"]
    level = data
    for n in range(3):
        assert np.array_equal(zarr.open_array(str(out / str(n)), mode="r")[...], level)
        level = avg_pool2d_ref(level[None], (3, 3), (2, 2), (1, 1), False, True, None, rounded=True)[0]


@pytest.mark.parametrize("ngff", NGFF)
def test_an_ome_zarr_input_keeps_omero_and_units(invoke, tmp_path, rng, ngff):
    from poolcli.ome import ngff_attributes

    data = rng.normal(0, 1, (2, 32, 24)).astype(np.float32)
    source = tmp_path / "in.ome.zarr"
    group = zarr.open_group(str(source), mode="w", **({"zarr_format": 2} if V3 else {}))
    group.create_array("0", data=data, chunk_key_encoding={"name": "v2", "separator": "/"}) if V3 else \
        group.create_dataset("0", data=data, dimension_separator="/")
    omero = {"channels": [{"label": "A", "color": "00FF00", "window": {"min": -1, "max": 1, "start": -1, "end": 1}},
                          {"label": "B", "color": "FF0000", "window": {"min": -1, "max": 1, "start": -1, "end": 1}}]}
    axes = [{"name": "c", "type": "channel"}, {"name": "y", "type": "space", "unit": "nanometer"},
            {"name": "x", "type": "space", "unit": "nanometer"}]
    group.attrs.update(ngff_attributes("0.4", "in", axes, [([1.0, 5.0, 5.0], [0.0, 0.0, 0.0])], omero=omero))
    result = invoke("max", "in.ome.zarr", "-k", "2", "-o", "out.ome.zarr", "--ngff", ngff, "-q")
    assert result.exit_code == 0, result.stderr
    ome = ngff_metadata(tmp_path / "out.ome.zarr", ngff)
    assert ome["omero"] == omero
    image = ome["multiscales"][0]
    assert image["axes"] == axes
    assert image["datasets"][0]["coordinateTransformations"] == [
        {"type": "scale", "scale": [1.0, 10.0, 10.0]}, {"type": "translation", "translation": [0.0, 2.5, 2.5]}]
    assert np.array_equal(zarr.open_array(str(tmp_path / "out.ome.zarr" / "0"), mode="r")[...], max2(data))


# --------------------------------------------------------------------------- GeoTIFF and nodata


def write_geotiff(path: Path, data: np.ndarray, nodata: float | None = -9999, tiled: bool = False) -> Path:
    rasterio = pytest.importorskip("rasterio")
    from rasterio.transform import Affine

    extra = dict(tiled=True, blockxsize=16, blockysize=16) if tiled else {}
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0],
                       dtype=data.dtype, crs="EPSG:32633", transform=Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 4600000.0),
                       nodata=nodata, **extra) as dst:
        dst.write(data)
        dst.update_tags(SOURCE="survey 7")  # GDAL_METADATA
    return path


@pytest.mark.parametrize("tiled", [False, True], ids=["striped", "tiled"])
def test_a_geotiff_keeps_crs_transform_and_nodata_and_skips_nodata(invoke, tmp_path, rng, tiled):
    rasterio = pytest.importorskip("rasterio")
    data = rng.normal(100, 20, (1, 37, 29)).astype(np.float32)
    data[0, rng.random((37, 29)) < 0.3] = -9999
    data[0, :4, :4] = -9999  # a window with no data
    write_geotiff(tmp_path / "dem.tif", data, tiled=tiled)
    result = invoke("avg", "dem.tif", "-k", "3", "-s", "2", "-p", "1", "-o", "out.tif", "--json")
    assert result.exit_code == 0, result.stderr
    with rasterio.open(tmp_path / "out.tif") as src:
        assert src.crs.to_epsg() == 32633 and src.nodata == -9999 and src.tags()["SOURCE"] == "survey 7"
        # the output pixel (0, 0) averages input rows/columns -1..1: its centre is input pixel 0's
        # centre (500005, 4599995), and its 20 m square starts 10 m up and left of that
        assert tuple(src.transform)[:6] == (20.0, 0.0, 499995.0, 0.0, -20.0, 4600005.0)
        out = src.read()
    expected = avg_ref(data, np.float32(-9999), (3, 3), (2, 2), (1, 1), False, True, None)
    assert np.array_equal(out, expected)
    assert out[0, 0, 0] == -9999 and (out != -9999).mean() > 0.5
    assert "nodata -9999 left out of every window" in json.dumps(json_lines(result.stdout)[0])


def test_nodata_none_pools_every_pixel_and_drops_the_tag(invoke, tmp_path, rng):
    rasterio = pytest.importorskip("rasterio")
    data = rng.integers(0, 1000, (2, 20, 18)).astype(np.int16)
    data[:, 3:7, 2:9] = -9999
    write_geotiff(tmp_path / "bands.tif", data)
    assert invoke("max", "bands.tif", "-k", "2", "-o", "plain.tif", "--nodata", "none", "-q").exit_code == 0
    assert invoke("max", "bands.tif", "-k", "2", "-o", "other.tif", "--nodata", "5", "-q").exit_code == 0
    with rasterio.open(tmp_path / "plain.tif") as src:
        assert src.nodata is None and src.count == 2 and src.crs.to_epsg() == 32633
        assert np.array_equal(src.read(), max2(data))
    tif, records = read_quietly(tmp_path / "plain.tif")  # two bands in one interleaved page
    with tif:
        assert records == [] and len(tif.pages) == 1 and tif.pages[0].samplesperpixel == 2
    pyvips = pytest.importorskip("pyvips")
    assert np.array_equal(pyvips.Image.new_from_file(str(tmp_path / "plain.tif")).numpy().transpose(2, 0, 1),
                          max2(data))
    with rasterio.open(tmp_path / "other.tif") as src:
        assert src.nodata == 5
        expected = max_ref(data, np.int16(5), (2, 2), (2, 2), (0, 0), (1, 1), False)
        assert np.array_equal(src.read(), expected)


def test_a_geotiff_pyramid_has_gdal_overviews_georeferenced(invoke, tmp_path, rng):
    rasterio = pytest.importorskip("rasterio")
    data = rng.integers(0, 256, (1, 64, 48)).astype(np.uint8)
    write_geotiff(tmp_path / "img.tif", data, nodata=None)
    result = invoke("pyramid", "max", "img.tif", "-o", "img.pyramid.tif", "--levels", "2", "-q")
    assert result.exit_code == 0, result.stderr
    with rasterio.open(tmp_path / "img.pyramid.tif") as src:
        assert src.overviews(1) == [2, 4] and src.crs.to_epsg() == 32633
        assert tuple(src.transform)[:6] == (10.0, 0.0, 500000.0, 0.0, -10.0, 4600000.0)
        assert np.array_equal(src.read(1), data[0])
        assert np.array_equal(src.read(1, out_shape=(16, 12)), max2(max2(data))[0])
    tif, records = read_quietly(tmp_path / "img.pyramid.tif")
    with tif:  # every level carries its own placement
        assert records == [] and not tif.is_ome
        assert [page.tags["ModelPixelScaleTag"].value[:2] for page in tif.pages] == [(10, 10), (20, 20), (40, 40)]
    pyvips = pytest.importorskip("pyvips")
    assert np.array_equal(pyvips.Image.new_from_file(str(tmp_path / "img.pyramid.tif"), page=2).numpy(),
                          max2(max2(data))[0])


def test_nodata_for_arrays_only_when_given(invoke, tmp_path):
    data = np.array([[[1.0, -1.0, 4.0, -1.0], [-1.0, -1.0, 2.0, 8.0]]], dtype=np.float32)
    np.save(tmp_path / "a.npy", data)
    assert invoke("avg", "a.npy", "-k", "2", "-o", "plain.npy", "-q").exit_code == 0
    assert np.load(tmp_path / "plain.npy").tolist() == [[[-0.5, 3.25]]]  # torch: every value counts
    assert invoke("avg", "a.npy", "-k", "2", "-o", "nd.npy", "--nodata", "-1", "-q").exit_code == 0
    nodata = [[[1.0, float(np.float32(14) / np.float32(3))]]]  # 1 / (4 - 3), (4 + 2 + 8) / (4 - 1)
    assert np.load(tmp_path / "nd.npy").tolist() == nodata
    group = zarr.open_array(str(tmp_path / "a.zarr"), mode="w", shape=data.shape, dtype=data.dtype,
                            chunks=(1, 2, 2), **({"zarr_format": 2} if V3 else {}))
    group[...] = data
    assert invoke("avg", "a.zarr", "-k", "2", "-o", "nd.zarr", "--nodata", "-1", "-q").exit_code == 0
    assert zarr.open_array(str(tmp_path / "nd.zarr"), mode="r")[...].tolist() == nodata


def test_nodata_mistakes_are_one_line(invoke, tmp_path, rng):
    data = rng.integers(0, 256, (1, 8, 8)).astype(np.uint8)
    write_geotiff(tmp_path / "u8.tif", data, nodata=None)
    np.save(tmp_path / "a.npy", data[0])
    impossible = invoke("max", "u8.tif", "-k", "2", "-o", "o.tif", "--nodata", "-9999")
    assert impossible.exit_code == 1 and not (tmp_path / "o.tif").exists()
    assert impossible.stderr == ("poolcli: error: u8.tif: nodata -9999 is outside the range of uint8 data "
                                 "(0 to 255) (from --nodata)\n")
    on_array = invoke("max", "a.npy", "-k", "2", "--nodata", "300")
    assert on_array.exit_code == 1
    assert on_array.stderr == "poolcli: error: a.npy: nodata 300 is outside the range of uint8 data (0 to 255)\n"
    indices = invoke("max", "a.npy", "-k", "2", "--nodata", "0", "--return-indices", "i.npy")
    assert indices.exit_code == 2 and "--return-indices and --nodata do not go together" in indices.stderr
    word = invoke("max", "a.npy", "-k", "2", "--nodata", "lots")
    assert word.exit_code == 2 and "nodata 'lots' is not a number" in word.stderr


@pytest.mark.parametrize("ngff", NGFF)
def test_an_ome_tiff_pooled_into_zarr_is_an_ome_zarr_image(invoke, tmp_path, rng, ngff):
    data = rng.integers(0, 65536, (3, 40, 32), dtype=np.uint16)
    write_ome(tmp_path / "cells.ome.tif", data)
    result = invoke("max", "cells.ome.tif", "-k", "2", "-o", "cells.ome.zarr", "--ngff", ngff, "-q")
    assert result.exit_code == 0, result.stderr
    ome = ngff_metadata(tmp_path / "cells.ome.zarr", ngff)
    assert ome["multiscales"][0]["datasets"][0]["coordinateTransformations"] == [
        {"type": "scale", "scale": [1.0, 0.65, 0.65]}, {"type": "translation", "translation": [0.0, 0.1625, 0.1625]}]
    assert [c["label"] for c in ome["omero"]["channels"]] == NAMES
    assert np.array_equal(zarr.open_array(str(tmp_path / "cells.ome.zarr" / "0"), mode="r")[...], max2(data))


def test_a_geotiff_pyramid_pools_every_level_without_nodata(invoke, tmp_path, rng):
    rasterio = pytest.importorskip("rasterio")
    data = rng.integers(0, 100, (1, 32, 32)).astype(np.int16)
    data[0, rng.random((32, 32)) < 0.5] = -9999
    write_geotiff(tmp_path / "nd.tif", data)
    assert invoke("pyramid", "avg", "nd.tif", "-o", "nd.pyramid.tif", "--levels", "2", "-q").exit_code == 0
    level = data
    with tifffile.TiffFile(tmp_path / "nd.pyramid.tif") as tif:
        for page in tif.pages:
            assert page.tags["GDAL_NODATA"].value == "-9999"
            assert np.array_equal(page.asarray(), level[0])
            level = avg_ref(level, np.int16(-9999), (2, 2), (2, 2), (0, 0), False, True, None)
    with rasterio.open(tmp_path / "nd.pyramid.tif") as src:
        assert src.overviews(1) == [2, 4] and src.nodata == -9999
