"""CHANGELOG.md keeps the Keep a Changelog shape: ``[Unreleased]`` on top, then dated releases,
newest first, the newest matching the package version; each kind of heading at most once per
version; every version linked; and the facts it states that the code fixes (the PNG default
level) match the code."""

from __future__ import annotations

import re
from pathlib import Path

import poolcli
from poolcli import formats

CHANGELOG = Path(__file__).resolve().parents[1] / "CHANGELOG.md"
KINDS = ("Added", "Changed", "Deprecated", "Removed", "Fixed", "Security")
VERSION = re.compile(r"^## \[([^\]]+)\](?: - (\d{4}-\d{2}-\d{2}))?$", re.M)


def sections() -> list[tuple[str, str | None, str]]:
    """(version, date or None, body) of every ``## [...]`` section, in file order."""
    text = CHANGELOG.read_text(encoding="utf-8")
    heads = list(VERSION.finditer(text))
    ends = [m.start() for m in heads[1:]] + [len(text)]
    return [(m[1], m[2], text[m.end():end]) for m, end in zip(heads, ends, strict=True)]


def test_unreleased_on_top_then_dated_releases_newest_first() -> None:
    found = sections()
    assert found[0][0] == "Unreleased" and found[0][1] is None
    releases = found[1:]
    assert releases, "no released version"
    assert releases[0][0] == poolcli.__version__
    assert all(date is not None for _, date, _ in releases), "a release without a date"
    dates = [date for _, date, _ in releases]
    assert dates == sorted(dates, reverse=True)


def test_each_kind_of_heading_once_per_version() -> None:
    for version, _, body in sections():
        kinds = re.findall(r"^### (.+)$", body, re.M)
        assert set(kinds) <= set(KINDS), (version, kinds)
        assert len(kinds) == len(set(kinds)), (version, kinds)
        # Entries sit under a heading: no bullet before the first one.
        first = body.find("\n### ")
        assert "\n- " not in (body if first < 0 else body[:first]), version


def test_every_version_is_linked() -> None:
    text = CHANGELOG.read_text(encoding="utf-8")
    for version, _, _ in sections():
        assert re.search(rf"^\[{re.escape(version)}\]: https://", text, re.M), version


def test_the_png_default_level_is_the_codes() -> None:
    text = " ".join(CHANGELOG.read_text(encoding="utf-8").split())
    stated = set(re.findall(r"PNG default is level (\d)", text))
    assert stated == {str(formats.DEFAULT_COMPRESSION)}
    assert "zlib level 2" not in text
