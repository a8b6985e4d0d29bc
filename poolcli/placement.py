"""Where pooled pixels sit: the map from output pixel coordinates to input pixel coordinates.

May import: the standard library and ``params`` only (no NumPy), so that the metadata modules
(``geo``, ``ome``) and every layer may use it.

Along one axis with stride ``s``, padding ``p`` and effective kernel ``e = d*(k - 1) + 1``, output
pixel ``j`` is centred on its window (input positions ``j*s - p`` … ``j*s - p + e - 1``) and is
``s`` input pixels wide (docs/semantics.md §10.2):

* pixel-centre coordinates (NGFF, GeoTIFF ``PixelIsPoint``): ``input = s*output + (e - 1)/2 - p``;
* pixel-corner coordinates (GDAL geotransforms, GeoTIFF ``PixelIsArea``):
  ``input = s*output + (e - s)/2 - p``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from poolcli.params import PoolParams

Convention = Literal["centre", "corner"]


@dataclass(frozen=True)
class AxisMap:
    """``input = scale * output + offset`` along one axis, in input pixel units."""

    scale: float
    offset: float

    def __call__(self, output: float) -> float:
        return self.scale * output + self.offset

    def then(self, inner: AxisMap) -> AxisMap:
        """This map followed by ``inner`` (the map of the level above): output of a deeper level to
        the coordinates ``inner`` maps to.

        >>> AxisMap(2, 0.5).then(AxisMap(2, 0.5)) == AxisMap(4, 1.5)
        True
        """
        return AxisMap(inner.scale * self.scale, inner.scale * self.offset + inner.offset)


def axis_maps(params: PoolParams, convention: Convention) -> tuple[AxisMap, AxisMap]:
    """The (rows, columns) maps of one pooling, for pixel-centre or pixel-corner coordinates.

    Parameters
    ----------
    params : PoolParams
        The pooling (dilation counts for max only, as in the engine).
    convention : {"centre", "corner"}
        Whether pixel ``n`` is the point ``n`` or the square ``[n, n+1)``.

    Returns
    -------
    tuple of AxisMap
        Rows (y) first, then columns (x).

    Examples
    --------
    k2 s2 moves nothing at the corner; k3 s2 p1 keeps the centre of pixel 0 on input pixel 0;
    k2 s1 moves the corner half an input pixel inwards (down and right).

    >>> axis_maps(PoolParams("avg", (2, 2)), "corner")[1]
    AxisMap(scale=2, offset=0.0)
    >>> axis_maps(PoolParams("max", (3, 3), (2, 2), (1, 1)), "centre")[0]
    AxisMap(scale=2, offset=0.0)
    >>> axis_maps(PoolParams("avg", (2, 2), (1, 1)), "corner")[0]
    AxisMap(scale=1, offset=0.5)
    """
    dilation = params.effective_dilation
    maps = []
    for axis in (0, 1):
        stride, pad = params.effective_stride[axis], params.padding[axis]
        effective = dilation[axis] * (params.kernel[axis] - 1) + 1
        width = 1 if convention == "centre" else stride
        maps.append(AxisMap(stride, (effective - width) / 2 - pad))
    return maps[0], maps[1]
