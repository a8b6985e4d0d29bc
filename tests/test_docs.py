"""The documents stay true: every ``§n`` and ``Tn`` cited in poolcli/ and tests/ is in
docs/semantics.md; the man page and the option table of docs/options.md are in step with the commands."""

from __future__ import annotations

import re
from pathlib import Path

import click

from poolcli import manpage
from poolcli.cli import cli

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


def test_the_man_page_is_generated_from_the_commands():
    page = (ROOT / "docs" / "poolcli.1").read_text()
    assert page == manpage.render(), "regenerate it: python -m poolcli.manpage > docs/poolcli.1"


def long_options(command: click.Command) -> set[str]:
    names = set()
    for param in command.params:
        if isinstance(param, click.Option):
            names.update(n for n in [*param.opts, *param.secondary_opts] if n.startswith("--"))
    return names - {"--help"}


def documented_option_table() -> set[str]:
    text = (ROOT / "docs" / "options.md").read_text()
    section = text.split("\n## Options\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return {name for row in rows for name in re.findall(r"--[a-z][a-z-]*", row.split(" | ")[0])}


def test_the_option_table_lists_every_option_of_max_and_avg():
    commands = cli.commands
    in_help = long_options(commands["max"]) | long_options(commands["avg"])
    assert documented_option_table() == in_help


def test_the_readme_has_no_links_that_only_work_in_the_repository():
    text = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(([^)]+)\)", text) + re.findall(r'(?:src|href)="([^"]+)"', text)
    assert all(target.startswith(("https://", "http://", "#")) for target in targets), targets
