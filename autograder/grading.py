"""Grade one notebook: sandboxed run of the student's code, verdicts per test cell.

This is the core the nbgrader plugin and the project command share. It takes
an in-memory notebook and knows nothing of nbgrader's files or gradebook.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from autograder.checks import load_assignment
from autograder.forbidden import defining_cell, forbidden_uses
from autograder.sandbox import CellRun, Limits, WorkerRun, run_student_code
from autograder.verdicts import StudentResult, Verdict, verdict


def _nbgrader(cell: Mapping[str, Any]) -> Mapping[str, Any]:
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


def is_test_cell(cell: Mapping[str, Any]) -> bool:
    """An autograder test cell: graded, not an answer."""
    meta = _nbgrader(cell)
    return cell.get("cell_type") == "code" and bool(meta.get("grade")) and not meta.get("solution")


def student_code(notebook: Mapping[str, Any]) -> list[str]:
    """The code cells the grader executes: every code cell but the test cells, in order."""
    cells = []
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") != "code" or is_test_cell(cell):
            continue
        source = cell.get("source", "")
        cells.append("".join(source) if isinstance(source, list) else str(source))
    return cells


def static_violations(assignment: str, cells: list[str]) -> dict[str, list[str]]:
    """For each graded name, the forbidden library names its defining cell uses."""
    spec = load_assignment(assignment)
    defined = {name: index for name in spec.forbidden
               if (index := defining_cell(cells, name)) is not None}
    violations: dict[str, list[str]] = {}
    for name, index in defined.items():
        uses = forbidden_uses(cells[index], spec.forbidden[name])
        if uses:
            violations[name] = uses
    # A graded name whose cell calls another graded name that uses the library
    # uses it too (a spatial backward that delegates to an autograd backward).
    changed = True
    while changed:
        changed = False
        for name, index in defined.items():
            if name in violations:
                continue
            for other, uses in list(violations.items()):
                if re.search(rf"(?<![\w.]){re.escape(other)}\s*\(", cells[index]):
                    violations[name] = [f"{other} (which uses {', '.join(uses)})"]
                    changed = True
                    break
    return violations


@dataclass
class GradedNotebook:
    """One notebook's grading: verdicts per test cell and what the student's cells did."""

    verdicts: dict[str, Verdict]
    cells: dict[int, CellRun]  # by position among the notebook's non-test code cells
    stopped_because: str = ""
    seconds: float = 0.0


def _test_positions(notebook: Mapping[str, Any], tests: Mapping[str, Any]) -> dict[str, int]:
    """For each graded test cell, the number of student code cells before it."""
    where: dict[str, int] = {}
    code_cells = 0
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        if is_test_cell(cell):
            grade_id = _nbgrader(cell).get("grade_id", "")
            if grade_id in tests and grade_id not in where:
                where[grade_id] = code_cells
        else:
            code_cells += 1
    return where


def grade_in_sandbox(notebook: Mapping[str, Any], assignment: str, limits: Limits = Limits()) -> GradedNotebook:
    """Run the student's cells in a sandbox, each test cell's probes where the cell sits, and judge them.

    Probes run after the code cells that precede their test cell, as the test
    cell itself would in the notebook: a notebook that dies halfway keeps the
    points of the tests before that point.
    """
    spec = load_assignment(assignment)
    where = _test_positions(notebook, spec.tests)
    grade_ids = sorted(where, key=lambda grade_id: where[grade_id])
    cells = student_code(notebook)
    probes = [(grade_id, index) for grade_id in grade_ids for index in range(len(spec.tests[grade_id]))]
    positions = [where[grade_id] for grade_id, _ in probes]
    run = (run_student_code(assignment, cells, probes, limits, positions) if probes or cells
           else WorkerRun(finished=True))
    violations = static_violations(assignment, cells)

    verdicts: dict[str, Verdict] = {}
    number = 0
    for grade_id in grade_ids:
        results = []
        for probe in spec.tests[grade_id]:
            results.append(_student_result(run, number, probe.targets, violations))
            number += 1
        verdicts[grade_id] = verdict(assignment, grade_id, results)
    return GradedNotebook(verdicts, run.cells, run.stopped_because, run.seconds)


def grade_notebook(notebook: Mapping[str, Any], assignment: str, limits: Limits = Limits()) -> dict[str, Verdict]:
    """Verdicts for every hidden test of ``assignment`` that has a test cell in ``notebook``."""
    return grade_in_sandbox(notebook, assignment, limits).verdicts


def _student_result(run: WorkerRun, number: int, targets: tuple[str, ...],
                    violations: dict[str, list[str]]) -> StudentResult:
    for target in targets:
        if target in violations:
            names = ", ".join(violations[target])
            return StudentResult(error=f"{target} uses {names}, the library's own version of this exercise: "
                                       "no credit (implement it with tensor or array operations)")
    if number in run.probe_outputs:
        return StudentResult(outputs=run.probe_outputs[number])
    if number in run.probe_errors:
        return StudentResult(error=run.probe_errors[number])
    return StudentResult(error=f"not run: {run.stopped_because or 'the notebook stopped before this check'}")
