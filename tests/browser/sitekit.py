"""Shared helpers for the tests of the built site (tests/test_site_*.py).

The tests check the site that `make book` built into `_build/html` (or the
folder named by the environment variable SITE_DIR). They never build it
themselves: `make test` runs `make book` first. When the site is missing the
tests are skipped with a reason on a developer's machine, and fail in CI
(CI=true), where a missing site means the build step is broken.
"""

from __future__ import annotations

import contextlib
import functools
import html
import http.server
import json
import os
import re
import threading
from html.parser import HTMLParser
from pathlib import Path
from typing import Iterator
from urllib.parse import unquote, urldefrag, urlsplit

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]

# Folders of the built site that hold assets rather than pages.
ASSET_DIRS = ("_static", "_sources", "_downloads", "_images")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # Belt and braces: even if a request escaped the test's routing, no host
    # name other than the local server's would resolve.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def site_dir() -> Path:
    return Path(os.environ.get("SITE_DIR", REPO / "_build" / "html")).resolve()


def repo_dir() -> Path:
    """The sources the site was built from: the folder holding _build/html
    when SITE_DIR points into another copy of the repository, else this one."""
    candidate = site_dir().parents[1]
    return candidate if (candidate / "_toc.yml").is_file() else REPO


def require_site() -> Path:
    """The built site's folder; skip (or fail in CI) when it was not built."""
    site = site_dir()
    if not (site / "index.html").is_file():
        reason = f"the site is not built: {site}/index.html is missing (run `make book` first)"
        if in_ci():
            pytest.fail(reason + "; in CI `make test` must build it")
        pytest.skip(reason)
    return site


def require_chromium() -> str:
    if not Path(CHROMIUM).is_file():
        reason = f"{CHROMIUM} is missing (make system-deps installs it)"
        if in_ci():
            pytest.fail(reason)
        pytest.skip(reason)
    return CHROMIUM


# --------------------------------------------------------------------------
# The table of contents and the pages of the built site


def toc_docnames(repo: Path | None = None) -> list[str]:
    """Every document in _toc.yml, in reading order (root first)."""
    repo = repo or repo_dir()
    toc = yaml.safe_load((repo / "_toc.yml").read_text(encoding="utf-8"))
    names = [_strip_ext(toc["root"])]

    def walk(entries):
        for entry in entries or ():
            if "file" in entry:
                names.append(_strip_ext(entry["file"]))
            walk(entry.get("sections"))
            walk(entry.get("chapters"))

    walk(toc.get("chapters"))
    for part in toc.get("parts") or ():
        walk(part.get("chapters"))
    return names


def _strip_ext(name: str) -> str:
    return re.sub(r"\.(md|ipynb|rst)$", "", name.strip("/"))


def html_pages(site: Path) -> list[Path]:
    """Every HTML page of the site (not the assets), sorted."""
    pages = []
    for path in site.rglob("*.html"):
        rel = path.relative_to(site)
        if rel.parts[0] in ASSET_DIRS:
            continue
        pages.append(path)
    return sorted(pages)


# --------------------------------------------------------------------------
# Parsing built HTML without a browser


