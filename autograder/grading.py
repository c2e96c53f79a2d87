"""Grade one notebook: the source policy, a sandboxed run of the student's code, verdicts per test cell.

This is the core the nbgrader plugin and the grading command share. It takes
an in-memory notebook and knows nothing of nbgrader's files or gradebook.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from autograder.policy import PolicyReport, check_notebook
from autograder.sandbox import CellRun, Job, Limits, Sandbox, WorkerRun
from autograder.spec import AssignmentSpec
from autograder.verdicts import Judge, StudentResult, Verdict


def _nbgrader(cell: Mapping[str, Any]) -> Mapping[str, Any]:
    metadata = cell.get("metadata") or {}
    return (metadata.get("nbgrader") if isinstance(metadata, Mapping) else None) or {}


def is_test_cell(cell: Mapping[str, Any]) -> bool:
    """An autograder test cell: graded, not an answer."""
    meta = _nbgrader(cell)
    return cell.get("cell_type") == "code" and bool(meta.get("grade")) and not meta.get("solution")


def _source(cell: Mapping[str, Any]) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


#: A course-provided (locked) cell whose grade id ends so only draws a figure for the student's notebook.
FIGURE_SUFFIX = "-figure"


def is_figure_cell(cell: Mapping[str, Any]) -> bool:
    meta = _nbgrader(cell)
    return cell.get("cell_type") == "code" and bool(meta.get("locked")) and \
        str(meta.get("grade_id", "")).endswith(FIGURE_SUFFIX)


def runs_in_sandbox(cell: Mapping[str, Any]) -> bool:
    """Whether the grader's worker executes this cell: every code cell but the test cells (their checks run
    instead) and the figure cells (a figure is for the student's own notebook; drawing it would cost every
    submission seconds and grade nothing)."""
    return cell.get("cell_type") == "code" and not is_test_cell(cell) and not is_figure_cell(cell)


def student_cells(notebook: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The code cells the grader executes, in order."""
    return [cell for cell in notebook.get("cells", []) if runs_in_sandbox(cell)]


def student_code(notebook: Mapping[str, Any]) -> list[str]:
    return [_source(cell) for cell in student_cells(notebook)]


@dataclass
class GradedNotebook:
    """One notebook's grading: verdicts per test cell and what the student's cells did."""

    verdicts: dict[str, Verdict]
    cells: dict[int, CellRun]  # by position among the notebook's non-test code cells
    stopped_because: str = ""
    seconds: float = 0.0
    policy: list[str] = field(default_factory=list)  # one line per violation of the source policy

    @property
    def needs_review(self) -> bool:
        return bool(self.policy)


def _test_positions(notebook: Mapping[str, Any], tests: Mapping[str, Any]) -> dict[str, int]:
    """For each graded test cell, the number of student code cells before it (deleted cells: the end)."""
    where: dict[str, int] = {}
    code_cells = 0
    for cell in notebook.get("cells", []):
        if is_test_cell(cell):
            grade_id = _nbgrader(cell).get("grade_id", "")
            if grade_id in tests and grade_id not in where:
                where[grade_id] = code_cells
        elif runs_in_sandbox(cell):
            code_cells += 1
    return where


