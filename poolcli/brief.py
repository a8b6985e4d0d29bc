"""The default report: one plain line per input, and one closing line for a run of many.

May import: ``params``, ``results`` and ``engine`` (for the output-size arithmetic, on first use);
never Rich, so the default report costs no Rich import.  Images
are described as image users read them (width x height, as ``identify`` and ``vips`` print
them); arrays keep their (C, H, W) shapes.

>>> from poolcli.params import PoolParams
>>> from poolcli.results import Result
>>> r = Result(input="cat.png", output="cat.max-k2.png", mode="RGB", input_shape=(3, 600, 512),
...            output_shape=(3, 300, 256), seconds=0.031)
>>> print(result_lines(r, PoolParams("max", (2, 2)))[0])
cat.png 512x600 RGB 8-bit -> cat.max-k2.png 256x300  max k2  0.03 s
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from poolcli.params import PoolParams
from poolcli.results import Result

# How a pooled mode reads in one line: colour model and depth.
MODE_WORDS = {
    "L": "gray 8-bit",
    "LA": "gray+alpha 8-bit",
    "RGB": "RGB 8-bit",
    "RGBA": "RGBA 8-bit",
    "CMYK": "CMYK 8-bit",
    "I;16": "gray 16-bit",
    "LA;16": "gray+alpha 16-bit",
    "RGB;16": "RGB 16-bit",
    "RGBA;16": "RGBA 16-bit",
    "I": "gray 32-bit integer",
    "F": "gray 32-bit float",
}


def size_text(shape: tuple[int, ...] | None) -> str:
    """``(C, H, W)`` as ``WxH``, or ``?``."""
    return f"{shape[-1]}x{shape[-2]}" if shape else "?"


def shape_text(shape: tuple[int, ...] | None) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")" if shape else "?"


def operation_text(params: PoolParams) -> str:
    """The operation in a few words: ``max k2``, ``avg k3 s2 p1 ceil exclude-pad``."""
    words = params.slug().split("-")
    if params.spec.averages and not params.count_include_pad:
        words.append("exclude-pad")
    if params.spec.averages and params.divisor_override is not None:
        words.append(f"divisor {params.divisor_override}")
    return " ".join(words)


def result_lines(result: Result, params: PoolParams) -> list[str]:
    """The report of one input: one line, then one short line per note.  Errors are not here:
    the caller prints them as ``poolcli: error: FILE: reason``."""
    if result.status == "skipped":
        return [f"skipped {result.input}: {result.error or 'output exists'}"]
    if result.status != "ok":
        return []
    source = "stdin" if result.input == "-" else result.input
    target = "stdout" if result.output == "-" else (result.output or "(not written)")
    if result.mode:
        frames = f" {result.frames} frames" if result.frames > 1 else ""
        before = f"{size_text(result.input_shape)} {MODE_WORDS.get(result.mode, result.mode)}{frames}"
        after = size_text(result.output_shape)
    else:  # an array: its shape as given, batch included
        before = f"{shape_text(result.full_input_shape or result.input_shape)} {result.dtype}".rstrip()
        after = shape_text(result.full_output_shape or result.output_shape)
    line = f"{source} {before} -> {target} {after}  {operation_text(params)}  {result.seconds:.2f} s"
    dropped = floor_mode_drops(params, result.input_shape) if result.mode else None
    return [line, *(f"note: {note}" for note in [*result.notes, *([dropped] if dropped else [])])]


def floor_mode_drops(params: PoolParams, shape: tuple[int, ...] | None) -> str | None:
    """The rows and columns of an image that no window reaches in floor mode, when ceil mode
    would pool them (vips and ImageMagick keep them); None when nothing is dropped.

    >>> floor_mode_drops(PoolParams("max", (2, 2)), (3, 300, 451))
    'floor mode drops the last column (451 wide): --ceil-mode keeps it'
    >>> floor_mode_drops(PoolParams("avg", (4, 4)), (1, 303, 455))
    'floor mode drops the last 3 rows (303 high) and the last 3 columns (455 wide): --ceil-mode keeps them'
    >>> floor_mode_drops(PoolParams("max", (2, 2), ceil_mode=True), (3, 300, 451)) is None
    True
    """
    from poolcli.engine import output_size  # the same arithmetic as the pooling itself

    if not shape or params.ceil_mode:
        return None
    dilation = params.dilation if params.op == "max" else (1, 1)
    parts, count = [], 0
    for axis, size, (one, many), unit in ((0, shape[-2], ("row", "rows"), "high"),
                                          (1, shape[-1], ("column", "columns"), "wide")):
        k, s, p, d = params.kernel[axis], params.effective_stride[axis], params.padding[axis], dilation[axis]
        floor = output_size(size, k, s, p, d, False)
        if not isinstance(floor, int) or floor < 1 or output_size(size, k, s, p, d, True) == floor:
            continue
        dropped = size - ((floor - 1) * s - p + d * (k - 1) + 1)  # input past the last window's end
        if dropped > 0:
            parts.append(f"the last {one if dropped == 1 else f'{dropped} {many}'} ({size} {unit})")
            count += dropped
    if not parts:
        return None
    return f"floor mode drops {' and '.join(parts)}: --ceil-mode keeps {'it' if count == 1 else 'them'}"


def unwalked_line(unwalked: int) -> str:
    """What a folder run without -r left alone, said once.

    >>> unwalked_line(3)
    'poolcli: 3 subfolders not walked; add -r'
    """
    return f"poolcli: {unwalked} subfolder{'' if unwalked == 1 else 's'} not walked; add -r"


def summary_line(results: Iterable[Result], seconds: float) -> str:
    """The closing line of a run of many inputs (failures were each listed once already)."""
    counts = Counter(r.status for r in results)
    ok, failed, skipped = counts["ok"], counts["error"], counts["skipped"]
    rate = ok / seconds if seconds > 0 else 0.0
    return (f"poolcli summary: {ok} ok, {failed} failed, {skipped} skipped in {seconds:.2f} s "
            f"({rate:.1f} images/s)")


def interrupted_line(done: int, total: int, skip_existing: bool, to_files: bool, stopped: str = "interrupted") -> str:
    """What Ctrl-C (or SIGTERM, SIGHUP: ``stopped``) leaves, and how to go on from there."""
    line = f"poolcli: {stopped} after {done} of {total} inputs"
    if to_files and total > 1:
        line += ("; run the same command again to resume" if skip_existing
                 else "; to resume, run the same command with --skip-existing")
    return line


def window_misfit(params: PoolParams, shape: tuple[int, ...], is_image: bool) -> str | None:
    """Why the window does not fit a (C, H, W) input, with the way out; None when it fits.

    >>> print(window_misfit(PoolParams("max", (1000, 1000)), (3, 600, 512), is_image=True))
    kernel 1000 does not fit the 512x600 image (padding 0): the output would be 0x0; use -k 512 or less, \
