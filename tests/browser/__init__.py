"""Helpers for the tests of the built site.

The site tests check the site that `make book` built into _build/html:

- tests/test_site_static.py: the pages read as files (html.parser, no
  browser): every page of _toc.yml built, nothing fetched from another host,
  MathJax served from _static/mathjax, every internal link and #anchor
  resolves, the launch buttons open the released notebooks.
- tests/test_site_no_solutions.py: no nbgrader marker, hidden-test hook or
  line of a reference solution (solutions/*/*.ipynb) in any file of the site.
- tests/test_site_browser.py: every page loaded once in headless Chromium
  (/usr/bin/chromium, driven by Playwright) from a local server with the
  network cut; screenshots at 1280 px and 390 px in _build/screenshots/.

sitekit.py has the shared pieces (finding the site, the table of contents,
parsing pages, the local server); crawl.py is the browser's visit.

To check another build of the site: SITE_DIR=/path/to/_build/html pytest
tests/test_site_*.py. Without a built site the tests skip, except in CI
(CI=true), where they fail.
"""
