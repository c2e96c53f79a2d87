"""The built site, read as files (no browser): it is complete, self-contained
and its internal links resolve.

Fast checks over every page of _build/html with html.parser. The browser test
(tests/test_site_browser.py) loads the same pages in Chromium.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from browser import sitekit  # noqa: E402

# Tags whose URL the browser fetches when it shows the page. Links (<a>) and
# <link rel="canonical"> and the like are only followed by a reader's click.
# SVG's <image>, <use> and <feImage> fetch what their href (or xlink:href) names.
FETCHED_TAGS = {"script", "img", "iframe", "source", "video", "audio", "embed", "object", "track", "input",
                "image", "use", "feimage"}
FETCHED_LINK_RELS = {"stylesheet", "preload", "modulepreload", "prefetch", "icon", "shortcut icon", "manifest",
                     "apple-touch-icon", "mask-icon"}


@pytest.fixture(scope="module")
def site() -> Path:
    return sitekit.require_site()


@pytest.fixture(scope="module")
def pages(site) -> list[Path]:
    pages = sitekit.html_pages(site)
    assert pages, f"no HTML page under {site}"
    return pages


def _fetched(tag: str, rel: str) -> bool:
    if tag == "link":
        return bool(set(rel.split()) & FETCHED_LINK_RELS) or rel in FETCHED_LINK_RELS
    return tag in FETCHED_TAGS


def test_every_toc_entry_is_a_page(site):
    missing = [name for name in sitekit.toc_docnames() if not (site / f"{name}.html").is_file()]
    assert not missing, f"_toc.yml entries with no page in the built site: {missing}"


def test_pages_fetch_nothing_from_other_hosts(site, pages):
    """Scripts, styles, fonts and images all come from the site itself."""
    remote = []
    for page in pages:
        parsed = sitekit.parse_page(page)
        for tag, attr, url, rel in parsed.refs:
            if _fetched(tag, rel) and sitekit.classify(url) == "remote":
                remote.append(f"{page.relative_to(site)}: <{tag} {attr}={url!r}>")
        for style in parsed.inline_styles:
            remote += [f"{page.relative_to(site)}: inline style url {u}" for u in sitekit.css_urls(style)
                       if sitekit.classify(u) == "remote"]
        # What inline scripts import or fetch; URLs they merely hold (launch links, config) are not fetches.
        for code in parsed.inline_scripts:
            remote += [f"{page.relative_to(site)}: inline script fetches {u}" for u in sitekit.script_urls(code)
                       if sitekit.classify(u) == "remote"]
    for css in site.rglob("*.css"):
        text = css.read_text(encoding="utf-8", errors="replace")
        remote += [f"{css.relative_to(site)}: url({u})" for u in sitekit.css_urls(text)
                   if sitekit.classify(u) == "remote"]
    assert not remote, "resources loaded from another host (the site must work offline):\n" + "\n".join(remote)


@pytest.mark.parametrize("markup", [
    '<script type="module">import mermaid from "https://cdn.jsdelivr.net/npm/mermaid@10/dist/mermaid.esm.min.mjs";'
    "</script>",
    "<script type=module>import {select} from '//cdn.jsdelivr.net/npm/d3@7/+esm'; select('body')</script>",
    '<script>import("https://esm.sh/canvas-confetti").then(m => m.default())</script>',
    '<script>fetch("https://api.example.org/stats.json").then(r => r.json())</script>',
    '<script>var s = document.createElement("script"); s.src = "https://cdn.example.org/mathjax.js";'
    " document.head.appendChild(s);</script>",
    '<svg width="10" height="10"><image href="https://upload.wikimedia.org/x.svg" width="1" height="1"/></svg>',
    '<svg><use xlink:href="//icons.example.org/sprite.svg#book"></use></svg>',
])
def test_the_remote_resource_check_sees_scripts_and_svg_fetching_from_another_host(tmp_path, markup):
    """The checks of the site (and of the feedback pages) see a fetch hidden in an inline script or an SVG."""
    page = tmp_path / "page.html"
    page.write_text(f"<!DOCTYPE html><html><head><title>t</title></head><body>{markup}</body></html>",
                    encoding="utf-8")
    assert sitekit.remote_resources(page)


def test_urls_a_script_only_holds_are_not_remote_resources(tmp_path):
    """A launch link, a repository link or a library's address kept for a reader's click is not fetched."""
    page = tmp_path / "page.html"
    page.write_text(
        "<!DOCTYPE html><html><head><title>t</title>"
        '<script>const THEBE_JS_URL = "https://unpkg.com/thebe@0.8.2/lib/index.js"; '
        'button.href = "https://colab.research.google.com/github/org/repo/blob/main/x.ipynb";</script>'
        '<script type="text/x-thebe-config">{binderOptions: {binderUrl: "https://mybinder.org"}}</script>'
        '<script type="application/json">{"repository": "https://github.com/org/repo"}</script>'
        '<script type="module">import {helper} from "../_static/helper.js"; fetch("_static/data.json");</script>'
        '</head><body><a href="https://github.com/org/repo">repository</a>'
        '<svg><use href="#icon-book"></use></svg></body></html>', encoding="utf-8")
    assert sitekit.remote_resources(page) == []


def test_css_urls_resolve(site):
    """Fonts and images named by the site's CSS exist in the site."""
    missing = []
    for css in site.rglob("*.css"):
        text = css.read_text(encoding="utf-8", errors="replace")
        for url in sitekit.css_urls(text):
            if sitekit.classify(url) != "local" or url.startswith("#"):
                continue
            target, _ = sitekit.resolve_local(css, url, site)
            if not target.exists():
                missing.append(f"{css.relative_to(site)}: url({url})")
    assert not missing, "CSS points to files missing from the site:\n" + "\n".join(missing)