def grade_in_sandbox(notebook: Mapping[str, Any], spec: AssignmentSpec, sandbox: Sandbox, judge: Judge,
                     salt: int, limits: Limits = Limits()) -> GradedNotebook:
    """Check the policy, run the student's cells and each test cell's probes in the sandbox, judge them.

    Probes run after the code cells that precede their test cell, as the test
    cell itself would: a notebook that dies halfway keeps the points of the
    tests before that point. A test cell missing from the notebook scores 0.
    """
    where = _test_positions(notebook, spec.tests)
    grade_ids = sorted(where, key=lambda grade_id: where[grade_id])
    cells = student_cells(notebook)
    sources = [_source(cell) for cell in cells]
    checked = [not _nbgrader(cell).get("locked") for cell in cells]
    report = check_notebook(sources, checked, spec.checks)
    probes = [(grade_id, index) for grade_id in grade_ids for index in range(len(spec.tests[grade_id]))]
    positions = [where[grade_id] for grade_id, _ in probes]
    job = Job(spec.name, spec.checks_source, sources, probes, positions, salt)
    run = sandbox.run(job, limits) if probes or sources else WorkerRun(finished=True)

    results: dict[str, list[StudentResult]] = {}
    for number, (grade_id, index) in enumerate(probes):
        probe = spec.probe(grade_id, index)
        results.setdefault(grade_id, []).append(_student_result(run, number, probe.graded, report))
    verdicts = judge.verdicts(results, salt)
    for grade_id in spec.tests:
        if grade_id not in verdicts:
            verdicts[grade_id] = judge.verdicts(
                {grade_id: [StudentResult(error="this test cell is missing from the notebook")]
                 * len(spec.tests[grade_id])}, salt)[grade_id]
    numbers = _cell_numbers(notebook)
    policy = [v.message(numbers.get(v.cell)) for v in report.violations]
    return GradedNotebook(verdicts, run.cells, run.stopped_because, run.seconds, policy)


def _cell_numbers(notebook: Mapping[str, Any]) -> dict[int, int]:
    """Student code cell position -> its number among all the notebook's cells (1-based), for messages."""
    numbers, position = {}, 0
    for number, cell in enumerate(notebook.get("cells", []), start=1):
        if runs_in_sandbox(cell):
            numbers[position] = number
            position += 1
    return numbers


def _student_result(run: WorkerRun, number: int, graded: str, report: PolicyReport) -> StudentResult:
    if graded in report.affected:
        first = report.affected[graded][0]
        return StudentResult(error=f"no automatic credit: code cell {first.cell + 1}, line {first.line}: "
                                   f"{first.what} (see the notebook's rules; an instructor will review it)")
    given = run.given_outputs.get(number)
    if number in run.probe_outputs:
        return StudentResult(outputs=run.probe_outputs[number], given=given)
    if number in run.probe_errors:
        return StudentResult(error=run.probe_errors[number], given=given)
    return StudentResult(error=f"not run: {run.stopped_because or 'the notebook stopped before this check'}")


# ---------------------------------------------------------------------------
# A graded notebook on disk: the grading command hands it to nbgrader's autograde this way


def graded_to_json(graded: GradedNotebook) -> dict[str, Any]:
    from dataclasses import asdict

    return {"verdicts": {gid: [asdict(o) for o in v.outcomes] for gid, v in graded.verdicts.items()},
            "cells": {str(i): asdict(c) for i, c in graded.cells.items()},
            "stopped_because": graded.stopped_because, "seconds": graded.seconds, "policy": graded.policy}


def graded_from_json(data: Mapping[str, Any]) -> GradedNotebook:
    from autograder.verdicts import ProbeOutcome

    verdicts = {gid: Verdict(gid, tuple(ProbeOutcome(**o) for o in outcomes))
                for gid, outcomes in data["verdicts"].items()}
    cells = {int(i): CellRun(**c) for i, c in data["cells"].items()}
    return GradedNotebook(verdicts, cells, data["stopped_because"], data["seconds"], list(data["policy"]))


class Grader:
    """A sandbox and the judges of the assignments it has seen: grade notebook after notebook."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self._judges: dict[str, Judge] = {}

    def judge(self, assignment: str) -> Judge:
        from autograder.spec import load_spec

        if assignment not in self._judges:
            self._judges[assignment] = Judge(load_spec(assignment))
        return self._judges[assignment]

    def grade(self, notebook: Mapping[str, Any], assignment: str, salt: int = 0,
              limits: Limits = Limits()) -> GradedNotebook:
        judge = self.judge(assignment)
        return grade_in_sandbox(notebook, judge.spec, self.sandbox, judge, salt, limits)
