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
