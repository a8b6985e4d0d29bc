"""OME metadata through pooling (poolcli/ome.py): OME-TIFFs written by tifffile, parsed, pooled,
written back one page per plane and read by tifffile and libvips (pyvips); NGFF 0.4 and 0.5
attributes checked by ome-zarr-models on real Zarr groups."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from poolcli import engine
from poolcli.ome import OmeError, OmeImage, Quantity, level_transforms, ngff_attributes
from poolcli.params import PoolParams

tifffile = pytest.importorskip("tifffile")

NAMES = ["DAPI", "GFP", "RFP", "Cy5"]
COLORS = [65535, -16711681, -16776961, -1]
HEX = ["0000FF", "FF00FF", "FF0000", "FFFFFF"]
K2 = PoolParams("max", (2, 2))


def write_ome(path: Path, data: np.ndarray, axes: str, **metadata) -> Path:
    channel = {"Name": NAMES, "Color": COLORS, "EmissionWavelength": [461, 510, 590, 670]}
    tifffile.imwrite(path, data, ome=True, photometric="rgb" if axes.endswith("S") else "minisblack",
                     metadata={"axes": axes, "Name": "cells", "PhysicalSizeX": 0.325, "PhysicalSizeXUnit": "µm",
                               "PhysicalSizeY": 0.325, "PhysicalSizeYUnit": "µm",
                               **({} if axes.endswith("S") else {"Channel": channel}), **metadata})
    return path


def pool_ome(source: Path, target: Path, params: PoolParams, levels: int = 1) -> tuple[OmeImage, list[np.ndarray]]:
    """What an OME-TIFF sink would do: every plane pooled, one page per plane in the order the
    output OME-XML gives, the pyramid's further levels in SubIFDs.  Returns the pooled metadata
    and each level's (page, sample, Y, X) planes."""
    with tifffile.TiffFile(source) as tif:
        image = OmeImage.from_xml(tif.ome_metadata)
        series = tif.series[0]
        data, axes = series.asarray(), series.axes
    rgb = axes.endswith("S")
    if rgb:  # one page of 3 samples
        planes = data.transpose(2, 0, 1)[None]
    else:  # (..., Y, X) to one (1, Y, X) plane per page, in the pages' (c, z, t) order
        planes = np.stack([data[tuple({"C": c, "Z": z, "T": t}[a] for a in axes[:-2])]
                           for c, z, t in image.planes()])[:, None]
    pyramid = [engine.max_pool2d(planes, **params.max_args())]
    while len(pyramid) < levels:
        pyramid.append(engine.max_pool2d(pyramid[-1], **params.max_args()))
    pooled = image.pooled(params, *pyramid[0].shape[-2:])
    photometric = "rgb" if rgb else "minisblack"
    with tifffile.TiffWriter(target, bigtiff=True) as tif:
        for n in range(len(planes)):
            first = dict(description=pooled.to_xml()) if n == 0 else {}
            for level, level_planes in enumerate(pyramid):
                page = level_planes[n].transpose(1, 2, 0) if rgb else level_planes[n, 0]
                kind = dict(subifds=levels - 1, **first) if level == 0 else dict(subfiletype=1)
                tif.write(page, metadata=None, tile=(16, 16), photometric=photometric, **kind)
    return pooled, pyramid


def assert_schema_valid(xml: str) -> None:
    """The OME 2016-06 XML schema accepts the document (as Bio-Formats and OMERO expect)."""
    ome_types = pytest.importorskip("ome_types")
    ome_types.validate_xml(xml)


def read_back(path: Path, caplog) -> tuple[OmeImage, str, np.ndarray]:
    with caplog.at_level(logging.WARNING, logger="tifffile"), tifffile.TiffFile(path) as tif:
        assert tif.is_ome
        series = tif.series[0]
        result = OmeImage.from_xml(tif.ome_metadata), series.axes, series.asarray()
        assert_schema_valid(tif.ome_metadata)
    assert [r.message for r in caplog.records if r.name == "tifffile"] == []  # read without warnings
    return result


def test_cyx_keeps_names_colours_attributes_and_calibration(tmp_path, caplog):
    data = np.random.default_rng(1).integers(0, 65535, (4, 40, 52)).astype(np.uint16)
    source = write_ome(tmp_path / "cells.ome.tif", data, "CYX")
    pool_ome(source, tmp_path / "out.ome.tif", K2)
    image, axes, back = read_back(tmp_path / "out.ome.tif", caplog)
    assert axes == "CYX"
    np.testing.assert_array_equal(back, engine.max_pool2d(data, 2))
    assert [c.name for c in image.channels] == NAMES
    assert [c.hex_color() for c in image.channels] == HEX
    assert [c.attributes["EmissionWavelength"] for c in image.channels] == ["461", "510", "590", "670"]
    assert [c.samples_per_pixel for c in image.channels] == [1, 1, 1, 1]
    assert image.physical == {"X": Quantity(0.65, "µm"), "Y": Quantity(0.65, "µm")}
    assert image.sizes == {"X": 26, "Y": 20, "Z": 1, "C": 4, "T": 1}
    assert image.name == "cells"


