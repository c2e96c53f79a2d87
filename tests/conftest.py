"""Shared fixtures and helpers for the course's tests."""

from __future__ import annotations

import copy
import importlib
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
ASSIGNMENT_IDS = ("covariate_shift", "bn_math", "train_eval", "alternatives", "pitfalls")


def source_notebook(assignment: str) -> nbformat.NotebookNode:
    return nbformat.read(ROOT / "solutions" / assignment / f"{assignment}.ipynb", as_version=4)


def released_notebook(assignment: str) -> nbformat.NotebookNode:
    return nbformat.read(ROOT / "exercises" / assignment / f"{assignment}.ipynb", as_version=4)


def assignments_with_sources() -> list[str]:
    """The assignments whose source notebook exists (all five once the course is complete)."""
    return [a for a in ASSIGNMENT_IDS if (ROOT / "solutions" / a / f"{a}.ipynb").exists()]


def with_answer(notebook: nbformat.NotebookNode, grade_id: str, source: str) -> nbformat.NotebookNode:
    """A copy of ``notebook`` whose answer cell ``grade_id`` holds ``source``."""
    result = copy.deepcopy(notebook)
    for cell in result.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("solution") and meta.get("grade_id") == grade_id:
            cell.source = source.strip("\n")
            return result
    raise KeyError(f"no answer cell {grade_id!r}")


def points(notebook: nbformat.NotebookNode) -> dict[str, float]:
    """Points of each test cell, by grade id."""
    return {
        cell.metadata.nbgrader.grade_id: float(cell.metadata.nbgrader.points)
        for cell in notebook.cells
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade")
        and not cell.metadata.nbgrader.get("solution")
    }


def score(notebook: nbformat.NotebookNode, verdicts: dict) -> float:
    weights = points(notebook)
    return sum(weights[grade_id] * verdict.fraction for grade_id, verdict in verdicts.items())


def catalog(assignment: str) -> list:
    try:
        module = importlib.import_module(f"tests.catalog.{assignment}")
    except ModuleNotFoundError:
        return []
    return list(module.WRONG)


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def grader():
    """Sandboxed runs forked from a zygote that imported torch once, as the grading command does."""
    from autograder.grading import Grader
    from autograder.sandbox import Sandbox

    with Sandbox() as sandbox:
        yield Grader(sandbox)
