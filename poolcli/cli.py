"""The ``poolcli`` command line (the only module that uses Click).

NumPy, Pillow and Rich are imported inside the commands, so that ``--help`` and ``--version``
start fast.  Exit codes: 0 all went well, 1 an input failed (unreadable file, output too small,
...), 2 a usage error (bad option), 130 interrupted (128 + the signal: 143 SIGTERM, 129 SIGHUP).

May import: Click at import time; everything else (NumPy, Pillow, Rich) inside the commands.
"""

from __future__ import annotations

import io
import os
import re
import sys
import warnings
from collections.abc import Callable
from types import ModuleType
from typing import Any, BinaryIO, NoReturn

import click

from poolcli import formats
from poolcli.exits import ExitCode, exit_code, exit_quickly, internal_error, stop_message, stop_signals_handled
from poolcli.params import DEFAULT_MEMORY_LIMIT, Pair, PoolParams, format_pair, parse_size
from poolcli.version import __version__

INT32_MAX = 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1  # torch takes divisor_override as an int64
# --format names: each format poolcli writes, its usual extension where that differs (jpg, tif), npy.
FORMATS = [name for fmt, spec in formats.FORMATS.items()
           for name in dict.fromkeys([fmt.lower(), spec.extension[1:]])] + ["npy"]

EPILOG_MAX = """\b
Examples:
  poolcli max photo.jpg -k 2                 # writes photo.max-k2.jpg
  poolcli max photo.png -k 3 -s 1 -p 1 -o small.png
  poolcli max matrix.npy -k 2 -s 1           # the course example: a 3x3 array
  cat a.png | poolcli max - -k 2 -o - > b.png
  poolcli max photos/ -r -o small/ -k 2      # a whole tree, on all cores
  poolcli max s3://b/photos/ -r -o s3://b/small/ -k 2 --scheduler tcp://host:8786
"""

EPILOG_AVG = """\b
Examples:
  poolcli avg photo.png -k 2                 # writes photo.avg-k2.png (= Pillow's reduce(2))
  poolcli avg photo.png -k 3 -s 2 -p 1 --no-count-include-pad
  poolcli avg logo.png -k 4 --linear         # average in linear light
  poolcli avg scan.tif -k 2 -o - --format png | other-tool
"""


# A whole number in ASCII digits: int() and the regex \d would also read other scripts' digits
# (Arabic-Indic three as 3) and underscores ("1_0").
_WHOLE = re.compile(r"[+-]?[0-9]+")


def parse_whole(text: str) -> int:
    """``text`` (spaces around allowed) as a whole number written with the digits 0-9.

    >>> parse_whole(" -12 ")
    -12
    >>> parse_whole("\u0663")  # ARABIC-INDIC DIGIT THREE
    Traceback (most recent call last):
    ...
    ValueError: '\u0663' is not a whole number
    """
    if not _WHOLE.fullmatch(text.strip()):
        raise ValueError(f"{text!r} is not a whole number")
    return int(text)


def parse_pair(text: str) -> tuple[int, int]:
    """``"2"`` → (2, 2); ``"2,3"`` or ``"2x3"`` → (2, 3) (height, width)."""
    parts = re.split(r"\s*[,xX]\s*", text.strip())
    if len(parts) not in (1, 2) or not all(_WHOLE.fullmatch(p) for p in parts):
        raise ValueError(f"{text!r} is not a size: give N, or H,W (also HxW)")
    values = [int(p) for p in parts]
    return (values[0], values[0]) if len(values) == 1 else (values[0], values[1])


class PairType(click.ParamType):
    name = "N|H,W"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[int, int]:
        if isinstance(value, tuple):
            return value
        try:
            return parse_pair(str(value))
        except ValueError as error:
            self.fail(str(error), param, ctx)


PAIR = PairType()


def _check_pairs(params: PoolParams, ctx: click.Context) -> None:
    """torch's parameter rules, checked before any file is read, naming the option the user gave."""

    def fail(option: str, message: str) -> None:
        raise click.BadParameter(message, ctx=ctx, param_hint=f"'{option}'")

    for option, pair in (("-k/--kernel", params.kernel), ("-s/--stride", params.stride),
                         ("-p/--padding", params.padding), ("-d/--dilation", params.dilation)):
        if pair is None:
            continue
        if any(v > INT32_MAX for v in pair):
            fail(option, f"{format_pair(pair)} is too large (at most {INT32_MAX})")
    if min(params.kernel) < 1:
        fail("-k/--kernel", f"the kernel must be at least 1, got {format_pair(params.kernel)}")
    if params.stride is not None and min(params.stride) < 1:
        fail("-s/--stride", f"the stride must be at least 1, got {format_pair(params.stride)}")
    if min(params.dilation) < 1:
        fail("-d/--dilation", f"the dilation must be at least 1, got {format_pair(params.dilation)}")
    if min(params.padding) < 0:
        fail("-p/--padding", f"the padding must not be negative, got {format_pair(params.padding)}")
    for axis, name in ((0, "height"), (1, "width")):
        if params.padding[axis] > params.kernel[axis] // 2:
            fail("-p/--padding", f"padding {params.padding[axis]} is more than half the kernel "
                                 f"{params.kernel[axis]} ({name}); torch allows at most kernel // 2 = "
                                 f"{params.kernel[axis] // 2}")
    if params.divisor_override == 0:
        fail("--divisor-override", "the divisor must not be zero")


