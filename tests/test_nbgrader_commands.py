"""The contract's plain nbgrader commands grade a class correctly from a copy of the root.

A scratch copy of the course gets four submissions of ``bn_math``: the source
notebook itself (full marks), the released notebook (zero), a notebook with one
wrong answer from the catalog (some points lost) and a file that is not a
notebook (zero, without stopping the others). The other assignments' source
notebooks, submitted as a student's, score full marks.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from tests.conftest import ROOT, assignments_with_sources, catalog, points, source_notebook, with_answer

NBGRADER = [sys.executable, "-m", "nbgrader"]


def _copy_course(destination: Path) -> Path:
    for name in ("solutions", "exercises", "autograder"):
        shutil.copytree(ROOT / name, destination / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "nbgrader_config.py", destination)
    return destination


def _run(course: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([*NBGRADER, *args], cwd=course, env=env, capture_output=True, text=True, timeout=900)


def _submit(course: Path, student: str, assignment: str, notebook) -> None:
    folder = course / "submitted" / student / assignment
    folder.mkdir(parents=True)
    target = folder / f"{assignment}.ipynb"
    if isinstance(notebook, str):
        target.write_text(notebook)
    else:
        nbformat.write(notebook, target)


def test_plain_nbgrader_commands_grade_a_class(tmp_path):
    assignment = "bn_math"
    course = _copy_course(tmp_path)
    source = source_notebook(assignment)
    wrong = catalog(assignment)[0]
    released = nbformat.read(ROOT / "exercises" / assignment / f"{assignment}.ipynb", as_version=4)
    _submit(course, "reference", assignment, source)
    _submit(course, "blank", assignment, released)
    _submit(course, "wrong", assignment, with_answer(source, wrong.target, wrong.source))
    _submit(course, "broken", assignment, "{ this is not a notebook")

    generated = _run(course, "generate_assignment", assignment, "--force")
    assert generated.returncode == 0, generated.stderr
    _run(course, "autograde", assignment, "--force")  # exits non-zero because of "broken"
    feedback = _run(course, "generate_feedback", assignment, "--force")
    scores = _export(course)
    maximum = sum(points(source).values())
    assert scores["reference"] == maximum
    assert scores["blank"] == 0
    assert 0 <= scores["wrong"] < maximum, f"{wrong.name} kept full marks"
    assert scores.get("broken", 0) == 0
    assert (course / "feedback" / "reference" / assignment / f"{assignment}.html").exists(), feedback.stderr


OTHERS = [a for a in assignments_with_sources() if a != "bn_math"]


@pytest.mark.parametrize("assignment", OTHERS)
def test_source_notebook_scores_full_marks_under_plain_autograde(assignment, tmp_path):
    course = _copy_course(tmp_path)
    source = source_notebook(assignment)
    _submit(course, "reference", assignment, source)
    assert _run(course, "generate_assignment", assignment, "--force").returncode == 0
    graded = _run(course, "autograde", assignment, "--force")
    assert graded.returncode == 0, graded.stderr[-2000:]
    assert _export(course)["reference"] == sum(points(source).values())


def _export(course: Path) -> dict[str, float]:
    exported = _run(course, "export", "--to", "grades.csv")
    assert exported.returncode == 0, exported.stderr
    with open(course / "grades.csv", newline="") as handle:
        return {row["student_id"]: float(row["score"]) for row in csv.DictReader(handle)}
