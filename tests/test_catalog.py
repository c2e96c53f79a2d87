"""The hidden tests catch plausible wrong implementations, and pass the reference.

For every assignment, each entry of ``tests/catalog/<assignment>.py`` replaces
one answer cell of the source notebook; the notebook is then graded by the real
grader (sandboxed run, comparison with PyTorch) and must lose points, with a
message for the student.
"""

from __future__ import annotations

from functools import lru_cache

import pytest

from autograder.spec import load_spec
from tests.conftest import assignments_with_sources, catalog, points, score, source_notebook, with_answer

CASES = [(a, wrong) for a in assignments_with_sources() for wrong in catalog(a)]


@lru_cache(maxsize=None)
def _mistakes(assignment: str) -> dict:
    return load_spec(assignment).mistakes


@pytest.mark.parametrize("assignment", assignments_with_sources())
def test_reference_solution_scores_full_marks(assignment, grader):
    notebook = source_notebook(assignment)
    verdicts = grader.grade(notebook, assignment).verdicts
    assert set(verdicts) == set(points(notebook)), "every test cell has hidden tests"
    failures = [m for v in verdicts.values() for m in v.messages]
    assert not failures, failures
    assert score(notebook, verdicts) == sum(points(notebook).values())


@pytest.mark.parametrize("assignment", assignments_with_sources())
def test_catalog_has_at_least_eight_wrong_implementations(assignment):
    assert len(catalog(assignment)) >= 8


@pytest.mark.parametrize("assignment", assignments_with_sources())
def test_each_entry_is_tied_to_one_known_mistake_or_one_message(assignment):
    loose = [w.name for w in catalog(assignment) if bool(w.shows) == bool(w.named_by)]
    unknown = [f"{w.name}: {w.shows}" for w in catalog(assignment) if w.shows and w.shows not in _mistakes(assignment)]
    assert not loose and not unknown, (loose, unknown)


def _grades_name(grade_id: str, name: str) -> bool:
    return grade_id == f"test_{name}" or grade_id.startswith(f"test_{name}_")


@pytest.mark.parametrize(("assignment", "wrong"), CASES, ids=[f"{a}-{w.name}" for a, w in CASES])
def test_a_wrong_implementation_loses_points_in_its_own_cells_only_and_is_named(assignment, wrong, grader):
    """One grading per entry (grading is the expensive part), three promises:

    1. it loses points, with a message for the student;
    2. one mistake costs only its own function's test cells, also where other graded functions are built
       on it (except the cells listed in ``couples``, each with its reason, which it must still cost);
    3. the feedback names the mistake: the known mistake the entry ``shows`` ("your result matches
       ..."), or, where no output can be compared (an exception, a ProbeError, the source policy), a message
       that names the problem by itself, which the entry quotes in ``named_by``.
    """
    notebook = with_answer(source_notebook(assignment), wrong.target, wrong.source)
    verdicts = grader.grade(notebook, assignment).verdicts
    # 1. It loses points, with a message.
    assert score(notebook, verdicts) < sum(points(notebook).values()), f"{wrong.name} kept full marks"
    messages = [m for v in verdicts.values() for m in v.messages]
    assert messages and all(m.strip() for m in messages)
    # 2. Only in its own cells.
    allowed = {grade_id for grade_id, _ in wrong.couples}
    elsewhere = {grade_id: verdict.messages for grade_id, verdict in verdicts.items()
                 if verdict.fraction < 1 and not _grades_name(grade_id, wrong.target) and grade_id not in allowed}
    assert not elsewhere, f"{wrong.name} (a bug in {wrong.target}) also cost {elsewhere}"
    stale = [grade_id for grade_id in allowed if verdicts[grade_id].fraction == 1]
    assert not stale, f"{wrong.name} no longer costs {stale}: remove them from its couples"
    # 3. Named: as the mistake it is, or by the message that says it.
    assert bool(wrong.shows) != bool(wrong.named_by), f"{wrong.name}: give exactly one of shows and named_by"
    named = sorted({mistake for verdict in verdicts.values() for mistake in verdict.mistakes})
    messages = [m for v in verdicts.values() for m in v.messages]
    if wrong.shows:
        description = _mistakes(assignment)[wrong.shows].description
        assert description in named, f"{wrong.name}: the feedback should name {wrong.shows}, it names {named}"
        return
    assert any(wrong.named_by in message for message in messages), (
        f"{wrong.name}: no message contains {wrong.named_by!r}: {messages[:3]}")
