"""The assignment notebooks keep the exercise contract and stay in sync.

- ``exercises/`` is exactly what ``nbgrader generate_assignment`` makes of ``solutions/``;
- no released notebook contains solution code or hidden tests;
- every graded name is defined at the start of a line in exactly one answer
  cell, nothing later redefines it, and its ``def``/``class`` line is visible in
  the release;
- a released notebook, run as is, fails only with ``NotImplementedError`` and
  scores zero; the source notebook runs without errors.
"""

from __future__ import annotations

import filecmp
import os
import re
import shutil
import subprocess
import sys

import pytest
from nbclient import NotebookClient

from autograder.checks import load_assignment
from tests.conftest import ROOT, assignments_with_sources, released_notebook, source_notebook

ASSIGNMENTS = assignments_with_sources()


def _nbgrader(cell):
    return cell.get("metadata", {}).get("nbgrader", {})


def _between(source: str, begin: str, end: str) -> list[str]:
    lines, inside = [], False
    for line in source.splitlines():
        if begin in line:
            inside = True
        elif end in line:
            inside = False
        elif inside and line.strip():
            lines.append(line.strip())
    return lines


@pytest.fixture(scope="module")
def fresh_release(tmp_path_factory):
    """``exercises/`` regenerated from ``solutions/`` in a scratch copy of the course."""
    course = tmp_path_factory.mktemp("course")
    for name in ("solutions", "autograder"):
        shutil.copytree(ROOT / name, course / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "nbgrader_config.py", course)
    for assignment in ASSIGNMENTS:
        subprocess.run(
            [sys.executable, "-m", "nbgrader", "generate_assignment", assignment, "--force",
             f"--db=sqlite:///{course}/gradebook.db", "--log-level=ERROR"],
            cwd=course, check=True, capture_output=True)
    return course / "exercises"


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_release_is_in_sync_with_solutions(assignment, fresh_release):
    fresh, committed = fresh_release / assignment, ROOT / "exercises" / assignment
    comparison = filecmp.dircmp(fresh, committed, ignore=["__pycache__", ".ipynb_checkpoints"])
    assert not comparison.left_only and not comparison.right_only, "run `make release`"
    for name in comparison.common_files:
        assert (fresh / name).read_bytes() == (committed / name).read_bytes(), (
            f"exercises/{assignment}/{name} differs from a fresh release: run `make release`")


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_release_has_no_solution_code_or_hidden_tests(assignment):
    released = (ROOT / "exercises" / assignment / f"{assignment}.ipynb").read_text()
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "run_hidden_tests", "autograder"):
        assert marker not in released
    release_lines = {line.strip() for cell in released_notebook(assignment).cells
                     for line in cell.source.splitlines()}
    for cell in source_notebook(assignment).cells:
        secret = (_between(cell.source, "### BEGIN SOLUTION", "### END SOLUTION")
                  + _between(cell.source, "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"))
        leaked = [line for line in secret if line in release_lines and len(line) > 12]
        assert not leaked, f"solution lines in the release: {leaked}"


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_graded_names_are_defined_once_and_visible(assignment):
    source, released = source_notebook(assignment), released_notebook(assignment)
    for name in load_assignment(assignment).graded_names:
        definition = re.compile(rf"^(def|class)\s+{name}\b", re.MULTILINE)
        rebinding = re.compile(rf"^\s*({name}\s*=|(def|class)\s+{name}\b|.*\b{name}\.\w+\s*=)", re.MULTILINE)
        defining = [i for i, cell in enumerate(source.cells)
                    if cell.cell_type == "code" and definition.search(cell.source)]
        assert len(defining) == 1, f"{name} is defined in cells {defining}"
        cell = source.cells[defining[0]]
        assert _nbgrader(cell).get("solution"), f"{name} is not defined in an answer cell"
        later = [i for i, c in enumerate(source.cells)
                 if i > defining[0] and c.cell_type == "code" and rebinding.search(c.source)]
        assert not later, f"{name} is redefined or patched in cells {later}"
        line = definition.search(cell.source).group(0)
        assert any(c.source.lstrip().startswith(line) or f"\n{line}" in c.source for c in released.cells), (
            f"the release hides the `{line}` line")


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_released_notebook_scores_zero_failing_only_with_not_implemented(assignment, grader):
    verdicts = grader.grade(released_notebook(assignment), assignment).verdicts
    assert verdicts and all(v.passed == 0 for v in verdicts.values())
    for message in (m for v in verdicts.values() for m in v.messages):
        assert "not implemented" in message, message


