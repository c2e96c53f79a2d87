"""The site as a reader meets it: every page of the built site, loaded in
headless Chromium from a local server with the network cut.

One browser visits every page once (tests/browser/crawl.py); the tests below
assert on what it recorded. Any request to another host is aborted and fails
the test that checks for it. Screenshots of every page of the table of
contents, at 1280 px and 390 px wide, are left in _build/screenshots/.
"""

from __future__ import annotations

import fcntl
import os
import pickle
import sys
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlsplit

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from browser import crawl as crawler  # noqa: E402
from browser import sitekit  # noqa: E402

pytest.importorskip("playwright.sync_api", reason="playwright is in requirements.txt")

# Under pytest-xdist with --dist loadgroup, the whole module runs on one
# worker (with --dist load the crawl is still shared, see `visit`).
pytestmark = pytest.mark.xdist_group("site_browser")

# A word the search must find: the notation page defines it.
SEARCH_WORD = "momentum"


@pytest.fixture(scope="module")
def site() -> Path:
    return sitekit.require_site()


@pytest.fixture(scope="module")
def toc() -> list[str]:
    return sitekit.toc_docnames()


@pytest.fixture(scope="module")
def server(site):
    with sitekit.serve(site) as base:
        yield base


@pytest.fixture(scope="module")
def visit(request, site, toc) -> crawler.Crawl:
    """The crawl of the whole site, done once per test run: under
    pytest-xdist the first worker to need it crawls (holding a lock) and
    the others read its result."""
    sitekit.require_chromium()
    run = getattr(request.config, "workerinput", {}).get("testrunuid") or f"pid{os.getpid()}"
    cache = site.parent / f".site-crawl-{run}.pickle"
    with open(site.parent / ".site-crawl.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if cache.is_file():
                return pickle.loads(cache.read_bytes())
            for stale in site.parent.glob(".site-crawl-*.pickle"):
                stale.unlink()
            word = SEARCH_WORD if "book/notation" in toc else None
            with sitekit.serve(site) as base:
                result = crawler.crawl(site, base, site.parent / "screenshots", set(toc), word)
            cache.write_bytes(pickle.dumps(result))
            print(f"\nbrowser visited {len(result.pages)} pages in {result.seconds:.1f} s")
            return result
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _report(problems: dict[str, list[str]], what: str) -> str:
    lines = [f"{what}:"]
    for name, items in problems.items():
        lines.append(f"  {name}:")
        lines += [f"    {item}" for item in items[:10]]
        if len(items) > 10:
            lines.append(f"    ... and {len(items) - 10} more")
    return "\n".join(lines)


def _name(url: str, base: str) -> str:
    return url[len(base):] if url.startswith(base) else url


def test_every_page_loads(visit):
    bad = {r.name: [r.error or f"HTTP {r.status}"] for r in visit.pages.values() if r.error or r.status != 200}
    assert not bad, _report(bad, "pages that did not load")


def test_no_request_leaves_the_machine(visit):
    """Fonts, scripts, styles, math and images are all served by the site."""
    assert not visit.remote_requests, "requests to other hosts (aborted):\n" + "\n".join(visit.remote_requests)


def test_no_console_errors(visit):
    bad = {r.name: r.console_errors for r in visit.pages.values() if r.console_errors}
    assert not bad, _report(bad, "console errors")


def test_no_failed_requests(visit):
    bad = {r.name: r.failed_requests for r in visit.pages.values() if r.failed_requests}
    assert not bad, _report(bad, "failed requests to the local server")


def test_every_equation_is_rendered(visit):
    bad = {}
    for r in visit.pages.values():
        items = []
        if r.math_count and r.mathjax != "ready":
            items.append(f"MathJax {r.mathjax} on a page with {r.math_count} equations")
        items += [f"not typeset: {t!r}" for t in r.untypeset]
        items += [f"TeX error: {t!r}" for t in r.math_errors]
        items += [f"raw TeX visible: {t!r}" for t in r.raw_tex]
        if items:
            bad[r.name] = items
    assert not bad, _report(bad, "math not rendered")


def test_math_renders_somewhere(visit):
    """Guards the test above against passing vacuously."""
    if not any(r.math_count for r in visit.pages.values()):
        pytest.skip("no page of the site has math yet")
    assert any(r.mathjax == "ready" and not r.untypeset for r in visit.pages.values() if r.math_count)


def test_every_image_loads(visit):
    bad = {}
    for r in visit.pages.values():
        items = [f"{img['src']} ({img['width']}x{img['height']}, complete={img['complete']})"
                 for img in r.images if not img["complete"] or img["width"] == 0 or img["height"] == 0]
        if items:
            bad[r.name] = items
    assert not bad, _report(bad, "images that did not load")


def test_internal_links_answer_200_and_anchors_exist(visit, server):
    """Every local link of every page is served (HTTP 200) and its #anchor
    exists in the rendered target page. External links are not followed."""
    targets: dict[str, set[str]] = {}
    for r in visit.pages.values():
        for link in r.links:
            if urlsplit(link).netloc != urlsplit(visit.base).netloc:
                continue
            url, fragment = urldefrag(link)
            fragment = unquote(fragment)
            targets.setdefault(url, set())
            if fragment:
                targets[url].add(fragment)
    bad = {}
    for url in sorted(targets):
        live = server + url[len(visit.base):]  # the crawl may have run on another worker's server
        try:
            with urllib.request.urlopen(urllib.request.Request(live, method="HEAD"), timeout=10) as response:
                status = response.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        if status != 200:
            bad.setdefault(_name(url, visit.base), []).append(f"HTTP {status}")
            continue
        page = visit.pages.get(urlsplit(url)._replace(query="").geturl())
        if page is not None:
            missing = sorted(f for f in targets[url] if f not in page.ids)
            if missing:
                bad.setdefault(_name(url, visit.base), []).extend(f"no anchor #{f}" for f in missing)
    assert not bad, _report(bad, "broken internal links")


def test_navigation_reaches_every_chapter(visit, toc):
    """From the home page, the sidebar reaches every page of the table of
    contents, and the "next" buttons walk through them in order."""
    home = visit.base + toc[0] + ".html"
    assert home in visit.pages, f"home page {toc[0]} not built"
    seen, frontier = {home}, [home]
    while frontier:
        record = visit.pages.get(frontier.pop())
        for link in record.nav if record else ():
            url = urldefrag(link)[0]
            if url in visit.pages and url not in seen:
                seen.add(url)
                frontier.append(url)
    unreached = [name for name in toc if visit.base + name + ".html" not in seen]
    assert not unreached, f"not reachable from the sidebar navigation: {unreached}"

    walked, url = [], home
    while url and len(walked) <= len(toc) + 5:
        walked.append(_name(url, visit.base)[: -len(".html")])
        url = visit.pages[url].next if url in visit.pages else None
        url = urldefrag(url)[0] if url else None
    assert walked[: len(toc)] == toc, f"'next' buttons walk {walked}, table of contents is {toc}"


def test_index_redirects_to_the_home_page(visit, toc):
    record = visit.pages.get(visit.base + "index.html")
    assert record is not None and not record.error
    assert record.title == visit.pages[visit.base + toc[0] + ".html"].title


def test_search_works_offline(visit):
    if not visit.search:
        pytest.skip("the notation page is not in the table of contents")
    record = visit.search["record"]
    assert not record.error, record.error
    assert not record.console_errors and not record.failed_requests, record.console_errors + record.failed_requests
    assert any("notation" in url for url in visit.search["results"]), \
        f"searching {visit.search['word']!r} did not find the notation page: {visit.search['results']}"


def test_screenshots_at_desktop_and_phone_width(visit, toc):
    missing = []
    for name in toc:
        record = next((r for r in visit.pages.values() if r.name == name), None)
        shots = {p.name.rsplit("--", 1)[-1] for p in (record.screenshots if record else [])}
        if shots != {"desktop.png", "phone.png"}:
            missing.append(f"{name}: {sorted(shots)}")
    assert not missing, "missing screenshots:\n" + "\n".join(missing)


def test_nothing_overflows_a_phone_screen(visit):
    """At 390 px, wide equations, tables and code scroll inside their own box;
    the page itself never scrolls sideways."""
    bad = {r.name: r.phone_overflow for r in visit.pages.values() if r.phone_overflow}
    assert not bad, _report(bad, "content wider than a phone screen")


def test_colab_is_offered_only_for_notebooks(visit):
    """Colab opens .ipynb files only: every chapter's Colab button opens the notebook
    shipped next to the chapter (autograder/launch_links.py), never its Markdown source."""
    colab = {r.name: [link for link in r.links if "colab.research.google.com" in link]
             for r in visit.pages.values()}
    assert any(colab.values()), "no page offers Colab"
    bad = {name: [link for link in links if not link.endswith(".ipynb")] for name, links in colab.items()}
    bad = {name: links for name, links in bad.items() if links}
    assert not bad, _report(bad, "Colab offered for a file that is not a notebook")
