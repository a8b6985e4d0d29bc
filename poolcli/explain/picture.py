"""``poolcli explain --svg/--png``: the picture of an explanation, bounded in size, written atomically.

The SVG is Rich's export of the terminal rendering; the PNG draws the same panels with Pillow.
Both are measured before they are made: a picture over :data:`MAX_PICTURE_PIXELS` is refused
with a message that says how to make it smaller (nothing is written).

May import: the standard library at import time; Rich (through ``render``) and Pillow only inside
the functions that draw.
"""

from __future__ import annotations

import io
import math
import textwrap
from typing import BinaryIO

from poolcli.explain.model import STYLES, Explanation, Panel, explanation_panels

# 40 megapixels: a 120 MB RGB canvas, well beyond a slide, far below the 375 Mpx once made.
MAX_PICTURE_PIXELS = 40_000_000

# Rich's export_svg geometry (rich.console.Console.export_svg: 20 px characters, aspect 0.61,
# lines 1.22 high, 48 px of padding and a title bar).
_SVG_CHAR_W, _SVG_LINE_H, _SVG_PAD_W, _SVG_PAD_H = 20 * 0.61, 20 * 1.22, 16, 48

# The PNG layout: cell, gap and title sizes in pixels, panels per line.
_CELL_W, _CELL_H, _GAP, _TITLE_H, _CAPTION_LINE_H, _PER_ROW = 52, 24, 24, 22, 14, 4


class PictureTooLarge(ValueError):
    """The picture would exceed :data:`MAX_PICTURE_PIXELS`; the message says how to shrink it."""


def _check_size(kind: str, width: int, height: int) -> None:
    if width * height > MAX_PICTURE_PIXELS:
        raise PictureTooLarge(
            f"the {kind} picture would be {width}x{height} pixels ({width * height / 1e6:.0f} megapixels); at most "
            f"{MAX_PICTURE_PIXELS // 1_000_000} megapixels: use --summary, fewer planes (--channel N) or a smaller "
            "--crop")


def svg_text(explanation: Explanation, summary: bool) -> str:
    """The terminal rendering as SVG (Rich's export, no colour codes lost).

    Raises
    ------
    PictureTooLarge
        Before the export, when the picture would be too large.
    """
    from poolcli.explain.render import render_explanation
    from poolcli.report import make_console

    console = make_console(io.StringIO())
    console.record = True
    render_explanation(explanation, console, summary)
    text = console.export_text(clear=False)
    lines = text.count("\n") + 1
    columns = max((len(line) for line in text.splitlines()), default=0)
    width = math.ceil(max(columns, console.width) * _SVG_CHAR_W + _SVG_PAD_W)
    _check_size("SVG", width, math.ceil(lines * _SVG_LINE_H + _SVG_PAD_H))
    return console.export_svg(title="poolcli explain")


def _layout(panels: list[Panel]) -> tuple[list[tuple[int, int]], list[list[str]], int, int]:
    """Each panel's size and wrapped caption, and the whole canvas size."""
    widths = [max(max((len(r) for r in panel.rows), default=0) * _CELL_W, 200) for panel in panels]
    captions = [textwrap.wrap(panel.caption, max(20, w // 6)) for panel, w in zip(panels, widths, strict=True)]
    sizes = [(w, len(panel.rows) * _CELL_H + _TITLE_H + 8 + _CAPTION_LINE_H * len(lines))
             for w, panel, lines in zip(widths, panels, captions, strict=True)]
    lines = [sizes[i:i + _PER_ROW] for i in range(0, len(sizes), _PER_ROW)]
    total_w = max(sum(w for w, _ in line) + _GAP * (len(line) + 1) for line in lines)
    total_h = sum(max(h for _, h in line) for line in lines) + _GAP * (len(lines) + 1)
    return sizes, captions, total_w, total_h


def draw_png(explanation: Explanation, summary: bool, stream: BinaryIO) -> None:
    """Draw the panels (titled grids of numbers, windows coloured) as one PNG.

    Raises
    ------
    PictureTooLarge
        Before anything is allocated, when the picture would be too large.
    """
    panels = explanation_panels(explanation, summary)
    sizes, captions, total_w, total_h = _layout(panels)
    _check_size("PNG", total_w, total_h)

    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=14)
    small = ImageFont.load_default(size=11)
    canvas = Image.new("RGB", (total_w, total_h), "#ffffff")
    draw = ImageDraw.Draw(canvas)
    y = _GAP
    for start in range(0, len(panels), _PER_ROW):
        x = _GAP
        line = panels[start:start + _PER_ROW]
        line_h = max(h for _, h in sizes[start:start + _PER_ROW])
        for (title, rows, _), (w, _), caption_lines in zip(line, sizes[start:start + _PER_ROW],
                                                           captions[start:start + _PER_ROW], strict=True):
            draw.text((x, y), title, fill="#000000", font=font)
            for r, row in enumerate(rows):
                for c, (text, style) in enumerate(row):
                    look = STYLES[style]
                    box = (x + c * _CELL_W, y + _TITLE_H + r * _CELL_H, x + (c + 1) * _CELL_W - 1,
                           y + _TITLE_H + (r + 1) * _CELL_H - 1)
                    draw.rectangle(box, fill=look.background, outline="#888888")
                    draw.text((box[2] - 4, box[1] + _CELL_H // 2), text, fill=look.ink, font=font, anchor="rm")
            for n, text_line in enumerate(caption_lines):
                draw.text((x, y + _TITLE_H + len(rows) * _CELL_H + 4 + _CAPTION_LINE_H * n), text_line,
                          fill="#333333", font=small)
            x += w + _GAP
        y += line_h + _GAP
    canvas.save(stream, format="PNG")
