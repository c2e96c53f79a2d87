"""The chapter "Training vs evaluation" keeps the course's chapter conventions.

Static checks of ``book/train_eval.md`` (the build itself checks that the code
runs and that references resolve): every figure cell has a caption and a name
that the text refers to, the "Try it" cell follows a tip, the cited keys exist,
and the chapter ends with the Assignment section that links the released notebook.
"""

from __future__ import annotations

import re

from tests.conftest import ROOT

CHAPTER = (ROOT / "book" / "train_eval.md").read_text()
CELLS = re.findall(r"```\{code-cell\} ipython3\n(.*?)```", CHAPTER, re.S)


def _bib_keys() -> set[str]:
    keys = set()
    for path in [ROOT / "book" / "references.bib", *(ROOT / "book" / "references").glob("*.bib")]:
        keys |= set(re.findall(r"^@\w+\{([^,]+),", path.read_text(), re.M))
    return keys


def test_every_figure_has_a_caption_and_a_name_used_in_the_text():
    figures = [cell for cell in CELLS if "plt.show()" in cell]
    assert len(figures) >= 4
    for cell in figures:
        caption = re.search(r"caption: (.+)", cell)
        name = re.search(r"name: (fig-[\w-]+)", cell)
        assert caption and name, cell[:200]
        assert f"{{numref}}`{name.group(1)}`" in CHAPTER, f"{name.group(1)} is never referred to"


def test_try_it_cell_follows_a_tip():
    tip = CHAPTER.index(":::{tip}")
    assert "Try it" in CHAPTER[tip:tip + 200]
    following = CHAPTER[CHAPTER.index(":::", tip + 8):]
    assert following.lstrip(":\n").startswith("```{code-cell}")


def test_cited_keys_exist():
    cited = set(re.findall(r"\{cite:[pt]\}`([^`]+)`", CHAPTER))
    keys = {key.strip() for group in cited for key in group.split(",")}
    assert keys and keys <= _bib_keys(), keys - _bib_keys()


def test_seeds_and_threads_are_fixed():
    assert "torch.manual_seed(0)" in CHAPTER and "torch.set_num_threads(" in CHAPTER


def test_ends_with_the_assignment_section():
    last = CHAPTER.rindex("\n## ")
    section = CHAPTER[last:]
    assert section.startswith("\n## Assignment")
    assert "(train-eval-assignment)=" in CHAPTER[last - 40:last]
    assert "{download}`Download the notebook <../exercises/train_eval/train_eval.ipynb>`" in section
    assert (ROOT / "exercises" / "train_eval" / "train_eval.ipynb").exists()