def _execute(notebook, tmp_path, monkeypatch):
    # The kernel inherits the environment: source notebooks import the hidden tests from the root.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    client = NotebookClient(notebook, timeout=300, allow_errors=True, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    return [(i, o) for i, cell in enumerate(notebook.cells) if cell.cell_type == "code"
            for o in cell.get("outputs", []) if o.output_type == "error"]


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_released_notebook_runs_with_only_not_implemented_errors(assignment, tmp_path, monkeypatch):
    errors = _execute(released_notebook(assignment), tmp_path, monkeypatch)
    assert errors, "the blank notebook should fail its tests"
    assert {o.ename for _, o in errors} == {"NotImplementedError"}, [(i, o.ename, o.evalue) for i, o in errors]


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_source_notebook_runs_without_errors(assignment, tmp_path, monkeypatch):
    errors = _execute(source_notebook(assignment), tmp_path, monkeypatch)
    assert not errors, [(i, o.ename, o.evalue) for i, o in errors]


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_every_notebook_states_the_rules_the_grader_enforces(assignment):
    """The rules cell is generated from the policy: what students read is what the grader checks."""
    from autograder.authoring import RULES_ID
    from autograder.checks import load_assignment
    from autograder.policy import rules_markdown

    for notebook in (source_notebook(assignment), released_notebook(assignment)):
        cells = [c for c in notebook.cells if c.metadata.get("nbgrader", {}).get("grade_id") == RULES_ID]
        assert len(cells) == 1 and cells[0].source == rules_markdown(load_assignment(assignment))
        assert cells[0].metadata["nbgrader"]["locked"]


def _expected_release(cell) -> str:
    """The source cell as a student must receive it, written independently of nbgrader's code."""
    meta = _nbgrader(cell)
    lines, kept, inside = cell.source.split("\n"), [], False
    if meta.get("solution"):
        stub = ["# YOUR CODE HERE", "raise NotImplementedError()"] if cell.cell_type == "code" \
            else ["YOUR ANSWER HERE"]
        if not any("### BEGIN SOLUTION" in line for line in lines):
            return "\n".join(stub)
        for line in lines:
            if "### BEGIN SOLUTION" in line:
                inside = True
                indent = line[: len(line) - len(line.lstrip())]
                kept += [indent + stub_line for stub_line in stub]
            elif "### END SOLUTION" in line:
                inside = False
            elif not inside:
                kept.append(line)
        return "\n".join(kept)
    if meta.get("grade"):
        for line in lines:
            if "### BEGIN HIDDEN TESTS" in line:
                inside = True
            elif "### END HIDDEN TESTS" in line:
                inside = False
            elif not inside:
                kept.append(line)
        return "\n".join(kept)
    return cell.source


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_every_released_cell_is_its_source_cell_with_the_marked_parts_replaced(assignment):
    """Only what sits between the markers changes on release: a solution line written outside
    `### BEGIN SOLUTION` / `### END SOLUTION` would reach every student, and fails here."""
    source, released = source_notebook(assignment), released_notebook(assignment)
    assert len(source.cells) == len(released.cells)
    for number, (original, release) in enumerate(zip(source.cells, released.cells), start=1):
        assert release.cell_type == original.cell_type, number
        assert release.source == _expected_release(original), f"cell {number} ({_nbgrader(original).get('grade_id')})"
