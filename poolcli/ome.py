"""OME metadata through pooling: OME-XML in and out (OME-TIFF), NGFF attributes (OME-Zarr 0.4, 0.5).

May import: the standard library (``xml.etree``), ``params``, ``placement`` and ``errors`` only (no NumPy and
no tifffile: OME-XML comes in as text, ``tifffile.TiffFile.ome_metadata``, and goes out as text
for the first page's ImageDescription; NGFF attributes are plain dicts for Zarr).

A pooled image shows the same specimen with pixels ``stride`` times larger: PhysicalSizeX/Y are
multiplied by the stride (units kept), PhysicalSizeZ, time and every Channel attribute are kept.
The output OME-XML describes one TIFF page per plane (per channel, z and t, in the input's
DimensionOrder), each with one sample, except interleaved RGB(A), which stays one page of 3 or 4
samples.  NGFF levels get their physical scale, and a translation that puts each pooled pixel's
centre on its window's centre (docs/semantics.md §10.2, pixel-centre coordinates).
"""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from poolcli.errors import PoolcliError
from poolcli.params import PoolParams
from poolcli.placement import axis_maps
from poolcli.version import __version__

# OME's unit symbols (UnitsLength, UnitsTime) and NGFF's names for them (UDUNITS-2).
_SPACE_UNITS = {
    "Å": "angstrom", "am": "attometer", "cm": "centimeter", "dm": "decimeter", "Em": "exameter",
    "fm": "femtometer", "ft": "foot", "Gm": "gigameter", "hm": "hectometer", "in": "inch",
    "km": "kilometer", "Mm": "megameter", "m": "meter", "µm": "micrometer", "μm": "micrometer",
    "um": "micrometer", "mi": "mile", "mm": "millimeter", "nm": "nanometer", "pc": "parsec",
    "Pm": "petameter", "pm": "picometer", "Tm": "terameter", "yd": "yard", "ym": "yoctometer",
    "Ym": "yottameter", "zm": "zeptometer", "Zm": "zettameter",
}
_TIME_UNITS = {
    "as": "attosecond", "cs": "centisecond", "d": "day", "ds": "decisecond", "fs": "femtosecond",
    "h": "hour", "ks": "kilosecond", "µs": "microsecond", "μs": "microsecond", "us": "microsecond",
    "ms": "millisecond", "min": "minute", "ns": "nanosecond", "ps": "picosecond", "s": "second",
}
_DEFAULT_UNITS = {"X": "µm", "Y": "µm", "Z": "µm", "T": "s"}  # OME's defaults when the unit is left out
_PIXEL_SIZE = {"X": "PhysicalSizeX", "Y": "PhysicalSizeY", "Z": "PhysicalSizeZ", "T": "TimeIncrement"}


class OmeError(PoolcliError, ValueError):
    """OME-XML that poolcli cannot carry through (the message is the one-line reason)."""


@dataclass(frozen=True)
class Quantity:
    """A physical size: a value and OME's unit symbol (``µm``, ``nm``, ``s``...)."""

    value: float
    unit: str

    def ngff_unit(self) -> str | None:
        """NGFF's name for the unit (``micrometer``), or None if NGFF has none.

        >>> Quantity(0.325, "µm").ngff_unit(), Quantity(1.0, "pixel").ngff_unit()
        ('micrometer', None)
        """
        return _SPACE_UNITS.get(self.unit) or _TIME_UNITS.get(self.unit)


@dataclass(frozen=True)
class Channel:
    """One OME Channel: its name, colour and every attribute as written (ID, Fluor, wavelengths...)."""

    name: str | None
    color: int | None  # OME's signed 32-bit RGBA
    samples_per_pixel: int
    attributes: dict[str, str] = field(default_factory=dict)

    def hex_color(self) -> str | None:
        """The colour as NGFF's ``RRGGBB`` (alpha dropped).

        >>> Channel("GFP", -16711681, 1).hex_color(), Channel("DAPI", 65535, 1).hex_color()
        ('FF00FF', '0000FF')
        """
        return None if self.color is None else f"{(self.color & 0xFFFFFFFF) >> 8:06X}"


