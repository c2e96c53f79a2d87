"""The helpers of a notebook's setup cell, for the references of its experiments (grader only).

An experiment's reference runs the same course-provided helpers as the student's
(the data, the model builders, the training loop of the notebook's locked setup
cell), so that there is one copy of them: the setup cell of
``solutions/<assignment>/<assignment>.ipynb``. Only its imports, definitions and
assignments are run here; calls made for their effect in a notebook
(``torch.set_num_threads(1)``, ``print(...)``, ``np.set_printoptions(...)``) are
left out, so that the grader's process keeps its own settings.
"""

from __future__ import annotations

import ast
import functools
import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent


def setup_source(assignment: str) -> str:
    """The source of the locked setup cell (grade id ``setup``) of the assignment's source notebook."""
    data = json.loads((ROOT / "solutions" / assignment / f"{assignment}.ipynb").read_text(encoding="utf-8"))
    for cell in data["cells"]:
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "setup":
            source = cell["source"]
            return "".join(source) if isinstance(source, list) else source
    raise LookupError(f"solutions/{assignment}/{assignment}.ipynb has no setup cell")


@functools.lru_cache(maxsize=None)
def _namespace(assignment: str) -> dict[str, Any]:
    tree = ast.parse(setup_source(assignment))
    kept = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef, ast.Assign, ast.AnnAssign)
    tree.body = [node for node in tree.body if isinstance(node, kept)]
    namespace: dict[str, Any] = {"__name__": f"setup_{assignment}"}
    exec(compile(tree, f"<setup cell of {assignment}>", "exec"), namespace)  # noqa: S102 - the course's own cell
    return namespace


def setup_namespace(assignment: str) -> dict[str, Any]:
    """A copy of the setup cell's namespace (built once per process)."""
    return dict(_namespace(assignment))


def one_thread(function):
    """``function`` run with one PyTorch thread, as in the sandbox: tiny models are many times slower on more."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return function(*args, **kwargs)
        finally:
            torch.set_num_threads(threads)

    return wrapper
