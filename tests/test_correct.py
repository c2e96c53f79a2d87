"""Correct answers in any style get full marks: several independent versions of every graded function.

Each entry of ``tests/correct/<assignment>.py`` (written from the contract and
the released notebooks, never from the solutions) replaces its answer cell of
the source notebook; graded by the real grader, for two students (two salts),
the notebook keeps every point and breaks no rule of the source policy.
"""

from __future__ import annotations

import importlib

import pytest

from tests.conftest import assignments_with_sources, points, score, source_notebook, with_answer


def _entries() -> list[tuple[str, object]]:
    found = []
    for assignment in assignments_with_sources():
        module = importlib.import_module(f"tests.correct.{assignment}")
        found += [(assignment, entry) for entry in module.RIGHT]
    return found


CASES = _entries()


def _notebook(assignment: str, entry):
    module = importlib.import_module(f"tests.correct.{assignment}")
    by_key = {(e.target, e.name): e for e in module.RIGHT}
    notebook = with_answer(source_notebook(assignment), entry.target, entry.source)
    # A forward pass and the backward passes that read its private cache are graded together: the
    # entry, its forward (for a backward entry), and for every other backward target the first entry
    # written with that forward.
    pairs = getattr(module, "PAIRED_FORWARD", {})
    forward = pairs.get((entry.target, entry.name), (entry.target, entry.name))
    chosen = {entry.target: entry.name, forward[0]: forward[1]}
    for backward, written_with in pairs.items():
        if written_with == forward:
            chosen.setdefault(backward[0], backward[1])
    for target, name in chosen.items():
        if (target, name) != (entry.target, entry.name):
            notebook = with_answer(notebook, target, by_key[(target, name)].source)
    return notebook


def test_every_graded_function_has_three_independent_versions():
    for assignment in assignments_with_sources():
        module = importlib.import_module(f"tests.correct.{assignment}")
        from autograder.checks import load_assignment

        for name in load_assignment(assignment).graded_names:
            versions = [entry for entry in module.RIGHT if entry.target == name]
            assert len(versions) >= 3, f"{assignment}.{name} has {len(versions)} versions"


@pytest.mark.parametrize(("assignment", "entry"), CASES, ids=[f"{a}-{e.target}-{e.name}" for a, e in CASES])
def test_a_correct_version_gets_full_marks(assignment, entry, grader):
    notebook = _notebook(assignment, entry)
    for salt in (0, 424242):
        graded = grader.grade(notebook, assignment, salt=salt)
        assert not graded.policy, graded.policy
        lost = {grade_id: verdict.messages for grade_id, verdict in graded.verdicts.items() if verdict.fraction < 1}
        assert not lost, f"salt {salt}: {lost}"
        assert score(notebook, graded.verdicts) == sum(points(notebook).values())
