"""The course's additions to nbgrader, installed by ``nbgrader_config.py``.

- :class:`ExecuteAndVerify` replaces nbgrader's ``Execute`` during autograding:
  it runs the notebook in its kernel as usual (so students get their outputs
  back in the feedback), survives a kernel that dies, then overwrites the result
  of every test cell with the verdict of the hidden tests, computed from a
  sandboxed run of the student's code (:func:`autograder.grading.grade_notebook`).
  Test cells' sources and metadata come from the gradebook (nbgrader's
  ``OverwriteCells``), never from the submission.
"""

from __future__ import annotations

from typing import Any

from nbformat import NotebookNode
from nbgrader.preprocessors import Execute
from traitlets import Float, Integer

from autograder.checks import ASSIGNMENT_IDS
from autograder.grading import grade_notebook, is_test_cell
from autograder.sandbox import Limits
from autograder.verdicts import Verdict


def configure(c: Any, root: str) -> None:
    """Apply the course's nbgrader configuration to the config object ``c``."""
    from nbconvert.preprocessors import ClearMetadataPreprocessor
    from nbgrader.preprocessors import (AssignLatePenalties, CheckCellMetadata, IgnorePattern, LimitOutput,
                                        SaveAutoGrades)

    c.CourseDirectory.root = root
    c.CourseDirectory.course_id = "batchnorm"
    c.CourseDirectory.source_directory = "solutions"
    c.CourseDirectory.release_directory = "exercises"
    c.CourseDirectory.db_url = c.CourseDirectory.get("db_url", f"sqlite:///{root}/gradebook.db")
    c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback"]
    c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
    c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
    c.Execute.timeout = 120
    c.Autograde.autograde_preprocessors = [
        ExecuteAndVerify,
        IgnorePattern,
        ClearMetadataPreprocessor,
        LimitOutput,
        SaveAutoGrades,
        AssignLatePenalties,
        CheckCellMetadata,
    ]


def verdict_outputs(result: Verdict, points: float) -> list[NotebookNode]:
    """The outputs that make nbgrader's ``determine_grade`` give ``result``'s score.

    All checks passed: a plain report (full points). Some passed: the report on
    stdout, then the partial score as the cell's value. None passed: an error.
    """
    report = result.report()
    if result.passed == result.total:
        return [NotebookNode(output_type="stream", name="stdout", text=report + "\n")]
    if result.passed == 0:
        return [NotebookNode(output_type="error", ename="HiddenTestFailure",
                             evalue=report.splitlines()[0], traceback=report.splitlines())]
    score = round(points * result.fraction, 2)
    return [
        NotebookNode(output_type="stream", name="stdout", text=report + "\n"),
        NotebookNode(output_type="execute_result", execution_count=None, metadata={},
                     data={"text/plain": repr(score)}),
    ]


def apply_verdicts(nb: NotebookNode, verdicts: dict[str, Verdict]) -> None:
    """Replace the outputs of each test cell that has a verdict."""
    for cell in nb.cells:
        if not is_test_cell(cell):
            continue
        meta = cell.metadata.nbgrader
        result = verdicts.get(meta.get("grade_id", ""))
        if result is not None:
            cell.outputs = verdict_outputs(result, float(meta.get("points", 0)))


class ExecuteAndVerify(Execute):
    """nbgrader's Execute, then the sandboxed hidden tests decide every test cell."""

    cell_seconds = Float(60.0, help="Time limit for one cell or check in the sandbox.").tag(config=True)
    notebook_seconds = Float(300.0, help="Time limit for the whole sandboxed run.").tag(config=True)
    memory_megabytes = Integer(4096, help="Memory limit of the sandboxed run.").tag(config=True)

    def preprocess(self, nb: NotebookNode, resources: dict) -> tuple[NotebookNode, dict]:
        try:
            nb, resources = super().preprocess(nb, resources)
        except Exception as error:  # a dead or hung kernel must not stop the grading
            self.log.warning("Kernel execution stopped early: %s", error)
        assignment = resources.get("nbgrader", {}).get("assignment")
        if assignment in ASSIGNMENT_IDS:
            limits = Limits(self.cell_seconds, self.notebook_seconds, self.memory_megabytes * 1024**2)
            apply_verdicts(nb, grade_notebook(nb, assignment, limits))
        return nb, resources
