"""The man page's SYNOPSIS names every command (it is made from them) and its EXIT STATUS every
code a run can end with (tests/test_docs.py checks that docs/poolcli.1 is what the generator prints)."""

from __future__ import annotations

import re
from pathlib import Path

from poolcli import manpage
from poolcli.exits import ExitCode

PAGE = Path(__file__).resolve().parents[1] / "docs" / "poolcli.1"


def section(name: str) -> str:
    text = PAGE.read_text(encoding="utf-8").replace("\\-", "-")
    return text.split(f".SH {name}\n", 1)[1].split("\n.SH ", 1)[0]


def test_the_synopsis_has_every_command_with_its_required_options():
    lines = [line for line in section("SYNOPSIS").splitlines() if line.startswith("poolcli")]
    assert lines == [
        "poolcli max|avg -k N|H,W [OPTIONS] INPUT...",
        "poolcli pyramid max|avg -o PATH [OPTIONS] INPUT",
        "poolcli explain max|avg -k N|H,W [OPTIONS] MATRIX",
        "poolcli --version",
    ]
    for path, _, _ in manpage._commands():  # "poolcli pyramid max": a line "poolcli pyramid ...|max|..."
        *prefix, name = path.split()
        assert any(line.split()[:len(prefix)] == prefix and name in line.split()[len(prefix)].split("|")
                   for line in lines), path


def test_exit_status_lists_every_code():
    codes = re.findall(r"^\\fB(\d+)\\fR$", section("EXIT STATUS"), re.M)
    assert codes == ["0", "1", "2", "130", "143", "129"]
    assert {str(int(code)) for code in ExitCode} <= set(codes)
    assert "Ctrl-C" in section("EXIT STATUS") and "SIGTERM" in section("EXIT STATUS")
