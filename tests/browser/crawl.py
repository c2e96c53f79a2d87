"""Load every page of the built site in one headless Chromium, offline, and
record what a reader would meet: console errors, failed or remote requests,
math left unrendered, broken images, the links and anchors of each page, and
screenshots at desktop and phone widths.

Used by tests/test_site_browser.py, which asserts on the records.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from urllib.parse import urlsplit

from . import sitekit

DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}

# Run in the page once it has loaded: waits for MathJax, then reports.
_INSPECT = r"""
async () => {
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const mathNodes = () => Array.from(document.querySelectorAll('.math'));
  let mathjax = 'absent';
  if (mathNodes().length) {
    for (let i = 0; i < 200 && !(window.MathJax && MathJax.startup && MathJax.startup.promise); i++) await sleep(25);
    if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
      await MathJax.startup.promise;
      mathjax = 'ready';
    } else {
      mathjax = 'never loaded';
    }
  }
  // Images (lazy ones too) and web fonts, loaded before anything is measured.
  for (const img of document.images) if (img.loading === 'lazy') img.loading = 'eager';
  await Promise.all(Array.from(document.images).map((img) => img.complete ? null : new Promise((done) => {
    img.addEventListener('load', done, {once: true});
    img.addEventListener('error', done, {once: true});
    setTimeout(done, 10000);
  })));
  if (document.fonts && document.fonts.ready) await document.fonts.ready;
  // Text a reader sees, outside code, scripts and typeset math.
  const skip = new Set(['SCRIPT', 'STYLE', 'NOSCRIPT', 'PRE', 'CODE', 'TEXTAREA', 'MJX-CONTAINER', 'MJX-ASSISTIVE-MML']);
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT, {
    acceptNode(node) {
      for (let el = node.parentElement; el; el = el.parentElement) {
        if (skip.has(el.tagName) || el.classList.contains('highlight')) return NodeFilter.FILTER_REJECT;
      }
      return NodeFilter.FILTER_ACCEPT;
    }
  });
  const rawTex = [];
  const texPattern = /\$\$|\\(frac|begin\{|end\{|sqrt|sum_|mathbf|hat\{|sigma|gamma|beta|epsilon|mu_)|\\\(|\\\[/;
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const m = n.data.match(texPattern);
    if (m) rawTex.push(n.data.trim().slice(0, 120));
  }
  const math = mathNodes();
  const untypeset = math.filter((el) => !el.querySelector('mjx-container'))
                        .map((el) => el.textContent.trim().slice(0, 120));
  const mathErrors = Array.from(document.querySelectorAll('mjx-merror'))
                        .map((el) => (el.getAttribute('data-mjx-error') || el.textContent).slice(0, 120));
  const images = Array.from(document.images).map((img) => ({
    src: img.currentSrc || img.src, complete: img.complete, width: img.naturalWidth, height: img.naturalHeight}));
  const links = Array.from(document.querySelectorAll('a[href]')).map((a) => a.href);
  const nav = Array.from(document.querySelectorAll('.bd-sidebar-primary a[href], nav.bd-links a[href]')).map((a) => a.href);
  const next = document.querySelector('a.right-next');
  const ids = Array.from(document.querySelectorAll('[id]')).map((el) => el.id)
               .concat(Array.from(document.querySelectorAll('a[name]')).map((el) => el.getAttribute('name')));
  const launchShown = Array.from(document.querySelectorAll('.dropdown-launch-buttons a[href], a[href*="colab.research.google.com"]'))
      .filter((a) => getComputedStyle(a.closest('li') || a).display !== 'none' && getComputedStyle(a).display !== 'none')
      .map((a) => a.getAttribute('href'));
  return {launchShown, mathjax, mathCount: math.length, untypeset, mathErrors, rawTex, images, links, nav,
          next: next ? next.href : null, ids, title: document.title};
}
"""

# Run at phone width: what sticks out of the viewport without a scrollbar of its own.
_OVERFLOW = r"""
() => {
  const width = document.documentElement.clientWidth;
  const scrolls = (el) => ['auto', 'scroll'].includes(getComputedStyle(el).overflowX);
  const content = document.querySelector('article') || document.querySelector('main') || document.body;
  const out = [];
  const describe = (el) => {
    const cls = typeof el.className === 'string' && el.className.trim() ? '.' + el.className.trim().split(/\s+/)[0] : '';
    const text = (el.textContent || '').trim().replace(/\s+/g, ' ').slice(0, 60);
    return `${el.tagName.toLowerCase()}${cls} "${text}"`;
  };
  // Elements that stick out of the viewport and are not inside a box that
  // scrolls sideways (a scroll box that itself fits is fine).
  const offenders = new Set();
  for (const el of content.querySelectorAll('*')) {
    if (el.closest('mjx-container') && el.tagName !== 'MJX-CONTAINER') continue;
    const rect = el.getBoundingClientRect();
    if (rect.width === 0 || rect.height === 0) continue;
    if (rect.right <= width + 1 && rect.left >= -1) continue;
    let inScrollBox = false;
    for (let a = el.parentElement; a && a !== document.body; a = a.parentElement) {
      if (scrolls(a)) { inScrollBox = true; break; }
    }
    if (inScrollBox) continue;
    if (el.parentElement && offenders.has(el.parentElement)) { offenders.add(el); continue; }
    offenders.add(el);
    out.push(`${describe(el)} spans ${Math.round(rect.left)}..${Math.round(rect.right)} px (viewport ${width})`);
  }
  const page = document.documentElement.scrollWidth;
  if (page > width + 1) out.push(`the page scrolls sideways: ${page} px wide in a ${width} px viewport`);
  return out;
}
"""


@dataclasses.dataclass
class PageRecord:
    url: str
    name: str
    status: int | None = None
    title: str = ""
    console_errors: list[str] = dataclasses.field(default_factory=list)
    failed_requests: list[str] = dataclasses.field(default_factory=list)
    mathjax: str = "absent"
    math_count: int = 0
    untypeset: list[str] = dataclasses.field(default_factory=list)
    math_errors: list[str] = dataclasses.field(default_factory=list)
    raw_tex: list[str] = dataclasses.field(default_factory=list)
    images: list[dict] = dataclasses.field(default_factory=list)
    links: list[str] = dataclasses.field(default_factory=list)
    nav: list[str] = dataclasses.field(default_factory=list)
    next: str | None = None
    ids: set[str] = dataclasses.field(default_factory=set)
    launch_shown: list[str] = dataclasses.field(default_factory=list)
    phone_overflow: list[str] = dataclasses.field(default_factory=list)
    screenshots: list[Path] = dataclasses.field(default_factory=list)
    error: str = ""


@dataclasses.dataclass
class Crawl:
    base: str
    pages: dict[str, PageRecord]          # by URL without fragment
    remote_requests: list[str]            # every request to another host (all aborted)
    search: dict
    seconds: float


def launch(playwright):
    return playwright.chromium.launch(executable_path=sitekit.require_chromium(),
                                      args=sitekit.CHROMIUM_ARGS, headless=True)


def _route_offline(context, base: str, remote: list[str]) -> None:
    local = urlsplit(base).netloc

    def handle(route):
        url = route.request.url
        parts = urlsplit(url)
        if parts.scheme in ("data", "blob", "about") or parts.netloc == local:
            route.continue_()
        else:
            remote.append(f"{route.request.frame.url if route.request.frame else '?'} -> {url}")
            route.abort("blockedbyclient")

    context.route("**/*", handle)


def _watch(page, base: str, record_holder: dict) -> None:
    local = urlsplit(base).netloc

    def current():
        return record_holder.get("record")

    def on_console(msg):
        if msg.type == "error" and current():
            current().console_errors.append(f"{msg.text} ({msg.location.get('url', '')})")

    def on_pageerror(exc):
        if current():
            current().console_errors.append(f"uncaught: {exc}")

    def on_failed(request):
        if current() and urlsplit(request.url).netloc == local:
            current().failed_requests.append(f"{request.url}: {request.failure}")

    def on_response(response):
        if current() and response.status >= 400:
            current().failed_requests.append(f"{response.url}: HTTP {response.status}")

    page.on("console", on_console)
    page.on("pageerror", on_pageerror)
    page.on("requestfailed", on_failed)
    page.on("response", on_response)


def crawl(site: Path, base: str, shots_dir: Path, screenshot_names: set[str], search_word: str | None) -> Crawl:
    """Visit every page of `site` (served at `base`) in one browser."""
    from playwright.sync_api import sync_playwright

    start = time.monotonic()
    shots_dir.mkdir(parents=True, exist_ok=True)
    for old in shots_dir.glob("*.png"):
        old.unlink()
    names = [str(p.relative_to(site).with_suffix("")).replace("\\", "/") for p in sitekit.html_pages(site)]
    pages: dict[str, PageRecord] = {}
    remote: list[str] = []
    search: dict = {}
    with sync_playwright() as pw:
        browser = launch(pw)
        try:
            desktop = browser.new_context(viewport=DESKTOP, service_workers="block")
            phone = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True,
                                        device_scale_factor=1, service_workers="block")
            for context in (desktop, phone):
                _route_offline(context, base, remote)
                context.set_default_timeout(20_000)
            holder: dict = {}
            page = desktop.new_page()
            _watch(page, base, holder)
            for name in names:
                url = base + name + ".html"
                record = PageRecord(url=url, name=name)
                holder["record"] = record
                pages[url] = record
                try:
                    redirect = 'http-equiv="refresh"' in (site / f"{name}.html").read_text(errors="replace").lower()
                    response = page.goto(url, wait_until="load")
                    record.status = response.status if response else None
                    if redirect:  # e.g. index.html, a <meta> refresh to the home page
                        page.wait_for_url(lambda u: u.split("#")[0] != url, wait_until="load")
                    data = page.evaluate(_INSPECT)
                    record.title = data["title"]
                    record.mathjax = data["mathjax"]
                    record.math_count = data["mathCount"]
                    record.untypeset = data["untypeset"]
                    record.math_errors = data["mathErrors"]
                    record.raw_tex = data["rawTex"]
                    record.images = data["images"]
                    record.links = data["links"]
                    record.nav = data["nav"]
                    record.next = data["next"]
                    record.ids = set(data["ids"])
                    record.launch_shown = data["launchShown"]
                    if name in screenshot_names:
                        shot = shots_dir / f"{name.replace('/', '__')}--desktop.png"
                        page.screenshot(path=str(shot), full_page=True)
                        record.screenshots.append(shot)
                except Exception as exc:  # a page that cannot be loaded is a finding, not a crash
                    record.error = f"{type(exc).__name__}: {exc}"
            holder["record"] = None

            # Search, served from the site's own index.
            if search_word:
                search_record = PageRecord(url=base + "search.html", name="search")
                holder["record"] = search_record
                page.goto(f"{base}search.html?q={search_word}", wait_until="load")
                try:
                    page.wait_for_function(
                        "() => { const s = document.querySelector('#search-results .search-summary');"
                        " return s && /found|did not match/i.test(s.textContent); }", timeout=20_000)
                except Exception as exc:
                    search_record.error = f"{type(exc).__name__}: {exc}"
                search = {"word": search_word,
                          "results": page.eval_on_selector_all("#search-results li a", "els => els.map(e => e.href)"),
                          "record": search_record}
                holder["record"] = None
            page.close()

            # Phone width: screenshots and overflow.
            page = phone.new_page()
            _watch(page, base, holder)
            for name in names:
                if name not in screenshot_names:
                    continue
                record = pages[base + name + ".html"]
                holder["record"] = record
                try:
                    page.goto(record.url, wait_until="load")
                    page.evaluate(_INSPECT)
                    record.phone_overflow = page.evaluate(_OVERFLOW)
                    shot = shots_dir / f"{name.replace('/', '__')}--phone.png"
                    page.screenshot(path=str(shot), full_page=True)
                    record.screenshots.append(shot)
                except Exception as exc:
                    record.error += f" (phone) {type(exc).__name__}: {exc}"
            holder["record"] = None
            page.close()
            desktop.close()
            phone.close()
        finally:
            browser.close()
    return Crawl(base=base, pages=pages, remote_requests=remote, search=search,
                 seconds=time.monotonic() - start)
