"""Solutions and hidden tests never reach the site.

The site shows the released notebooks (exercises/) as students receive them.
Nothing of the nbgrader source notebooks (solutions/) may be in any file of
the built site: pages, _sources, _downloads, the search index, images' alt
texts. Checked two ways: the nbgrader markers and the hidden-test hook never
appear, and no run of three consecutive lines of a reference solution (or a
whole short solution) appears either.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from browser import sitekit  # noqa: E402

MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS",
           "run_hidden_tests", "autograder.hidden")

# Lines too generic to identify a solution on their own (the last three: PyTorch's training step, in every
# training loop of the book as in every tutorial).
_TRIVIAL = re.compile(r"^(pass|return|else:|try:|finally:|\)|\]|\}|return None|raise NotImplementedError\(\)"
                      r"|optimizer\.zero_grad\(\)|loss\.backward\(\)|optimizer\.step\(\))$")
WINDOW = 3          # consecutive solution lines that must not appear together
SHORT_SOLUTION = 40  # a solution of fewer lines must not appear whole if this long


def _normalise(line: str) -> str:
    line = line.split("#", 1)[0] if not line.lstrip().startswith(("'", '"')) else line
    return " ".join(line.split())


def _code_lines(lines) -> list[str]:
    """Normalised lines, without blank and generic ones (same on both sides)."""
    return [n for n in map(_normalise, lines) if n and not _TRIVIAL.match(n)]


def _solution_blocks(repo: Path) -> list[tuple[str, list[str]]]:
    blocks = []
    for path in sorted((repo / "solutions").glob("*/*.ipynb")):
        nb = json.loads(path.read_text(encoding="utf-8"))
        for cell in nb.get("cells", []):
            if cell.get("cell_type") != "code":
                continue
            src = cell.get("source", "")
            src = "".join(src) if isinstance(src, list) else src
            inside, lines = False, []
            for line in src.splitlines():
                if "BEGIN SOLUTION" in line:
                    inside, lines = True, []
                elif "END SOLUTION" in line:
                    inside = False
                    code = _code_lines(lines)
                    if code:
                        blocks.append((f"{path.relative_to(repo)}", code))
                elif inside:
                    lines.append(line)
    return blocks


def _site_files(site: Path):
    for path in sorted(site.rglob("*")):
        if not path.is_file():
            continue
        # MathJax's own library is large and cannot hold course text.
        if path.is_relative_to(site / "_static" / "mathjax"):
            continue
        yield path


@pytest.fixture(scope="module")
def site_texts() -> dict[str, str]:
    site = sitekit.require_site()
    texts = {}
    for path in _site_files(site):
        chunks = list(sitekit.file_texts(path))
        if chunks:
            texts[str(path.relative_to(site))] = "\n".join(chunks)
    assert texts, f"no readable file under {site}"
    return texts


def test_no_nbgrader_markers_or_hidden_tests_on_the_site(site_texts):
    found = [f"{name}: {marker!r}" for name, text in site_texts.items() for marker in MARKERS if marker in text]
    assert not found, "solution or hidden-test markers in the built site:\n" + "\n".join(found)


def test_no_reference_solution_code_on_the_site(site_texts):
    blocks = _solution_blocks(sitekit.repo_dir())
    if not blocks:
        pytest.skip("no solution block in solutions/*/*.ipynb yet")
    # One normalised line per line of every file of the site.
    site_lines = {name: "\n".join(_code_lines(text.splitlines())) for name, text in site_texts.items()}
    leaks = []
    for source, code in blocks:
        if len(code) < WINDOW:
            needles = ["\n".join(code)] if len("".join(code)) >= SHORT_SOLUTION else []
        else:
            needles = ["\n".join(code[i:i + WINDOW]) for i in range(len(code) - WINDOW + 1)]
        for needle in needles:
            hits = [name for name, text in site_lines.items() if needle in text]
            if hits:
                leaks.append(f"{source}: {needle!r} found in {hits[:5]}")
                break
    assert not leaks, ("reference solution code in the built site (a chapter shows lines of a solution "
                       "verbatim: write the chapter's code differently, or the solution):\n" + "\n".join(leaks))
