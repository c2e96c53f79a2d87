"""Protected cells come from the source notebook, whatever the student's copy says."""

from __future__ import annotations

from autograder.pipeline import sanitize, source_test_cells
from tests.conftest import ROOT


def _cell(source: str, cell_type: str = "code", **nbgrader) -> dict:
    cell = {"cell_type": cell_type, "metadata": {"nbgrader": nbgrader} if nbgrader else {}, "source": source}
    if cell_type == "code":
        cell.update(outputs=[], execution_count=None)
    return cell


def _protected() -> dict[str, dict]:
    return source_test_cells(ROOT, "bn_math", "bn_math")


def test_a_student_cell_claiming_locked_under_an_unknown_id_loses_the_claim():
    cells = sanitize({"cells": [_cell("x = 1", grade_id="my_own", locked=True, grade=False),
                                _cell("y = 2", grade_id="mine_too", grade=True, points=100)]}, _protected())["cells"]
    assert [c["source"] for c in cells] == ["x = 1", "y = 2"]
    for cell in cells:
        meta = cell["metadata"]["nbgrader"]
        assert not meta["locked"] and not meta["grade"]


def test_locked_course_cells_that_are_not_graded_are_protected():
    protected = _protected()
    # A set-up cell and a figure cell: locked, with a grade id, not graded, not an answer.
    assert {"setup", "init-scale-figure", "test_batchnorm_forward"} <= set(protected)
    assert "batchnorm_forward" not in protected  # the student's answer cell stays the student's


def test_a_locked_figure_cell_comes_back_from_the_source_whatever_the_student_wrote():
    protected = _protected()
    student = {"cells": [_cell("import os; os.system('cheat')", grade_id="init-scale-figure", locked=False),
                         _cell("# my set-up", "markdown", grade_id="setup"),
                         _cell("def f(): pass", grade_id="batchnorm_forward", solution=True)]}
    figure, setup, answer = sanitize(student, protected)["cells"]
    assert figure["source"] == protected["init-scale-figure"]["source"]
    assert figure["metadata"]["nbgrader"]["locked"]
    assert setup["cell_type"] == "code" and setup["source"] == protected["setup"]["source"]
    assert answer["source"] == "def f(): pass"
