"""Accurate words for the cases of issue 19 (N9, N12): a closed standard output, an empty output
path, digits of other scripts (Arabic-Indic, fullwidth), a repeated PNG header, and a stream that starts as a PNG."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from poolcli import pipeline

from . import pngkit

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


def _closed_stdout() -> None:
    os.close(1)


@pytest.mark.parametrize("args", [
    ["max", str(SAMPLES / "present.png"), "-k", "2", "-o", "-", "--format", "png", "-q"],
    ["max", str(SAMPLES / "present.png"), "-k", "2", "-o", "{tmp}/out.png", "--json"],
    ["explain", "max", "0 1; 2 3", "-k", "2"],
])
def test_a_closed_standard_output_is_one_line(tmp_path, args):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    result = subprocess.run([sys.executable, "-m", "poolcli", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, preexec_fn=_closed_stdout, text=True, timeout=120)
    assert (result.returncode, result.stderr) == (1, "poolcli: error: cannot write -: standard output is closed\n")
    assert list(tmp_path.iterdir()) == []


def test_an_empty_output_path_is_a_usage_error(invoke, tmp_path):
    (tmp_path / "in.png").write_bytes((SAMPLES / "present.png").read_bytes())
    result = invoke("max", "in.png", "-k", "2", "-o", "")
    assert result.exit_code == 2
    assert result.stderr == ("poolcli max: error: Invalid value for '-o/--output': the output path is empty: give a "
                             "file name, or - for standard output (see 'poolcli max --help')\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png"]


@pytest.mark.parametrize("option,value", [
    ("-k", "\u0663"), ("-k", "2,\u0663"), ("-j", "\u0662"), ("--quality", "\u0665\u0660"),  # Arabic-Indic
    ("--max-pixels", "\uff11\uff10\uff10\uff10"), ("--memory-limit", "\u0663M"),  # fullwidth, Arabic-Indic
    ("-j", "1_0"), ("--memory-limit", "1_000")])
def test_numbers_are_ascii_digits_only(invoke, tmp_path, option, value):
    (tmp_path / "in.png").write_bytes((SAMPLES / "present.png").read_bytes())
    args = ["max", "in.png", "-o", "out.jpg", "-q", option, value]
    if option != "-k":
        args += ["-k", "2"]
    result = invoke(*args)
    assert result.exit_code == 2, result.stderr
    assert result.stderr.startswith("poolcli max: error: Invalid value for ") and value in result.stderr
    assert not (tmp_path / "out.jpg").exists()


def test_explain_reads_ascii_digits_only(invoke, tmp_path):
    result = invoke("explain", "max", str(SAMPLES / "present.png"), "--crop", "0,0,\u0664,4", "-k", "2")
    assert result.exit_code == 2 and "Invalid value for '--crop'" in result.stderr


@pytest.mark.parametrize("kind", ["RGB", "RGBA", "LA"])
def test_a_repeated_header_of_a_16_bit_colour_png_has_a_reason(invoke, tmp_path, kind):
    pixels = np.random.default_rng(0).integers(0, 65536, (8, 8, len(kind)))
    chunks, tail = pngkit.parse(pngkit.build_png(pixels, kind, 16, random.Random(0)))
    (tmp_path / "in.png").write_bytes(pngkit.assemble([chunks[0], *chunks], tail))  # IHDR twice
    result = invoke("max", "in.png", "-k", "2", "-o", "out.png")
    assert result.exit_code == 1
    assert result.stderr == ("poolcli: error: in.png: damaged PNG file (libpng cannot read its chunks: one is "
                             "repeated, out of place or broken)\n")
    assert not (tmp_path / "out.png").exists()


def test_a_stream_that_starts_as_a_png_is_called_a_damaged_png(invoke, monkeypatch):
    monkeypatch.setattr(pipeline, "_HEADER_BYTES", 1 << 20)  # 64 MiB in use: the same rule, smaller
    header = pngkit.build_png(np.zeros((4, 4, 3), np.uint8), "RGB", 8, random.Random(0))[:33]  # signature, IHDR
    result = invoke("max", "-", "-k", "2", "-o", "out.png", input=header + bytes(3 << 20))
    assert result.exit_code == 1
    assert result.stderr == ("poolcli: error: -: damaged PNG file: standard input starts with a PNG signature, "
                             "but Pillow cannot read what follows in its first 1048576 bytes\n")
    result = invoke("max", "-", "-k", "2", "-o", "out.png", input=bytes(3 << 20))
    assert result.stderr == "poolcli: error: -: standard input has no image or .npy header in its first 1048576 bytes\n"
