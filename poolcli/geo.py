"""GeoTIFF georeferencing carried through pooling: read from tag values, transformed, written back.

May import: the standard library (``xml.etree`` for GDAL_METADATA), ``params`` and ``placement``
only (no NumPy and no tifffile: tag values come in as a mapping and go out as tifffile's
``extratags`` tuples, so the TIFF reader and writer stay in their owner module).

A pooled raster covers the same ground with pixels ``stride`` times larger, each centred on its
window: the model transformation is composed with the map of :mod:`poolcli.placement`
(docs/semantics.md §10.2), in the raster's own convention (``PixelIsArea``: corners,
``PixelIsPoint``: centres).  For GDAL's geotransform ``(x0, a, b, y0, c, d)`` and pixel corners,
the pooled one is ``(x0 + a*u + b*v, a*sW, b*sH, y0 + c*u + d*v, c*sW, d*sH)`` with
``u = (eW - sW)/2 - pW`` and ``v = (eH - sH)/2 - pH`` (``e`` the effective kernel).

The CRS (GeoKeys), GDAL_METADATA and GDAL_NODATA are kept, except GDAL_METADATA's
``STATISTICS_*`` items, which describe the input's pixel values, not the pooled ones.
"""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass

from poolcli.params import PoolParams
from poolcli.placement import AxisMap, axis_maps

# TIFF tag codes (GeoTIFF 1.1 and GDAL's private tags) and the names tifffile gives them.
MODEL_PIXEL_SCALE, MODEL_TIEPOINT, MODEL_TRANSFORMATION = 33550, 33922, 34264
GEO_KEY_DIRECTORY, GEO_DOUBLE_PARAMS, GEO_ASCII_PARAMS = 34735, 34736, 34737
GDAL_METADATA, GDAL_NODATA = 42112, 42113
TAG_NAMES = {
    MODEL_PIXEL_SCALE: "ModelPixelScaleTag", MODEL_TIEPOINT: "ModelTiepointTag",
    MODEL_TRANSFORMATION: "ModelTransformationTag", GEO_KEY_DIRECTORY: "GeoKeyDirectoryTag",
    GEO_DOUBLE_PARAMS: "GeoDoubleParamsTag", GEO_ASCII_PARAMS: "GeoAsciiParamsTag",
    GDAL_METADATA: "GDAL_METADATA", GDAL_NODATA: "GDAL_NODATA",
}
_RASTER_TYPE_KEY = 1025  # GTRasterTypeGeoKey: 1 PixelIsArea (the default), 2 PixelIsPoint
_SHORT, _ASCII, _DOUBLE = 3, 2, 12  # TIFF field types

# tifffile's extratags: (code, field type, count, value, write once)
ExtraTag = tuple[int, int, int, object, bool]


