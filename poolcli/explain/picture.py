"""``poolcli explain --svg/--png``: one picture of an explanation, bounded in size, in two formats.

:func:`drawing` lays the picture out once: the header (the operation, every parameter and the
output-size arithmetic, as the terminal prints them) above the panels (titled grids with the
windows marked, and their captions).  :func:`svg_text` writes that drawing as SVG and
:func:`draw_png` paints it with Pillow, so the two formats show the same picture.

The SVG is self-contained: no fonts or images fetched from anywhere, a list of common monospace
fonts ending in the generic ``monospace``.  Every text is placed by its own coordinates (numbers
right-aligned to their cell's edge with ``text-anchor="end"``), so the grid stays aligned
whichever font a renderer picks.

Both are measured before they are made: a picture over :data:`MAX_PICTURE_PIXELS` is refused
with a message that says how to make it smaller (nothing is written).

May import: the standard library and ``poolcli.errors`` at import time; Rich (through ``render``, for the header rows)
and Pillow only inside the functions that draw.
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass
from typing import BinaryIO
from xml.sax.saxutils import escape, quoteattr

from poolcli.errors import PoolcliError
from poolcli.explain.model import STYLES, Explanation, Panel, explanation_panels

# 40 megapixels: a 120 MB RGB canvas, well beyond a slide, far below the 375 Mpx once made.
MAX_PICTURE_PIXELS = 40_000_000

# Fonts: sizes in pixels, and the advance of one monospace character as a share of the size
# (DejaVu Sans Mono and Menlo: 0.602; Consolas 0.55), rounded up so that text never overflows
# the space the layout gives it.
FONT_FAMILY = "'DejaVu Sans Mono', Menlo, Consolas, 'Liberation Mono', 'Courier New', monospace"
_TEXT, _SMALL, _CHAR = 14, 12, 0.62
# The layout: margin, line heights, cell height and padding, gaps, panels per line.
_MARGIN, _LINE_H, _SMALL_LINE_H, _CELL_H, _CELL_PAD, _GAP, _PER_ROW = 24, 20, 16, 24, 6, 24, 4
_GRID_LINE, _LABEL_INK, _TEXT_INK, _CAPTION_INK = "#888888", "#1f6f8b", "#000000", "#333333"


class PictureTooLarge(PoolcliError, ValueError):
    """The picture would exceed :data:`MAX_PICTURE_PIXELS`; the message says how to shrink it."""


@dataclass(frozen=True)
class Rect:
    """A filled box (pixels; ``outline`` None: none)."""

    x: int
    y: int
    width: int
    height: int
    fill: str
    outline: str | None = None


@dataclass(frozen=True)
class Label:
    """One line of text: ``x`` is its left end (``anchor`` "start") or right end ("end"), ``y``
    its baseline."""

    x: int
    y: int
    text: str
    size: int
    fill: str
    anchor: str = "start"
    bold: bool = False


@dataclass
class Drawing:
    """The picture, for every format: its size, boxes and texts, and the header's plain lines."""

    width: int
    height: int
    rects: list[Rect]
    labels: list[Label]
    header: list[str]


def _advance(chars: int, size: int = _TEXT) -> int:
    """The width that ``chars`` monospace characters of ``size`` need."""
    return math.ceil(chars * size * _CHAR)


def header_lines(explanation: Explanation, summary: bool) -> list[tuple[str, str]]:
    """The header rows (label, text) as plain text, the terminal's own (``render.header_rows``)."""
    from poolcli.explain.render import header_rows

    return [(label, text.plain) for label, text in header_rows(explanation, summary)]