@pytest.mark.parametrize("axes", ["ZCYX", "CZYX", "TCYX"])
def test_planes_keep_their_c_z_t_and_z_its_size(tmp_path, caplog, axes):
    data = np.random.default_rng(2).integers(0, 255, (3, 4, 18, 22)).astype(np.uint8)
    if axes == "CZYX":
        data = np.ascontiguousarray(data.transpose(1, 0, 2, 3))
    extra = {"TimeIncrement": 2.5, "TimeIncrementUnit": "s"} if "T" in axes else {
        "PhysicalSizeZ": 2.0, "PhysicalSizeZUnit": "µm"}
    source = write_ome(tmp_path / "stack.ome.tif", data, axes, **extra)
    params = PoolParams("max", (3, 2), (3, 2), (1, 0))
    pool_ome(source, tmp_path / "out.ome.tif", params)
    image, back_axes, back = read_back(tmp_path / "out.ome.tif", caplog)
    assert back_axes == axes
    flat = data.reshape(-1, *data.shape[-2:])
    expected = engine.max_pool2d(flat, **params.max_args()).reshape(data.shape[:2] + back.shape[-2:])
    np.testing.assert_array_equal(back, expected)
    assert image.physical["X"] == Quantity(0.65, "µm")
    assert image.physical["Y"] == Quantity(0.975, "µm")
    if "T" in axes:
        assert image.physical["T"] == Quantity(2.5, "s")
    else:
        assert image.physical["Z"] == Quantity(2.0, "µm")
    with tifffile.TiffFile(source) as tif:
        assert image.dimension_order == OmeImage.from_xml(tif.ome_metadata).dimension_order


def test_rgb_stays_interleaved(tmp_path, caplog):
    data = np.random.default_rng(3).integers(0, 255, (20, 30, 3)).astype(np.uint8)
    source = write_ome(tmp_path / "rgb.ome.tif", data, "YXS")
    pooled, _ = pool_ome(source, tmp_path / "out.ome.tif", K2)
    assert pooled.is_rgb and pooled.planes() == [(0, 0, 0)]
    image, axes, back = read_back(tmp_path / "out.ome.tif", caplog)
    assert axes == "YXS" and [c.samples_per_pixel for c in image.channels] == [3]
    np.testing.assert_array_equal(back, engine.max_pool2d(data.transpose(2, 0, 1), 2).transpose(1, 2, 0))
    assert [c["label"] for c in image.omero((0, 255))["channels"]] == ["R", "G", "B"]


def test_libvips_reads_every_page_and_level(tmp_path):
    pyvips = pytest.importorskip("pyvips")
    data = np.random.default_rng(4).integers(0, 65535, (4, 64, 48)).astype(np.uint16)
    source = write_ome(tmp_path / "cells.ome.tif", data, "CYX")
    _, pyramid = pool_ome(source, tmp_path / "out.ome.tif", K2, levels=2)
    planes, level2 = pyramid[0][:, 0], pyramid[1][:, 0]
    for c in range(4):
        page = pyvips.Image.new_from_file(str(tmp_path / "out.ome.tif"), page=c)
        assert (page.width, page.height, page.bands, page.format) == (24, 32, 1, "ushort")
        np.testing.assert_array_equal(page.numpy(), planes[c])
        level = pyvips.Image.new_from_file(str(tmp_path / "out.ome.tif"), page=c, subifd=0)
        np.testing.assert_array_equal(level.numpy(), level2[c])
    rgb = write_ome(tmp_path / "rgb.ome.tif", data[0, :, :, None].repeat(3, 2).astype(np.uint8), "YXS")
    pool_ome(rgb, tmp_path / "rgb-out.ome.tif", K2)
    assert pyvips.Image.new_from_file(str(tmp_path / "rgb-out.ome.tif")).bands == 3


def test_other_images_and_rois_are_left_out():
    xml = """<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06">
      <Image ID="Image:0"><Pixels ID="Pixels:0" DimensionOrder="XYZCT" Type="uint8" SizeX="4" SizeY="4" SizeZ="1"
        SizeC="1" SizeT="1"><Channel ID="Channel:0:0" SamplesPerPixel="1"/><MetadataOnly/></Pixels></Image>
      <Image ID="Image:1" Name="second"><Pixels ID="Pixels:1" DimensionOrder="XYZCT" Type="uint8" SizeX="8" SizeY="6"
        SizeZ="2" SizeC="1" SizeT="1" PhysicalSizeX="3" PhysicalSizeXUnit="nm">
        <Channel ID="Channel:1:0" SamplesPerPixel="1"/><TiffData IFD="1" PlaneCount="2"/>
        <Plane TheZ="0" TheC="0" TheT="0" ExposureTime="0.1"/></Pixels><ROIRef ID="ROI:0"/></Image>
      <ROI ID="ROI:0"><Union><Point ID="Shape:0" X="1" Y="2"/></Union></ROI>
    </OME>"""
    image = OmeImage.from_xml(xml, 1).pooled(PoolParams("avg", (2, 2)), 3, 4)
    again = OmeImage.from_xml(image.to_xml())
    assert again.name == "second" and again.sizes == {"X": 4, "Y": 3, "Z": 2, "C": 1, "T": 1}
    assert again.physical == {"X": Quantity(6.0, "nm")}
    assert again.planes() == [(0, 0, 0), (0, 1, 0)]
    text = image.to_xml()
    assert_schema_valid(text)
    assert "ROI" not in text and "Image:0" not in text and 'ExposureTime="0.1"' in text
    assert text.index("<TiffData") < text.index("<Plane")  # the schema's order


