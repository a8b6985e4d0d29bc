"""The README stays short and its map true: the quick start is two commands (the second is what CI
runs), the file is at most 15 KB with a table of contents, and every link into the project (the
README's absolute ones, the relative ones of docs/ and CONTRIBUTING.md) reaches a file and heading."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The README links into the repository by absolute address (it is also the package index's page).
REPOSITORY = "https://github.com/poolcli/poolcli/blob/main/"
LINK = re.compile(r"\]\(([^)\s]+)\)")


def quick_start_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quick start", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line for line in block.splitlines() if line.strip()]


def test_quick_start_has_exactly_two_commands_on_a_bundled_sample():
    install_and_run, install_and_test = quick_start_commands()
    assert install_and_run.startswith("python -m pip install . && poolcli ")
    sample = install_and_run.split()[-3]
    assert (ROOT / sample).is_file()
    assert install_and_test == 'python -m pip install ".[test]" && python -m pytest'


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert quick_start_commands()[1] in ci.splitlines()


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)  # no headings in code
    return {slug(heading) for heading in re.findall(r"^#{1,6} (.+)$", text, re.M)}


def broken(source: Path, target: str) -> str | None:
    """Why a link from SOURCE does not resolve, or None. Links outside the project are not followed."""
    if target.startswith(REPOSITORY):
        path = target.removeprefix(REPOSITORY)
        resolved = ROOT / path.split("#", 1)[0]
    elif target.startswith(("https://", "http://", "mailto:")):
        return None
    else:
        path = target
        resolved = (source.parent / path.split("#", 1)[0]) if not path.startswith("#") else source
    if not resolved.exists():
        return f"{target}: no such file"
    if "#" in path and path.split("#", 1)[1] not in anchors(resolved):
        return f"{target}: no such heading"
    return None


def project_documents() -> list[Path]:
    return [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_the_readme_is_at_most_15_kb():
    assert (ROOT / "README.md").stat().st_size <= 15 * 1024


def test_the_readme_has_a_table_of_contents_whose_links_resolve():
    text = (ROOT / "README.md").read_text()
    contents = text.split("## Contents\n", 1)[1].split("\n## ", 1)[0]
    entries = re.findall(r"\]\(#([^)]+)\)", contents)
    readme_anchors = anchors(ROOT / "README.md")
    assert {"install", "quick-start", "recipes", "the-python-api", "documentation"} <= set(entries)
    assert [entry for entry in entries if entry not in readme_anchors] == []
    # Every section of the README is in it.
    sections = {slug(h) for h in re.findall(r"^## (.+)$", text, re.M)} - {"contents"}
    assert sections <= set(entries)


def test_the_four_recipes_are_in_the_readme():
    recipes = re.findall(r"^### (.+)$", (ROOT / "README.md").read_text(), re.M)
    assert recipes == ["Shrink a folder of photos", "The course example and `explain`", "A microscopy pyramid",
                       "A folder on S3 with a cluster"]


def test_every_link_into_the_project_resolves():
    problems = [f"{path.relative_to(ROOT)}: {why}" for path in project_documents()
                for target in LINK.findall(path.read_text(encoding="utf-8"))
                if (why := broken(path, target)) is not None]
    assert problems == []


def test_the_link_checker_sees_a_broken_link(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n## A section\n")
    assert broken(page, "#a-section") is None
    assert broken(page, "#title") is None
    assert broken(page, "#nowhere") == "#nowhere: no such heading"
    assert broken(page, "missing.md") == "missing.md: no such file"
    assert broken(page, REPOSITORY + "docs/options.md#options") is None
    assert broken(page, REPOSITORY + "docs/nothing.md") == f"{REPOSITORY}docs/nothing.md: no such file"
