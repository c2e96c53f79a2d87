"""What the authors' commands change in the source notebooks: the cell that states the grading rules.

The rules students read are generated from the policy itself
(:func:`autograder.policy.rules_markdown`), so that what a notebook says and
what the grader enforces cannot drift apart; ``python -m autograder release``
refreshes the cell before it releases.
"""

from __future__ import annotations

from pathlib import Path

import nbformat

from autograder.checks import load_assignment
from autograder.policy import rules_markdown

RULES_ID = "grading-rules"


def rules_cell(source: str) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_markdown_cell(source)
    cell.id = "cell-grading-rules"
    cell.metadata = {"deletable": False, "editable": False,
                     "nbgrader": {"grade": False, "solution": False, "locked": True, "task": False,
                                  "grade_id": RULES_ID, "schema_version": 3}}
    return cell


def refresh_rules_cell(path: Path, assignment: str) -> bool:
    """Put the current rules in the notebook at ``path`` (after its first cell); True if it changed."""
    notebook = nbformat.read(path, as_version=4)
    text = rules_markdown(load_assignment(assignment))
    for cell in notebook.cells:
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == RULES_ID:
            if cell.source == text:
                return False
            cell.source = text
            break
    else:
        notebook.cells.insert(1, rules_cell(text))
    nbformat.write(notebook, path)
    return True
