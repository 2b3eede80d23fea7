"""The docs a user and a contributor read: every page reachable from the README, every relative link
landing on a file and heading that exist, nothing outside the repository cited."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PAGES = sorted((REPO / "docs").glob("*.md"))
DOCS = [REPO / name for name in ("README.md", "CONTRIBUTING.md", "ARCHITECTURE.md", "CHANGELOG.md")] + PAGES
LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def anchors(page: Path) -> set[str]:
    """GitHub's heading ids: lower case, punctuation dropped, spaces as hyphens."""
    headings = re.findall(r"^#+\s+(.+?)\s*$", FENCE.sub("", page.read_text()), re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


def links(page: Path) -> list[str]:
    return LINK.findall(FENCE.sub("", page.read_text()))


@pytest.mark.parametrize("page", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_names_a_file_and_a_heading_that_exist(page):
    broken = []
    for target in links(page):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        found = (page.parent / path).resolve() if path else page
        if not found.exists() or not found.is_relative_to(REPO):
            broken.append(target)
        elif anchor and found.suffix == ".md" and anchor not in anchors(found):
            broken.append(f"{target} (no such heading)")
    assert not broken, broken


def test_every_docs_page_is_linked_from_the_readme_and_listed_in_the_docs_index():
    readme = {(REPO / t.partition("#")[0]).resolve() for t in links(REPO / "README.md")}
    index = {(REPO / "docs" / t.partition("#")[0]).resolve() for t in links(REPO / "docs" / "README.md")}
    pages = {p.resolve() for p in PAGES if p.name != "README.md"}
    assert pages - readme == set(), "not linked from README.md"
    assert pages - index == set(), "not listed in docs/README.md"


@pytest.mark.parametrize("page", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_no_doc_cites_a_folder_outside_the_repository(page):
    assert not re.search(r"(\.\./|/work/)shared\b", page.read_text())


def test_the_version_is_written_once_in_farm_and_read_by_pyproject():
    import tomllib

    import farm

    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "farm.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", farm.__version__)