@dataclass(frozen=True)
class OmeImage:
    """The pixels of one OME Image: sizes, physical sizes and channels, and the document they
    come from (kept whole, so that what poolcli does not model is written back unchanged)."""

    name: str | None
    dimension_order: str  # e.g. "XYCZT": X fastest, T slowest
    pixel_type: str  # "uint16", "float"...
    sizes: dict[str, int]  # X, Y, Z, C, T
    physical: dict[str, Quantity]  # X, Y, Z (PhysicalSize*) and T (TimeIncrement), those given
    channels: tuple[Channel, ...]
    xml: str
    index: int = 0  # which Image of the document

    @classmethod
    def from_xml(cls, xml: str, index: int = 0) -> OmeImage:
        """Parse the ``index``-th Image of an OME-XML document (``TiffFile.ome_metadata``).

        Examples
        --------
        >>> image = OmeImage.from_xml(_EXAMPLE)
        >>> image.sizes, image.physical["X"], [c.name for c in image.channels]
        ({'X': 48, 'Y': 32, 'Z': 1, 'C': 2, 'T': 1}, Quantity(value=0.325, unit='µm'), ['DAPI', 'GFP'])
        """
        root = _parse(xml)
        pixels = _pixels(root, index)
        image = _images(root)[index]
        sizes = {axis: int(pixels.get(f"Size{axis}", "1")) for axis in "XYZCT"}
        physical = {}
        for axis, attribute in _PIXEL_SIZE.items():
            if pixels.get(attribute) is not None:
                unit = pixels.get(f"{attribute}Unit", _DEFAULT_UNITS[axis])
                physical[axis] = Quantity(float(pixels.get(attribute, "")), unit)
        channels = []
        for element in pixels.findall(_tag(root, "Channel")):
            color = element.get("Color")
            channels.append(Channel(element.get("Name"), int(color) if color is not None else None,
                                    int(element.get("SamplesPerPixel", "1")), dict(element.attrib)))
        order = pixels.get("DimensionOrder", "XYZCT")
        if sorted(order) != sorted("XYZCT") or not order.startswith("XY"):
            raise OmeError(f"OME-XML DimensionOrder {order!r} is not one of XYZCT, XYCZT, ...")
        return cls(image.get("Name"), order, pixels.get("Type", ""), sizes, physical, tuple(channels), xml, index)

    @property
    def samples_per_pixel(self) -> int:
        """Samples in each TIFF page: 3 or 4 for interleaved RGB(A), else 1."""
        return max([c.samples_per_pixel for c in self.channels] or [1])

    @property
    def is_rgb(self) -> bool:
        return self.samples_per_pixel in (3, 4)

    def planes(self) -> list[tuple[int, int, int]]:
        """``(c, z, t)`` of each TIFF page, in page order (the first non-XY axis varies fastest).

        >>> OmeImage.from_xml(_EXAMPLE).planes()
        [(0, 0, 0), (1, 0, 0)]
        """
        counts = {"C": self.sizes["C"] // self.samples_per_pixel, "Z": self.sizes["Z"], "T": self.sizes["T"]}
        slow_to_fast = self.dimension_order[:1:-1]  # e.g. "TZC"
        planes: list[dict[str, int]] = [{}]
        for axis in slow_to_fast:
            planes = [dict(p, **{axis: n}) for p in planes for n in range(counts[axis])]
        return [(p["C"], p["Z"], p["T"]) for p in planes]

    def pooled(self, params: PoolParams, height: int, width: int) -> OmeImage:
        """This image pooled to ``height`` x ``width``: PhysicalSizeX/Y times the stride.

        >>> pooled = OmeImage.from_xml(_EXAMPLE).pooled(PoolParams("max", (2, 2)), 16, 24)
        >>> pooled.sizes["X"], pooled.physical["X"], pooled.physical["Y"].value
        (24, Quantity(value=0.65, unit='µm'), 0.65)
        """
        stride_y, stride_x = params.effective_stride
        physical = dict(self.physical)
        for axis, stride in (("X", stride_x), ("Y", stride_y)):
            if axis in physical:
                physical[axis] = Quantity(_tidy(physical[axis].value * stride), physical[axis].unit)
        return dataclasses.replace(self, sizes=dict(self.sizes, X=width, Y=height), physical=physical)

    def to_xml(self) -> str:
        """The OME-XML of an OME-TIFF holding just this image, one page per plane (:meth:`planes`).

        The document is the input's, with the other Images and the ROIs (whose pixel coordinates
        no longer apply) left out, the sizes and physical sizes of this object, one TiffData per
        page, and ``SamplesPerPixel="1"`` on every channel that is not interleaved RGB(A).  The text
        is 7-bit ASCII, as TIFF's ImageDescription wants (``µ`` becomes ``&#181;``).

        >>> xml = OmeImage.from_xml(_EXAMPLE).pooled(PoolParams("avg", (2, 2)), 16, 24).to_xml()
        >>> 'SizeX="24"' in xml, 'PhysicalSizeX="0.65"' in xml, '<TiffData IFD="1" FirstC="1"' in xml
        (True, True, True)
        """
        root = _parse(self.xml)
        keep = _images(root)[self.index]
        for child in list(root):
            if child.tag in (_tag(root, "Image"), _tag(root, "ROI")) and child is not keep:
                root.remove(child)
        for child in keep.findall(_tag(root, "ROIRef")):
            keep.remove(child)
        pixels = _pixels(root, 0)
        for axis in "XY":
            pixels.set(f"Size{axis}", str(self.sizes[axis]))
        for axis, quantity in self.physical.items():
            pixels.set(_PIXEL_SIZE[axis], repr(float(quantity.value)))
            pixels.set(f"{_PIXEL_SIZE[axis]}Unit", quantity.unit)
        pixels.attrib.pop("BigEndian", None)  # the TIFF header says
        for child in list(pixels):
            if child.tag in (_tag(root, "TiffData"), _tag(root, "BinData"), _tag(root, "MetadataOnly")):
                pixels.remove(child)
        if not self.is_rgb:
            for channel in pixels.findall(_tag(root, "Channel")):
                channel.set("SamplesPerPixel", "1")
        at = len(pixels.findall(_tag(root, "Channel")))  # schema order: Channel*, TiffData*, Plane*
        for ifd, (c, z, t) in enumerate(self.planes()):
            data = ET.Element(_tag(root, "TiffData"), {"IFD": str(ifd), "FirstC": str(c), "FirstZ": str(z),
                                                       "FirstT": str(t), "PlaneCount": "1"})
            pixels.insert(at + ifd, data)
        root.attrib.pop("UUID", None)  # it named the input file
        root.set("Creator", f"poolcli {__version__}")
        return '<?xml version="1.0" encoding="UTF-8"?>' + _unprefixed(root)

    def ngff_axes(self, axes: str) -> list[dict[str, str]]:
        """NGFF axes for array axes such as ``"czyx"``, with the units this image gives.

        >>> OmeImage.from_xml(_EXAMPLE).ngff_axes("cyx")
        [{'name': 'c', 'type': 'channel'}, {'name': 'y', 'type': 'space', 'unit': 'micrometer'}, \
{'name': 'x', 'type': 'space', 'unit': 'micrometer'}]
        """
        return ngff_axes(axes, self.physical)

    def ngff_scale(self, axes: str) -> list[float]:
        """The physical size of one pixel along each array axis (1 where none is given).

        >>> OmeImage.from_xml(_EXAMPLE).ngff_scale("cyx")
        [1.0, 0.325, 0.325]
        """
        return [self.physical[a.upper()].value if a.upper() in self.physical else 1.0 for a in axes]

    def omero(self, value_range: tuple[float, float]) -> dict[str, Any]:
        """NGFF's ``omero`` block: channel labels and colours, and windows over ``value_range``
        (the dtype's range: 0 to 65535 for uint16).

        >>> omero = OmeImage.from_xml(_EXAMPLE).omero((0, 65535))
        >>> [(c["label"], c["color"], c["window"]["end"]) for c in omero["channels"]]
        [('DAPI', '0000FF', 65535.0), ('GFP', 'FF00FF', 65535.0)]
        """
        low, high = (float(v) for v in value_range)
        names: list[str | None] = [c.name for c in self.channels]
        colors: list[str | None] = [c.hex_color() for c in self.channels]
        if self.is_rgb:  # one OME channel of 3 or 4 samples: NGFF has one channel per sample
            names = [*"RGBA"[: self.samples_per_pixel]]
            colors = [*("FF0000", "00FF00", "0000FF", "FFFFFF")[: self.samples_per_pixel]]
        channels = [{
            "label": name if name is not None else f"Channel:{n}", "color": color or "FFFFFF", "active": True,
            "coefficient": 1.0, "family": "linear", "inverted": False,
            "window": {"min": low, "max": high, "start": low, "end": high},
        } for n, (name, color) in enumerate(zip(names, colors, strict=True))]
        model = "color" if len(channels) > 1 else "greyscale"
        return {"name": self.name or "", "channels": channels, "rdefs": {"model": model, "defaultZ": 0, "defaultT": 0}}


def ngff_axes(axes: str, physical: dict[str, Quantity] | None = None) -> list[dict[str, str]]:
    """NGFF axes entries for array axes (``"tczyx"`` or a subset), with units where known.

    >>> ngff_axes("tyx", {"T": Quantity(2.0, "s")})
    [{'name': 't', 'type': 'time', 'unit': 'second'}, {'name': 'y', 'type': 'space'}, {'name': 'x', 'type': 'space'}]
    """
    kinds = {"t": "time", "c": "channel", "z": "space", "y": "space", "x": "space"}
    entries = []
    for name in axes:
        entry = {"name": name, "type": kinds[name]} if name in kinds else {"name": name}
        quantity = (physical or {}).get(name.upper())
        unit = quantity.ngff_unit() if quantity is not None and name != "c" else None
        if unit is not None:
            entry["unit"] = unit
        entries.append(entry)
    return entries


def level_transforms(axes: str, scale: Sequence[float], translation: Sequence[float], params: PoolParams,
                     count: int) -> list[tuple[list[float], list[float]]]:
    """Scale and translation of ``count`` pyramid levels, the first given, each next one pooled
    once more: its pixels ``stride`` times larger, its first pixel's centre on its window's centre.

    >>> level_transforms("yx", [0.5, 0.5], [0.0, 0.0], PoolParams("avg", (2, 2)), 3)
    [([0.5, 0.5], [0.0, 0.0]), ([1.0, 1.0], [0.25, 0.25]), ([2.0, 2.0], [0.75, 0.75])]
    """
    rows, cols = axis_maps(params, "centre")
    levels = [(list(map(float, scale)), list(map(float, translation)))]
    while len(levels) < count:
        scale_now, shift = list(levels[-1][0]), list(levels[-1][1])
        for axis, axis_map in (("y", rows), ("x", cols)):
            i = axes.index(axis)
            shift[i] += scale_now[i] * axis_map.offset
            scale_now[i] *= axis_map.scale
        levels.append((scale_now, shift))
    return levels


def ngff_attributes(version: str, name: str, axes: list[dict[str, str]],
                    transforms: list[tuple[list[float], list[float]]], params: PoolParams | None = None,
                    omero: dict[str, Any] | None = None) -> dict[str, Any]:
    """Group attributes of an OME-Zarr image with levels ``"0"``, ``"1"``... in NGFF ``0.4`` (Zarr
    v2: top-level ``multiscales``) or ``0.5`` (Zarr v3: everything under ``ome``).  The arrays need
    ``/`` chunk keys, and in 0.5 ``dimension_names`` equal to the axes' names.

    Examples
    --------
    >>> attrs = ngff_attributes("0.5", "cells", ngff_axes("yx"), [([1.0, 1.0], [0.0, 0.0])])
    >>> attrs["ome"]["version"], attrs["ome"]["multiscales"][0]["datasets"]
    ('0.5', [{'path': '0', 'coordinateTransformations': [{'type': 'scale', 'scale': [1.0, 1.0]}]}])
    """
    if version not in ("0.4", "0.5"):
        raise OmeError(f"NGFF version {version!r}: poolcli writes 0.4 and 0.5")
    datasets = []
    for n, (scale, translation) in enumerate(transforms):
        transform: list[dict[str, Any]] = [{"type": "scale", "scale": list(scale)}]
        if any(translation):
            transform.append({"type": "translation", "translation": list(translation)})
        datasets.append({"path": str(n), "coordinateTransformations": transform})
    image: dict[str, Any] = {"name": name, "axes": axes, "datasets": datasets}
    if params is not None:
        image["type"] = f"{params.op} pooling"
        image["metadata"] = {"method": "poolcli", "parameters": params.as_json()}
    extra = {"omero": omero} if omero is not None else {}
    if version == "0.4":
        return {"multiscales": [{"version": "0.4", **image}], **extra}
    return {"ome": {"version": version, "multiscales": [image], **extra}}


def _parse(xml: str) -> ET.Element:
    try:
        root = ET.fromstring(xml.encode("utf-8") if xml.lstrip().startswith("<?xml") else xml)
    except ET.ParseError as error:
        raise OmeError(f"the OME-XML does not parse ({error})") from None
    if not root.tag.endswith("OME"):
        raise OmeError("the ImageDescription is XML but not OME-XML")
    return root


def _tag(root: ET.Element, name: str) -> str:
    """``name`` in the document's namespace (OME 2016-06 or older)."""
    return root.tag[: root.tag.index("}") + 1] + name if root.tag.startswith("{") else name


def _images(root: ET.Element) -> list[ET.Element]:
    return root.findall(_tag(root, "Image"))


def _pixels(root: ET.Element, index: int) -> ET.Element:
    images = _images(root)
    if not 0 <= index < len(images):
        raise OmeError(f"the OME-XML has {len(images)} images, not an image {index}")
    pixels = images[index].find(_tag(root, "Pixels"))
    if pixels is None:
        raise OmeError(f"OME-XML image {index} has no Pixels")
    return pixels


def _unprefixed(root: ET.Element) -> str:
    """The document as 7-bit text with OME's namespace as the default one (``<OME xmlns="...">``,
    as OME files are written), not ElementTree's ``ns0:`` prefixes."""
    prefix = _tag(root, "")
    if prefix:
        for element in root.iter():
            if isinstance(element.tag, str) and element.tag.startswith(prefix):
                element.tag = element.tag[len(prefix):]
        root.set("xmlns", prefix[1:-1])
    # TIFF's ASCII type is 7-bit: other characters (the µ of µm) as XML character references
    return ET.tostring(root, encoding="unicode").encode("ascii", "xmlcharrefreplace").decode("ascii")


def _tidy(value: float) -> float:
    """A product such as 0.325 * 3 (0.9750000000000001) as its shortest 15-digit decimal."""
    return float(f"{value:.15g}")


_EXAMPLE = """<?xml version="1.0" encoding="UTF-8"?>
<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06">
 <Image ID="Image:0" Name="cells"><Pixels ID="Pixels:0" DimensionOrder="XYCZT" Type="uint16" SizeX="48" SizeY="32"
   SizeC="2" SizeZ="1" SizeT="1" PhysicalSizeX="0.325" PhysicalSizeXUnit="µm" PhysicalSizeY="0.325">
  <Channel ID="Channel:0:0" Name="DAPI" Color="65535" SamplesPerPixel="1" EmissionWavelength="461"/>
  <Channel ID="Channel:0:1" Name="GFP" Color="-16711681" SamplesPerPixel="1"/>
  <TiffData IFD="0" PlaneCount="2"/>
 </Pixels></Image>
</OME>"""  # a small document for the examples above
