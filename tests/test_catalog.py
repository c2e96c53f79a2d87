"""The hidden tests catch plausible wrong implementations, and pass the reference.

For every assignment, each entry of ``tests/catalog/<assignment>.py`` replaces
one answer cell of the source notebook; the notebook is then graded by the real
grader (sandboxed run, comparison with PyTorch) and must lose points, with a
message for the student.
"""

from __future__ import annotations

import pytest

from tests.conftest import assignments_with_sources, catalog, points, score, source_notebook, with_answer

CASES = [(a, wrong) for a in assignments_with_sources() for wrong in catalog(a)]


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


@pytest.mark.parametrize(("assignment", "wrong"), CASES, ids=[f"{a}-{w.name}" for a, w in CASES])
def test_wrong_implementation_loses_points_with_a_message(assignment, wrong, grader):
    notebook = with_answer(source_notebook(assignment), wrong.target, wrong.source)
    verdicts = grader.grade(notebook, assignment).verdicts
    assert score(notebook, verdicts) < sum(points(notebook).values()), f"{wrong.name} kept full marks"
    messages = [m for v in verdicts.values() for m in v.messages]
    assert messages and all(m.strip() for m in messages)



def _grades_name(grade_id: str, name: str) -> bool:
    return grade_id == f"test_{name}" or grade_id.startswith(f"test_{name}_")


@pytest.mark.parametrize(("assignment", "wrong"), CASES, ids=[f"{a}-{w.name}" for a, w in CASES])
def test_one_mistake_costs_only_its_own_cells(assignment, wrong, grader):
    """A notebook whose only bug is in one graded function loses points only in that function's test cells,
    also where other graded functions are built on it."""
    notebook = with_answer(source_notebook(assignment), wrong.target, wrong.source)
    verdicts = grader.grade(notebook, assignment).verdicts
    allowed = {grade_id for grade_id, _ in wrong.couples}
    elsewhere = {grade_id: verdict.messages for grade_id, verdict in verdicts.items()
                 if verdict.fraction < 1 and not _grades_name(grade_id, wrong.target) and grade_id not in allowed}
    assert not elsewhere, f"{wrong.name} (a bug in {wrong.target}) also cost {elsewhere}"
    stale = [grade_id for grade_id in allowed if verdicts[grade_id].fraction == 1]
    assert not stale, f"{wrong.name} no longer costs {stale}: remove them from its couples"