class PageParser(HTMLParser):
    """Collects the URLs a page references and the anchors it defines."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        # (tag, attribute, value, rel) for every reference to another resource
        self.refs: list[tuple[str, str, str, str]] = []
        self.inline_styles: list[str] = []
        # The code of every inline script the browser runs (not data blocks such as JSON or a
        # config read by a library: a <script> whose type is not JavaScript is never executed).
        self.inline_scripts: list[str] = []
        self._in_style = False
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("id", "name"):
            if a.get(key) and (key == "id" or tag == "a"):
                self.ids.add(a[key])
        rel = (a.get("rel") or "").lower()
        for attr in ("href", "xlink:href", "src", "poster", "data"):
            value = a.get(attr)
            if value is not None and tag not in ("base",):
                self.refs.append((tag, attr, value.strip(), rel))
        if a.get("srcset"):
            for item in a["srcset"].split(","):
                if item.strip():
                    self.refs.append((tag, "srcset", item.split()[0], rel))
        if a.get("style"):
            self.inline_styles.append(a["style"])
        self._in_style = tag == "style"
        self._in_script = tag == "script" and a.get("src") is None and _runs_as_javascript(a.get("type"))

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        self._in_style = self._in_script = False

    def handle_endtag(self, tag):
        if tag == "style":
            self._in_style = False
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_style:
            self.inline_styles.append(data)
        if self._in_script:
            self.inline_scripts.append(data)


# The script types a browser executes (https://html.spec.whatwg.org/#javascript-mime-type).
_JAVASCRIPT_TYPES = {"", "module", "text/javascript", "application/javascript", "application/ecmascript",
                     "text/ecmascript", "application/x-javascript", "text/jscript", "text/livescript"}


def _runs_as_javascript(script_type: str | None) -> bool:
    return (script_type or "").split(";")[0].strip().lower() in _JAVASCRIPT_TYPES


@functools.lru_cache(maxsize=None)
def parse_page(path: Path) -> PageParser:
    parser = PageParser()
    parser.feed(path.read_text(encoding="utf-8", errors="replace"))
    parser.close()
    return parser


def classify(url: str) -> str:
    """'remote' (another host), 'local' (a file of the site) or 'other'
    (mailto:, javascript:, data:, tel: ...: nothing to fetch or check)."""
    url = url.strip()
    if url.startswith("//"):
        return "remote"
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("http", "https", "ftp", "ws", "wss"):
        return "remote"
    if scheme:
        return "other"
    return "local"


def resolve_local(page: Path, url: str, site: Path) -> tuple[Path, str]:
    """The file a relative URL of `page` points to, and its fragment."""
    target, fragment = urldefrag(url)
    target = urlsplit(target).path
    if not target:
        return page, unquote(fragment)
    if target.startswith("/"):
        path = site / unquote(target.lstrip("/"))
    else:
        path = page.parent / unquote(target)
    path = Path(os.path.normpath(path))
    if path.is_dir():
        path = path / "index.html"
    return path, unquote(fragment)


# A URL in a string literal, right where a script hands it to something that fetches it.
_JS_STRING = r"""\s*["'`]([^"'`\s]+)["'`]"""
SCRIPT_FETCH = re.compile("|".join([
    # import x from "url"; import {a, b} from "url"; import * as x from "url"; export ... from "url"; import "url"
    r"\b(?:import|export)\b[\w\s{},*$]*?\bfrom" + _JS_STRING,
    r"\bimport" + _JS_STRING,
    # import("url"), fetch("url"), new Worker("url"), importScripts("url"), new EventSource / WebSocket ...
    r"\b(?:import|fetch|importScripts|Worker|SharedWorker|EventSource|WebSocket|sendBeacon|Audio)"
    r"\s*\(" + _JS_STRING,
    # xhr.open("GET", "url")
    r"\.open\s*\(\s*[\"'][A-Za-z]+[\"']\s*," + _JS_STRING,
    # element.src = "url", element.srcset = ..., element.setAttribute("src", "url") (not "href": on a link
    # that is only followed by a reader's click)
    r"\.(?:src|srcset)\s*=" + _JS_STRING,
    r"\.setAttribute\s*\(\s*[\"'](?:src|srcset|data|poster)[\"']\s*," + _JS_STRING,
]))


def script_urls(code: str) -> list[str]:
    """The URLs an inline script fetches as it runs: ES module imports, dynamic ``import()``, ``fetch()``,
    workers, ``.src = "..."`` and the like. A URL that is merely data (a string constant, a link a reader
    may follow, a configuration value) is not a fetch and is not listed."""
    return [next(group for group in match.groups() if group) for match in SCRIPT_FETCH.finditer(code)]


CSS_URL = re.compile(r"""url\(\s*['"]?([^'")\s]+)['"]?\s*\)|@import\s+['"]([^'"]+)['"]""")


def css_urls(text: str) -> list[str]:
    return [m.group(1) or m.group(2) for m in CSS_URL.finditer(text)]


# --------------------------------------------------------------------------
# Text of the site, for the leak checks


class _TextParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []

    def handle_data(self, data):
        self.chunks.append(data)


def file_texts(path: Path) -> Iterator[str]:
    """The readable texts of one file of the site: raw, and decoded forms."""
    try:
        raw = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return
    yield raw
    suffix = path.suffix.lower()
    if suffix in (".html", ".htm"):
        parser = _TextParser()
        parser.feed(raw)
        parser.close()
        yield "".join(parser.chunks)
    elif suffix == ".ipynb":
        with contextlib.suppress(ValueError, KeyError, TypeError):
            nb = json.loads(raw)
            for cell in nb.get("cells", []):
                src = cell.get("source", "")
                yield "".join(src) if isinstance(src, list) else src
                for out in cell.get("outputs", []) or []:
                    text = out.get("text")
                    if text:
                        yield "".join(text) if isinstance(text, list) else text
    elif suffix == ".js":
        yield html.unescape(raw)


# --------------------------------------------------------------------------
# A local server for the built site


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - signature of the base class
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A browser that cancels a request (navigating on) closes the socket.
        import sys

        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


@contextlib.contextmanager
def serve(site: Path) -> Iterator[str]:
    """Serve `site` on 127.0.0.1 (a free port); yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = _Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="site-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def book_config(repo: Path | None = None) -> dict:
    """The parsed _config.yml of the sources the site was built from."""
    repo = repo or repo_dir()
    return yaml.safe_load((repo / "_config.yml").read_text(encoding="utf-8"))


def remote_resources(path: Path) -> list[str]:
    """Everything a page would fetch from another host when opened: scripts, stylesheets, images (SVG's
    ``<image>`` and ``<use>`` too), frames, fonts, CSS imports and ``url()``s, and what inline scripts
    import or fetch, in any spelling; plain links (``<a href>``) are not fetched."""
    page = parse_page(path)
    found = [f"<{tag} {attr}={url}>" for tag, attr, url, _ in page.refs
             if tag != "a" and classify(url) == "remote"]
    styles = page.inline_styles + [block for block in re.findall(r"<style[^>]*>(.*?)</style>",
                                                                   path.read_text(encoding="utf-8", errors="replace"),
                                                                   flags=re.S | re.I)]
    found += [f"css {url}" for style in styles for url in css_urls(style) if classify(url) == "remote"]
    found += [f"script fetches {url}" for code in page.inline_scripts for url in script_urls(code)
              if classify(url) == "remote"]
    return found