class BoxType(click.ParamType):
    """``--crop X,Y,W,H``: four whole numbers, W and H at least 1."""

    name = "X,Y,W,H"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[int, ...]:
        if isinstance(value, tuple):
            return value
        try:
            box = tuple(parse_whole(v) for v in re.split(r"\s*,\s*", str(value).strip()))
        except ValueError:
            box = ()
        if len(box) != 4 or min(box) < 0 or box[2] < 1 or box[3] < 1:
            self.fail("give X,Y,W,H: four whole numbers, W and H at least 1", param, ctx)
        return box


BOX = BoxType()


class Bounded(click.ParamType):
    """A whole number in [low, high] (high None: no upper bound), shown as a plain metavar: Click's
    IntRange would add ``INTEGER RANGE [x>=1]`` to the help."""

    name = "integer"

    def __init__(self, low: int, high: int | None = None):
        self.low, self.high = low, high

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        try:
            number = value if isinstance(value, int) else parse_whole(str(value))
        except ValueError:
            self.fail(f"{value!r} is not a whole number", param, ctx)
        if number < self.low or (self.high is not None and number > self.high):
            bounds = f"at least {self.low}" if self.high is None else f"from {self.low} to {self.high}"
            self.fail(f"{number} is out of range: give a number {bounds}", param, ctx)
        return number
class SizeType(click.ParamType):
    """``--memory-limit SIZE``: ``64M``, ``2G``, ``1.5G`` or plain bytes (binary units)."""

    name = "SIZE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_size(str(value))
        except ValueError as error:
            self.fail(str(error), param, ctx)


SIZE = SizeType()


class ChannelsType(click.ParamType):
    """``--channel 0,2`` (or repeated): channel numbers, each at least 0."""

    name = "N[,N...]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[int, ...]:
        if isinstance(value, tuple):
            return value
        parts = [p for p in re.split(r"\s*,\s*", str(value).strip()) if p]
        if not parts or not all(re.fullmatch(r"[0-9]{1,9}", p) for p in parts):
            self.fail(f"{value!r} is not a channel number: give N or N,N,... (0 is the first channel)", param, ctx)
        return tuple(int(p) for p in parts)


CHANNELS = ChannelsType()


class ColourType(click.ParamType):
    """``--background COLOR``: any colour Pillow's ImageColor knows, as 8-bit (R, G, B)."""

    name = "COLOR"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[int, ...]:
        if isinstance(value, tuple):
            return value
        from PIL import ImageColor

        try:
            return tuple(ImageColor.getrgb(str(value))[:3])  # an alpha given in the colour is ignored
        except ValueError:
            self.fail(f"{value!r} is not a colour: give a name (white), #rrggbb or rgb(r, g, b)", param, ctx)


COLOUR = ColourType()

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def _options(*decorators: Decorator) -> Decorator:
    """Several Click decorators as one, applied in the order written (like stacking them)."""

    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        for decorator in reversed(decorators):
            function = decorator(function)
        return function

    return decorate


def section(title: str, *decorators: Decorator) -> Decorator:
    """Decorators whose options are listed under ``title`` in ``--help`` (see GroupedCommand)."""

    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        before = len(getattr(function, "__click_params__", []))
        function = _options(*decorators)(function)
        for param in getattr(function, "__click_params__", [])[before:]:
            param.help_section = title  # read by GroupedCommand and the man page
        return function

    return decorate


class GroupedCommand(click.Command):
    """A command whose ``--help`` lists its options in sections (pooling, output, ...)."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        sections: dict[str, list[tuple[str, str]]] = {}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx) if isinstance(param, click.Option) else None
            if record is not None:
                sections.setdefault(getattr(param, "help_section", "Other options"), []).append(record)
        sections["Other options"] = sections.pop("Other options", [])  # --help last
        for title, records in sections.items():
            with formatter.section(title):
                formatter.write_dl(records)


# Settings a user sets once, read from the environment (shown in --help).
ENV = {"jobs": "POOLCLI_JOBS", "quality": "POOLCLI_QUALITY", "compression": "POOLCLI_COMPRESSION",
       "max_pixels": "POOLCLI_MAX_PIXELS", "memory_limit": "POOLCLI_MEMORY_LIMIT"}

# The torch parameters, shared by max/avg and explain max/avg.
window_options = _options(
    click.option("-k", "--kernel", type=PAIR, required=True, metavar="N|H,W",
                 help="Window size: N, or H,W (also HxW)."),
    click.option("-s", "--stride", type=PAIR, default=None, metavar="N|H,W",
                 help="Step between windows [default: the kernel]."),
    click.option("-p", "--padding", type=PAIR, default="0", show_default=True, metavar="N|H,W",
                 help="Implicit padding on each side, at most half the kernel."),
    click.option("--ceil-mode", is_flag=True, help="Round the output size up (torch's ceil_mode)."),
)
dilation_option = click.option("-d", "--dilation", type=PAIR, default="1", show_default=True, metavar="N|H,W",
                               help="Spacing between window taps.")
divisor_options = _options(
    click.option("--count-include-pad/--no-count-include-pad", default=True, show_default=True,
                 help="Count padding cells in the divisor."),
    click.option("--divisor-override", type=Bounded(INT64_MIN, INT64_MAX), default=None, metavar="N",
                 help="Divide every window sum by N instead (not 0; may be negative)."),
)
return_indices_option = click.option(
    "--return-indices", "indices_path", type=click.Path(dir_okay=False), default=None, metavar="FILE.npy",
    help="Also save torch's int64 indices of each maximum (one input).")


def _nodata_text(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``--nodata``: a number (or nan) or ``none``, checked before any file is read."""
    if value is None:
        return None
    from poolcli.nodata import NodataError, parse_nodata

    try:
        parse_nodata(value)
    except NodataError as error:
        raise click.BadParameter(str(error), ctx=ctx, param=param) from None
    return value


