"""Sphinx extension of the instructor's site: a chapter's launch buttons open its notebook.

sphinx-book-theme (1.3) builds a launch button's path from the page's source
file and switches it to ``<page>.ipynb`` only when that file exists next to the
source. The student edition ships every chapter as ``book/<chapter>.ipynb``
next to ``book/<chapter>.md`` (autograder/publish.py), so the site built from
the edition opens the notebooks. This repository has only the ``.md``: without
this extension its site would send Binder, JupyterHub and Colab to the
Markdown file (Colab cannot open it). With it, the instructor's site links the
same files of the student repository as the published site does, which is what
tests/test_publish.py checks on the built site.

Loaded by ``sphinx.local_extensions`` in ``_config.yml``; the edition's
``_config.yml`` does without it.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any

from sphinx.application import Sphinx

#: The theme adds its launch buttons at priority 501: run after it.
PRIORITY = 600


def open_chapter_notebooks(app: Sphinx, pagename: str, templatename: str, context: dict[str, Any],
                           doctree: Any) -> None:
    """Point the launch buttons of a Markdown notebook page at ``<page>.ipynb``."""
    if PurePosixPath(str(app.env.doc2path(pagename, base=False))).suffix != ".md":
        return
    book = str(app.config.html_theme_options.get("path_to_docs") or "").strip("/")
    prefix = f"{book}/" if book else ""
    # The path ends Binder's and Colab's URLs and is followed by "&branch=" in
    # JupyterHub's (nbgitpuller's) URL.
    markdown = re.compile(rf"(?<=/){re.escape(f'{prefix}{pagename}.md')}(?=$|&)")
    for group in context.get("header_buttons") or ():
        if group.get("label") != "launch-buttons":
            continue
        for button in group.get("buttons") or ():
            if "url" in button:
                button["url"] = markdown.sub(f"{prefix}{pagename}.ipynb", button["url"])


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("html-page-context", open_chapter_notebooks, priority=PRIORITY)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