@pytest.mark.parametrize(("xml", "message"), [
    ("<OME", "the OME-XML does not parse (unclosed token: line 1, column 0)"),
    ("<Other/>", "the ImageDescription is XML but not OME-XML"),
    ("<OME/>", "the OME-XML has 0 images, not an image 0"),
])
def test_unusable_xml_is_refused_with_a_reason(xml, message):
    with pytest.raises(OmeError) as info:
        OmeImage.from_xml(xml)
    assert str(info.value) == message


# --------------------------------------------------------------------------- NGFF


def expected_translation(scale: float, translation: float, params: PoolParams, axis: int) -> float:
    """Where pooled pixel 0's centre lies: the midpoint of the centres of its window's first and
    last taps, in the level above's physical coordinates."""
    first = -params.padding[axis]
    last = first + params.kernel[axis] - 1
    return translation + scale * (first + last) / 2


@pytest.mark.parametrize("version", ["0.4", "0.5"])
@pytest.mark.parametrize("params", [PoolParams("avg", (2, 2)), PoolParams("max", (3, 2), (2, 3), (1, 1))],
                         ids=lambda p: p.slug())
def test_ngff_attributes_validate_with_ome_zarr_models(tmp_path, version, params):
    zarr = pytest.importorskip("zarr")
    models = pytest.importorskip(f"ome_zarr_models.v{version.replace('.', '')}.image")
    omero_model = pytest.importorskip("ome_zarr_models.common.omero")
    data = np.zeros((3, 4, 40, 36), dtype=np.uint16)
    source = write_ome(tmp_path / "stack.ome.tif", data, "ZCYX", PhysicalSizeZ=2.0, PhysicalSizeZUnit="µm")
    with tifffile.TiffFile(source) as tif:
        image = OmeImage.from_xml(tif.ome_metadata)
    axes = "czyx"
    transforms = level_transforms(axes, image.ngff_scale(axes), [0.0] * 4, params, 3)
    attrs = ngff_attributes(version, "cells", image.ngff_axes(axes), transforms, params, image.omero((0, 65535)))
    group = zarr.open_group(str(tmp_path / "out.zarr"), mode="w", zarr_format=2 if version == "0.4" else 3)
    shape = (4, 3, 40, 36)
    for level in range(3):
        # NGFF: "/" chunk keys; 0.5 also names the array's dimensions after the axes
        v3 = {"chunk_key_encoding": {"name": "default", "separator": "/"}, "dimension_names": list(axes)}
        group.create_array(str(level), shape=shape, dtype="uint16", chunks=(1, 1, 16, 16),
                           **(v3 if version == "0.5" else {"chunk_key_encoding": {"name": "v2", "separator": "/"}}))
        shape = shape[:2] + engine.output_size(shape[2:], params.kernel, params.effective_stride, params.padding)
    group.attrs.update(attrs)
    model = models.Image.from_zarr(zarr.open_group(str(tmp_path / "out.zarr"), mode="r"))
    meta = model.attributes if version == "0.4" else model.attributes.ome
    multiscale = meta.multiscales[0]
    assert [(a.name, a.type, a.unit) for a in multiscale.axes] == [
        ("c", "channel", None), ("z", "space", "micrometer"), ("y", "space", "micrometer"),
        ("x", "space", "micrometer")]
    omero = attrs["omero"] if version == "0.4" else attrs["ome"]["omero"]
    omero_model.Omero.model_validate(omero)
    assert [(c["label"], c["color"]) for c in omero["channels"]] == list(zip(NAMES, HEX, strict=True))
    scale, translation = transforms[0]
    assert scale == [1.0, 2.0, 0.325, 0.325] and translation == [0.0] * 4
    for level in (1, 2):
        above_scale, above_shift = transforms[level - 1]
        scale, translation = transforms[level]
        for axis, i in ((0, 2), (1, 3)):
            assert scale[i] == pytest.approx(above_scale[i] * params.effective_stride[axis])
            assert translation[i] == pytest.approx(expected_translation(above_scale[i], above_shift[i], params, axis))
        assert scale[:2] == [1.0, 2.0] and translation[:2] == [0.0, 0.0]
