"""The built site has every chapter, with figures made at build time.

`make test` builds the site first (`make book`, strict: a warning fails it);
these tests read the result in `_build/html`.
"""

from __future__ import annotations

import os
import re

import pytest

from tests.conftest import ASSIGNMENT_IDS, ROOT

HTML = ROOT / "_build" / "html"
CHAPTER_PAGES = {a: HTML / "book" / f"{a}.html" for a in ASSIGNMENT_IDS}


@pytest.fixture(scope="module")
def site():
    if not (HTML / "index.html").exists():
        if os.environ.get("CI"):
            pytest.fail("the site is not built: run `make book` first")
        pytest.skip("the site is not built: run `make book` first")
    return HTML


@pytest.mark.parametrize("assignment", ASSIGNMENT_IDS)
def test_every_chapter_is_built(site, assignment):
    assert CHAPTER_PAGES[assignment].exists()


@pytest.mark.parametrize("assignment", ASSIGNMENT_IDS)
def test_chapter_links_its_released_notebook(site, assignment):
    page = CHAPTER_PAGES[assignment].read_text()
    if "being written" in page:
        pytest.skip(f"the {assignment} chapter is not written yet")
    links = re.findall(r'href="([^"]*_downloads/[^"]*\.ipynb)"', page)
    assert any(link.endswith(f"/{assignment}.ipynb") for link in links), links
    for link in links:
        assert (CHAPTER_PAGES[assignment].parent / link).resolve().exists(), link


def test_bn_math_chapter_has_figures_computed_at_build_time(site):
    page = CHAPTER_PAGES["bn_math"].read_text()
    figures = re.findall(r'<figure[^>]*>.*?<img[^>]*src="([^"]+)"', page, flags=re.S)
    assert len(figures) >= 2
    for src in figures:
        image = (CHAPTER_PAGES["bn_math"].parent / src).resolve()
        assert image.exists() and image.stat().st_size > 1000, src


def test_downloaded_notebooks_are_the_releases(site):
    for assignment, page in CHAPTER_PAGES.items():
        for link in re.findall(r'href="([^"]*_downloads/[^"]*\.ipynb)"', page.read_text()):
            copy = (page.parent / link).resolve()
            released = ROOT / "exercises" / copy.stem / copy.name
            assert released.exists(), f"{assignment} links {copy.name}, which is not a released notebook"
            assert copy.read_bytes() == released.read_bytes(), f"{link} is not the current release"


# ---------------------------------------------------------------------------
# The sources: every term and reference has its definition (a strict build would refuse the book
# otherwise; this says which one is missing without building it)

BOOK_PAGES = sorted((ROOT / "book").glob("*.md"))
_ROLE = re.compile(r"\{(term|ref|numref|eq|doc)\}`([^`]*)`")


def _target(text: str) -> str:
    return text.rsplit("<", 1)[1].rstrip(">").strip() if text.endswith(">") and "<" in text else text.strip()


def _glossary_terms() -> set[str]:
    terms = set()
    for page in BOOK_PAGES:
        for block in re.findall(r"^:::\{glossary\}\n(.*?)^:::$", page.read_text(encoding="utf-8"), re.S | re.M):
            terms |= {line.strip().lower() for line in block.splitlines() if line.strip() and line[0] != " "}
    return terms


def _labels() -> set[str]:
    labels = set()
    for page in BOOK_PAGES:
        text = page.read_text(encoding="utf-8")
        labels |= set(re.findall(r"^\(([\w-]+)\)=$", text, re.M))
        labels |= set(re.findall(r"^\s*:?(?:name|label):\s*([\w-]+)\s*$", text, re.M))
        labels |= set(re.findall(r"^\$\$ \(([\w-]+)\)$", text, re.M))  # a labelled display equation
    return labels


def test_every_term_and_reference_in_the_book_is_defined():
    terms, labels = _glossary_terms(), _labels()
    assert len(terms) > 20 and len(labels) > 50
    undefined = []
    for page in BOOK_PAGES:
        # Roles shown as code (``{term}`x` ``, `{term}`) are examples, not references.
        shown = re.sub(r"``.*?``|(?<!\})`\{\w+\}`", "", page.read_text(encoding="utf-8"))
        for role, text in _ROLE.findall(shown):
            target = _target(text)
            if role == "term":
                known = target.lower() in terms
            elif role == "doc":
                known = any((page.parent / f"{target}{suffix}").exists() for suffix in (".md", ".ipynb"))
            else:
                known = target in labels
            if not known:
                undefined.append(f"{page.name}: {{{role}}}`{text}`")
    assert not undefined, "terms or references without a definition:\n" + "\n".join(undefined)