@dataclass(frozen=True)
class GeoReference:
    """The georeferencing tags of one GeoTIFF image, as plain values.

    ``tiepoints`` holds (I, J, K, X, Y, Z) sextets; ``transformation`` the 4x4 row-major matrix of
    ModelTransformationTag; ``geokeys`` the GeoKeyDirectoryTag shorts.  ``gdal_nodata`` is the tag's
    text (parse it with :func:`poolcli.nodata.parse_nodata`).
    """

    pixel_scale: tuple[float, ...] | None = None
    tiepoints: tuple[float, ...] = ()
    transformation: tuple[float, ...] | None = None
    geokeys: tuple[int, ...] = ()
    geo_doubles: tuple[float, ...] = ()
    geo_ascii: str = ""
    gdal_metadata: str | None = None
    gdal_nodata: str | None = None

    @classmethod
    def from_tags(cls, tags: Mapping[int | str, object]) -> GeoReference | None:
        """The georeferencing among an image's tag values, keyed by code or by tifffile's name
        (``{tag.code: tag.value for tag in page.tags}``); None when it has none of these tags.

        Examples
        --------
        >>> geo = GeoReference.from_tags({33550: (10.0, 10.0, 0.0), 33922: (0, 0, 0, 500000.0, 4600000.0, 0),
        ...                               "GDAL_NODATA": "-9999"})
        >>> geo.geotransform(), geo.gdal_nodata
        ((500000.0, 10.0, 0.0, 4600000.0, 0.0, -10.0), '-9999')
        >>> GeoReference.from_tags({256: 30}) is None
        True
        """
        def get(code: int) -> object:
            return tags.get(code, tags.get(TAG_NAMES[code]))

        if all(get(code) is None for code in TAG_NAMES):
            return None

        def floats(code: int) -> tuple[float, ...] | None:
            value = get(code)
            return None if value is None else tuple(float(v) for v in value)  # type: ignore[attr-defined]

        def text(code: int) -> str | None:
            value = get(code)
            if isinstance(value, bytes):
                value = value.decode("latin-1")
            return None if value is None else str(value).rstrip("\x00")

        keys = get(GEO_KEY_DIRECTORY)
        return cls(
            pixel_scale=floats(MODEL_PIXEL_SCALE),
            tiepoints=floats(MODEL_TIEPOINT) or (),
            transformation=floats(MODEL_TRANSFORMATION),
            geokeys=tuple(int(v) for v in keys) if keys is not None else (),  # type: ignore[attr-defined]
            geo_doubles=floats(GEO_DOUBLE_PARAMS) or (),
            geo_ascii=text(GEO_ASCII_PARAMS) or "",
            gdal_metadata=text(GDAL_METADATA),
            gdal_nodata=text(GDAL_NODATA),
        )

    @property
    def is_point(self) -> bool:
        """True for ``PixelIsPoint`` rasters (raster coordinates name pixel centres)."""
        keys = self.geokeys
        for at in range(4, len(keys) - 3, 4):
            if keys[at] == _RASTER_TYPE_KEY and keys[at + 1] == 0:
                return keys[at + 3] == 2
        return False

    def geotransform(self) -> tuple[float, float, float, float, float, float] | None:
        """GDAL's geotransform (pixel corners, as GDAL reads a PixelIsPoint raster by default),
        or None for control points without a pixel scale.

        >>> GeoReference(transformation=(2, 1, 0, 5, 0, -3, 0, 9, 0, 0, 0, 0, 0, 0, 0, 1)).geotransform()
        (5.0, 2.0, 1.0, 9.0, 0.0, -3.0)
        """
        if self.transformation is not None:
            m = self.transformation
            x0, a, b, y0, c, d = m[3], m[0], m[1], m[7], m[4], m[5]
        elif self.pixel_scale is not None and len(self.tiepoints) == 6:
            i, j, _, x, y, _ = self.tiepoints
            a, d = self.pixel_scale[0], -self.pixel_scale[1]
            b = c = 0.0
            x0, y0 = x - i * a, y - j * d
        else:
            return None
        if self.is_point:
            x0, y0 = x0 - (a + b) / 2, y0 - (c + d) / 2
        return (float(x0), float(a), float(b), float(y0), float(c), float(d))

    def pooled(self, params: PoolParams) -> GeoReference:
        """The georeferencing of this raster pooled with ``params`` (docs/semantics.md §10.2).

        Examples
        --------
        k3 s2 p1 on 10 m pixels: 20 m pixels, the first one centred on input pixel 0, so its corner
        lies 5 m up and left of the input's.

        >>> geo = GeoReference(pixel_scale=(10.0, 10.0, 0.0), tiepoints=(0, 0, 0, 500000.0, 4600000.0, 0))
        >>> geo.pooled(PoolParams("avg", (3, 3), (2, 2), (1, 1))).geotransform()
        (499995.0, 20.0, 0.0, 4600005.0, 0.0, -20.0)
        """
        rows, cols = axis_maps(params, "centre" if self.is_point else "corner")
        metadata = _without_statistics(self.gdal_metadata)
        if self.transformation is not None:
            return dataclasses.replace(self, transformation=_composed(self.transformation, rows, cols),
                                       gdal_metadata=metadata)
        scale, tiepoints = self.pixel_scale, self.tiepoints
        if scale is not None and len(tiepoints) == 6:  # one tie point: re-anchor it at pixel (0, 0)
            i, j, k, x, y, z = tiepoints
            tiepoints = (0.0, 0.0, k, x + (cols.offset - i) * scale[0], y - (rows.offset - j) * scale[1], z)
        else:  # control points: their raster positions in the pooled raster
            tiepoints = tuple(v for at in range(0, len(tiepoints), 6) for v in (
                (tiepoints[at] - cols.offset) / cols.scale, (tiepoints[at + 1] - rows.offset) / rows.scale,
                *tiepoints[at + 2: at + 6]))
        if scale is not None:
            scale = (scale[0] * cols.scale, scale[1] * rows.scale, *scale[2:])
        return dataclasses.replace(self, pixel_scale=scale, tiepoints=tiepoints, gdal_metadata=metadata)

    def levels(self, params: PoolParams, count: int) -> list[GeoReference]:
        """The georeferencing of a pyramid: this level, then ``count - 1`` levels each pooled once
        more by ``params``.

        >>> geo = GeoReference(pixel_scale=(1.0, 1.0, 0.0), tiepoints=(0, 0, 0, 0.0, 0.0, 0))
        >>> [level.pixel_scale for level in geo.levels(PoolParams("max", (2, 2)), 3)]
        [(1.0, 1.0, 0.0), (2.0, 2.0, 0.0), (4.0, 4.0, 0.0)]
        """
        levels = [self]
        while len(levels) < count:
            levels.append(levels[-1].pooled(params))
        return levels

    def tags(self) -> list[ExtraTag]:
        """The tags to write, as tifffile's ``extratags`` (``TiffWriter.write(..., extratags=...)``).

        >>> [code for code, *_ in GeoReference(pixel_scale=(1.0, 1.0, 0.0), gdal_nodata="0").tags()]
        [33550, 42113]
        """
        tags: list[ExtraTag] = []
        for code, kind, value in (
            (MODEL_PIXEL_SCALE, _DOUBLE, self.pixel_scale), (MODEL_TIEPOINT, _DOUBLE, self.tiepoints or None),
            (MODEL_TRANSFORMATION, _DOUBLE, self.transformation), (GEO_KEY_DIRECTORY, _SHORT, self.geokeys or None),
            (GEO_DOUBLE_PARAMS, _DOUBLE, self.geo_doubles or None),
        ):
            if value is not None:
                tags.append((code, kind, len(value), tuple(value), True))
        for code, text in ((GEO_ASCII_PARAMS, self.geo_ascii), (GDAL_METADATA, self.gdal_metadata),
                           (GDAL_NODATA, self.gdal_nodata)):
            if text:
                tags.append((code, _ASCII, 0, text, True))
        return tags


def _composed(matrix: tuple[float, ...], rows: AxisMap, cols: AxisMap) -> tuple[float, ...]:
    """``matrix`` (raster (I, J, K, 1) to model) after the output-to-input raster map."""
    m = list(matrix)
    for r in range(4):
        a, b = m[4 * r], m[4 * r + 1]
        m[4 * r + 3] += a * cols.offset + b * rows.offset
        m[4 * r], m[4 * r + 1] = a * cols.scale, b * rows.scale
    return tuple(float(v) for v in m)


def _without_statistics(text: str | None) -> str | None:
    """GDAL_METADATA without its ``STATISTICS_*`` items (min, max, mean... of the input's pixels);
    None when nothing is left.  Text that is not GDAL's XML is kept as it is.

    >>> _without_statistics('<GDALMetadata><Item name="STATISTICS_MEAN" sample="0">3</Item></GDALMetadata>') is None
    True
    """
    if not text:
        return text
    try:
        root = ET.fromstring(text)
    except ET.ParseError:
        return text
    stale = [item for item in root.findall("Item") if str(item.get("name", "")).upper().startswith("STATISTICS_")]
    if not stale:
        return text
    for item in stale:
        root.remove(item)
    return ET.tostring(root, encoding="unicode") if len(root) else None