or --ceil-mode / -p
    >>> window_misfit(PoolParams("max", (2, 2)), (1, 3, 3), is_image=False) is None
    True
    """
    from poolcli.engine import output_size  # the same arithmetic as the pooling itself

    height, width = shape[-2:]
    dilation = params.effective_dilation
    out = output_size((height, width), params.kernel, params.effective_stride, params.padding, dilation,
                      params.ceil_mode)
    assert isinstance(out, tuple)
    if min(out) >= 1:
        return None
    # The largest kernel whose dilated span fits the padded input, per axis.
    fits = [(size + 2 * pad - 1) // d + 1 for size, pad, d in zip((height, width), params.padding, dilation,
                                                                  strict=True)]
    kernel = _pair_text(params.kernel)
    if dilation != (1, 1):
        kernel += f" with dilation {_pair_text(dilation)}"
    largest = str(min(fits)) if params.kernel[0] == params.kernel[1] else f"{fits[0]},{fits[1]}"
    rows, cols = (max(v, 0) for v in out)
    if is_image:
        where, result = f"the {width}x{height} image", f"{cols}x{rows}"
    else:
        where, result = f"the {shape_text(shape)} array (C, H, W)", shape_text((*shape[:-2], rows, cols))
    return (f"kernel {kernel} does not fit {where} (padding {_pair_text(params.padding)}): the output would be "
            f"{result}; use -k {largest} or less, or --ceil-mode / -p")


def _pair_text(pair: tuple[int, int]) -> str:
    return str(pair[0]) if pair[0] == pair[1] else f"{pair[0]},{pair[1]}"