nodata_option = click.option(
    "--nodata", default=None, metavar="V|none", callback=_nodata_text,
    help="Leave pixels equal to V out of every window; a window of only V gives V [default: a GeoTIFF's "
         "GDAL_NODATA]; none: pool every pixel as a number.")
ngff_option = click.option(
    "--ngff", type=click.Choice(["0.4", "0.5"]), default=None,
    help="OME-Zarr version written: 0.5 (Zarr v3) or 0.4 (Zarr v2, older readers) [default: 0.5 where "
         "zarr 3 is installed; an OME-Zarr input's own version].")
pixel_options = _options(
    click.option("--premultiply/--no-premultiply", default=True, show_default=True,
                 help="Weight colour by alpha when averaging (no dark fringes); off gives torch's "
                      "independent channels."),
    click.option("--linear", is_flag=True, help="Average in linear light (sRGB decoded, averaged, "
                                                "re-encoded); 8/16-bit images."),
)
# Options that max/avg and pyramid share (one definition each).
skip_existing_option = click.option("--skip-existing", is_flag=True,
                                    help="Skip inputs whose output already exists (resume).")
progress_option = click.option("--no-progress", is_flag=True, help="No progress bar.")
compression_option = click.option(
    "--compression", type=Bounded(0, 9), default=None, metavar="0-9", envvar=ENV["compression"], show_envvar=True,
    help="PNG deflate level (0 stored, 9 smallest) [default: 1, measured: docs/performance.md]; TIFF and pyramids: 1-9 "
         "deflate, 0 none [default: none; a streamed TIFF or a pyramid: as the input].")
auto_orient_option = click.option("--no-auto-orient", is_flag=True, help="Do not apply the EXIF orientation first.")
max_pixels_option = click.option(
    "--max-pixels", type=Bounded(0), default=None, metavar="N", envvar=ENV["max_pixels"], show_envvar=True,
    help="Decompression-bomb limit in pixels per frame (all frames together: twice that); 0: none "
         "[default: Pillow's, 89478485].")
memory_limit_option = click.option(
    "--memory-limit", type=SIZE, default=None, envvar=ENV["memory_limit"], show_envvar=True,
    help="Working memory of one streamed TIFF/Zarr image, e.g. 64M, 2G [default: 256M].")
verbose_option = click.option("-v", "--verbose", is_flag=True,
                              help="The full report: parameters and output-size arithmetic (and small arrays' values).")
json_option = click.option("--json", "as_json", is_flag=True, help="One JSON object per input on stdout.")
quiet_option = click.option("-q", "--quiet", is_flag=True, help="No report (errors are still printed).")
# Inputs, outputs, folders, encoding and report: the same for max and avg.
files_options = _options(
    click.argument("inputs", nargs=-1, required=True, metavar="INPUT...", type=click.Path(allow_dash=True)),
    section(
        "Output",
        click.option("-o", "--output", default=None, metavar="PATH", type=click.Path(allow_dash=True),
                     help="Output file; a folder if PATH ends in / or is a folder, or with several inputs; "
                          "- for stdout [default: beside the input, named after the operation; stdin: stdout]."),
        click.option("-O", "--output-dir", default=None, metavar="DIR", type=click.Path(),
                     help="Write into the folder DIR (created if missing), also for one input."),
        click.option("--format", "file_format", type=click.Choice(FORMATS, case_sensitive=False), default=None,
                     metavar="FMT", help="Output format: " + ", ".join(FORMATS) + " (for stdout, or to "
                                         "override the extension)."),
        ngff_option,
    ),
    section(
        "Folders",
        click.option("-r", "--recursive", is_flag=True, help="Walk subfolders of folder inputs."),
        click.option("-j", "--jobs", type=Bounded(1), default=None, metavar="N", envvar=ENV["jobs"],
                     show_envvar=True, help="Worker processes for folders [default: the number of CPUs]."),
        skip_existing_option,
        progress_option,
    ),
    section(
        "Cluster and storage",
        click.option("--scheduler", default=None, metavar="ADDRESS",
                     help="Run folders and file lists on a Dask cluster: tcp://HOST:8786, or 'local' for a "
                          "LocalCluster of -j workers [default: Dask's scheduler-address, else -j processes]."),
        click.option("--storage-options", default=None, metavar="JSON",
                     help="fsspec options for URL inputs and outputs (s3://, gs://, ...), e.g. '{\"anon\": true}', "
                          "or per protocol '{\"s3\": {...}}'."),
        click.option("--retries", type=Bounded(0), default=2, show_default=True, metavar="N",
                     help="Cluster: Dask's retries of a task that fails; with 'local', also how many workers a "
                          "file may kill before it fails."),
    ),
    section(
        "Encoding",
        click.option("--quality", type=Bounded(0, 100), default=None, metavar="Q", envvar=ENV["quality"],
                     show_envvar=True, help="JPEG/WebP quality, 0-100 [default: 92 JPEG, 90 WebP]."),
        compression_option,
        click.option("--background", type=COLOUR, default=None, metavar="COLOR",
                     help="Flatten alpha onto this colour (a name, #rrggbb, rgb(...)): needed for JPEG and BMP."),
        auto_orient_option,
        max_pixels_option,
        click.option("--max-frames", type=Bounded(0), default=None, metavar="N",
                     help="Refuse files of more frames or pages; 0: no limit [default: 1000]."),
        memory_limit_option,
    ),
    section(
        "Report",
        verbose_option,
        json_option,
        quiet_option,
        click.option("--debug", is_flag=True,
                     help="Print the traceback of an internal error (also POOLCLI_DEBUG=1)."),
    ),
)


