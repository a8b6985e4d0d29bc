"""The rules the code cites exist: every ``§n`` and ``Tn`` in poolcli/ and tests/ is in docs/semantics.md."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SEMANTICS = ROOT / "docs" / "semantics.md"
# "§3", "§9 table", "T4", "T33": a section number or a row of the tricky-case table.
SECTION = re.compile(r"§(\d+)")
ROW = re.compile(r"\bT(\d+)\b")


def cited_files() -> list[Path]:
    return sorted([*ROOT.glob("poolcli/*.py"), *ROOT.glob("tests/*.py")])


def citations(pattern: re.Pattern[str]) -> dict[str, list[str]]:
    """Cited number -> the files citing it."""
    found: dict[str, list[str]] = {}
    for path in cited_files():
        for number in pattern.findall(path.read_text(encoding="utf-8")):
            found.setdefault(number, []).append(path.name)
    return found


def documented_sections() -> set[str]:
    return set(re.findall(r"^## (\d+)\. ", SEMANTICS.read_text(encoding="utf-8"), re.M))


def documented_rows() -> set[str]:
    return set(re.findall(r"^\| T(\d+) \|", SEMANTICS.read_text(encoding="utf-8"), re.M))


def test_the_semantics_document_has_its_sections_and_table():
    assert {"1", "2", "3", "4", "5", "9", "10"} <= documented_sections()
    assert {str(n) for n in range(1, 52)} == documented_rows()


def test_every_cited_section_exists():
    cited = citations(SECTION)
    assert {"1", "2", "3", "4", "9"} <= set(cited)  # the engine and the oracle cite them
    missing = {n: files for n, files in cited.items() if n not in documented_sections()}
    assert missing == {}


def test_every_cited_table_row_exists():
    cited = citations(ROW)
    assert {"4", "16", "33"} <= set(cited)  # the engine's tests cite them
    missing = {n: files for n, files in cited.items() if n not in documented_rows()}
    assert missing == {}


def test_nothing_points_at_a_spec_outside_the_repository():
    old = "shared/" + "spec/"  # split, so this file does not match itself
    stale = [p.name for p in [*cited_files(), ROOT / "README.md"] if old in p.read_text(encoding="utf-8")]
    assert stale == []
