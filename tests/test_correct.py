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
    # A forward and a backward pass share a private cache: each is graded with the one written with it.
    pairs = getattr(module, "PAIRED_FORWARD", {})
    partners = [pairs.get((entry.target, entry.name))]
    partners += [backward for backward, forward in pairs.items() if forward == (entry.target, entry.name)]
    for partner in partners[:2]:
        if partner is not None:
            notebook = with_answer(notebook, partner[0], by_key[partner].source)
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
