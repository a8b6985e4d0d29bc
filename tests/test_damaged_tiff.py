"""Damaged TIFFs the fuzz test found: refused quickly with one clear line, never decoded as the header claims.

The files under tests/data are the exact mutated bytes of ``tests/test_fuzz.py`` (seed 20261202):
case 2606 (ImageLength bytes set to 0xffff: 4294901770 rows in one 10-row strip; 64 s, then an empty reason)
and case 630 (a next-IFD offset pointing back into the first IFD: a circular chain; 10 s).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.test_fuzz import seeds

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize("max_pixels", ["1000000", "0"])
def test_header_claiming_billions_of_rows_is_refused(invoke, tmp_path, max_pixels):
    shutil.copy(DATA / "fuzz-2606-rgb.tif", tmp_path / "in.tif")
    before = (tmp_path / "in.tif").read_bytes()
    result = invoke("avg", "in.tif", "-k", "2", "-o", "out.tif", "-q", "--max-pixels", max_pixels)
    assert result.exit_code == 1
    assert result.stderr == ("poolcli: error: in.tif: damaged TIFF: its header asks for 429490177 strips "
                             "but the file lists 1\n")
    assert not (tmp_path / "out.tif").exists()
    assert (tmp_path / "in.tif").read_bytes() == before


def test_circular_ifd_chain_is_refused(invoke, tmp_path):
    shutil.copy(DATA / "fuzz-0630-rgb.tif", tmp_path / "in.tif")
    result = invoke("avg", "in.tif", "-k", "2", "--divisor-override", "3", "-o", "out.tif", "-q",
                    "--max-pixels", "1000000")
    assert result.exit_code == 1
    assert result.stderr == "poolcli: error: in.tif: damaged TIFF file (TypeError: Missing dimensions)\n"
    assert not (tmp_path / "out.tif").exists()


def test_strip_past_the_end_of_the_file_is_refused(invoke, tmp_path):
    data = seeds()["rgb.tif"]  # one 360-byte strip at offset 140, the IFD before it
    (tmp_path / "cut.tif").write_bytes(data[:300])
    result = invoke("max", "cut.tif", "-k", "2", "-o", "out.tif", "-q", "--max-pixels", "10")
    assert result.exit_code == 1
    assert result.stderr == ("poolcli: error: cut.tif: damaged TIFF: strip 0 ends at byte 500, past the end of "
                             "the 300-byte file (truncated?)\n")


def test_an_exception_without_a_message_still_gives_a_reason():
    from poolcli.errors import GiantImageError
    from poolcli.pipeline import _reason

    assert _reason(str(GiantImageError()), GiantImageError()) == \
        "failed without a message from the system (GiantImageError)"
    assert _reason("two\nlines", OSError()) == "two lines"
