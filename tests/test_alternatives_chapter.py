"""The chapter "Alternatives to batch norm" keeps the shape the course promises.

These checks read the MyST source only (the strict site build executes it):
the chapter ends with its Assignment section and the download link, its
figures have captions and names, it cites only known keys, and it contains no
control character (one silently shifts myst-nb's cell boundaries).
"""

from __future__ import annotations

import re

from tests.conftest import ROOT

CHAPTER = ROOT / "book" / "alternatives.md"


def _text() -> str:
    return CHAPTER.read_text(encoding="utf-8")


def _bib_keys() -> set[str]:
    keys: set[str] = set()
    for path in [ROOT / "book" / "references.bib", *sorted((ROOT / "book" / "references").glob("*.bib"))]:
        keys.update(re.findall(r"@\w+\{([^,\s]+),", path.read_text(encoding="utf-8")))
    return keys


def test_chapter_ends_with_the_assignment_and_its_download_link():
    text = _text()
    headings = re.findall(r"^## (.+)$", text, re.MULTILINE)
    assert headings[-1] == "Assignment"
    assert "(alternatives-assignment)=\n## Assignment" in text
    assert "{download}`Download the notebook <../exercises/alternatives/alternatives.ipynb>`" in text
    assert (ROOT / "exercises" / "alternatives" / "alternatives.ipynb").exists()


def test_chapter_figures_have_captions_and_names():
    text = _text()
    names = re.findall(r"^    name: (fig-alt-[\w-]+)$", text, re.MULTILINE)
    assert set(names) >= {"fig-alt-axes", "fig-alt-batch-size"}
    assert text.count("  figure:\n    caption: |") == len(names)


def test_chapter_cites_known_keys_and_has_a_try_it_cell():
    text = _text()
    cited = {key.strip() for group in re.findall(r"\{cite:[pt]\}`([^`]+)`", text) for key in group.split(",")}
    assert cited and cited <= _bib_keys(), cited - _bib_keys()
    for key in ("Ba2016", "Ulyanov2016", "Wu2018", "Zhang2019", "Salimans2016", "Ioffe2017", "Nam2018",
                "Luo2019Switchable", "Miyato2018", "Ma2019Diminishing", "Singh2019EvalNorm", "Chang2019",
                "He2016Identity", "Vaswani2017", "Xiong2020", "Touvron2023"):
        assert key in cited, key
    assert ":::{tip}\nTry it:" in text


def test_chapter_has_no_control_characters_and_fixed_seeds():
    text = _text()
    assert not re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f]", text)
    assert "torch.manual_seed(0)" in text and "torch.set_num_threads(" in text
