"""The hidden tests catch plausible wrong implementations, and pass the reference.

For every assignment, each entry of ``tests/catalog/<assignment>.py`` replaces
one answer cell of the source notebook; the notebook is then graded by the real
grader (sandboxed run, comparison with PyTorch) and must lose points, with a
message for the student.
"""

from __future__ import annotations

import pytest

from autograder.grading import grade_notebook
from tests.conftest import assignments_with_sources, catalog, points, score, source_notebook, with_answer

CASES = [(a, wrong) for a in assignments_with_sources() for wrong in catalog(a)]


@pytest.mark.parametrize("assignment", assignments_with_sources())
def test_reference_solution_scores_full_marks(assignment, preloaded_sandbox):
    notebook = source_notebook(assignment)
    verdicts = grade_notebook(notebook, assignment)
    assert set(verdicts) == set(points(notebook)), "every test cell has hidden tests"
    failures = [m for v in verdicts.values() for m in v.messages]
    assert not failures, failures
    assert score(notebook, verdicts) == sum(points(notebook).values())


@pytest.mark.parametrize("assignment", assignments_with_sources())
def test_catalog_has_at_least_eight_wrong_implementations(assignment):
    assert len(catalog(assignment)) >= 8


@pytest.mark.parametrize(("assignment", "wrong"), CASES, ids=[f"{a}-{w.name}" for a, w in CASES])
def test_wrong_implementation_loses_points_with_a_message(assignment, wrong, preloaded_sandbox):
    notebook = with_answer(source_notebook(assignment), wrong.target, wrong.source)
    verdicts = grade_notebook(notebook, assignment)
    assert score(notebook, verdicts) < sum(points(notebook).values()), f"{wrong.name} kept full marks"
    messages = [m for v in verdicts.values() for m in v.messages]
    assert messages and all(m.strip() for m in messages)
