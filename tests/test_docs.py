"""Documents generated from the commands stay in step with them: the man page and the README's
option table."""

from __future__ import annotations

import re
from pathlib import Path

import click

from poolcli import manpage
from poolcli.cli import cli

ROOT = Path(__file__).resolve().parents[1]


def test_the_man_page_is_generated_from_the_commands():
    page = (ROOT / "docs" / "poolcli.1").read_text()
    assert page == manpage.render(), "regenerate it: python -m poolcli.manpage > docs/poolcli.1"


def long_options(command: click.Command) -> set[str]:
    names = set()
    for param in command.params:
        if isinstance(param, click.Option):
            names.update(n for n in [*param.opts, *param.secondary_opts] if n.startswith("--"))
    return names - {"--help"}


def readme_option_table() -> set[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Commands", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return {name for row in rows for name in re.findall(r"--[a-z][a-z-]*", row.split(" | ")[0])}


def test_the_readme_option_table_lists_every_option_of_max_and_avg():
    commands = cli.commands
    in_help = long_options(commands["max"]) | long_options(commands["avg"])
    assert readme_option_table() == in_help


def test_the_readme_has_no_links_that_only_work_in_the_repository():
    text = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(([^)]+)\)", text) + re.findall(r'(?:src|href)="([^"]+)"', text)
    assert all(target.startswith(("https://", "http://", "#")) for target in targets), targets
