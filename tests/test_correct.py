"""Correct answers in any style get full marks: several independent versions of every graded function.

Each entry of ``tests/correct/<assignment>.py`` (written from the contract and
the released notebooks, never from the solutions) replaces its answer cell of
the source notebook; graded by the real grader (round k holds the k-th version of every
function, each round for another student), the notebook keeps every point and breaks no rule
of the source policy.
"""

from __future__ import annotations

import importlib

import pytest

from tests.conftest import assignments_with_sources, points, score, source_notebook, with_answer


def _rounds(assignment: str) -> list[dict[str, object]]:
    """Notebooks to grade: round k holds the k-th version of every graded function (the versions of a
    function with fewer wrap around), so that every version is graded, in company of other styles."""
    module = importlib.import_module(f"tests.correct.{assignment}")
    by_target: dict[str, list] = {}
    for entry in module.RIGHT:
        by_target.setdefault(entry.target, []).append(entry)
    by_key = {(e.target, e.name): e for e in module.RIGHT}
    pairs = getattr(module, "PAIRED_FORWARD", {})
    rounds = []
    for k in range(max(len(entries) for entries in by_target.values())):
        chosen = {target: entries[k % len(entries)] for target, entries in by_target.items()}
        # A forward and a backward pass share a private cache: a backward comes with the forward written with it.
        for entry in list(chosen.values()):
            partner = pairs.get((entry.target, entry.name))
            if partner is not None:
                chosen[partner[0]] = by_key[partner]
        rounds.append(chosen)
    return rounds


CASES = [(assignment, k) for assignment in assignments_with_sources() for k in range(len(_rounds(assignment)))]


def test_every_graded_function_has_three_independent_versions():
    for assignment in assignments_with_sources():
        module = importlib.import_module(f"tests.correct.{assignment}")
        from autograder.checks import load_assignment

        for name in load_assignment(assignment).graded_names:
            versions = [entry for entry in module.RIGHT if entry.target == name]
            assert len(versions) >= 3, f"{assignment}.{name} has {len(versions)} versions"


def test_every_version_is_in_a_round():
    """The rounds grade every version of every function (the pairing of caches hides none)."""
    for assignment in assignments_with_sources():
        module = importlib.import_module(f"tests.correct.{assignment}")
        graded = {(entry.target, entry.name) for chosen in _rounds(assignment) for entry in chosen.values()}
        assert graded == {(entry.target, entry.name) for entry in module.RIGHT}


@pytest.mark.parametrize(("assignment", "number"), CASES, ids=[f"{a}-round{k}" for a, k in CASES])
def test_correct_versions_in_any_style_get_full_marks(assignment, number, grader):
    chosen = _rounds(assignment)[number]
    notebook = source_notebook(assignment)
    for target, entry in chosen.items():
        notebook = with_answer(notebook, target, entry.source)
    graded = grader.grade(notebook, assignment, salt=7919 * number + 1)
    versions = ", ".join(f"{target}: {entry.name}" for target, entry in chosen.items())
    assert not graded.policy, (versions, graded.policy)
    lost = {grade_id: verdict.messages for grade_id, verdict in graded.verdicts.items() if verdict.fraction < 1}
    assert not lost, f"{versions}: {lost}"
    assert score(notebook, graded.verdicts) == sum(points(notebook).values())