def test_mathjax_is_served_by_the_site(site, pages):
    """Every page with math loads MathJax 3 from the site's own _static."""
    mathjax_dir = site / "_static" / "mathjax"
    assert (mathjax_dir / "tex-chtml.js").is_file(), "MathJax is not copied into _static/mathjax"
    assert any((mathjax_dir / "output" / "chtml" / "fonts" / "woff-v2").glob("*.woff")), \
        "MathJax's fonts are not in the site"
    problems = []
    for page in pages:
        text = page.read_text(encoding="utf-8", errors="replace")
        if 'class="math' not in text:
            continue
        scripts = [url for tag, attr, url, _ in sitekit.parse_page(page).refs
                   if tag == "script" and attr == "src" and "mathjax" in url.lower()]
        local = [url for url in scripts if sitekit.classify(url) == "local"
                 and sitekit.resolve_local(page, url, site)[0].is_relative_to(mathjax_dir)
                 and sitekit.resolve_local(page, url, site)[0].is_file()]
        if not local:
            problems.append(f"{page.relative_to(site)}: MathJax scripts {scripts}")
    assert not problems, "pages with math that do not load the site's MathJax:\n" + "\n".join(problems)


def test_internal_links_resolve(site, pages):
    """Every local href/src of every page names an existing file, and every
    #fragment names an id in its target page. External links are not
    followed (the tests run offline)."""
    broken = []
    for page in pages:
        for tag, attr, url, _ in sitekit.parse_page(page).refs:
            if sitekit.classify(url) != "local" or not url:
                continue
            target, fragment = sitekit.resolve_local(page, url, site)
            where = f"{page.relative_to(site)}: <{tag} {attr}={url!r}>"
            if not target.exists():
                broken.append(f"{where}: no file {target}")
                continue
            if not target.is_relative_to(site):
                broken.append(f"{where}: points outside the site")
                continue
            if fragment and target.suffix == ".html" and fragment not in sitekit.parse_page(target).ids:
                broken.append(f"{where}: no id {fragment!r} in {target.relative_to(site)}")
    assert not broken, f"{len(broken)} broken internal links:\n" + "\n".join(broken[:100])


def test_launch_buttons_open_the_released_notebooks(site):
    """Each released assignment page offers the configured launch services,
    on the notebook in the repository named once in _config.yml."""
    config = sitekit.book_config()
    buttons = config.get("launch_buttons") or {}
    services = {key: buttons[key].rstrip("/") for key in ("binderhub_url", "colab_url", "jupyterhub_url")
                if buttons.get(key)}
    if not services:
        pytest.skip("no launch button configured in _config.yml")
    repo_url = config["repository"]["url"].rstrip("/")
    org_repo = "/".join(urlsplit(repo_url).path.strip("/").split("/")[:2])
    exercises = [name for name in sitekit.toc_docnames() if name.startswith("exercises/")]
    if not exercises:
        pytest.skip("no released notebook in _toc.yml")
    problems = []
    for name in exercises:
        page = site / f"{name}.html"
        links = [url for tag, attr, url, _ in sitekit.parse_page(page).refs if tag == "a"]
        for key, service in services.items():
            found = [u for u in links if u.startswith(service + "/")]
            if not found:
                problems.append(f"{name}: no {key} link")
            elif not all(f"{name}.ipynb" in u and (org_repo in u or repo_url in u.replace("%3A", ":"))
                         for u in found):
                problems.append(f"{name}: {key} link does not open {org_repo}/{name}.ipynb: {found}")
    assert not problems, "\n".join(problems)


def test_every_cross_reference_resolves(site, pages):
    """An unresolved {ref}, {term}, {doc} or citation is rendered as a bare `xref` span instead of a link;
    this fails even when the build is not strict (`-W`), which would otherwise only warn."""
    unresolved = []
    for page in pages:
        # A resolved reference is a link around the span; an unresolved one is the span alone.
        for match in re.finditer(r'(<a [^>]*>)?<span class="xref[^"]*">(.*?)</span>', page.read_text(encoding="utf-8")):
            if match.group(1) is None:
                unresolved.append(f"{page.relative_to(site)}: {re.sub('<[^>]+>', '', match.group(2))[:60]}")
    assert not unresolved, "\n".join(unresolved[:50])
