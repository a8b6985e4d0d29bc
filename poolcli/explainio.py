"""Input and output of ``poolcli explain``: reading MATRIX, saving the picture as SVG or PNG."""

from __future__ import annotations

import io
import os
from typing import cast

import numpy as np

from poolcli import images, report
from poolcli.explain import MAX_SIDE, Explanation, MatrixError, looks_like_literal, parse_matrix
from poolcli.pipeline import NPY_MAGIC, atomic_write


class ExplainInputError(Exception):
    """MATRIX names a file that cannot be read (exit 1)."""


def load_matrix(text: str, box: tuple[int, ...] | None = None) -> np.ndarray:
    """MATRIX as an array: a literal (float32), a .npy file (as stored) or an image (its pixel
    values as float32, channels first); ``box`` = (x, y, w, h) crops the last two axes."""
    if not os.path.exists(text):
        if not looks_like_literal(text):
            raise MatrixError(f"{text!r} is neither a matrix literal (like \"0 1 2; 3 4 5\") nor an existing file")
        array = parse_matrix(text)
    elif os.path.isdir(text):
        raise ExplainInputError("is a folder, not a file")
    else:
        with open(text, "rb") as handle:
            is_npy = handle.read(len(NPY_MAGIC)) == NPY_MAGIC
        if is_npy:
            try:
                array = np.load(text, allow_pickle=False)
            except (ValueError, OSError, EOFError) as error:
                raise ExplainInputError(f"not a readable .npy array ({error})") from None
            if array.ndim not in (2, 3, 4):
                raise MatrixError(f"a .npy MATRIX must have 2, 3 or 4 dimensions, not shape {array.shape}")
        else:
            try:
                picture = images.decode(text)
            except images.ImageError as error:
                raise ExplainInputError(str(error)) from None
            frame = cast(np.ndarray, picture.frames[0])  # decoded eagerly: an array
            array = np.ascontiguousarray(frame.transpose(2, 0, 1), dtype=np.float32)
    if box is not None:
        x, y, w, h = box
        height, width = array.shape[-2:]
        if x + w > width or y + h > height:
            raise MatrixError(f"--crop {x},{y},{w},{h} reaches outside the {width}x{height} input")
        array = array[..., y:y + h, x:x + w]
    height, width = array.shape[-2:]
    if height > MAX_SIDE or width > MAX_SIDE:
        raise MatrixError(f"the input is {width}x{height} (W x H); explain shows at most {MAX_SIDE}x{MAX_SIDE} "
                          "values: choose a part with --crop X,Y,W,H")
    return array


def save_svg(explanation: Explanation, summary: bool, path: str) -> None:
    """The terminal picture, as SVG (Rich's export), written atomically."""
    console = report.make_console(io.StringIO())
    console.record = True
    report.render_explanation(explanation, console, summary)
    svg = console.export_svg(title="poolcli explain")
    atomic_write(path, lambda handle: handle.write(svg.encode("utf-8")))


def save_png(explanation: Explanation, summary: bool, path: str) -> None:
    """The same panels drawn with Pillow, written atomically."""
    panels = report.explanation_panels(explanation, summary)
    atomic_write(path, lambda handle: images.draw_panels(panels, handle))