def _complete_paths(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    """The shell's file names, as ``click.Path`` completes them, for a parameter that poolcli reads
    itself (MATRIX may also be a literal; pyramid checks its INPUT and -o)."""
    from click.shell_completion import CompletionItem

    return [CompletionItem(incomplete, type="file")]


# What explain shows, and where it saves its picture.
explain_options = _options(
    click.argument("matrix", metavar="MATRIX", shell_complete=_complete_paths),
    click.option("--crop", type=BOX, default=None,
                 help="Explain this part of an image or array (left, top, width, height)."),
    click.option("--channel", "channels", type=CHANNELS, multiple=True,
                 help="Explain these channels (0 is the first; repeat or list them) [default: the first 4 planes]."),
    click.option("--summary", is_flag=True, help="Only the grids and the arithmetic, not every window."),
    click.option("--svg", "svg_path", type=click.Path(dir_okay=False), default=None, metavar="FILE.svg",
                 help="Also save the picture as SVG."),
    click.option("--png", "png_path", type=click.Path(dir_okay=False), default=None, metavar="FILE.png",
                 help="Also save the picture as PNG."),
)


class PoolcliGroup(click.Group):
    """A group whose errors are one line each, with poolcli's exit codes."""

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        try:
            with stop_signals_handled():  # Ctrl-C, SIGTERM, SIGHUP: clean up, exit 128 + N
                code = super().main(args=args, prog_name=prog_name or "poolcli", complete_var=complete_var,
                                    standalone_mode=False, **extra)
        except click.UsageError as error:
            if type(error).__name__ == "NoArgsIsHelpError" and error.ctx is not None:
                # Click 8.2+ raises this for a bare ``poolcli``: the help is the answer, not an error.
                click.echo(error.ctx.get_help())
                sys.exit(ExitCode.OK)
            command = error.ctx.command_path if error.ctx else "poolcli"
            click.echo(f"{command}: error: {error.format_message()} (see '{command} --help')", err=True)
            sys.exit(ExitCode.USAGE)
        except click.ClickException as error:
            click.echo(f"poolcli: error: {error.format_message()}", err=True)
            sys.exit(error.exit_code)
        except (KeyboardInterrupt, _Stopped, click.Abort) as stop:  # also SIGTERM and SIGHUP (exits.Interrupted)
            interrupt = stop.interrupt if isinstance(stop, _Stopped) else stop.__cause__ or stop
            click.echo(f"poolcli: {stop_message(interrupt)}", err=True)
            sys.exit(exit_code(interrupt))
        except Exception as error:  # a bug outside the per-file pipeline: one line, traceback on request
            given = sys.argv[1:] if args is None else list(args)
            if "--debug" in given or os.environ.get("POOLCLI_DEBUG", "") not in ("", "0"):
                import traceback

                traceback.print_exc()
            click.echo(f"poolcli: error: {internal_error(error)}", err=True)
            sys.exit(ExitCode.FAILED)
        sys.exit(code if isinstance(code, int) else ExitCode.OK)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as interrupt:
            raise _Stopped(interrupt) from None  # past Click's handler, which would print a blank line


class _Stopped(Exception):
    """A stop signal on its way out of a command (see PoolcliGroup.invoke)."""

    def __init__(self, interrupt: KeyboardInterrupt) -> None:
        super().__init__(interrupt)
        self.interrupt = interrupt


EPILOG_TOP = """\b
Examples:
  poolcli max photo.jpg -k 2                 # writes photo.max-k2.jpg, half the size
  poolcli avg photo.png -k 2 -o small.png    # = Pillow's reduce(2)
  poolcli max matrix.npy -k 2 -s 1 -v        # the course example, with the arithmetic
  poolcli explain max "0 1 2; 3 4 5; 6 7 8" -k 2 -s 1
  poolcli avg photos/ -r -o small/ -k 2      # a whole tree, on all cores

\b
Settings from the environment: POOLCLI_JOBS, POOLCLI_QUALITY, POOLCLI_COMPRESSION,
POOLCLI_MAX_PIXELS, POOLCLI_MEMORY_LIMIT (as -j, --quality, --compression, --max-pixels,
--memory-limit).
Shell completion (bash, zsh, fish): docs/options.md, "Settings and shell completion".
"""


@click.group("poolcli", cls=PoolcliGroup, epilog=EPILOG_TOP,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", prog_name="poolcli")
def cli() -> None:
    """Torch-exact max and average pooling of images and arrays, without torch.

    Results equal torch.nn.functional.max_pool2d / avg_pool2d on the CPU.  Images keep their
    mode (8/16-bit, alpha, float, CMYK), frames and metadata; integer pixel averages are
    rounded (torch would truncate).  .npy arrays follow torch exactly.

    Exit codes: 0 ok, 1 an input failed, 2 usage error, 130 interrupted (143 SIGTERM, 129 SIGHUP).
    """


def _stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


def _check_not_empty(ctx: click.Context, path: str | None, option: str, advice: str) -> None:
    """An empty path names nothing (the shell's ``-o "$UNSET"``): a usage error, not a guess."""
    if path == "":
        raise click.BadParameter(f"the output path is empty: {advice}", ctx=ctx, param_hint=option)


def _check_stdout(ctx: click.Context) -> None:
    """Refuse to start a run whose output goes to a standard output closed before it began
    (``>&-``: Python then has no ``sys.stdout`` at all)."""
    if sys.stdout is None:
        _fail(ctx, "cannot write -: standard output is closed")


def _checked(ctx: click.Context, params: PoolParams) -> PoolParams:
    _check_pairs(params, ctx)
    return params


@cli.command("max", cls=GroupedCommand, epilog=EPILOG_MAX, no_args_is_help=True,
             short_help="Max pooling (torch's MaxPool2d) of images, .npy arrays or folders.")
@section("Pooling", window_options, dilation_option, return_indices_option, nodata_option)
@files_options
@click.pass_context
def max_command(ctx: click.Context, kernel: Pair, stride: Pair | None, padding: Pair, ceil_mode: bool,
                dilation: Pair, indices_path: str | None, **files: Any) -> None:
    """Max pooling (torch's MaxPool2d) of images, .npy arrays or folders."""
    params = PoolParams(op="max", kernel=kernel, stride=stride, padding=padding, dilation=dilation,
                        ceil_mode=ceil_mode)
    pool_files(ctx, _checked(ctx, params), indices_path=indices_path, **files)


@cli.command("avg", cls=GroupedCommand, epilog=EPILOG_AVG, no_args_is_help=True,
             short_help="Average pooling (torch's AvgPool2d) of images, .npy arrays or folders.")
@section("Pooling", window_options, divisor_options, nodata_option)
@section("Pixels", pixel_options)
@files_options
@click.pass_context
def avg_command(ctx: click.Context, kernel: Pair, stride: Pair | None, padding: Pair, ceil_mode: bool,
                count_include_pad: bool, divisor_override: int | None, premultiply: bool, linear: bool,
                **files: Any) -> None:
    """Average pooling (torch's AvgPool2d) of images, .npy arrays or folders."""
    params = PoolParams(op="avg", kernel=kernel, stride=stride, padding=padding, ceil_mode=ceil_mode,
                        count_include_pad=count_include_pad, divisor_override=divisor_override)
    pool_files(ctx, _checked(ctx, params), premultiply=premultiply, linear=linear, **files)


def pool_files(ctx: click.Context, params: PoolParams, *, inputs: tuple[str, ...], output: str | None,
               output_dir: str | None, debug: bool, recursive: bool, jobs: int | None, skip_existing: bool,
               no_progress: bool, file_format: str | None, quality: int | None, compression: int | None,
               no_auto_orient: bool, max_pixels: int | None, max_frames: int | None,
               background: tuple[int, int, int] | None, memory_limit: int | None, verbose: bool, as_json: bool,
               quiet: bool, scheduler: str | None, storage_options: str | None, retries: int,
               indices_path: str | None = None, premultiply: bool = True, linear: bool = False,
               nodata: str | None = None, ngff: str | None = None) -> None:
    """The one implementation behind ``poolcli max`` and ``poolcli avg``: plan, run, exit."""
    if indices_path is not None and not indices_path.lower().endswith(".npy"):
        raise click.BadParameter("the indices file must end in .npy", ctx=ctx, param_hint="'--return-indices'")
    if indices_path is not None and nodata is not None and nodata.strip().lower() != "none":
        raise click.UsageError("--return-indices and --nodata do not go together: a window of nodata has no "
                               "maximum to point at", ctx=ctx)
    if output is not None and output_dir is not None:
        raise click.UsageError("give -o/--output or -O/--output-dir, not both", ctx=ctx)
    _check_not_empty(ctx, output, "'-o/--output'", "give a file name, or - for standard output")
    _check_not_empty(ctx, output_dir, "'-O/--output-dir'", "give a folder")
    if len(inputs) == 1 and inputs[0] != "-" and scheduler is None and not os.environ.get("DASK_SCHEDULER_ADDRESS"):
        # One PNG: inflating its image data starts now, while the pipeline is still being imported.
        from poolcli import inflate

        inflate.prefetch(inputs[0], formats.DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels)

    from poolcli import batch
    from poolcli.pipeline import Options

    fmt = None if file_format is None else formats.format_for_extension(f".{file_format}") or file_format.upper()
    options = Options(
        file_format=fmt, quality=quality, compression=compression, auto_orient=not no_auto_orient,
        premultiply=premultiply, linear=linear,
        max_pixels=formats.DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels, indices_path=indices_path,
        max_frames=formats.DEFAULT_MAX_FRAMES if max_frames is None else max_frames, background=background,
        memory_limit=DEFAULT_MEMORY_LIMIT if memory_limit is None else memory_limit,
        debug=debug, storage_options=storage_options, nodata=nodata, ngff=ngff,
    )
    address = _scheduler_address(ctx, scheduler, storage_options, inputs)
    try:
        # On a cluster the folders are walked lazily (twice), never held: folders of millions of files.
        make_plan = batch.plan if address is None else batch.plan_stream
        unwalked: set[str] = set()  # subfolders a folder input has, left alone without -r
        planned = make_plan(list(inputs), output, params, options, recursive=recursive, output_dir=output_dir,
                            unwalked=unwalked)
    except batch.PlanError as error:
        raise click.UsageError(str(error), ctx=ctx) from None
    except batch.storage.StorageFault as error:  # a missing bucket, no credentials, ...: exit 1
        click.echo(f"poolcli: error: {error}", err=True)
        ctx.exit(ExitCode.FAILED)
    if output_dir is not None and not _is_url(output_dir):  # (object stores have no folders to make)
        try:
            os.makedirs(output_dir, exist_ok=True)
        except OSError as error:
            click.echo(f"poolcli: error: {output_dir}: cannot create the folder ({error.strerror or error})",
                       err=True)
            ctx.exit(ExitCode.FAILED)
    # (several inputs never go to standard output: plan refuses it; and a stream is not walked again)
    to_stdout = len(planned) == 1 and any(job.output == "-" for job in planned)
    if to_stdout or as_json:
        _check_stdout(ctx)
    if to_stdout and _stdout_is_terminal():
        raise click.UsageError("refusing to write image data to a terminal: redirect standard output, "
                               "or give -o FILE", ctx=ctx)
    executor = _executor(address, jobs, retries)
    try:
        code = batch.execute(planned, params, options, executor, skip_existing=skip_existing,
                             progress=not no_progress, as_json=as_json, quiet=quiet, verbose=verbose,
                             unwalked=len(unwalked))
    finally:
        close = getattr(executor, "close", None)
        if close is not None:
            close()
    ctx.exit(code)


def _executor(address: str | None, jobs: int | None, retries: int) -> Any:
    """Who runs the jobs (and a giant image's strips): a Dask cluster with an address (or
    ``local``), else worker processes for -j > 1, else this process."""
    if address is not None:
        from poolcli.cluster import DaskExecutor

        return DaskExecutor(address, jobs, retries)
    from poolcli import executors
    from poolcli.engine import available_cpus

    workers = jobs or available_cpus()
    return executors.ForkPool(workers) if workers > 1 else executors.InProcess()


def _is_url(text: str) -> bool:
    from poolcli import storage

    return storage.is_url(text)


def _scheduler_address(ctx: click.Context, scheduler: str | None, storage_options: str | None,
                       inputs: tuple[str, ...]) -> str | None:
    """--scheduler, else Dask's own setting (when Dask is installed), else None: no cluster."""
    from pathlib import Path

    from poolcli import storage

    try:
        storage.check_options(storage_options)
    except storage.StorageError as error:
        raise click.BadParameter(str(error), ctx=ctx, param_hint="'--storage-options'") from None
    one_local_file = len(inputs) == 1 and not storage.is_url(inputs[0]) and not Path(inputs[0]).is_dir()
    if scheduler is None and one_local_file:
        return None  # runs here anyway: a standing DASK_SCHEDULER_ADDRESS must not slow single files down
    from poolcli import cluster  # not before: one file needs neither it nor its imports (glob, logging)

    if scheduler is None:
        address = cluster.default_address()
        return address if address and cluster.installed() else None
    if not cluster.installed():
        raise click.UsageError(f"--scheduler needs Dask, which is not installed: {cluster.INSTALL_HINT}", ctx=ctx)
    return scheduler


EPILOG_PYRAMID = """\b
Examples:
  poolcli pyramid avg slide.tif -o slide.ome.zarr --levels 5    # OME-Zarr (NGFF 0.4)
  poolcli pyramid max labels.tif -o labels.pyramid.tif --levels 4  # pyramidal OME-TIFF
  poolcli pyramid avg scene.zarr -o scene.ome.zarr --levels 3 -k 3 -s 2 -p 1
"""

# pyramid: the same window options, with a kernel of 2 unless told otherwise.
pyramid_window_options = _options(
    click.option("-k", "--kernel", type=PAIR, default="2", show_default=True, metavar="N|H,W",
                 help="Window size: N, or H,W (also HxW)."),
    click.option("-s", "--stride", type=PAIR, default=None, metavar="N|H,W",
                 help="Step between windows [default: the kernel]."),
    click.option("-p", "--padding", type=PAIR, default="0", show_default=True, metavar="N|H,W",
                 help="Implicit padding on each side, at most half the kernel."),
    click.option("--ceil-mode", is_flag=True, help="Round the output size up (torch's ceil_mode)."),
)
pyramid_files_options = _options(
    click.argument("input_path", metavar="INPUT", shell_complete=_complete_paths),
    click.option("-o", "--output", required=True, metavar="PATH", shell_complete=_complete_paths,
                 help="x.zarr / x.ome.zarr (OME-Zarr, NGFF 0.4) or x.tif / x.tiff (pyramidal OME-TIFF)."),
    click.option("--levels", type=Bounded(1), default=None, metavar="N",
                 help="Pooled levels below the input (level 0) [default: until a level fits in one "
                      "256x256 tile, as libvips does]."),
    skip_existing_option,
    progress_option,
    compression_option,
    memory_limit_option,
    auto_orient_option,
    max_pixels_option,
    verbose_option,
    json_option,
    quiet_option,
)


@cli.group("pyramid", short_help="Multi-resolution pyramids (OME-Zarr, OME-TIFF), each level pooled.")
def pyramid_group() -> None:
    """Multi-resolution pyramids: the input and N levels, each pooled from the one above.

    Level n equals pooling the input n times.  Written while streaming, in bounded memory, as an
    OME-Zarr image (.zarr) or a pyramidal tiled OME-TIFF (.tif), for napari, QuPath and libvips.
    """


@pyramid_group.command("max", cls=GroupedCommand, epilog=EPILOG_PYRAMID, no_args_is_help=True)
@section("Pooling", pyramid_window_options, dilation_option, nodata_option)
@section("Pyramid", pyramid_files_options, ngff_option)
@click.pass_context
def pyramid_max(ctx: click.Context, kernel: Pair, stride: Pair | None, padding: Pair, ceil_mode: bool,
                dilation: Pair, **files: Any) -> None:
    """A pyramid of max-pooled levels (torch's MaxPool2d; default kernel 2)."""
    params = PoolParams(op="max", kernel=kernel, stride=stride, padding=padding, dilation=dilation,
                        ceil_mode=ceil_mode)
    pyramid_files(ctx, _checked(ctx, params), **files)


@pyramid_group.command("avg", cls=GroupedCommand, epilog=EPILOG_PYRAMID, no_args_is_help=True)
@section("Pooling", pyramid_window_options, divisor_options, nodata_option)
@section("Pixels", pixel_options)
@section("Pyramid", pyramid_files_options, ngff_option)
@click.pass_context
def pyramid_avg(ctx: click.Context, kernel: Pair, stride: Pair | None, padding: Pair, ceil_mode: bool,
                count_include_pad: bool, divisor_override: int | None, premultiply: bool, linear: bool,
                **files: Any) -> None:
    """A pyramid of average-pooled levels (torch's AvgPool2d; pixel rules for images; default kernel 2)."""
    params = PoolParams(op="avg", kernel=kernel, stride=stride, padding=padding, ceil_mode=ceil_mode,
                        count_include_pad=count_include_pad, divisor_override=divisor_override)
    pyramid_files(ctx, _checked(ctx, params), premultiply=premultiply, linear=linear, **files)


def pyramid_files(ctx: click.Context, params: PoolParams, *, input_path: str, output: str, levels: int | None,
                  skip_existing: bool, no_progress: bool, compression: int | None, memory_limit: int | None,
                  no_auto_orient: bool, max_pixels: int | None, verbose: bool, as_json: bool, quiet: bool,
                  premultiply: bool = True, linear: bool = False, nodata: str | None = None,
                  ngff: str | None = None) -> None:
    """The one implementation behind ``poolcli pyramid max`` and ``avg``: check, run, exit."""
    if not output.lower().rstrip("/").endswith((".zarr", ".tif", ".tiff")):
        raise click.BadParameter("a pyramid is written as .zarr / .ome.zarr (OME-Zarr) or .tif / .tiff "
                                 "(OME-TIFF)", ctx=ctx, param_hint="'-o/--output'")
    from pathlib import Path

    if input_path != "-" and Path(output).exists() and Path(output).resolve() == Path(input_path).resolve():
        raise click.BadParameter(f"refusing to overwrite the input {output}", ctx=ctx, param_hint="'-o/--output'")
    if as_json:
        _check_stdout(ctx)

    from poolcli import batch
    from poolcli.pipeline import AUTO_LEVELS, Job, Options

    options = Options(
        auto_orient=not no_auto_orient, premultiply=premultiply, linear=linear, compression=compression,
        pyramid_levels=AUTO_LEVELS if levels is None else levels,
        max_pixels=formats.DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels,
        memory_limit=DEFAULT_MEMORY_LIMIT if memory_limit is None else memory_limit, nodata=nodata, ngff=ngff,
    )
    code = batch.execute([Job(input_path, output)], params, options, skip_existing=skip_existing,
                         progress=not no_progress, as_json=as_json, quiet=quiet, verbose=verbose)
    ctx.exit(code)


def main() -> None:
    """Console-script entry point: the stop signals stay handled until the process has exited."""
    if not sys.warnoptions:  # a library's warning is not poolcli's one line per failure (-W still shows them)
        warnings.simplefilter("ignore")
        # ... nor one whose library puts its own filter first (numcodecs' crc32c notice, "once")
        warnings.showwarning = lambda *args, **kwargs: None
    with stop_signals_handled(restore=False):
        try:
            cli.main(prog_name="poolcli")
        except SystemExit as done:
            exit_quickly(done.code)  # returns where Python's own exit must run
            raise


EPILOG_EXPLAIN = """\b
Examples:
  poolcli explain max "0 1 2; 3 4 5; 6 7 8" -k 2 -s 1
  poolcli explain avg "1 2 3 4; 5 6 7 8" -k 2 -p 1 --no-count-include-pad
  poolcli explain max m.npy -k 3 -s 2 -p 1 -d 2 --indices --svg windows.svg
  poolcli explain avg photo.png --crop 100,80,8,8 -k 2 --summary
"""


@cli.group("explain", short_help="See pooling happen, window by window, on a small matrix.")
def explain_group() -> None:
    """See pooling happen, window by window, on a small matrix.

    MATRIX is a literal (rows separated by ';', values by spaces or commas, e.g.
    "0 1 2; 3 4 5; 6 7 8"; read as float32, like torch's default), a .npy file, or an image
    with --crop X,Y,W,H.  At most 16x16 values per plane, and 4 planes (--channel chooses),
    are explained.
    """


@explain_group.command("max", cls=GroupedCommand, epilog=EPILOG_EXPLAIN, no_args_is_help=True)
@section("Pooling", window_options, dilation_option)
@section("Explanation", click.option("--indices", "show_indices", is_flag=True,
                                     help="Show torch's flat index h*W + w of each maximum."), explain_options)
@click.pass_context
def explain_max(ctx: click.Context, kernel: Pair, stride: Pair | None, padding: Pair, ceil_mode: bool,
                dilation: Pair, show_indices: bool, **shown: Any) -> None:
    """Explain max pooling (torch's MaxPool2d) of MATRIX."""
    params = PoolParams(op="max", kernel=kernel, stride=stride, padding=padding, dilation=dilation,
                        ceil_mode=ceil_mode)
    explain_matrix(ctx, _checked(ctx, params), show_indices=show_indices, **shown)


@explain_group.command("avg", cls=GroupedCommand, epilog=EPILOG_EXPLAIN, no_args_is_help=True)
@section("Pooling", window_options, divisor_options)
@section("Explanation", explain_options)
@click.pass_context
def explain_avg(ctx: click.Context, kernel: Pair, stride: Pair | None, padding: Pair, ceil_mode: bool,
                count_include_pad: bool, divisor_override: int | None, **shown: Any) -> None:
    """Explain average pooling (torch's AvgPool2d) of MATRIX."""
    params = PoolParams(op="avg", kernel=kernel, stride=stride, padding=padding, ceil_mode=ceil_mode,
                        count_include_pad=count_include_pad, divisor_override=divisor_override)
    explain_matrix(ctx, _checked(ctx, params), **shown)


def _paths() -> ModuleType:
    from poolcli import paths  # (tempfile, socket, hashlib: not for --help and --version)

    return paths


def _check_pictures(ctx: click.Context, matrix: str, svg_path: str | None, png_path: str | None) -> None:
    """Every path explain writes differs from its input and from each other: usage error, before any work."""
    for option, path in (("--svg", svg_path), ("--png", png_path)):
        if path is not None and os.path.lexists(matrix) and _paths().same_file(path, matrix):
            raise click.BadParameter(f"{path} is the input MATRIX; explain never overwrites its input: "
                                     "give another file", ctx=ctx, param_hint=f"'{option}'")
    if svg_path is not None and png_path is not None and _paths().same_file(svg_path, png_path):
        raise click.BadParameter(f"--svg and --png both name {png_path}: give two files", ctx=ctx,
                                 param_hint="'--png'")


def explain_matrix(ctx: click.Context, params: PoolParams, *, matrix: str, crop: tuple[int, ...] | None,
                   channels: tuple[tuple[int, ...], ...], summary: bool, svg_path: str | None, png_path: str | None,
                   show_indices: bool = False) -> None:
    """The one implementation behind ``poolcli explain max`` and ``poolcli explain avg``."""
    _check_pictures(ctx, matrix, svg_path, png_path)
    from poolcli.explain import matrix as matrix_input
    from poolcli.explain import model, picture
    from poolcli.explain.render import render_explanation
    from poolcli.report import make_console

    chosen = sorted({c for group in channels for c in group}) if channels else None
    try:
        array = matrix_input.load_matrix(matrix, crop)
    except matrix_input.MatrixError as error:
        raise click.BadParameter(str(error), ctx=ctx, param_hint="'MATRIX'") from None
    except matrix_input.ExplainInputError as error:
        _fail(ctx, f"{matrix}: {error}")
    try:
        explanation = model.explain(array, params, chosen)
    except model.ChannelError as error:
        raise click.BadParameter(str(error), ctx=ctx, param_hint="'--channel'") from None
    except model.ExplainLimit as error:
        raise click.UsageError(str(error), ctx=ctx) from None
    except ValueError as error:  # torch's own message, e.g. output size too small
        _fail(ctx, f"{matrix}: {error}" if os.path.lexists(matrix) else str(error))
    explanation.show_indices = show_indices
    pictures: list[tuple[str, bytes]] = []
    try:  # both pictures are made (and measured) before either is written
        if svg_path:
            pictures.append((svg_path, picture.svg_text(explanation, summary).encode("utf-8")))
        if png_path:
            png = io.BytesIO()
            picture.draw_png(explanation, summary, png)
            pictures.append((png_path, png.getvalue()))
    except picture.PictureTooLarge as error:
        raise click.UsageError(str(error), ctx=ctx) from None
    _check_stdout(ctx)
    render_explanation(explanation, make_console(sys.stdout), summary)  # the explanation is the output
    paths = _paths()
    try:  # both pictures appear together or not at all; devices and FIFOs are written through
        paths.write_all([(path, _writer(data)) for path, data in pictures])
    except paths.OutputError as error:  # "cannot write FILE: reason", FILE as given (never a temporary file)
        _fail(ctx, str(error))


def _writer(data: bytes) -> Callable[[BinaryIO], None]:
    def write(handle: BinaryIO) -> None:
        handle.write(data)

    return write


def _fail(ctx: click.Context, message: str) -> NoReturn:
    # One line, always: a new line in a file name is shown escaped, not obeyed.
    message = message.replace("\r", "\\r").replace("\n", "\\n")
    click.echo(f"poolcli: error: {message}", err=True)
    ctx.exit(ExitCode.FAILED)
    raise AssertionError("unreachable")  # ctx.exit raises