class _PanelBox:
    """One panel's geometry: cell width, size, caption lines."""

    def __init__(self, panel: Panel) -> None:
        columns = max((len(row) for row in panel.rows), default=0)
        widest = max((len(text) for row in panel.rows for text, _ in row), default=1)
        self.cell_w = max(_advance(widest) + 2 * _CELL_PAD, 32)
        self.width = max(columns * self.cell_w, _advance(len(panel.title)), 200)
        self.caption = textwrap.wrap(panel.caption, max(20, self.width // _advance(1, _SMALL)))
        self.height = _LINE_H + len(panel.rows) * _CELL_H + 4 + _SMALL_LINE_H * len(self.caption)


def _check_size(kind: str, width: int, height: int) -> None:
    if width * height > MAX_PICTURE_PIXELS:
        raise PictureTooLarge(
            f"the {kind} picture would be {width}x{height} pixels ({width * height / 1e6:.0f} megapixels); at most "
            f"{MAX_PICTURE_PIXELS // 1_000_000} megapixels: use --summary, fewer planes (--channel N) or a smaller "
            "--crop")


def drawing(explanation: Explanation, summary: bool, kind: str = "SVG") -> Drawing:
    """Lay the picture out: the header, then the panels, :data:`_PER_ROW` to a line.

    Raises
    ------
    PictureTooLarge
        Before any box or text is made, when the picture would be too large (``kind`` names the
        format in the message).
    """
    header = header_lines(explanation, summary)
    panels = explanation_panels(explanation, summary)
    boxes = [_PanelBox(panel) for panel in panels]
    label_w = _advance(max((len(label) for label, _ in header), default=0))
    text_x = _MARGIN + label_w + _advance(2)
    header_w = text_x + _advance(max((len(text) for _, text in header), default=0)) + _MARGIN
    lines = [boxes[i:i + _PER_ROW] for i in range(0, len(boxes), _PER_ROW)]
    panels_w = max((sum(b.width for b in line) + _GAP * (len(line) - 1) for line in lines), default=0)
    top = _MARGIN + len(header) * _LINE_H + _GAP
    width = max(header_w, _MARGIN + panels_w + _MARGIN)
    height = top + sum(max(b.height for b in line) + _GAP for line in lines) - _GAP + _MARGIN
    _check_size(kind, width, height)

    rects = [Rect(0, 0, width, height, "#ffffff")]
    labels = []
    for n, (label, text) in enumerate(header):
        baseline = _MARGIN + n * _LINE_H + _TEXT
        if label:
            labels.append(Label(_MARGIN + label_w, baseline, label, _TEXT, _LABEL_INK, "end", bold=True))
        labels.append(Label(text_x, baseline, text, _TEXT, _TEXT_INK))
    y = top
    for start in range(0, len(panels), _PER_ROW):
        x = _MARGIN
        for panel, box in zip(panels[start:start + _PER_ROW], boxes[start:start + _PER_ROW], strict=True):
            labels.append(Label(x, y + _TEXT, panel.title, _TEXT, _TEXT_INK, bold=True))
            grid_top = y + _LINE_H
            for r, row in enumerate(panel.rows):
                cell_y = grid_top + r * _CELL_H
                for c, (text, style) in enumerate(row):
                    look = STYLES[style]
                    cell_x = x + c * box.cell_w
                    rects.append(Rect(cell_x, cell_y, box.cell_w, _CELL_H, look.background, _GRID_LINE))
                    # Right-aligned to the cell's edge, on a baseline a little below its middle.
                    labels.append(Label(cell_x + box.cell_w - _CELL_PAD, cell_y + (_CELL_H + _TEXT) // 2 - 2,
                                        text, _TEXT, look.ink, "end"))
            caption_top = grid_top + len(panel.rows) * _CELL_H + 4
            for n, line in enumerate(box.caption):
                labels.append(Label(x, caption_top + n * _SMALL_LINE_H + _SMALL, line, _SMALL, _CAPTION_INK))
            x += box.width + _GAP
        y += max(b.height for b in boxes[start:start + _PER_ROW]) + _GAP
    plain = [f"{label}: {text}" if label else f"  {text}" for label, text in header]  # as the report off a terminal
    return Drawing(width, height, rects, labels, plain)


def svg_text(explanation: Explanation, summary: bool) -> str:
    """The picture as a self-contained SVG document.

    Raises
    ------
    PictureTooLarge
        Before anything is drawn, when the picture would be too large.
    """
    picture = drawing(explanation, summary, "SVG")
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{picture.width}" height="{picture.height}" '
           f'viewBox="0 0 {picture.width} {picture.height}" font-family={quoteattr(FONT_FAMILY)} '
           'xml:space="preserve">',
           "<title>poolcli explain</title>",
           f"<desc>{escape(chr(10).join(picture.header))}</desc>"]
    for rect in picture.rects:
        stroke = f' stroke="{rect.outline}"' if rect.outline else ""
        # Strokes on half pixels: crisp one-pixel lines, as the PNG draws them.
        out.append(f'<rect x="{rect.x + 0.5 if stroke else rect.x}" y="{rect.y + 0.5 if stroke else rect.y}" '
                   f'width="{rect.width - 1 if stroke else rect.width}" '
                   f'height="{rect.height - 1 if stroke else rect.height}" fill="{rect.fill}"{stroke}/>')
    for label in picture.labels:
        anchor = ' text-anchor="end"' if label.anchor == "end" else ""
        weight = ' font-weight="bold"' if label.bold else ""
        out.append(f'<text x="{label.x}" y="{label.y}" font-size="{label.size}" fill="{label.fill}"'
                   f"{anchor}{weight}>{escape(label.text)}</text>")
    out.append("</svg>")
    return "\n".join(out) + "\n"


def draw_png(explanation: Explanation, summary: bool, stream: BinaryIO) -> None:
    """Paint the picture as a PNG; its header's text is also its ``Description`` (iTXt).

    Raises
    ------
    PictureTooLarge
        Before anything is allocated, when the picture would be too large.
    """
    picture = drawing(explanation, summary, "PNG")

    from PIL import Image, ImageDraw, ImageFont, PngImagePlugin

    fonts: dict[tuple[int, bool], ImageFont.FreeTypeFont | ImageFont.ImageFont] = {}

    def font(size: int, bold: bool) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
        if (size, bold) not in fonts:
            try:  # the SVG's first choice, where installed; else Pillow's own font
                fonts[size, bold] = ImageFont.truetype("DejaVuSansMono-Bold.ttf" if bold else "DejaVuSansMono.ttf",
                                                       size)
            except OSError:
                fonts[size, bold] = ImageFont.load_default(size=size)
        return fonts[size, bold]

    canvas = Image.new("RGB", (picture.width, picture.height), "#ffffff")
    draw = ImageDraw.Draw(canvas)
    for rect in picture.rects:
        draw.rectangle((rect.x, rect.y, rect.x + rect.width - 1, rect.y + rect.height - 1), fill=rect.fill,
                       outline=rect.outline)
    for label in picture.labels:
        draw.text((label.x, label.y), label.text, fill=label.fill, font=font(label.size, label.bold),
                  anchor="rs" if label.anchor == "end" else "ls")
    info = PngImagePlugin.PngInfo()
    info.add_itxt("Description", "\n".join(picture.header))
    info.add_text("Software", "poolcli explain")
    canvas.save(stream, format="PNG", pnginfo=info)
